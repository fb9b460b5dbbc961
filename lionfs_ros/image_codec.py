"""ROS image messages -> HxWx3 uint8 RGB arrays, without cv_bridge and without rclpy.

Works on the fields of sensor_msgs/Image and sensor_msgs/CompressedImage, so rclpy messages
and rosbags-deserialized messages decode the same way. Every failure raises
`ImageDecodeError` with a reason short enough for a counter label and a log line.
"""
from __future__ import annotations

import cv2
import numpy as np

# Encodings accepted from sensor_msgs/Image: name -> (channels, numpy dtype).
RAW_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8uc1": (1, np.dtype(np.uint8)),
    "8uc3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16uc1": (1, np.dtype(np.uint16)),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
# 16-bit mono (depth or thermal) keeps its top byte: 65535 -> 255.
UINT16_TO_UINT8_SHIFT = 8
# Frames larger than this are refused rather than decoded (a corrupt header can claim 2^32 px).
MAX_PIXELS = 8192 * 8192


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an RGB frame. `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_raw(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """sensor_msgs/Image fields -> [height, width, 3] uint8 RGB (a copy, safe to keep)."""
    key = encoding.lower()
    if key not in RAW_ENCODINGS:
        raise ImageDecodeError("unknown_encoding", f"encoding {encoding!r} is not one of {sorted(RAW_ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageDecodeError("empty_frame", f"size {width}x{height}")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError("too_large", f"size {width}x{height}")
    channels, dtype = RAW_ENCODINGS[key]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError("bad_step", f"step {step} < {row_bytes} bytes per row for {width}x{encoding}")
    buf = _as_bytes(data)
    needed = step * (height - 1) + row_bytes
    if buf.size < needed:
        raise ImageDecodeError("truncated", f"{buf.size} bytes, need {needed} for {width}x{height} step {step}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if is_bigendian else "<"))
    pixels = pixels.reshape(height, width, channels)
    if dtype == np.uint16:
        pixels = (pixels >> UINT16_TO_UINT8_SHIFT).astype(np.uint8)
    return _to_rgb(pixels, key)


def decode_compressed(fmt: str, data) -> np.ndarray:
    """sensor_msgs/CompressedImage fields -> [H, W, 3] uint8 RGB.

    `format` is free text in practice ("jpeg", "png", "rgb8; jpeg compressed bgr8"): the
    codec is taken from the bytes, and the format string only has to name a supported one.
    """
    fmt_l = fmt.lower()
    if fmt_l and not any(name in fmt_l for name in COMPRESSED_FORMATS):
        raise ImageDecodeError("unknown_format", f"compressed format {fmt!r} is not jpeg or png")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("empty_frame", "no compressed bytes")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError("corrupt_data", f"{buf.size} bytes did not decode as {fmt or 'an image'}")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> UINT16_TO_UINT8_SHIFT).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(decoded, code)


def _as_bytes(data) -> np.ndarray:
    """A flat uint8 view of message data: bytes, array.array (rclpy), ndarray (rosbags), list."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if pixels.shape[2] == 1:
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2RGB)
    if encoding in ("rgb8", "8uc3"):
        return pixels.copy()
    if encoding == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)


def encode_raw(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """[H, W, 3] uint8 RGB -> (height, width, step, data) for a sensor_msgs/Image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    conversions = {
        "rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
        "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY,
    }
    if encoding not in conversions:
        raise ValueError(f"cannot encode to {encoding!r}; choose one of {sorted(conversions)}")
    code = conversions[encoding]
    out = np.ascontiguousarray(rgb if code is None else cv2.cvtColor(rgb, code))
    height, width = out.shape[:2]
    return height, width, out.strides[0], out.tobytes()


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """[H, W, 3] uint8 RGB -> JPEG or PNG bytes for a sensor_msgs/CompressedImage."""
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt.lower())
    if ext is None:
        raise ValueError(f"cannot compress to {fmt!r}; choose jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"opencv failed to encode a {rgb.shape} frame as {fmt}")
    return buf.tobytes()
