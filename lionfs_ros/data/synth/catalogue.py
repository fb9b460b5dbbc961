"""Load and validate the world catalogue (catalogue.yaml) into typed, read-only dataclasses."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import yaml

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")
MAX_LABEL_CHARS = 4  # longer words do not fit on an object at the default frame size
NARRATION_KINDS = ("normal", "quick", "detail")
QUESTION_WHEN = ("after_action", "any")

RGB = tuple[int, int, int]
Range = tuple[float, float]
Point = tuple[float, float]


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class ShapeSpec:
    name: str
    footprint: float
    size: float
    holdable: bool = False
    container: bool = False
    openable: bool = False
    pourable: bool = False
    support: bool = False
    stackable: bool = False
    pressable: bool = False
    scene_extra: bool = False
    patch: str | None = None
    labels: tuple[str, ...] = ()
    frequency: float = 1.0
    stack_height: float = 0.0


@dataclass(frozen=True)
class ActionSpec:
    name: str
    template: str
    duration_s: Range
    weight: float
    quick: bool = False
    word: str | None = None


@dataclass(frozen=True)
class QuestionSpec:
    name: str
    template: str
    answer: str
    kind: str
    when: str
    after: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EpisodeSpec:
    actions: Range
    objects: Range
    lead_in_s: Range
    pause_s: Range
    tail_s: Range
    static_per_episode: Range
    static_duration_s: Range
    min_quick_actions: int
    questions: Range
    question_delay_s: float
    twin_probability: float
    button_probability: float
    heldout_focus_weight: float
    repeat_penalty: float
    pour_chain_bonus: float


@dataclass(frozen=True)
class LayoutSpec:
    table_top: float
    object_area_x: Range
    object_area_y: Range
    spacing: float
    placement_attempts: int
    hold: Mapping[str, Point]
    rest: Mapping[str, Point]
    shoulder: Mapping[str, Point]
    slide_distance: float
    lid_offset: Point
    held_scale: float


@dataclass(frozen=True)
class DistractorSpec:
    per_episode: Range
    walker_period_s: Range
    walker_colours: tuple[str, ...]
    pendulum_period_s: Range
    pendulum_amplitude: Range
    ball_period_s: Range
    ball_colours: tuple[str, ...]


@dataclass(frozen=True)
class HeldoutSpec:
    shape_colour: frozenset[tuple[str, str]]
    shape_pair: frozenset[frozenset[str]]


@dataclass(frozen=True)
class Catalogue:
    version: int
    general_fps: int
    egocentric_fps: int
    default_fps: int
    default_size: tuple[int, int]
    min_size: int
    max_fps: int
    episode: EpisodeSpec
    layout: LayoutSpec
    camera_jitter: float
    camera_jitter_step: float
    table_colours: Mapping[str, RGB]
    wall_colours: Mapping[str, RGB]
    skin_tones: Mapping[str, RGB]
    sleeve_colours: Mapping[str, RGB]
    colours: Mapping[str, RGB]
    label_ink: RGB
    label_paper: RGB
    button_light: RGB
    shapes: Mapping[str, ShapeSpec]
    liquids: Mapping[str, str]
    actions: Mapping[str, ActionSpec]
    object_name: str
    twin_name: str
    questions: Mapping[str, QuestionSpec]
    heldout: HeldoutSpec
    distractors: DistractorSpec


def _req(table: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(table, Mapping) or key not in table:
        raise CatalogueError(f"catalogue: missing '{key}' in {where}")
    return table[key]


def _range(value: Any, where: str) -> Range:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise CatalogueError(f"catalogue: {where} must be a [min, max] pair, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high or low < 0:
        raise CatalogueError(f"catalogue: {where} must satisfy 0 <= min <= max, got {value!r}")
    return low, high


def _point(value: Any, where: str) -> Point:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise CatalogueError(f"catalogue: {where} must be an [x, y] pair, got {value!r}")
    return float(value[0]), float(value[1])


def _rgb(value: Any, where: str) -> RGB:
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        raise CatalogueError(f"catalogue: {where} must be [r, g, b] integers 0-255, got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _rgb_table(table: Any, where: str) -> dict[str, RGB]:
    if not isinstance(table, Mapping) or not table:
        raise CatalogueError(f"catalogue: {where} must be a non-empty mapping of name -> [r, g, b]")
    return {str(name): _rgb(rgb, f"{where}.{name}") for name, rgb in table.items()}


def _shape(name: str, raw: Mapping[str, Any]) -> ShapeSpec:
    labels = tuple(str(label) for label in raw.get("labels", ()))
    for label in labels:
        if not label or len(label) > MAX_LABEL_CHARS:
            raise CatalogueError(
                f"catalogue: label {label!r} of shape '{name}' must have 1-{MAX_LABEL_CHARS} characters")
    if raw.get("patch") is not None and not labels:
        raise CatalogueError(f"catalogue: shape '{name}' has a patch but no labels")
    return ShapeSpec(
        name=name,
        footprint=float(_req(raw, "footprint", f"shapes.{name}")),
        size=float(_req(raw, "size", f"shapes.{name}")),
        holdable=bool(raw.get("holdable", False)),
        container=bool(raw.get("container", False)),
        openable=bool(raw.get("openable", False)),
        pourable=bool(raw.get("pourable", False)),
        support=bool(raw.get("support", False)),
        stackable=bool(raw.get("stackable", False)),
        pressable=bool(raw.get("pressable", False)),
        scene_extra=bool(raw.get("scene_extra", False)),
        patch=raw.get("patch"),
        labels=labels,
        frequency=float(raw.get("frequency", 1.0)),
        stack_height=float(raw.get("stack_height", 0.0)),
    )


def _action(name: str, raw: Mapping[str, Any], general_fps: int) -> ActionSpec:
    spec = ActionSpec(
        name=name,
        template=str(_req(raw, "template", f"actions.{name}")),
        duration_s=_range(_req(raw, "duration_s", f"actions.{name}"), f"actions.{name}.duration_s"),
        weight=float(raw.get("weight", 1.0)),
        quick=bool(raw.get("quick", False)),
        word=raw.get("word"),
    )
    if spec.quick and spec.duration_s[1] >= 1.0 / general_fps:
        raise CatalogueError(
            f"catalogue: quick action '{name}' must last less than 1/general_fps = {1.0 / general_fps} s")
    return spec


def _question(name: str, raw: Mapping[str, Any], shapes: Mapping[str, ShapeSpec],
              actions: Mapping[str, ActionSpec]) -> QuestionSpec:
    spec = QuestionSpec(
        name=name,
        template=str(_req(raw, "template", f"questions.{name}")),
        answer=str(_req(raw, "answer", f"questions.{name}")),
        kind=str(_req(raw, "kind", f"questions.{name}")),
        when=str(_req(raw, "when", f"questions.{name}")),
        after=tuple(raw.get("after", ())),
        shapes=tuple(raw.get("shapes", ())),
    )
    if spec.kind not in NARRATION_KINDS:
        raise CatalogueError(f"catalogue: questions.{name}.kind must be one of {NARRATION_KINDS}")
    if spec.when not in QUESTION_WHEN:
        raise CatalogueError(f"catalogue: questions.{name}.when must be one of {QUESTION_WHEN}")
    unknown = [a for a in spec.after if a not in actions] + [s for s in spec.shapes if s not in shapes]
    if unknown:
        raise CatalogueError(f"catalogue: questions.{name} names unknown actions/shapes {unknown}")
    return spec


def _heldout(raw: Mapping[str, Any], shapes: Mapping[str, ShapeSpec],
             colours: Mapping[str, RGB]) -> HeldoutSpec:
    shape_colour = set()
    for pair in raw.get("shape_colour", ()):
        shape, colour = pair
        if shape not in shapes or colour not in colours:
            raise CatalogueError(f"catalogue: heldout.shape_colour {pair} names an unknown shape or colour")
        shape_colour.add((shape, colour))
    shape_pair = set()
    for pair in raw.get("shape_pair", ()):
        if len(pair) != 2 or any(shape not in shapes for shape in pair) or pair[0] == pair[1]:
            raise CatalogueError(f"catalogue: heldout.shape_pair {pair} must name two different shapes")
        shape_pair.add(frozenset(pair))
    if not shape_colour and not shape_pair:
        raise CatalogueError("catalogue: heldout must list at least one combination")
    return HeldoutSpec(frozenset(shape_colour), frozenset(shape_pair))


def _episode(raw: Mapping[str, Any]) -> EpisodeSpec:
    static = _req(raw, "static", "episode")
    return EpisodeSpec(
        actions=_range(_req(raw, "actions", "episode"), "episode.actions"),
        objects=_range(_req(raw, "objects", "episode"), "episode.objects"),
        lead_in_s=_range(_req(raw, "lead_in_s", "episode"), "episode.lead_in_s"),
        pause_s=_range(_req(raw, "pause_s", "episode"), "episode.pause_s"),
        tail_s=_range(_req(raw, "tail_s", "episode"), "episode.tail_s"),
        static_per_episode=_range(_req(static, "per_episode", "episode.static"), "episode.static.per_episode"),
        static_duration_s=_range(_req(static, "duration_s", "episode.static"), "episode.static.duration_s"),
        min_quick_actions=int(_req(raw, "min_quick_actions", "episode")),
        questions=_range(_req(raw, "questions", "episode"), "episode.questions"),
        question_delay_s=float(_req(raw, "question_delay_s", "episode")),
        twin_probability=float(_req(raw, "twin_probability", "episode")),
        button_probability=float(_req(raw, "button_probability", "episode")),
        heldout_focus_weight=float(_req(raw, "heldout_focus_weight", "episode")),
        repeat_penalty=float(_req(raw, "repeat_penalty", "episode")),
        pour_chain_bonus=float(_req(raw, "pour_chain_bonus", "episode")),
    )


def _layout(raw: Mapping[str, Any]) -> LayoutSpec:
    area = _req(raw, "object_area", "layout")
    hands = ("left", "right")

    def per_hand(key: str) -> dict[str, Point]:
        table = _req(raw, key, "layout")
        return {hand: _point(_req(table, hand, f"layout.{key}"), f"layout.{key}.{hand}") for hand in hands}

    return LayoutSpec(
        table_top=float(_req(raw, "table_top", "layout")),
        object_area_x=_range(_req(area, "x", "layout.object_area"), "layout.object_area.x"),
        object_area_y=_range(_req(area, "y", "layout.object_area"), "layout.object_area.y"),
        spacing=float(_req(raw, "spacing", "layout")),
        placement_attempts=int(_req(raw, "placement_attempts", "layout")),
        hold=per_hand("hold"),
        rest=per_hand("rest"),
        shoulder=per_hand("shoulder"),
        slide_distance=float(_req(raw, "slide_distance", "layout")),
        lid_offset=_point(_req(raw, "lid_offset", "layout"), "layout.lid_offset"),
        held_scale=float(_req(raw, "held_scale", "layout")),
    )


def _distractors(raw: Mapping[str, Any], colours: Mapping[str, RGB]) -> DistractorSpec:
    walker, pendulum, ball = (_req(raw, key, "distractors") for key in ("walker", "pendulum", "ball"))
    spec = DistractorSpec(
        per_episode=_range(_req(raw, "per_episode", "distractors"), "distractors.per_episode"),
        walker_period_s=_range(_req(walker, "period_s", "distractors.walker"), "distractors.walker.period_s"),
        walker_colours=tuple(_req(walker, "colours", "distractors.walker")),
        pendulum_period_s=_range(_req(pendulum, "period_s", "distractors.pendulum"),
                                 "distractors.pendulum.period_s"),
        pendulum_amplitude=_range(_req(pendulum, "amplitude", "distractors.pendulum"),
                                  "distractors.pendulum.amplitude"),
        ball_period_s=_range(_req(ball, "period_s", "distractors.ball"), "distractors.ball.period_s"),
        ball_colours=tuple(_req(ball, "colours", "distractors.ball")),
    )
    unknown = [c for c in spec.walker_colours + spec.ball_colours if c not in colours]
    if unknown:
        raise CatalogueError(f"catalogue: distractors name unknown colours {unknown}")
    return spec


def parse_catalogue(raw: Mapping[str, Any]) -> Catalogue:
    """Validate a parsed catalogue mapping; raise CatalogueError naming the first bad entry."""
    encoders = _req(raw, "encoders", "catalogue")
    general_fps = int(_req(encoders, "general_fps", "encoders"))
    defaults = _req(raw, "defaults", "catalogue")
    colours = _rgb_table(_req(raw, "colours", "catalogue"), "colours")
    shapes = {str(name): _shape(str(name), spec) for name, spec in _req(raw, "shapes", "catalogue").items()}
    actions = {str(name): _action(str(name), spec, general_fps)
               for name, spec in _req(raw, "actions", "catalogue").items()}
    questions = {str(name): _question(str(name), spec, shapes, actions)
                 for name, spec in _req(raw, "questions", "catalogue").items()}
    liquids = {str(label): str(colour) for label, colour in _req(raw, "liquids", "catalogue").items()}
    for label, colour in liquids.items():
        if colour not in colours:
            raise CatalogueError(f"catalogue: liquids.{label} names unknown colour '{colour}'")
    for shape in shapes.values():
        if shape.pourable and any(label not in liquids for label in shape.labels):
            raise CatalogueError(f"catalogue: every label of pourable shape '{shape.name}' needs a liquid")
    naming = _req(raw, "naming", "catalogue")
    camera = _req(raw, "camera", "catalogue")
    size = _req(defaults, "size", "defaults")
    return Catalogue(
        version=int(_req(raw, "version", "catalogue")),
        general_fps=general_fps,
        egocentric_fps=int(_req(encoders, "egocentric_fps", "encoders")),
        default_fps=int(_req(defaults, "fps", "defaults")),
        default_size=(int(size[0]), int(size[1])),
        min_size=int(_req(defaults, "min_size", "defaults")),
        max_fps=int(_req(defaults, "max_fps", "defaults")),
        episode=_episode(_req(raw, "episode", "catalogue")),
        layout=_layout(_req(raw, "layout", "catalogue")),
        camera_jitter=float(_req(camera, "jitter", "camera")),
        camera_jitter_step=float(_req(camera, "jitter_step", "camera")),
        table_colours=_rgb_table(_req(raw, "table_colours", "catalogue"), "table_colours"),
        wall_colours=_rgb_table(_req(raw, "wall_colours", "catalogue"), "wall_colours"),
        skin_tones=_rgb_table(_req(raw, "skin_tones", "catalogue"), "skin_tones"),
        sleeve_colours=_rgb_table(_req(raw, "sleeve_colours", "catalogue"), "sleeve_colours"),
        colours=colours,
        label_ink=_rgb(_req(raw, "label_ink", "catalogue"), "label_ink"),
        label_paper=_rgb(_req(raw, "label_paper", "catalogue"), "label_paper"),
        button_light=_rgb(_req(raw, "button_light", "catalogue"), "button_light"),
        shapes=shapes,
        liquids=liquids,
        actions=actions,
        object_name=str(_req(naming, "object", "naming")),
        twin_name=str(_req(naming, "twin", "naming")),
        questions=questions,
        heldout=_heldout(_req(raw, "heldout", "catalogue"), shapes, colours),
        distractors=_distractors(_req(raw, "distractors", "catalogue"), colours),
    )


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read a catalogue YAML file (the packaged one by default)."""
    path = Path(path) if path is not None else DEFAULT_CATALOGUE_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise CatalogueError(f"catalogue: cannot read {path}: {error}") from error
    return parse_catalogue(raw)
