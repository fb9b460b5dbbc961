"""Image messages -> RGB: every supported encoding, and every way a message can be broken."""
import cv2
import numpy as np
import pytest

from lionfs_ros.image_codec import (
    ImageDecodeError, decode_compressed, decode_raw, encode_compressed, encode_raw)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip(encoding):
    height, width, step, data = encode_raw(RGB, encoding)
    np.testing.assert_array_equal(decode_raw(encoding, height, width, step, data), RGB)


def test_mono8_becomes_grey_rgb():
    grey = RNG.integers(0, 256, size=(4, 3), dtype=np.uint8)
    out = decode_raw("mono8", 4, 3, 3, grey.tobytes())
    assert out.shape == (4, 3, 3)
    np.testing.assert_array_equal(out[..., 0], grey)
    np.testing.assert_array_equal(out[..., 2], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_is_scaled_to_8_bits(bigendian):
    depth = np.array([[0, 256, 65535]], dtype=">u2" if bigendian else "<u2")
    out = decode_raw("mono16", 1, 3, 6, depth.tobytes(), is_bigendian=bigendian)
    assert out[0, :, 0].tolist() == [0, 1, 255]


def test_row_padding_is_skipped():
    height, width, _, _ = encode_raw(RGB)
    padded = np.zeros((height, width * 3 + 7), dtype=np.uint8)
    padded[:, : width * 3] = RGB.reshape(height, -1)
    np.testing.assert_array_equal(decode_raw("rgb8", height, width, width * 3 + 7, padded.tobytes()), RGB)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_formats(fmt):
    smooth = cv2.resize(RGB, (40, 48), interpolation=cv2.INTER_LINEAR)
    out = decode_compressed(fmt, encode_compressed(smooth, fmt, quality=100))
    assert out.shape == smooth.shape
    tolerance = 0 if fmt == "png" else 12
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() <= tolerance


def test_data_as_array_module_array_like_rclpy():
    import array

    height, width, step, data = encode_raw(RGB)
    np.testing.assert_array_equal(decode_raw("rgb8", height, width, step, array.array("B", data)), RGB)


@pytest.mark.parametrize("args, reason", [
    (("yuv422", 6, 5, 15, bytes(90)), "unknown_encoding"),
    (("rgb8", 6, 5, 10, bytes(90)), "bad_step"),
    (("rgb8", 6, 5, 15, bytes(50)), "truncated"),
    (("rgb8", 0, 0, 0, b""), "empty_frame"),
    (("rgb8", 100000, 100000, 300000, b""), "too_large"),
])
def test_broken_raw_images_are_rejected_with_a_reason(args, reason):
    with pytest.raises(ImageDecodeError) as err:
        decode_raw(*args)
    assert err.value.reason == reason


@pytest.mark.parametrize("fmt, data, reason", [
    ("jpeg", b"\xff\xd8\xff\xe0 this is not a jpeg", "corrupt_data"),
    ("jpeg", b"", "empty_frame"),
    ("tiff", b"II*\x00", "unknown_format"),
])
def test_broken_compressed_images_are_rejected(fmt, data, reason):
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed(fmt, data)
    assert err.value.reason == reason
