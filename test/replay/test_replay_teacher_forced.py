"""Teacher-forced metrics in deterministic mode score the frames exactly as the engine fused them."""
from __future__ import annotations

import math

import torch

from lionfs_ros.replay.bag_frames import FrameStats, iter_frames
from lionfs_ros.replay.bag_reader import BagReader
from lionfs_ros.replay.pipeline import FrameLog, ReplaySettings
from lionfs_ros.replay.replay_runner import DeterministicRunner
from lionfs_ros.replay.truth import TruthEvent, TruthTimeline


def test_collector_fuses_frames_like_the_engine(tmp_path, synth_bag, tiny_model):
    model_dir, params = tiny_model
    settings = ReplaySettings(bag=synth_bag, report_dir=tmp_path, model=str(model_dir), params_file=params,
                              device="cpu", dtype="float32")
    runner = DeterministicRunner(settings)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.prepare("sensor_msgs/msg/Image", has_truth=True)
        engine_tokens = []
        encode = runner.engine.encoder.encode  # the engine's own fused tokens, to compare against

        def spy(rgb):
            tokens = encode(rgb)
            engine_tokens.append(tokens.detach().cpu())
            return tokens

        runner.engine.encoder.encode = spy
        with BagReader(synth_bag) as bag:
            stats = FrameStats()
            log = FrameLog(stats)
            frames = (log.add(f) or f for f in iter_frames(bag, bag.image_topic().name, stats))
            output = runner.run(frames, log, bag)
        truth = TruthTimeline([TruthEvent(1.0, "You pick up the red cup."), TruthEvent(4.2, "You open the jar."),
                               TruthEvent(999.0, "After the end.")], "test")
        metrics = runner.stream_metrics(truth, stats)
    finally:
        torch.set_num_threads(threads)
    assert output.frames.processed == len(engine_tokens) == len(runner.collector.embeds) > 0
    torch.testing.assert_close(torch.stack(runner.collector.embeds), torch.stack(engine_tokens))
    assert metrics["frames"] == len(engine_tokens) and metrics["turns"] == 2  # the narration after the end is out
    assert metrics["covers_whole_bag"] is False
    for key in ("lm_ppl", "fluency", "lm_correctness", "time_diff"):
        assert math.isfinite(metrics[key]), metrics
    assert metrics["lm_ppl"] >= 1.0 and 0.0 <= metrics["fluency"] <= 1.0 and 0.0 <= metrics["lm_correctness"] <= 1.0
