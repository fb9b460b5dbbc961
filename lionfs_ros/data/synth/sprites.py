"""Draw one object (cup, jar, ...) into a small premultiplied-RGBA sprite.

Sprites let the renderer tilt a bottle while pouring and composite objects with anti-aliased
edges. Drawing on a transparent 4-channel image with cv2's LINE_AA yields premultiplied colour
directly, because every edge blends towards (0, 0, 0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .catalogue import RGB, Catalogue

LABEL_FONT = cv2.FONT_HERSHEY_PLAIN
LABEL_FONT_SCALE_PER_PIXEL = 0.5 / 128  # about 8 px tall capitals in a 128 px frame: small but legible
LABEL_MARGIN_PX = 1
SHIFT_BITS = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
SHIFT = 1 << SHIFT_BITS
OPAQUE = 255
SHADE_DARK, SHADE_LIGHT = 0.7, 1.2  # side and top faces, so shapes read as 3-D
POUR_TILT_DEGREES = 100.0


@dataclass(frozen=True)
class SpriteStyle:
    colour: RGB
    patch_colour: RGB | None
    fill_colour: RGB | None
    fill_level: float
    label: str | None
    is_open: bool
    lit: bool


def shade(colour: RGB, factor: float) -> tuple[int, int, int, int]:
    return (*(int(min(255, c * factor)) for c in colour), OPAQUE)


def _rgba(colour: RGB) -> tuple[int, int, int, int]:
    return (*colour, OPAQUE)


class Sprite:
    """A square RGBA patch centred on the object; coordinates are in object-size units."""

    def __init__(self, size_px: float):
        self.size = size_px
        self.half = int(np.ceil(size_px)) + 2
        self.image = np.zeros((2 * self.half, 2 * self.half, 4), np.uint8)

    def _pt(self, u: float, v: float) -> tuple[int, int]:
        return int(round((self.half + u * self.size) * SHIFT)), int(round((self.half + v * self.size) * SHIFT))

    def rect(self, u0: float, v0: float, u1: float, v1: float, colour) -> None:
        corners = np.array([self._pt(u0, v0), self._pt(u1, v0), self._pt(u1, v1), self._pt(u0, v1)], np.int32)
        cv2.fillPoly(self.image, [corners], colour, cv2.LINE_AA, SHIFT_BITS)

    def ellipse(self, u: float, v: float, au: float, av: float, colour, thickness: int = -1,
                start: float = 0.0, end: float = 360.0) -> None:
        axes = (max(1, int(round(au * self.size * SHIFT))), max(1, int(round(av * self.size * SHIFT))))
        cv2.ellipse(self.image, self._pt(u, v), axes, 0.0, start, end, colour, thickness, cv2.LINE_AA, SHIFT_BITS)

    def label(self, text: str, u: float, v: float, unit_px: float, ink: RGB, paper: RGB) -> float:
        """Print `text` centred at (u, v) on a paper patch; return the patch half-width in units."""
        scale = LABEL_FONT_SCALE_PER_PIXEL * unit_px
        (width, height), _ = cv2.getTextSize(text, LABEL_FONT, scale, 1)
        half_w = (width / 2 + LABEL_MARGIN_PX) / self.size
        half_h = (height / 2 + LABEL_MARGIN_PX) / self.size
        self.rect(u - half_w, v - half_h, u + half_w, v + half_h, _rgba(paper))
        cx, cy = self.half + u * self.size, self.half + v * self.size
        origin = (int(round(cx - width / 2)), int(round(cy + height / 2)))
        cv2.putText(self.image, text, origin, LABEL_FONT, scale, _rgba(ink), 1, cv2.LINE_AA)
        return half_w

    def label_width(self, text: str, unit_px: float) -> float:
        (width, _), _ = cv2.getTextSize(text, LABEL_FONT, LABEL_FONT_SCALE_PER_PIXEL * unit_px, 1)
        return (width / 2 + LABEL_MARGIN_PX) / self.size

    def rotated(self, degrees: float) -> np.ndarray:
        matrix = cv2.getRotationMatrix2D((self.half, self.half), degrees, 1.0)
        return cv2.warpAffine(self.image, matrix, self.image.shape[1::-1], flags=cv2.INTER_LINEAR)


def _interior(sprite: Sprite, style: SpriteStyle, u: float, v: float, au: float, av: float) -> None:
    sprite.ellipse(u, v, au, av, shade(style.colour, SHADE_DARK * SHADE_DARK))
    if style.fill_colour is not None and style.fill_level > 0:
        level = max(0.2, style.fill_level)
        sprite.ellipse(u, v + av * (1 - level) * 0.5, au * level, av * level, _rgba(style.fill_colour))


def _cup(sprite: Sprite, style: SpriteStyle, **_) -> None:
    sprite.ellipse(0.36, 0.08, 0.09, 0.13, shade(style.colour, SHADE_DARK), thickness=max(1, int(sprite.size / 10)))
    sprite.rect(-0.32, -0.18, 0.32, 0.3, _rgba(style.colour))
    sprite.ellipse(0.0, 0.3, 0.32, 0.08, _rgba(style.colour))
    sprite.ellipse(0.0, -0.18, 0.32, 0.12, shade(style.colour, SHADE_LIGHT))
    _interior(sprite, style, 0.0, -0.18, 0.26, 0.08)


def _bowl(sprite: Sprite, style: SpriteStyle, **_) -> None:
    sprite.ellipse(0.0, -0.02, 0.48, 0.3, shade(style.colour, SHADE_DARK), start=0.0, end=180.0)
    sprite.ellipse(0.0, -0.02, 0.48, 0.16, shade(style.colour, SHADE_LIGHT))
    _interior(sprite, style, 0.0, -0.02, 0.4, 0.11)


def _lid(sprite: Sprite, colour: RGB, u: float, v: float, half_width: float) -> None:
    sprite.ellipse(u, v, half_width, half_width * 0.35, _rgba(colour))


def _bottle(sprite: Sprite, style: SpriteStyle, unit_px: float, ink: RGB, paper: RGB, **_) -> None:
    half_w = max(0.2, sprite.label_width(style.label, unit_px) + 0.02)
    sprite.rect(-half_w, -0.12, half_w, 0.6, _rgba(style.colour))
    sprite.ellipse(0.0, -0.12, half_w, 0.1, shade(style.colour, SHADE_LIGHT))
    sprite.rect(-0.08, -0.5, 0.08, -0.12, shade(style.colour, SHADE_DARK))
    if style.is_open:
        sprite.ellipse(0.0, -0.5, 0.07, 0.03, (20, 20, 20, OPAQUE))
    else:
        sprite.rect(-0.1, -0.62, 0.1, -0.48, _rgba(style.patch_colour))
    sprite.label(style.label, 0.0, 0.26, unit_px, ink, paper)


def _jar(sprite: Sprite, style: SpriteStyle, unit_px: float, ink: RGB, paper: RGB, **_) -> None:
    half_w = max(0.32, sprite.label_width(style.label, unit_px) + 0.03)
    sprite.rect(-half_w, -0.25, half_w, 0.38, _rgba(style.colour))
    sprite.ellipse(0.0, 0.38, half_w, 0.08, _rgba(style.colour))
    if style.is_open:
        sprite.ellipse(0.0, -0.25, half_w, 0.12, shade(style.colour, SHADE_LIGHT))
        sprite.ellipse(0.0, -0.25, half_w * 0.8, 0.08, (30, 30, 30, OPAQUE))
    else:
        sprite.rect(-half_w, -0.33, half_w, -0.22, _rgba(style.patch_colour))
        _lid(sprite, style.patch_colour, 0.0, -0.33, half_w)
    sprite.label(style.label, 0.0, 0.1, unit_px, ink, paper)


def _box(sprite: Sprite, style: SpriteStyle, unit_px: float, ink: RGB, paper: RGB, **_) -> None:
    sprite.rect(-0.45, -0.12, 0.45, 0.34, _rgba(style.colour))
    if style.is_open:
        sprite.rect(-0.45, -0.36, 0.45, -0.12, shade(style.colour, SHADE_DARK * SHADE_DARK * SHADE_DARK))
    else:
        sprite.rect(-0.45, -0.36, 0.45, -0.12, shade(style.colour, SHADE_LIGHT))
    sprite.label(style.label, 0.0, 0.11, unit_px, ink, paper)


def _block(sprite: Sprite, style: SpriteStyle, unit_px: float, ink: RGB, paper: RGB, **_) -> None:
    sprite.rect(-0.4, -0.1, 0.4, 0.42, shade(style.colour, SHADE_DARK))
    sprite.rect(-0.4, -0.42, 0.4, -0.1, _rgba(style.colour))
    sprite.label(style.label, 0.0, -0.26, unit_px, ink, paper)


def _plate(sprite: Sprite, style: SpriteStyle, **_) -> None:
    sprite.ellipse(0.0, 0.04, 0.5, 0.3, shade(style.colour, SHADE_DARK))
    sprite.ellipse(0.0, 0.0, 0.5, 0.3, _rgba(style.colour))
    sprite.ellipse(0.0, 0.0, 0.34, 0.2, shade(style.colour, SHADE_LIGHT))


def _button(sprite: Sprite, style: SpriteStyle, light: RGB, **_) -> None:
    sprite.ellipse(0.0, 0.06, 0.5, 0.32, (60, 60, 60, OPAQUE))
    sprite.ellipse(0.0, 0.0, 0.5, 0.32, (90, 90, 90, OPAQUE))
    sprite.ellipse(0.0, -0.04, 0.32, 0.2, _rgba(light) if style.lit else _rgba(style.colour))


SHAPE_PAINTERS = {"cup": _cup, "bowl": _bowl, "bottle": _bottle, "jar": _jar, "box": _box, "block": _block,
                  "plate": _plate, "button": _button}


def draw_lid(sprite: Sprite, colour: RGB) -> None:
    """A loose lid or cap set down on the table."""
    sprite.ellipse(0.0, 0.03, 0.3, 0.12, shade(colour, SHADE_DARK))
    sprite.ellipse(0.0, 0.0, 0.3, 0.12, _rgba(colour))


def object_sprite(catalogue: Catalogue, shape: str, style: SpriteStyle, size_px: float, unit_px: float,
                  tilt: float = 0.0) -> np.ndarray:
    """Premultiplied RGBA image of one object, `size_px` across, centred in the returned square."""
    if shape not in SHAPE_PAINTERS:
        raise KeyError(f"no painter for shape '{shape}'; known: {sorted(SHAPE_PAINTERS)}")
    sprite = Sprite(size_px)
    SHAPE_PAINTERS[shape](sprite, style, unit_px=unit_px, ink=catalogue.label_ink, paper=catalogue.label_paper,
                          light=catalogue.button_light)
    return sprite.rotated(POUR_TILT_DEGREES * tilt) if tilt != 0 else sprite.image


def composite(canvas: np.ndarray, sprite: np.ndarray, cx: float, cy: float) -> None:
    """Blend a premultiplied sprite onto an RGB canvas, centred at pixel (cx, cy), clipped at edges."""
    half = sprite.shape[0] // 2
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    h, w = canvas.shape[:2]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(sprite.shape[1], w - x0), min(sprite.shape[0], h - y0)
    if sx0 >= sx1 or sy0 >= sy1:
        return
    patch = sprite[sy0:sy1, sx0:sx1].astype(np.uint16)
    region = canvas[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1]
    alpha = patch[..., 3:4]
    blended = patch[..., :3] + (region.astype(np.uint16) * (OPAQUE - alpha) + OPAQUE // 2) // OPAQUE
    region[...] = np.minimum(blended, OPAQUE).astype(np.uint8)
