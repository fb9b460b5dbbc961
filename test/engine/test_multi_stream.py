"""StreamGroup: several streams on one model; batched towers; each stream decides as it would alone."""
import threading

import pytest

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine, StreamGroup
from test_nonblocking import wait_until

STREAMS = ("head", "left", "right")
FRAMES = 12
CAMERA_FPS = 8.0


def camera(seed):
    return stream_frames(FRAMES, seed=seed)


def decisions_alone(model, cfg, frames, questions=()):
    engine = StreamEngine(model, cfg)
    for text, t in questions:
        engine.ask(text, t, query_id=f"q{t}")
    answers = []
    engine.on_response = lambda u: answers.append(u.text) if u.is_final else None
    out = [engine.process_frame(rgb, k / CAMERA_FPS, meta=k) for k, rgb in enumerate(frames)]
    engine.flush()
    return [(d.frame_index, d.respond, d.next_token, round(d.p_interval, 4)) for d in out if d], answers


@pytest.mark.parametrize("backend", ["dynamic", "static"])
def test_round_batched_decisions_equal_each_stream_alone(fused_model, backend):
    cfgs = {sid: engine_config(threshold=0.6 + 0.1 * i, backend=backend) for i, sid in enumerate(STREAMS)}
    frames = {sid: camera(seed=10 + i) for i, sid in enumerate(STREAMS)}
    questions = {"left": [("what is in my hand?", 0.5)]}
    group = StreamGroup(fused_model, cfgs)
    for sid, qs in questions.items():
        for text, t in qs:
            group[sid].ask(text, t, query_id=f"q{t}")
    answers = {sid: [] for sid in STREAMS}
    for sid in STREAMS:
        group[sid].on_response = lambda u, sid=sid: answers[sid].append(u.text) if u.is_final else None
    got = {sid: [] for sid in STREAMS}
    for k in range(FRAMES):
        out = group.process_round({sid: (frames[sid][k], k / CAMERA_FPS, k) for sid in STREAMS})
        for sid, d in out.items():
            if d is not None:
                got[sid].append((d.frame_index, d.respond, d.next_token, round(d.p_interval, 4)))
    group.flush()
    if backend == "static":  # one fused decoder (one copy of the fused weights), a KV buffer per stream
        assert len({id(group[sid].backend.fused) for sid in STREAMS}) == 1
        assert len({id(group[sid].backend.main) for sid in STREAMS}) == len(STREAMS)
    assert group.batched_frames > FRAMES  # frames of several streams shared a round
    for sid in STREAMS:
        alone, alone_answers = decisions_alone(fused_model, cfgs[sid], frames[sid], questions.get(sid, ()))
        assert got[sid] == alone, sid
        assert answers[sid] == alone_answers, sid
        assert group[sid].stats()["decided"] == FRAMES // 4
    assert answers["left"] and group["left"].stats()["questions"] == 1


def test_overload_on_one_stream_drops_only_its_frames_and_slow_is_fair(fused_model):
    cfg = engine_config(threshold=1.0, general_fps=1000.0, frame_queue_size=2, max_new_tokens=3,
                        trigger_policy="queue", max_pending_triggers=4)
    group = StreamGroup(fused_model, {sid: cfg for sid in STREAMS})
    finals = {sid: 0 for sid in STREAMS}
    lock = threading.Lock()

    def count(sid, update):
        if update.is_final:
            with lock:
                finals[sid] += 1

    for sid in STREAMS:
        group[sid].on_response = lambda u, sid=sid: count(sid, u)
    frames = stream_frames(4, seed=3)
    flooding = threading.Event()

    def flood():  # "head" pushes as fast as it can, far faster than a decision
        k = 0
        while not flooding.is_set():
            group["head"].push_frame(frames[k % 4], k * 0.01, meta=k)
            k += 1
            flooding.wait(0.001)

    group.start()
    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        for k in range(4):  # the others send a frame, and the next once it was decided
            for sid in STREAMS[1:]:
                group[sid].push_frame(frames[k], k * 0.5, meta=k)
            wait_until(lambda: all(group[s].stats()["decided"] == k + 1 for s in STREAMS[1:]))
        # every stream wants to speak at every frame (threshold 1): the quiet ones get answers though the flood asks more
        wait_until(lambda: all(finals[s] >= 2 for s in STREAMS[1:]))
    finally:
        flooding.set()
        flooder.join()
        group.stop()
    stats = group.stats()["streams"]
    assert stats["head"]["dropped"] > 0
    assert all(stats[s]["dropped"] == 0 and stats[s]["decided"] == 4 for s in STREAMS[1:])


def test_empty_group_is_refused(fused_model):
    with pytest.raises(ValueError, match="at least one stream"):
        StreamGroup(fused_model, {})


def test_streams_bench_json_on_cpu():
    from lionfs_ros.engine.bench.presets import PRESETS
    from lionfs_ros.engine.bench.streams import parse_counts, run_streams

    result = run_streams(PRESETS["tiny-lionfs"], counts=parse_counts("1,2"), rounds=8, prefill_rounds=4,
                         realtime_seconds=0.5)
    assert [run["streams"] for run in result["runs"]] == [1, 2]
    two = result["runs"][1]
    assert two["throughput"]["decided_frames"] == 2 * 8 // 4  # 8 fps camera, 2 fps decided
    assert two["throughput_round_by_round"]["decided_frames"] == 2 * 8 // 4  # the same rounds, not pipelined
    assert set(two["throughput"]["per_stream"]) == {"cam00", "cam01"} and two["throughput"]["worst_p99_ms"] > 0
    assert two["realtime"]["decided_frames"] > 0 and result["towers_batched"]
    for key in ("throughput", "throughput_round_by_round"):  # each round's wall, split by a decided frame or not
        split = two[key]["round_ms"]
        assert split["decided"]["rounds"] == 8 // 4 and split["not_decided"]["rounds"] == 8 - 8 // 4
        assert split["decided"]["max_ms"] >= split["decided"]["p50_ms"] > 0
        rounds_ms = split["decided"]["total_ms"] + split["not_decided"]["total_ms"]
        assert 0 < rounds_ms <= two[key]["wall_s"] * 1e3 + 1.0  # wall_s is rounded to 1 ms
    with pytest.raises(ValueError, match="positive stream counts"):
        parse_counts("0,2")


def test_streams_bench_target_figures_come_from_their_own_mode():
    """Issue 19's target at N=8: each mode's p99 is that mode's own (the real-time p99 is its own figure, never
    mixed into the throughput ones), also when the real-time phase is far slower."""
    import copy

    from lionfs_ros.engine.bench.presets import PRESETS
    from lionfs_ros.engine.bench.streams import _saturation, run_streams

    result = run_streams(PRESETS["tiny-lionfs"], counts=(1, 8), rounds=8, prefill_rounds=4, realtime_seconds=0.3)
    eight = result["runs"][1]
    assert _saturation(result["runs"]) == result["saturation"]
    slow_realtime = copy.deepcopy(result["runs"])
    slow_realtime[1]["realtime"]["worst_p99_ms"] = 1e6
    for runs in (result["runs"], slow_realtime):
        target = _saturation(runs)["target"]
        assert target["worst_p99_ms"] == eight["throughput"]["worst_p99_ms"]
        assert target["worst_p99_ms_round_by_round"] == eight["throughput_round_by_round"]["worst_p99_ms"]
        assert target["speedup_round_by_round"] == eight["throughput_round_by_round"]["speedup_vs_first"]
        assert target["worst_p99_ms_realtime"] == runs[1]["realtime"]["worst_p99_ms"]
    assert not target["met_p99_realtime"] and target["worst_p99_ms_realtime"] == 1e6


def test_streams_parameter_is_parsed_and_checked():
    from lionfs_ros.config import ConfigError, StreamSpec, parse_streams

    assert parse_streams("") == [] and parse_streams("  ") == []
    assert parse_streams("head=/robot/head/image_raw, wrist_left") == [
        StreamSpec("head", "/robot/head/image_raw"), StreamSpec("wrist_left", "wrist_left/image_raw")]
    for bad, why in (("head, head", "given twice"), ("1cam", "must start with a letter"), ("a/b", "must start"),
                     ("head=", "empty camera topic"), ("a=x, b=x", "same camera topic"), ("head,,left", "''")):
        with pytest.raises(ConfigError, match=why):
            parse_streams(bad)
