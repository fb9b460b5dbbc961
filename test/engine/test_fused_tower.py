"""The graph path's vision tower (``fused_tower``): the same frame tokens as the HF forward.

Tolerances: float32 1e-5 (the same sums in another order); bf16 one or two roundings at the tokens'
scale (atol 0.05 on tokens of magnitude ~2-4, where one bf16 step is 0.016), as any two bf16
implementations of one layer differ."""
import numpy as np
import pytest
import torch
from torch import nn

from lionfs_ros.engine.fused_tower import FusedTower, fused_tower_problem, tower_forward
from lionfs_ros.model.configuration_lionfs import VisionConfig
from lionfs_ros.model.image_processing import DeviceImageProcessor
from lionfs_ros.model.vision import VisionEncoder, load_vision_tower

SIGLIP = dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, image_size=32, patch_size=8)
CLIP = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, image_size=32, patch_size=8)
FP32_ATOL = 1e-5
BF16_ATOL, BF16_RTOL = 5e-2, 2e-2


def encoder(config: dict, global_token: str, dtype=torch.float32, seed: int = 0) -> VisionEncoder:
    torch.manual_seed(seed)
    cfg = VisionConfig(config=config, global_token=global_token)
    return VisionEncoder(cfg, load_vision_tower(cfg, dtype)).eval()


@pytest.mark.parametrize("config, global_token", [(SIGLIP, "pooler"), (SIGLIP, "mean"), (SIGLIP, "none"),
                                                  (CLIP, "cls"), (CLIP, "pooler")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_tower_gives_the_hf_tokens(config, global_token, dtype):
    enc = encoder(config, global_token, dtype)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = enc.frame_tokens(pixels)
        fused = FusedTower(enc)
        got = fused(pixels)
        assert torch.equal(enc.frame_tokens(pixels), want)  # the HF layers view into the fused weights: unchanged
        alone = torch.cat([fused(pixels[i:i + 1]) for i in range(3)])  # a batch's rows do not mix
    assert got.shape == want.shape and got.dtype == want.dtype
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, atol=FP32_ATOL, rtol=0)
        torch.testing.assert_close(alone, got, atol=FP32_ATOL, rtol=0)
    else:
        torch.testing.assert_close(got.float(), want.float(), atol=BF16_ATOL, rtol=BF16_RTOL)


def test_the_models_towers_run_fused(fused_model):
    """The tiny LION-FS model's SigLIP (loaded from a full SiglipModel checkpoint) and CLIP ego tower, from
    camera frames through the device preprocessing, as the graph path runs them."""
    rng = np.random.default_rng(4)
    for enc, source in ((fused_model.vision, "general"), (fused_model.ego, "ego")):
        prep = DeviceImageProcessor(enc.processor, torch.device("cpu"))
        frames = [rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8) for _ in range(2)]
        pixels = prep.normalize(prep.resize_many(frames))  # [2, 3, S, S]
        assert torch.equal(pixels, fused_model.preprocess(np.stack(frames), source))
        with torch.no_grad():
            torch.testing.assert_close(FusedTower(enc)(pixels), enc.frame_tokens(pixels), atol=FP32_ATOL, rtol=0)


def test_other_towers_keep_the_hf_forward():
    enc = encoder(CLIP, "cls")
    layer = enc.tower.encoder.layers[0]

    class Adapter(nn.Linear):  # stands in for e.g. a LoRA-wrapped projection
        pass

    wrapped = Adapter(64, 64)
    wrapped.load_state_dict(layer.self_attn.q_proj.state_dict())
    layer.self_attn.q_proj = wrapped
    assert "Adapter" in fused_tower_problem(enc.tower)
    assert tower_forward(enc) == enc.frame_tokens
    with pytest.raises(ValueError, match="fused tower"):
        FusedTower(enc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (the CPU tests above run the same code)")
def test_graphed_towers_from_rgb_give_the_models_tokens(tiny_parts_dir, tmp_path):
    """On a GPU: the single-frame and batched graphs (resize, normalization, fused tower, compiled where Triton
    works) give the tokens of the model's own preprocessing and HF forward, for two camera frame sizes."""
    from lionfs_ros.engine.batched_towers import GraphedTowerBatch
    from lionfs_ros.engine.graphed_frame import GraphedTower
    from engine_parts import build_model
    from lionfs_ros.model import LionFSModel

    build_model(tiny_parts_dir, tmp_path)
    model = LionFSModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float32).eval()
    rng = np.random.default_rng(6)
    for enc, source in ((model.vision, "general"), (model.ego, "ego")):
        single, batch = GraphedTower(enc, model.device, compile=True), GraphedTowerBatch(enc, model.device, 3, compile=True)
        assert single.forward.compiled and single.forward.compile_fallback is None
        for shape in ((30, 44), (48, 36)):
            frames = [rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8) for _ in range(3)]
            with torch.no_grad():
                want = enc.frame_tokens(model.preprocess(np.stack(frames), source))
            got = torch.cat([single(f) for f in frames])
            # the resize graph ran the compiled passes (equal to the plain ones on a probe): Pillow's pixels exactly
            assert single.prep.compiled and single.prep.compile_fallback is None
            assert torch.equal(single.resized[0].cpu(), torch.from_numpy(enc.processor.resize_one(frames[-1])))
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
            torch.testing.assert_close(batch(frames), want, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_decided_frame_graphs_give_the_models_fused_tokens(tiny_parts_dir, tmp_path):
    """On a GPU: both towers from one upload (``pair``), then the graphed connectors and router (``GraphedFusion``),
    give ``model.embed_frames`` of the model's own preprocessing, frame after frame (the ego window moving)."""
    from lionfs_ros.engine.graphed_frame import FrameUpload, GraphedFusion, GraphedTower
    from lionfs_ros.engine.fast_thinker import FrameEncoder
    from engine_parts import build_model
    from lionfs_ros.model import LionFSModel

    build_model(tiny_parts_dir, tmp_path)
    model = LionFSModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float32).eval()
    upload = FrameUpload(model.device)
    graphed = FrameEncoder(model, GraphedTower(model.vision, model.device, upload=upload),
                           GraphedTower(model.ego, model.device, upload=upload), GraphedFusion(model))
    eager = FrameEncoder(model)
    rng = np.random.default_rng(7)
    for _ in range(model.config.ego.frames_per_frame + 2):
        rgb = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
        with torch.no_grad():
            torch.testing.assert_close(graphed.encode(rgb), eager.encode(rgb), atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pinned path is CUDA's")
def test_pinned_upload_sends_writable_read_only_and_strided_frames_as_they_are():
    from lionfs_ros.model.image_processing import PinnedUpload

    upload = PinnedUpload(torch.device("cuda"))
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, size=(30, 88, 3), dtype=np.uint8)
    read_only = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    read_only.flags.writeable = False
    for frames in ([rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)], [read_only], [wide[:, ::2]],
                   [read_only, wide[:, 1::2]]):
        got = upload(frames).cpu().numpy()
        assert np.array_equal(got, np.stack(frames))
