"""The fast path never waits for the slow path: frames are decided while an answer is written."""
import threading
import time

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine

PUSH_PERIOD_S = 0.02
LONG_ANSWER = 150  # tokens, EOS ignored: long enough for many frames to arrive meanwhile
MIN_FRAMES_DURING = 3
DEADLINE_S = 20.0


def test_frames_are_decided_while_an_answer_is_generated(fused_model):
    cfg = engine_config(threshold=1.0, general_fps=1000.0, max_new_tokens=LONG_ANSWER, stop_on_eos=False,
                        kv_budget_tokens=500, trigger_policy="skip")
    engine = StreamEngine(fused_model, cfg)
    decided_at, partial_at, final = [], [], threading.Event()
    engine.on_decision = lambda d: decided_at.append((time.perf_counter(), d))

    def on_response(u):
        if u.turn_index == 0:
            partial_at.append(time.perf_counter())
            if u.is_final:
                final.set()

    engine.on_response = on_response
    frames = stream_frames(8, seed=5)
    engine.start()
    try:
        t, deadline = 0.0, time.perf_counter() + DEADLINE_S
        while not final.is_set() and time.perf_counter() < deadline:
            engine.push_frame(frames[int(t * 50) % len(frames)], t)
            t += PUSH_PERIOD_S
            time.sleep(PUSH_PERIOD_S)
        assert final.is_set(), "the first answer never finished"
        wait_until(lambda: engine.stats()["answers"] >= 1)
    finally:
        engine.stop()
    gen_start, gen_end = partial_at[0], partial_at[-1]
    during = [d for at, d in decided_at if gen_start < at < gen_end]
    assert len(during) >= MIN_FRAMES_DURING, (len(during), gen_end - gen_start)
    # Those frames did not wait for the answer: each took a small part of the generation time.
    assert max(d.latency_s for d in during) < (gen_end - gen_start) / 2
    assert all(d.action == "skipped" for d in during)  # they wanted to speak; policy 'skip'
    stats = engine.stats()
    assert stats["triggers_skipped"] >= len(during) and stats["slow_errors"] == 0


def wait_until(predicate, timeout=DEADLINE_S):
    deadline = time.perf_counter() + timeout
    while not predicate():
        assert time.perf_counter() < deadline, "timed out"
        time.sleep(0.01)
