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
    (("yuv9", 6, 5, 15, bytes(90)), "unknown_encoding"),
    (("16UC1", 6, 5, 10, bytes(60)), "depth_image"),
    (("32FC1", 6, 5, 20, bytes(120)), "depth_image"),
    (("nv21", 5, 5, 5, bytes(50)), "bad_size"),
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
    ("png", b"GIF89a" + bytes(30), "corrupt_data"),
    ("16UC1; compressedDepth png", bytes(12) + b"\x89PNG\r\n\x1a\n", "depth_image"),
])
def test_broken_compressed_images_are_rejected(fmt, data, reason):
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed(fmt, data)
    assert err.value.reason == reason


# A flat colour survives chroma subsampling exactly (up to YUV rounding).
COLOUR = np.full((8, 6, 3), (200, 100, 50), dtype=np.uint8)


def _yuv_planes(rgb):
    height = rgb.shape[0]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y rows, then U and V quarter planes
    y, u, v = i420[:height], i420[height:height * 5 // 4].reshape(-1), i420[height * 5 // 4:].reshape(-1)
    return y, u, v


def _camera_encodings(rgb):
    """The same picture in the encodings usb_cam, RealSense and industrial cameras publish."""
    height, width = rgb.shape[:2]
    y, u, v = _yuv_planes(rgb)
    u2, v2 = u.reshape(height // 2, width // 2).repeat(2, 0), v.reshape(height // 2, width // 2).repeat(2, 0)
    yuyv = np.stack([y[:, 0::2], u2, y[:, 1::2], v2], -1).reshape(height, width * 2)
    uyvy = np.stack([u2, y[:, 0::2], v2, y[:, 1::2]], -1).reshape(height, width * 2)
    bayer = np.zeros((height, width), np.uint8)
    bayer[0::2, 0::2], bayer[0::2, 1::2], bayer[1::2, 0::2], bayer[1::2, 1::2] = rgb[0, 0, 0], rgb[0, 0, 1], rgb[0, 0, 1], rgb[0, 0, 2]
    return {
        "yuv422_yuy2": yuyv, "yuv422": uyvy, "uyvy": uyvy,
        "nv12": np.concatenate([y.reshape(-1), np.stack([u, v], 1).reshape(-1)]),
        "nv21": np.concatenate([y.reshape(-1), np.stack([v, u], 1).reshape(-1)]),
        "bayer_rggb8": bayer, "bayer_rggb16": bayer.astype(np.uint16) * 257,
        "rgb16": rgb.astype(np.uint16) * 257, "bgr16": rgb[..., ::-1].astype(np.uint16) * 257,
    }


@pytest.mark.parametrize("encoding", sorted(_camera_encodings(COLOUR)))
def test_camera_encodings_convert_to_rgb(encoding):
    data = np.ascontiguousarray(_camera_encodings(COLOUR)[encoding])
    height, width = COLOUR.shape[:2]
    row_bytes = data.nbytes // (height * 3 // 2 if encoding.startswith("nv") else height)
    out = decode_raw(encoding, height, width, row_bytes, data.tobytes())
    assert out.shape == COLOUR.shape and out.dtype == np.uint8
    assert np.abs(out[2:-2, 2:-2].astype(int) - COLOUR[2:-2, 2:-2]).max() <= 3, out[3, 3]


def test_compressed_pixel_limit_is_checked_before_decoding():
    """A small PNG whose header claims 12000x12000 would decode to 432 MB: refused from its header."""
    png = bytearray(encode_compressed(RGB, "png"))
    png[16:24] = (12000).to_bytes(4, "big") * 2
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed("png", bytes(png))
    assert err.value.reason == "too_large" and "12000x12000" in str(err.value)
    jpeg = bytearray(encode_compressed(RGB, "jpeg"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = (12000).to_bytes(2, "big") * 2
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed("jpeg", bytes(jpeg))
    assert err.value.reason == "too_large"


def test_decoded_frame_does_not_share_the_message_buffer():
    height, width, step, data = encode_raw(RGB)
    buf = bytearray(data)
    out = decode_raw("rgb8", height, width, step, buf)
    buf[:] = bytes(len(buf))
    np.testing.assert_array_equal(out, RGB)
