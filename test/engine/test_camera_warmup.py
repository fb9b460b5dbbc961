"""``EngineConfig.camera_size``: the engine makes what a frame size needs when it is built, and keeps nothing of it.

On the CPU the towers are the model's own (nothing per frame size to keep), so what is checked there is that the
warm-up ran the real towers and fusion on a frame of the camera's size and changed nothing a stream sees; on a GPU
(skipped here, run by ``scripts/gpu_first_frame.sh``) that the compiled resize, its check and the graphs exist after
the build and the first frame of that size adds none.
"""
import logging

import numpy as np
import pytest
import torch

from engine_parts import build_model, engine_config
from lionfs_ros.engine import EngineConfig, StreamEngine
from lionfs_ros.engine.config import EngineConfigError

WIDTH, HEIGHT = 44, 30  # not square: width and height must not be swapped
FRAMES = 16  # camera frames at 8 fps: 4 decided, 12 ego-only on the LION-FS tiny model


def camera(count: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("bad", [(0, 480), (640,), (640.0, 480), "640x480", (9000, 480), (True, 480), 640])
def test_camera_size_is_checked(bad):
    with pytest.raises(EngineConfigError, match="camera_size"):
        EngineConfig(camera_size=bad).validate()
    assert EngineConfig(camera_size=[640, 480]).validate().camera_size == (640, 480)


def test_node_parameters_give_the_camera_size():
    from lionfs_ros.config import ConfigError, LionFSNodeParams, engine_config as node_engine_config

    assert node_engine_config(LionFSNodeParams()).camera_size is None
    assert node_engine_config(LionFSNodeParams(camera_width=640, camera_height=480)).camera_size == (640, 480)
    with pytest.raises(ConfigError, match="camera_width .640. and camera_height .0.: set both"):
        node_engine_config(LionFSNodeParams(camera_width=640))


def test_engine_warms_for_the_camera_size_and_keeps_nothing(fused_model, caplog):
    runs = {"general": 0, "ego": 0}
    hooks = [encoder.tower.register_forward_hook(lambda *_, name=name: runs.__setitem__(name, runs[name] + 1))
             for name, encoder in (("general", fused_model.vision), ("ego", fused_model.ego))]
    try:
        cold = StreamEngine(fused_model, engine_config(answers=False))
        assert runs == {"general": 0, "ego": 0}
        warm = StreamEngine(fused_model, engine_config(answers=False, camera_size=(WIDTH, HEIGHT)))
        assert runs == {"general": 1, "ego": 1}  # one black frame through both towers (and the fusion)
    finally:
        for hook in hooks:
            hook.remove()
    assert warm.fast.encoder.warmed == {(HEIGHT, WIDTH, 3)} and cold.fast.encoder.warmed == set()
    assert len(warm.fast.encoder._ego) == 0 and warm.stats()["kv_tokens"] == cold.stats()["kv_tokens"]
    caplog.set_level(logging.INFO, logger="lionfs_ros.engine.fast_thinker")
    frames = camera(FRAMES)
    decided = {}
    for name, engine in (("cold", cold), ("warm", warm)):
        out = [engine.process_frame(frames[k], k * 0.125) for k in range(FRAMES)]
        decided[name] = [(d.p_interval, d.next_token) for d in out if d is not None]
    assert len(decided["warm"]) == FRAMES // 4 and decided["warm"] == decided["cold"]  # nothing of the warm-up kept
    assert not [r for r in caplog.records if "not warmed" in r.getMessage()]
    other = camera(8, height=20, width=28, seed=4)  # another size still works; logged once (the warm engine only)
    kept = [warm.process_frame(other[k], (FRAMES + k) * 0.125) is not None for k in range(8)]
    assert kept == [k % 4 == 0 for k in range(8)]
    cold.process_frame(other[0], FRAMES * 0.125)
    notes = [r.getMessage() for r in caplog.records if "not warmed" in r.getMessage()]
    assert len(notes) == 1 and "28x20" in notes[0] and f"{WIDTH}x{HEIGHT}" in notes[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the graphed towers need a GPU")
def test_gpu_build_compiles_and_captures_for_the_camera_size(tiny_parts_dir, tmp_path):
    """The static backend (graphs, compile where Triton works): after the build the resize graph of the camera's size
    exists, its compiled passes were checked, the tower and fusion graphs are captured, and the first frame of that
    size compiles and captures nothing more; its decisions are the unwarmed engine's."""
    from torch._dynamo.utils import counters

    from lionfs_ros.model import LionFSModel

    build_model(tiny_parts_dir, tmp_path)
    model = LionFSModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float32).eval()
    frames = camera(FRAMES)
    shape = (HEIGHT, WIDTH, 3)
    engine = StreamEngine(model, engine_config(answers=False, backend="static", camera_size=(WIDTH, HEIGHT)))
    towers = [engine.fast.encoder.general_tokens, engine.fast.encoder.ego_tokens]
    for tower in towers:
        assert shape in tower._resizes and tower.graph is not None
        if tower.prep.compiled:
            assert [r._checked for r in tower.prep._resizers.values()] and all(
                any(tuple(s) == (1, *shape) for s, _ in r._checked) for r in tower.prep._resizers.values())
    fusion_graphs = len(engine.fast.encoder.fuse._graphs)
    graphs_before = counters["stats"]["unique_graphs"]
    warm = [engine.process_frame(frames[k], k * 0.125) for k in range(FRAMES)]
    compiled = counters["stats"]["unique_graphs"] - graphs_before
    assert compiled == 0, f"the first frames compiled {compiled} graph(s): {dict(counters['stats'])}"
    assert [len(t._resizes) for t in towers] == [1, 1] and len(engine.fast.encoder.fuse._graphs) == fusion_graphs
    cold = StreamEngine(model, engine_config(answers=False, backend="static"))
    plain = [cold.process_frame(frames[k], k * 0.125) for k in range(FRAMES)]
    warm, plain = [d for d in warm if d is not None], [d for d in plain if d is not None]
    assert len(warm) == len(plain) == FRAMES // 4
    torch.testing.assert_close(torch.tensor([d.p_interval for d in warm]), torch.tensor([d.p_interval for d in plain]),
                               atol=1e-3, rtol=0)
