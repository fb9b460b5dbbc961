"""`lionfs train` and `lionfs eval` through the CLI: exit codes, errors, and the JSON report's keys."""
import json

import torch

from lionfs_ros.cli import main
from lionfs_ros.train.trainer import MODEL_SUBDIR

REPORT_KEYS = {"lm_ppl", "time_diff", "fluency", "lm_correctness", "trigger_precision", "trigger_recall", "trigger_f1",
               "trigger_tolerance_s", "frame_diff", "num_examples", "threshold", "triggers", "qa", "fast_path_ms_per_frame",
               "lm_correctness_answer", "lm_correctness_turns_by_kind"}


def test_eval_writes_the_metrics_json(trained_run, val_dir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(["eval", "--model", str(trained_run / MODEL_SUBDIR), "--data", str(val_dir), "--json", str(out),
                 "--max-examples", "1", "--tolerance", "0.5", "--device", "cpu"])
    assert code == 0
    report = json.loads(out.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["trigger_tolerance_s"] == 0.5 and report["num_examples"] == 1
    assert set(report["triggers"]) >= {"predicted", "truth", "matched", "recall_by_kind"}
    by_kind = report["lm_correctness_turns_by_kind"]
    assert by_kind["all"]["turns"] == sum(v["turns"] for k, v in by_kind.items() if k != "all") > 0
    assert 0.0 <= report["lm_correctness_answer"] <= 1.0
    assert "lm_ppl" in capsys.readouterr().out


def test_eval_of_a_missing_model_fails_cleanly(tmp_path, val_dir, capsys):
    code = main(["eval", "--model", str(tmp_path / "nope"), "--data", str(val_dir), "--json", str(tmp_path / "m.json")])
    assert code == 2 and "lionfs eval: error" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_train_refuses_a_bad_config(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model: {preset: x.yaml}\ndata: {train: /x, frame_cahce: pixels}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "did you mean 'frame_cache'" in capsys.readouterr().err


def test_eval_max_frames_scores_only_the_clip_start(trained_run, val_dir, tmp_path):
    """--max-frames cuts every example as training's data.max_frames does: fewer narrations, same keys."""
    model = str(trained_run / MODEL_SUBDIR)
    full, cut = tmp_path / "full.json", tmp_path / "cut.json"
    common = ["--model", model, "--data", str(val_dir), "--max-examples", "1", "--device", "cpu", "--no-online"]
    assert main(["eval", *common, "--json", str(full)]) == 0
    assert main(["eval", *common, "--json", str(cut), "--max-frames", "6"]) == 0
    full_report, cut_report = json.loads(full.read_text()), json.loads(cut.read_text())
    assert cut_report["max_frames"] == 6 and full_report["max_frames"] is None
    assert (cut_report["lm_ppl"], cut_report["time_diff"]) != (full_report["lm_ppl"], full_report["time_diff"])
    assert main(["eval", *common, "--json", str(tmp_path / "bad.json"), "--max-frames", "0"]) == 2


def test_bench_models_times_the_fast_path_of_each_model(trained_run, val_dir, capsys):
    """`lionfs bench --mode models`: each model's clips through the engine, time per decided frame."""
    model = str(trained_run / MODEL_SUBDIR)
    assert main(["bench", "--mode", "models", "--models", model, "--data", str(val_dir), "--clips", "1",
                 "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[model]["decided_frames"] > 0 and result[model]["median_ms"] > 0
    assert main(["bench", "--mode", "models", "--data", str(val_dir)]) == 2


def test_eval_fits_the_node_default_kv_budget_to_a_short_backbone():
    """lionfs_node's default budget is fitted down (with a note) where the model's positions cannot hold it."""
    from lionfs_ros.engine.config import fitted_kv_budget
    from lionfs_ros.eval.evaluate import EvalOptions, engine_config_for, node_engine_config
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.resources import demo_model_path

    model = LionFSModel.from_pretrained(demo_model_path(), device="cpu").eval()
    cfg, note = engine_config_for(model, EvalOptions())
    assert note is None and cfg.kv_budget_tokens == node_engine_config().kv_budget_tokens  # fits as it is
    model.llm.config.max_position_embeddings = 2048
    cfg, note = engine_config_for(model, EvalOptions())
    assert cfg.kv_budget_tokens == fitted_kv_budget(model, cfg.for_model(model)) < 2048
    assert "does not fit this model's 2048 positions" in note


def test_eval_refuses_a_decision_rate_above_the_clips_frame_rate():
    """The clips' frames are handed to the engine at the model's frame_fps: a params file asking for more decisions
    a second is refused with the reason (it would report a rate it never ran at); the model's rate or less runs."""
    import dataclasses

    import pytest

    from lionfs_ros.engine import EngineConfigError
    from lionfs_ros.eval.evaluate import EvalOptions, engine_config_for, node_engine_config
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.resources import demo_model_path

    model = LionFSModel.from_pretrained(demo_model_path(), device="cpu").eval()
    fps = model.config.stream.frame_fps
    for rate in (fps, fps / 2):
        cfg, _ = engine_config_for(model, EvalOptions(engine=dataclasses.replace(node_engine_config(), general_fps=rate)))
        assert cfg.general_fps == rate
    with pytest.raises(EngineConfigError, match=f"general_fps {2 * fps:g}: lionfs eval hands the engine"):
        engine_config_for(model, EvalOptions(engine=dataclasses.replace(node_engine_config(), general_fps=2 * fps)))


def test_eval_clips_reuse_one_backend_and_decide_as_fresh_engines(val_dir):
    """The clips of one evaluation share one engine backend (on a GPU: graphs captured once); each clip still
    starts from an empty context, so it decides and answers exactly as an engine built for it alone."""
    import dataclasses

    from lionfs_ros.data.frame_cache import load_frames
    from lionfs_ros.data.frames import FrameRecipe
    from lionfs_ros.eval.evaluate import (EvalOptions, clip_backend, embed_example, engine_config_for,
                                          load_eval_examples, node_engine_config)
    from lionfs_ros.eval.free_running import run_clip
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.resources import demo_model_path

    model = LionFSModel.from_pretrained(demo_model_path(), device="cpu").eval()
    options = EvalOptions(engine=dataclasses.replace(node_engine_config(), backend="static"))
    engine, _ = engine_config_for(model, options)
    recipe = FrameRecipe.for_model(model)
    clips = []
    for example in load_eval_examples(val_dir, model.config.stream.frame_fps)[:2]:
        frames = load_frames(example, recipe)
        clips.append((example, embed_example(model, example, recipe, frames), frames.general))
    backend = clip_backend(model, engine, options)
    assert backend.name == "static"
    shared = [run_clip(model, engine, e, embeds, pixels, backend) for e, embeds, pixels in clips]
    alone = [run_clip(model, engine, e, embeds, pixels) for e, embeds, pixels in clips]
    for got, want in zip(shared, alone):
        assert got.responses == want.responses and got.responses  # same frames, same words
        assert [d.frame_index for d in got.decisions] == [d.frame_index for d in want.decisions]
        torch.testing.assert_close(torch.tensor([d.p_interval for d in got.decisions]),
                                   torch.tensor([d.p_interval for d in want.decisions]), atol=1e-5, rtol=0)
        assert got.stats["kv_tokens"] == want.stats["kv_tokens"]
