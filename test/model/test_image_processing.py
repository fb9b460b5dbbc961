"""Image processing: the GPU-able resize equals Pillow's bit for bit (the model's pixels must not
change), the device path gives the CPU path's pixels, letterbox pads as specified."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lionfs_ros.model.configuration_lionfs import ConfigError, LionFSConfig, VisionConfig
from lionfs_ros.model.image_processing import (
    DeviceImageProcessor, ExactResize, ImageProcessor, letterbox_geometry,
)

CASES = [((480, 640), (384, 384)), ((240, 320), (64, 64)), ((17, 23), (32, 32)), ((384, 384), (384, 384)),
         ((1, 5), (8, 8)), ((333, 97), (50, 120)), ((71, 19), (46, 7)), ((80, 115), (24, 47))]


@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
@pytest.mark.parametrize("src, dst", CASES)
def test_equals_pillow(src, dst, resample):
    rng = np.random.default_rng(sum(src) + sum(dst))
    images = [rng.integers(0, 256, size=(*src, 3), dtype=np.uint8),
              (rng.integers(0, 2, size=(*src, 3)) * 255).astype(np.uint8)]  # hard edges: over/undershoot clipping
    resize = ExactResize((dst[1], dst[0]), resample)
    method = Image.Resampling[resample.upper()]
    for rgb in images:  # not the probe image the pass order was settled on
        want = np.asarray(Image.fromarray(rgb).resize((dst[1], dst[0]), method))
        got = resize(torch.from_numpy(rgb)).numpy()
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert all(plan is not None for plan in resize._plans.values())  # our two passes, not the Pillow fallback


def test_random_sizes_equal_pillow():
    rng = np.random.default_rng(5)
    for _ in range(30):
        src, dst = rng.integers(2, 90, 2), rng.integers(2, 90, 2)
        rgb = rng.integers(0, 256, size=(*src, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(rgb).resize((int(dst[1]), int(dst[0])), Image.Resampling.BICUBIC))
        resize = ExactResize((int(dst[1]), int(dst[0])), "bicubic")
        assert np.array_equal(resize(torch.from_numpy(rgb)).numpy(), want)
        assert all(plan is not None for plan in resize._plans.values())


def test_compiled_passes_that_differ_fall_back_to_the_plain_ones():
    """The compiled resize is checked against the plain passes at each new input shape: generated code that got
    one pixel wrong (stood in for here by an off-by-one on the first pixel) is dropped, the pixels stay Pillow's."""
    from lionfs_ros.model import image_processing

    def off_by_one(rgb, *plan):
        out = image_processing._two_pass(rgb, *plan)
        out.view(-1)[0] ^= 1
        return out

    rgb = np.random.default_rng(8).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(rgb).resize((16, 12), Image.Resampling.BICUBIC))
    resize = ExactResize((16, 12), "bicubic")
    resize.two_pass = off_by_one
    assert np.array_equal(resize(torch.from_numpy(rgb)).numpy(), want)
    assert resize.two_pass is image_processing._two_pass and "differs" in resize.compile_fallback


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "lanczos"])
def test_device_path_equals_cpu_path(mode, resample):
    processor = ImageProcessor(32, resample, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), resize_mode=mode)
    device = DeviceImageProcessor(processor, torch.device("cpu"))
    rng = np.random.default_rng(3)
    for shape in ((40, 64), (64, 40), (33, 33), (7, 50)):
        rgb = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
        resized = device.resize(rgb)
        assert resized.dtype == torch.uint8 and tuple(resized.shape) == (32, 32, 3)
        assert np.array_equal(resized.numpy(), processor.resize(rgb)[0])
        assert torch.equal(device.normalize(resized), processor.preprocess(rgb))



@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("resample", ["bicubic", "lanczos"])
def test_frames_resized_together_equal_each_resized_alone(mode, resample):
    """The batched towers resize a round's frames in one go: the pixels each frame gets alone, same size or mixed."""
    processor = ImageProcessor(32, resample, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), resize_mode=mode)
    device = DeviceImageProcessor(processor, torch.device("cpu"))
    rng = np.random.default_rng(5)
    same = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(3)]
    mixed = same[:2] + [rng.integers(0, 256, size=(64, 40, 3), dtype=np.uint8)]
    for frames in (same, mixed):
        together = device.resize_many(frames)
        assert tuple(together.shape) == (len(frames), 32, 32, 3)
        assert all(torch.equal(together[i], device.resize(f)) for i, f in enumerate(frames))

def test_letterbox_resizes_then_centres_on_black():
    assert letterbox_geometry(480, 640, 384) == (288, 384, 48, 0)  # ffmpeg: 384x288, pad at y=48
    assert letterbox_geometry(640, 480, 384) == (384, 288, 0, 48)
    assert letterbox_geometry(40, 64, 16) == (10, 16, 2, 0)  # 16 * 40 / 64 = 10; (16 - 10) / 2 = 3 -> 2 (even)
    assert letterbox_geometry(33, 50, 16) == (10, 16, 2, 0)  # 10.56 -> 10 (nearest even)
    assert letterbox_geometry(35, 50, 16) == (12, 16, 2, 0)  # 11.2 -> 12 (nearest even, half up)
    assert letterbox_geometry(20, 20, 16) == (16, 16, 0, 0) and letterbox_geometry(1, 500, 16) == (2, 16, 6, 0)
    rgb = np.full((40, 64, 3), 200, np.uint8)
    resized = ImageProcessor(16, "bilinear", resize_mode="letterbox").resize(rgb)[0]  # [16, 16, 3]
    assert (resized[:2] == 0).all() and (resized[12:] == 0).all() and (resized[2:12] == 200).all()
    # resize first, then pad: the frame's edge rows are not blended with the black (padding first would)
    padded_first = np.zeros((64, 64, 3), np.uint8)
    padded_first[12:52] = rgb
    blended = np.asarray(Image.fromarray(padded_first).resize((16, 16), Image.Resampling.BILINEAR))
    assert not np.array_equal(resized, blended)
    stretched = ImageProcessor(16, "bilinear").resize(rgb)[0]
    assert (stretched == 200).all()  # stretch keeps no border


def test_resize_mode_in_the_model_config():
    assert VisionConfig().resize == "stretch"
    data = LionFSConfig(vision=VisionConfig(config={"model_type": "siglip_vision_model"})).to_dict()
    data["llm"]["config"] = {"model_type": "llama"}
    del data["vision"]["resize"]  # a config.json written before the setting existed
    assert LionFSConfig.from_dict(data).vision.resize == "stretch"
    data["vision"]["resize"] = "letterbox"
    cfg = LionFSConfig.from_dict(data)
    assert ImageProcessor.from_config(cfg.vision, 64) == ImageProcessor(64, resize_mode="letterbox")
    with pytest.raises(ConfigError, match="resize"):
        LionFSConfig.from_dict({**data, "vision": {**data["vision"], "resize": "crop"}})
    assert dataclasses.asdict(ImageProcessor(8))["resize_mode"] == "stretch"


def test_device_normalize_takes_a_batch():
    processor = ImageProcessor(16, "bicubic", (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
    device = DeviceImageProcessor(processor, torch.device("cpu"))
    frames = [np.random.default_rng(k).integers(0, 256, size=(20, 30, 3), dtype=np.uint8) for k in range(3)]
    resized = device.resize_many(frames)  # [3, 16, 16, 3]
    assert torch.equal(device.normalize(resized), torch.cat([device.normalize(r) for r in resized]))
    assert torch.equal(device.normalize(resized), processor.preprocess(np.stack(frames)))
