"""Render frames of the first-person table world with OpenCV (uint8 RGB, H x W x 3)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .catalogue import RGB, Catalogue
from .motion import FramePose, HandPose, ObjectPose, frame_pose
from .scene import DistractorParams, Scene
from .sprites import (SHADE_DARK, SHIFT, SHIFT_BITS, Sprite, SpriteStyle, composite, draw_lid, object_sprite,
                      shade)
from .timeline import Timeline

ARM_WIDTH = 0.12           # of min(width, height)
SLEEVE_FRACTION = 0.55     # the part of the arm, from the shoulder, covered by the sleeve
PALM_AXES = (0.055, 0.045)
FINGER_LENGTH = 0.05
FINGER_SPREAD = 0.5        # radians between the outer fingers
FINGER_CURL = 0.6          # a closed grip shortens fingers by this fraction
FINGERS = 4
THUMB_ANGLE = 1.1          # radians off the forearm direction, towards the body's midline
SHADOW_OFFSET = (0.01, 0.02)
SHADOW_DARKEN = 0.78
GRAIN_DARKEN = 0.9
SHELF_Y = 0.17             # the back-wall shelf line the ball rolls on
WALKER_HEAD = 0.03
WALKER_BODY = (0.045, 0.11)
WALKER_SPAN = 1.4          # a walker crosses from off-screen left to off-screen right
CLOCK_Y, CLOCK_RADIUS, PENDULUM_LENGTH = 0.06, 0.035, 0.08
BALL_RADIUS, BALL_BOUNCE = 0.025, 0.04
WALL_ITEMS_INK = (40, 40, 40)
STREAM_MOUTH = 0.55        # a tipped bottle's mouth, from its centre, in object sizes
STREAM_WIDTH = 0.015
BALL_TRACK = (0.1, 0.9)    # the stretch of shelf the ball rolls along


@dataclass(frozen=True)
class Canvas:
    """Maps world fractions to pixels of an oversized canvas, cropped later for camera jitter."""
    width: int
    height: int
    margin: int

    @property
    def unit(self) -> float:
        return float(min(self.width, self.height))

    def px(self, x: float, y: float) -> tuple[float, float]:
        return self.margin + x * self.width, self.margin + y * self.height

    def fixed(self, x: float, y: float) -> tuple[int, int]:
        px, py = self.px(x, y)
        return int(round(px * SHIFT)), int(round(py * SHIFT))

    def length(self, fraction: float) -> int:
        return max(1, int(round(fraction * self.unit * SHIFT)))

    def blank(self) -> np.ndarray:
        return np.zeros((self.height + 2 * self.margin, self.width + 2 * self.margin, 3), np.uint8)


def jitter_margin(catalogue: Catalogue, width: int, height: int) -> int:
    return int(math.ceil(catalogue.camera_jitter * min(width, height)))


def camera_path(rng: np.random.Generator, catalogue: Catalogue, num_frames: int, width: int,
                height: int) -> np.ndarray:
    """Per-frame integer (dx, dy) offsets: a bounded random walk, like a head that never holds still."""
    margin = jitter_margin(catalogue, width, height)
    steps = rng.normal(0.0, catalogue.camera_jitter_step, size=(num_frames, 2))
    offsets = np.zeros((num_frames, 2), np.int64)
    position = np.zeros(2)
    for i in range(num_frames):
        position = np.clip(position + steps[i], -margin, margin)
        offsets[i] = np.round(position).astype(np.int64)
    return offsets


def _background(canvas: Canvas, catalogue: Catalogue, scene: Scene) -> np.ndarray:
    image = canvas.blank()
    image[...] = catalogue.wall_colours[scene.wall_colour]
    table = catalogue.table_colours[scene.table_colour]
    _, top = canvas.px(0.0, catalogue.layout.table_top)
    image[int(round(top)):] = table
    grain = shade(table, GRAIN_DARKEN)[:3]
    for row in scene.grain_rows:
        y = int(round(canvas.px(0.0, row)[1]))
        cv2.line(image, (0, y), (image.shape[1] - 1, y), grain, 1, cv2.LINE_AA)
    shelf_y = int(round(canvas.px(0.0, SHELF_Y)[1]))
    cv2.line(image, (0, shelf_y), (image.shape[1] - 1, shelf_y), shade(table, SHADE_DARK)[:3], 2)
    return image


def _draw_distractor(image: np.ndarray, canvas: Canvas, catalogue: Catalogue, scene: Scene,
                     params: DistractorParams, time_s: float) -> None:
    cycle = time_s / params.period_s + params.phase
    if params.kind == "walker":
        x = (cycle % 1.0) * WALKER_SPAN - (WALKER_SPAN - 1.0) / 2
        colour = catalogue.colours[params.colour]
        body_top = 2 * WALKER_HEAD + 0.01
        cv2.rectangle(image, canvas.fixed(x - WALKER_BODY[0], body_top),
                      canvas.fixed(x + WALKER_BODY[0], body_top + WALKER_BODY[1]), colour, -1, cv2.LINE_AA,
                      SHIFT_BITS)
        cv2.circle(image, canvas.fixed(x, WALKER_HEAD + 0.005), canvas.length(WALKER_HEAD),
                   catalogue.skin_tones[scene.skin_tone], -1, cv2.LINE_AA, SHIFT_BITS)
    elif params.kind == "pendulum":
        angle = params.amplitude * math.sin(2 * math.pi * cycle)
        pivot = (params.x, CLOCK_Y + CLOCK_RADIUS)
        bob = (pivot[0] + PENDULUM_LENGTH * math.sin(angle) * canvas.height / canvas.width,
               pivot[1] + PENDULUM_LENGTH * math.cos(angle))
        cv2.line(image, canvas.fixed(*pivot), canvas.fixed(*bob), WALL_ITEMS_INK, 1, cv2.LINE_AA, SHIFT_BITS)
        cv2.circle(image, canvas.fixed(*bob), canvas.length(BALL_RADIUS * 0.6), WALL_ITEMS_INK, -1, cv2.LINE_AA,
                   SHIFT_BITS)
        cv2.circle(image, canvas.fixed(params.x, CLOCK_Y), canvas.length(CLOCK_RADIUS), catalogue.label_paper,
                   -1, cv2.LINE_AA, SHIFT_BITS)
        cv2.circle(image, canvas.fixed(params.x, CLOCK_Y), canvas.length(CLOCK_RADIUS), WALL_ITEMS_INK, 1,
                   cv2.LINE_AA, SHIFT_BITS)
    elif params.kind == "ball":
        sweep = abs((cycle % 1.0) * 2.0 - 1.0)  # back and forth along the shelf
        x = BALL_TRACK[0] + (BALL_TRACK[1] - BALL_TRACK[0]) * sweep
        y = SHELF_Y - BALL_RADIUS - BALL_BOUNCE * abs(math.sin(4 * math.pi * cycle))
        cv2.circle(image, canvas.fixed(x, y), canvas.length(BALL_RADIUS), catalogue.colours[params.colour], -1,
                   cv2.LINE_AA, SHIFT_BITS)


def _style(catalogue: Catalogue, scene: Scene, pose: ObjectPose) -> SpriteStyle:
    obj = scene.get(pose.object_id)
    colours = catalogue.colours
    return SpriteStyle(
        colour=colours[obj.colour],
        patch_colour=colours[obj.patch_colour] if obj.patch_colour else None,
        fill_colour=colours[pose.fill] if pose.fill else None,
        fill_level=pose.fill_level,
        label=obj.label,
        is_open=pose.is_open,
        lit=pose.lit,
    )


def _lid_colour(catalogue: Catalogue, scene: Scene, object_id: str) -> RGB:
    obj = scene.get(object_id)
    return catalogue.colours[obj.patch_colour or obj.colour]


def _draw_objects(image: np.ndarray, canvas: Canvas, catalogue: Catalogue, scene: Scene,
                  poses: tuple[ObjectPose, ...], table: RGB) -> None:
    for pose in poses:
        if pose.lid is not None and pose.is_open:
            lid = Sprite(catalogue.shapes[scene.get(pose.object_id).shape].size * canvas.unit)
            draw_lid(lid, _lid_colour(catalogue, scene, pose.object_id))
            composite(image, lid.image, *canvas.px(*pose.lid))
    shadow = shade(table, SHADOW_DARKEN)[:3]
    for pose in poses:
        spec = catalogue.shapes[scene.get(pose.object_id).shape]
        if not pose.held and pose.level == 0:
            axes = (canvas.length(spec.footprint * 0.9), canvas.length(spec.footprint * 0.45))
            centre = canvas.fixed(pose.x + SHADOW_OFFSET[0], pose.y + spec.size * 0.3 + SHADOW_OFFSET[1])
            cv2.ellipse(image, centre, axes, 0.0, 0.0, 360.0, shadow, -1, cv2.LINE_AA, SHIFT_BITS)
        sprite = object_sprite(catalogue, spec.name, _style(catalogue, scene, pose),
                               spec.size * canvas.unit * pose.scale, canvas.unit, pose.tilt)
        composite(image, sprite, *canvas.px(pose.x, pose.y))
        if pose.stream_to is not None:
            _draw_stream(image, canvas, catalogue, scene, pose, spec.size)


def _draw_stream(image: np.ndarray, canvas: Canvas, catalogue: Catalogue, scene: Scene, pose: ObjectPose,
                 size: float) -> None:
    """The liquid falling from a tipped bottle's mouth into the container below."""
    liquid = catalogue.colours[scene.get(pose.object_id).liquid]
    side = -1.0 if pose.tilt > 0 else 1.0
    mouth = (pose.x + side * size * STREAM_MOUTH * canvas.height / canvas.width, pose.y)
    width = max(1, canvas.length(STREAM_WIDTH) // SHIFT)
    cv2.line(image, canvas.fixed(*mouth), canvas.fixed(*pose.stream_to), liquid, width, cv2.LINE_AA, SHIFT_BITS)


def _draw_hand(image: np.ndarray, canvas: Canvas, catalogue: Catalogue, scene: Scene, hand: HandPose) -> None:
    skin = catalogue.skin_tones[scene.skin_tone]
    sleeve = catalogue.sleeve_colours[scene.sleeve_colour]
    shoulder = catalogue.layout.shoulder[hand.hand]
    dx, dy = hand.x - shoulder[0], hand.y - shoulder[1]
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    cuff = (shoulder[0] + dx * SLEEVE_FRACTION, shoulder[1] + dy * SLEEVE_FRACTION)
    arm = canvas.length(ARM_WIDTH) // SHIFT
    cv2.line(image, canvas.fixed(*cuff), canvas.fixed(hand.x, hand.y), skin, max(1, int(arm * 0.8)), cv2.LINE_AA,
             SHIFT_BITS)
    cv2.line(image, canvas.fixed(*shoulder), canvas.fixed(*cuff), sleeve, max(1, arm), cv2.LINE_AA, SHIFT_BITS)
    finger = FINGER_LENGTH * (1.0 - FINGER_CURL * hand.grip)
    base_angle = math.atan2(uy, ux)
    for i in range(FINGERS):
        angle = base_angle + FINGER_SPREAD * (i / (FINGERS - 1) - 0.5)
        tip = (hand.x + (PALM_AXES[1] + finger) * math.cos(angle), hand.y + (PALM_AXES[1] + finger) * math.sin(angle))
        cv2.line(image, canvas.fixed(hand.x, hand.y), canvas.fixed(*tip), skin, max(1, arm // 4), cv2.LINE_AA,
                 SHIFT_BITS)
    toward_middle = 1.0 if hand.hand == "left" else -1.0
    thumb_angle = base_angle + toward_middle * THUMB_ANGLE
    thumb = (hand.x + (PALM_AXES[0] + finger * 0.6) * math.cos(thumb_angle),
             hand.y + (PALM_AXES[0] + finger * 0.6) * math.sin(thumb_angle))
    cv2.line(image, canvas.fixed(hand.x, hand.y), canvas.fixed(*thumb), skin, max(1, arm // 3), cv2.LINE_AA,
             SHIFT_BITS)
    cv2.ellipse(image, canvas.fixed(hand.x, hand.y), (canvas.length(PALM_AXES[0]), canvas.length(PALM_AXES[1])),
                math.degrees(base_angle), 0.0, 360.0, skin, -1, cv2.LINE_AA, SHIFT_BITS)


class EpisodeRenderer:
    """Renders any frame of one planned episode; deterministic given the plan and camera path."""

    def __init__(self, catalogue: Catalogue, scene: Scene, timeline: Timeline, width: int, height: int,
                 camera: np.ndarray, distractors: bool = True):
        self.catalogue, self.scene, self.timeline = catalogue, scene, timeline
        self.canvas = Canvas(width, height, jitter_margin(catalogue, width, height))
        self.camera = camera
        self.distractors = distractors
        self._background = _background(self.canvas, catalogue, scene)
        self._table_top_px = int(round(self.canvas.px(0.0, catalogue.layout.table_top)[1]))

    def pose(self, frame: int) -> FramePose:
        return frame_pose(self.catalogue, self.scene, self.timeline, frame)

    def render(self, frame: int) -> np.ndarray:
        image = self._background.copy()
        if self.distractors:
            wall = image[:self._table_top_px]
            for params in self.scene.distractors:
                _draw_distractor(wall, self.canvas, self.catalogue, self.scene, params, frame / self.timeline.fps)
        pose = self.pose(frame)
        table = self.catalogue.table_colours[self.scene.table_colour]
        _draw_objects(image, self.canvas, self.catalogue, self.scene, pose.objects, table)
        for hand in pose.hands:
            _draw_hand(image, self.canvas, self.catalogue, self.scene, hand)
        m = self.canvas.margin
        dx, dy = self.camera[frame]
        return np.ascontiguousarray(image[m + dy:m + dy + self.canvas.height, m + dx:m + dx + self.canvas.width])

    def render_all(self) -> np.ndarray:
        return np.stack([self.render(i) for i in range(self.timeline.num_frames)])
