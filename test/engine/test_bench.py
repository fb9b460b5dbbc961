"""`lionfs bench` end to end on the tiny presets (seconds): the JSON a user and the docs rely on."""
import json

from lionfs_ros.cli import main


def run(capsys, *argv):
    assert main(["bench", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_speed_json_has_engine_naive_ratios_and_equality(capsys):
    r = run(capsys, "--preset", "tiny", "--prefill-frames", "8", "--frames", "8", "--new-tokens", "6",
            "--backend", "static")
    fast, slow = r["fast_path"], r["slow_path"]
    for side in ("engine", "naive"):
        assert fast[side]["frames"] == 8 and fast[side]["p50_ms"] > 0 and fast[side]["p99_ms"] >= fast[side]["p50_ms"]
        assert fast[side]["frames_per_second"] > 0
        assert slow[side]["new_tokens"] == 6 and slow[side]["tokens_per_second"] > 0
        assert slow[side]["time_to_first_token_ms"] > 0 and r["peak_memory_mib"][side] > 0
    assert fast["speedup_p50"] > 0 and slow["speedup_tokens_per_second"] > 0
    eq = r["variants"][r["best_variant"]]["equality"]
    assert eq["frames_compared"] == 16 == eq["decisions_equal"] == eq["next_token_equal"]
    assert eq["generated_tokens_equal_prefix"] == eq["generated_tokens_compared"] == 6
    assert r["variants"][r["best_variant"]]["concurrent"]["frames_decided_during_generation"] >= 1
    assert r["camera_size"] == r["frame_size"][::-1]  # the engines are built for the frames fed (width, height)
    assert r["variants"][r["best_variant"]]["engine_build_ms"] > 0 and fast["engine"]["first_frame_ms"] > 0


def test_memory_json_is_flat_on_a_short_stream(capsys, tmp_path):
    out = tmp_path / "memory.json"
    r = run(capsys, "--preset", "tiny-lionfs", "--mode", "memory", "--stream-frames", "160", "--sample-every", "20",
            "--budget", "400", "--question-every", "20", "--out", str(out))
    assert json.loads(out.read_text()) == r
    s = r["summary"]
    assert s["kv_tokens_max"] <= 400 and s["max_position"] <= 400 < s["max_position_embeddings"]
    assert s["compactions"] > 0 and r["stream"]["answers"] == r["stream"]["questions"] > 0
    assert s["kv_bytes_after_warm_up"]["max"] < 1.5 * s["kv_bytes_after_warm_up"]["min"]


def test_speed_with_ego_frames_and_dropping_on_and_off(capsys):
    """tiny-lionfs: the camera at 8 fps (3 ego-only frames per decided one), the naive loop runs the ego tower and
    the model's own dropping decoder; the same model with dropping off is timed beside it."""
    r = run(capsys, "--preset", "tiny-lionfs", "--prefill-frames", "4", "--frames", "4", "--new-tokens", "4",
            "--backend", "static", "--variants", "eager,eager+nodrop", "--concurrent-variant", "eager")
    assert r["camera_fps"] == 8.0 and r["token_dropping"]["keep_per_frame"] > 0
    assert r["ego_only_frame"]["engine"]["frames"] == r["ego_only_frame"]["naive"]["frames"] == 3 * 4
    eq = r["variants"]["eager"]["equality"]
    assert eq["frames_compared"] == 8 == eq["decisions_equal"] == eq["next_token_equal"]
    assert eq["same_prompt"] and eq["generated_tokens_equal_prefix"] == eq["generated_tokens_compared"] == 4
    assert r["variants"]["eager+nodrop"]["equality"].startswith("not compared")
    assert r["dropping_on_over_off_p50"]["eager"] > 0


def test_streams_json_with_compile_off(capsys, tmp_path):
    """--no-compile reaches the streams bench's group (the compile on/off comparison of the GPU script)."""
    out = tmp_path / "streams.json"
    r = run(capsys, "--preset", "tiny", "--streams", "1", "--stream-rounds", "4", "--prefill-rounds", "2",
            "--realtime-seconds", "0.2", "--no-compile", "--out", str(out))
    assert json.loads(out.read_text()) == r and r["compile"] is False and r["llm_compiled"] is False
    assert r["runs"][0]["throughput_round_by_round"]["round_ms"]["decided"]["rounds"] == 1
