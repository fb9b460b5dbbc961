"""Model directories as transformers sees them (Auto classes), and hub ids resolved from a local hub cache."""
import json
import os
import shutil
import subprocess
import sys

import torch
from transformers import AutoConfig, AutoModel

from lionfs_ros.model import LionFSForVideoStreaming, LionFSPretrainedConfig

REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_ID = "lionfs-test/tiny-baseline"


def test_auto_classes_load_a_model_directory(build, tmp_path):
    model = build(fused=False)
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "lionfs"
    config = AutoConfig.from_pretrained(tmp_path / "m")
    assert isinstance(config, LionFSPretrainedConfig)
    assert config.to_lionfs_config().stream == model.config.stream and config.to_lionfs_config().llm.config["model_type"] == "llama"
    auto = AutoModel.from_pretrained(tmp_path / "m")
    assert isinstance(auto, LionFSForVideoStreaming)
    ids = model.formatter.system_ids()
    with torch.no_grad():
        assert torch.equal(auto.lionfs.step_ids(ids).logits, model.step_ids(ids).logits)


def hub_cache_with(model_dir, cache):
    """``cache`` laid out as huggingface_hub's: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


LOAD_BY_HUB_ID = f"""
import sys
from transformers import AutoModel
from lionfs_ros.model_loading import ModelLoadError, load_for_inference
model, path, device = load_for_inference("{HUB_ID}", "cpu")
print("PATH", path)
print("AUTO", type(AutoModel.from_pretrained("{HUB_ID}")).__name__)
try:
    load_for_inference("lionfs-test/not-in-the-cache", "cpu")
except ModelLoadError as err:
    print("MISSING", err)
"""


def test_hub_id_loads_offline_from_the_hub_cache(build, tmp_path):
    build(fused=False).save_pretrained(tmp_path / "m")
    hub_cache_with(tmp_path / "m", tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOAD_BY_HUB_ID], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line[:4] in ("PATH", "AUTO", "MISS"))
    assert out["PATH"] == str(tmp_path / "hub" / "models--lionfs-test--tiny-baseline" / "snapshots" / REVISION)
    assert out["AUTO"] == "LionFSForVideoStreaming"
    assert "lionfs-test/not-in-the-cache" in out["MISSING"] and "HF_HUB_CACHE" in out["MISSING"]
