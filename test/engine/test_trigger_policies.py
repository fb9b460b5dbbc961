"""Trigger policies: the scheduler's rules (pure), then each policy on a running engine."""
import time

import pytest

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.triggers import Job, TriggerScheduler
from test_nonblocking import wait_until


def job(turn, query=None):
    return Job(turn, float(turn), None, 1.0, 0.0, [], [], query=query)


def test_skip_drops_triggers_while_busy():
    s = TriggerScheduler("skip", 1, 4)
    assert s.offer_trigger(job(0))[0] == "respond" and s.next_job().turn_index == 0
    assert s.offer_trigger(job(1)) == ("skipped", []) and s.counts.skipped == 1
    assert s.next_job() is None
    s.finished(s.running)
    assert s.next_job() is None and not s.busy


def test_queue_keeps_the_newest_waiting_triggers():
    s = TriggerScheduler("queue", 2, 4)
    s.offer_trigger(job(0))
    s.next_job()
    assert s.offer_trigger(job(1))[0] == "queued" and s.offer_trigger(job(2))[0] == "queued"
    action, dropped = s.offer_trigger(job(3))
    assert action == "queued" and [j.turn_index for j in dropped] == [1] and s.counts.dropped_triggers == 1
    s.finished(s.running)
    assert s.next_job().turn_index == 2


def test_replace_cancels_a_running_narration_but_not_an_answer():
    s = TriggerScheduler("replace", 1, 4)
    s.offer_trigger(job(0))
    first = s.next_job()
    action, _ = s.offer_trigger(job(1))
    assert action == "replaced" and first.cancel.is_set()
    s.finished(first)
    assert s.next_job().turn_index == 1
    s = TriggerScheduler("replace", 1, 4)
    s.offer_question(job(0, query="why?"))
    answering = s.next_job()
    assert s.offer_trigger(job(1))[0] == "queued" and not answering.cancel.is_set()


def test_questions_go_first_and_cancel_narration_under_replace():
    s = TriggerScheduler("replace", 1, 4)
    s.offer_trigger(job(0))
    narration = s.next_job()
    s.offer_trigger(job(1))  # replaces: cancels turn 0, waits
    assert s.offer_question(job(2, query="q"))[0] == "queued" and narration.cancel.is_set()
    s.finished(narration)
    assert s.next_job().turn_index == 2  # the question before the waiting trigger
    s.finished(s.running)
    assert s.next_job().turn_index == 1
    with pytest.raises(ValueError, match="policy"):
        s.set_policy("later")


def run_policy(model, policy, seconds=2.5):
    cfg = engine_config(threshold=1.0, general_fps=1000.0, max_new_tokens=40, stop_on_eos=False, kv_budget_tokens=600,
                        trigger_policy=policy, max_pending_triggers=1)
    engine = StreamEngine(model, cfg)
    finals = []
    engine.on_response = lambda u: finals.append(u) if u.is_final else None
    frames = stream_frames(4, seed=6)
    engine.start()
    try:
        t, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            engine.push_frame(frames[int(t * 40) % 4], t)
            t += 0.025
            time.sleep(0.025)
        wait_until(lambda: (lambda s: not s["busy"] and not s["jobs_waiting"])(engine.stats()))
    finally:
        engine.stop()
    return engine.stats(), finals


@pytest.mark.parametrize("policy", ["skip", "queue", "replace"])
def test_policies_on_a_running_engine(fused_model, policy):
    stats, finals = run_policy(fused_model, policy)
    done = [u for u in finals if not u.cancelled and u.error is None]
    assert stats["slow_errors"] == 0 and done
    assert stats["answers"] == sum(1 for u in done if u.text)  # only finished answers are committed
    turns = [u.turn_index for u in finals]
    assert len(turns) == len(set(turns))  # one final per turn
    if policy == "skip":
        assert stats["triggers_skipped"] > 0 and stats["triggers_queued"] == stats["triggers_replaced"] == 0
        assert turns == sorted(turns) and not any(u.cancelled for u in finals[:-1])
    elif policy == "queue":
        assert stats["triggers_queued"] > 0 and stats["triggers_dropped"] > 0 and stats["triggers_skipped"] == 0
        dropped = [u for u in finals if u.error and u.error.startswith("dropped")]
        assert len(dropped) == stats["triggers_dropped"]
    else:
        assert stats["triggers_replaced"] > 0 and stats["triggers_skipped"] == 0
        assert sum(u.cancelled for u in finals) >= stats["triggers_replaced"] - 1


def test_the_default_threshold_is_the_models_calibrated_one(fused_model):
    """The node's default threshold (-1) reaches the engine as None: the model's interval_threshold."""
    from lionfs_ros.config import LionFSNodeParams, engine_config as node_engine_config

    params = LionFSNodeParams()
    assert params.threshold < 0 and node_engine_config(params).threshold is None
    calibrated = fused_model.config.stream.interval_threshold
    engine = StreamEngine(fused_model, engine_config(threshold=None))
    assert engine.threshold == calibrated
    engine.set_threshold(0.2)
    assert engine.threshold == 0.2
    engine.set_threshold(None)  # a run-time `ros2 param set threshold -1` goes back to the model's
    assert engine.threshold == calibrated
    with pytest.raises(ValueError, match="threshold must be in"):
        engine.set_threshold(1.5)
