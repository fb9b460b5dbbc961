"""A slow thinker that fails (e.g. a remote one that is down) is reported; frames keep being decided."""
from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import SlowThinker, StreamEngine
from test_nonblocking import wait_until


class Unreachable(SlowThinker):
    """A slow thinker on a server that cannot be reached (what a remote thinker raises when it is down)."""

    def __init__(self):
        self.calls = 0

    def generate(self, request, on_text):
        self.calls += 1
        raise ConnectionError(f"no slow_think server (turn {request.turn_index})")


def test_failures_are_reported_and_the_stream_goes_on(fused_model):
    thinker = Unreachable()
    engine = StreamEngine(fused_model, engine_config(threshold=1.0), slow_thinker=thinker)
    updates = []
    engine.on_response = updates.append
    before = engine.context.state.next_position
    decisions = [engine.process_frame(f, k * 0.5) for k, f in enumerate(stream_frames(6, seed=15))]
    assert all(d is not None and d.respond for d in decisions)
    stats = engine.stats()
    assert thinker.calls == 6 == stats["slow_errors"] == stats["turns"] and stats["answers"] == 0
    assert [u.turn_index for u in updates] == list(range(6))
    assert all(u.is_final and "ConnectionError" in u.error and u.text == "" for u in updates)
    assert not any(role == "assistant" for role, _ in engine.context.dialogue)  # nothing committed
    frames_only = len(fused_model.formatter.stream_open_ids()) + 6 * fused_model.tokens_per_frame + 5  # 5 intervals
    assert engine.context.state.next_position == before + frames_only


def test_failures_on_the_slow_thread(fused_model):
    engine = StreamEngine(fused_model, engine_config(threshold=1.0, general_fps=1000.0), slow_thinker=Unreachable())
    errors = []
    engine.on_response = lambda u: errors.append(u) if u.error else None
    frames = stream_frames(4, seed=16)
    engine.start()
    try:
        for k in range(20):
            engine.push_frame(frames[k % 4], k * 0.01)
            wait_until(lambda: engine.stats()["decided"] + engine.stats()["dropped"] == k + 1)
    finally:
        engine.stop()
    stats = engine.stats()
    assert stats["decided"] + stats["dropped"] == 20 and stats["slow_errors"] >= 1 and errors
    assert stats["frame_errors"] == 0 and stats["answers"] == 0
