"""ROS image messages -> HxWx3 uint8 RGB arrays, without cv_bridge and without rclpy.

Works on the fields of sensor_msgs/Image and sensor_msgs/CompressedImage, so rclpy messages
and rosbags-deserialized messages decode the same way. Every failure raises
`ImageDecodeError` with a reason short enough for a counter label and a log line.
"""
from __future__ import annotations

import struct
from types import SimpleNamespace

import cv2
import numpy as np
from rosbags.image import ImageError, image_to_cvimage

# Colour and grey encodings of sensor_msgs/Image (lower case) -> (bytes per sample, samples per
# pixel per row, rows per image row, the 8-bit encoding rosbags-image converts to RGB).
# YUV 4:2:2 packs 2 bytes per pixel; NV12/NV21 add a half-height chroma plane below the luma.
RAW_ENCODINGS: dict[str, tuple[int, int, float, str]] = {
    "rgb8": (1, 3, 1, "rgb8"), "bgr8": (1, 3, 1, "bgr8"), "rgba8": (1, 4, 1, "rgba8"), "bgra8": (1, 4, 1, "bgra8"),
    "8uc3": (1, 3, 1, "rgb8"), "mono8": (1, 1, 1, "mono8"), "8uc1": (1, 1, 1, "mono8"),
    "rgb16": (2, 3, 1, "rgb8"), "bgr16": (2, 3, 1, "bgr8"), "rgba16": (2, 4, 1, "rgba8"), "bgra16": (2, 4, 1, "bgra8"),
    "mono16": (2, 1, 1, "mono8"),
    "yuv422": (1, 2, 1, "uyvy"), "uyvy": (1, 2, 1, "uyvy"), "yuv422_yuy2": (1, 2, 1, "yuyv"), "yuyv": (1, 2, 1, "yuyv"),
    "nv12": (1, 1, 1.5, "nv12"), "nv21": (1, 1, 1.5, "nv21"),
    **{f"bayer_{order}{bits}": (bits // 8, 1, 1, f"bayer_{order}8")
       for order in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}
# Depth and other measurement images: not pictures of the scene the model was trained on.
DEPTH_ENCODINGS = ("16uc1", "32fc1", "16sc1", "32sc1", "64fc1")
DEPTH_FORMAT_MARK = "compresseddepth"
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
# 16-bit samples keep their top byte: 65535 -> 255.
UINT16_TO_UINT8_SHIFT = 8
# Frames larger than this are refused before decoding, raw or compressed (a corrupt or hostile
# header can claim 2^32 px; a 136 KB PNG can claim 12000x12000 = 432 MB of RGB).
MAX_PIXELS = 8192 * 8192
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IHDR_SIZE = struct.Struct(">II")  # width, height at byte 16 (after signature, chunk length, 'IHDR')
PNG_IHDR_OFFSET = 16
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers (baseline, progressive, lossless, ...) carry the size; C4/C8/CC are not frames.
JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SOF_SIZE = struct.Struct(">BHH")  # precision, height, width after the segment length
JPEG_STANDALONE = set(range(0xD0, 0xDA)) | {0x01}  # markers without a length field (RSTn, SOI, EOI, TEM)


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an RGB frame. `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_size(width: int, height: int) -> None:
    """The one pixel limit of raw and compressed frames."""
    if height <= 0 or width <= 0:
        raise ImageDecodeError("empty_frame", f"size {width}x{height}")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError("too_large", f"size {width}x{height} is over the {MAX_PIXELS} pixel limit")


def decode_raw(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """sensor_msgs/Image fields -> [height, width, 3] uint8 RGB (a copy, safe to keep)."""
    key = encoding.lower()
    if key in DEPTH_ENCODINGS:
        raise ImageDecodeError("depth_image", f"encoding {encoding!r} is a depth/measurement image; the assistant "
                               "takes colour or grey camera images (subscribe it to the colour stream)")
    if key not in RAW_ENCODINGS:
        raise ImageDecodeError("unknown_encoding", f"encoding {encoding!r} is not one of {sorted(RAW_ENCODINGS)}")
    check_size(width, height)
    sample_bytes, samples, row_factor, target = RAW_ENCODINGS[key]
    rows = int(height * row_factor)
    if row_factor != 1 and (height % 2 or width % 2):
        raise ImageDecodeError("bad_size", f"{encoding} needs an even size, got {width}x{height}")
    row_bytes = width * samples * sample_bytes
    if step < row_bytes:
        raise ImageDecodeError("bad_step", f"step {step} < {row_bytes} bytes per row for {width}x{encoding}")
    buf = _as_bytes(data)
    needed = step * (rows - 1) + row_bytes
    if buf.size < needed:
        raise ImageDecodeError("truncated", f"{buf.size} bytes, need {needed} for {width}x{height} step {step}")
    packed = np.ascontiguousarray(np.lib.stride_tricks.as_strided(buf, shape=(rows, row_bytes), strides=(step, 1)))
    if sample_bytes == 2:
        wide = packed.view(np.dtype(np.uint16).newbyteorder(">" if is_bigendian else "<"))
        packed = (wide >> UINT16_TO_UINT8_SHIFT).astype(np.uint8)
    # rosbags-image converts from a tightly packed 8-bit buffer; the chroma rows of NV12/NV21
    # count as image rows there.
    msg = SimpleNamespace(encoding=target, height=rows, width=width, is_bigendian=False, data=packed.reshape(-1))
    try:
        rgb = image_to_cvimage(msg, "rgb8")
    except (ImageError, cv2.error) as err:
        raise ImageDecodeError("conversion_failed", f"{encoding} {width}x{height}: {err}") from err
    return rgb if rgb.flags.owndata else rgb.copy()  # never a view of the message's buffer


def compressed_size(buf: np.ndarray) -> tuple[str, int, int]:
    """(codec, width, height) from a PNG or JPEG header, without decoding the image."""
    head = buf[:8].tobytes()
    if head.startswith(PNG_SIGNATURE):
        if buf.size < PNG_IHDR_OFFSET + PNG_IHDR_SIZE.size:
            raise ImageDecodeError("corrupt_data", "PNG header is cut short")
        width, height = PNG_IHDR_SIZE.unpack_from(buf, PNG_IHDR_OFFSET)
        return "png", width, height
    if head.startswith(JPEG_SOI):
        return ("jpeg", *_jpeg_size(buf))
    raise ImageDecodeError("corrupt_data", f"{buf.size} bytes are neither PNG nor JPEG")


def _jpeg_size(buf: np.ndarray) -> tuple[int, int]:
    data = buf.tobytes()
    at = len(JPEG_SOI)
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in JPEG_STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker in JPEG_SOF and at + 4 + JPEG_SOF_SIZE.size <= len(data):
            _, height, width = JPEG_SOF_SIZE.unpack_from(data, at + 4)
            return width, height
        at += 2 + length
    raise ImageDecodeError("corrupt_data", "no JPEG frame header (SOF) found")


def decode_compressed(fmt: str, data) -> np.ndarray:
    """sensor_msgs/CompressedImage fields -> [H, W, 3] uint8 RGB.

    `format` is free text in practice ("jpeg", "png", "rgb8; jpeg compressed bgr8"): the
    codec is taken from the bytes, and the format string only has to name a supported one.
    The size in the PNG/JPEG header is checked against the pixel limit before decoding.
    """
    fmt_l = fmt.lower()
    if DEPTH_FORMAT_MARK in fmt_l:
        raise ImageDecodeError("depth_image", f"compressed format {fmt!r} is compressed depth data, not a "
                               "camera picture (subscribe the colour stream)")
    if fmt_l and not any(name in fmt_l for name in COMPRESSED_FORMATS):
        raise ImageDecodeError("unknown_format", f"compressed format {fmt!r} is not jpeg or png")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("empty_frame", "no compressed bytes")
    _, width, height = compressed_size(buf)
    check_size(width, height)
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
