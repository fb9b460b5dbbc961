"""The table scene: which objects exist, where they are, and the held-out combination rules."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Mapping

import numpy as np

from .catalogue import Catalogue, Point

HANDS = ("left", "right")
MAX_SCENE_ATTEMPTS = 200  # rejection sampling of a scene that satisfies the held-out rule
LID_FOOTPRINT_RATIO = 0.6  # an opened lid takes this fraction of its container's footprint
GRAIN_LINES = 6  # wood-grain lines across the table, so the surface is not a flat colour
PENDULUM_X_RANGE = (0.1, 0.9)  # where along the back wall a pendulum clock may hang
DISTRACTOR_KINDS = ("walker", "pendulum", "ball")


@dataclass(frozen=True)
class SceneObject:
    """What an object is; never changes during an episode."""
    object_id: str
    shape: str
    colour: str
    name: str
    label: str | None = None
    patch_colour: str | None = None
    liquid: str | None = None


@dataclass(frozen=True)
class ObjectState:
    """Where an object is and what condition it is in at one moment."""
    x: float
    y: float
    held_by: str | None = None
    on: str | None = None
    is_open: bool = False
    fill: str | None = None
    lid: Point | None = None


@dataclass(frozen=True)
class WorldState:
    objects: Mapping[str, ObjectState]
    holding: Mapping[str, str | None] = field(default_factory=lambda: dict.fromkeys(HANDS))

    def with_object(self, object_id: str, **changes: object) -> WorldState:
        objects = dict(self.objects)
        objects[object_id] = replace(objects[object_id], **changes)
        return WorldState(objects, dict(self.holding))

    def with_holding(self, hand: str, object_id: str | None) -> WorldState:
        holding = dict(self.holding)
        holding[hand] = object_id
        return WorldState(dict(self.objects), holding)

    def is_clear(self, object_id: str) -> bool:
        """Nothing rests on top of the object."""
        return all(state.on != object_id for state in self.objects.values())

    def level(self, object_id: str) -> int:
        """How many objects the object is stacked on."""
        level, below = 0, self.objects[object_id].on
        while below is not None:
            level, below = level + 1, self.objects[below].on
        return level

    def free_hands(self) -> list[str]:
        return [hand for hand in HANDS if self.holding[hand] is None]


@dataclass(frozen=True)
class DistractorParams:
    """Background motion that must not trigger narration."""
    kind: str
    period_s: float
    phase: float
    colour: str | None = None
    amplitude: float = 0.0
    x: float = 0.5


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    initial: WorldState
    table_colour: str
    wall_colour: str
    skin_tone: str
    sleeve_colour: str
    grain_rows: tuple[float, ...]
    distractors: tuple[DistractorParams, ...]
    heldout_combinations: tuple[str, ...]

    def get(self, object_id: str) -> SceneObject:
        return next(obj for obj in self.objects if obj.object_id == object_id)

    @property
    def twins(self) -> frozenset[str]:
        """Objects that share colour and shape with another, so only their label tells them apart."""
        keys = [(obj.shape, obj.colour) for obj in self.objects]
        return frozenset(obj.object_id for obj, key in zip(self.objects, keys, strict=True) if keys.count(key) > 1)


def heldout_combinations(objects: list[tuple[str, str]], catalogue: Catalogue) -> list[str]:
    """Held-out combinations present among (shape, colour) pairs, as readable strings."""
    found = sorted({f"{colour} {shape}" for shape, colour in objects
                    if (shape, colour) in catalogue.heldout.shape_colour})
    shapes = {shape for shape, _ in objects}
    found += sorted("+".join(sorted(pair)) for pair in catalogue.heldout.shape_pair if pair <= shapes)
    return found


def heldout_object_ids(catalogue: Catalogue, scene: Scene) -> frozenset[str]:
    """Objects that make the scene held-out: a held-out colour on its shape, or half of a held-out pair."""
    shapes = {obj.shape for obj in scene.objects}
    pair_shapes = {shape for pair in catalogue.heldout.shape_pair if pair <= shapes for shape in pair}
    return frozenset(obj.object_id for obj in scene.objects
                     if (obj.shape, obj.colour) in catalogue.heldout.shape_colour or obj.shape in pair_shapes)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _count(rng: np.random.Generator, bounds: tuple[float, float]) -> int:
    return int(rng.integers(int(bounds[0]), int(bounds[1]) + 1))


def _sample_kinds(rng: np.random.Generator, catalogue: Catalogue, heldout: bool) -> list[tuple[str, str]]:
    """(shape, colour) for each object, all distinct except one optional labelled twin."""
    table_shapes = [name for name, spec in catalogue.shapes.items() if not spec.scene_extra]
    colours = list(catalogue.colours)
    kinds: list[tuple[str, str]] = []
    if heldout:
        options = ([("colour", pair) for pair in sorted(catalogue.heldout.shape_colour)]
                   + [("pair", tuple(sorted(pair))) for pair in catalogue.heldout.shape_pair])
        rule, combo = options[int(rng.integers(len(options)))]
        kinds += [combo] if rule == "colour" else [(shape, _pick(rng, colours)) for shape in combo]
    frequency = np.array([catalogue.shapes[name].frequency for name in table_shapes], np.float64)
    for _ in range(_count(rng, catalogue.episode.objects) - len(kinds)):
        shape = table_shapes[int(rng.choice(len(table_shapes), p=frequency / frequency.sum()))]
        # Only the deliberate twin below may repeat a (shape, colour): names must stay unique.
        unused = [colour for colour in colours if (shape, colour) not in kinds]
        kinds.append((shape, _pick(rng, unused)))
    labelled = [kind for kind in kinds if catalogue.shapes[kind[0]].labels]
    if labelled and rng.random() < catalogue.episode.twin_probability:
        kinds.append(labelled[int(rng.integers(len(labelled)))])
    extras = [name for name, spec in catalogue.shapes.items() if spec.scene_extra]
    if extras and rng.random() < catalogue.episode.button_probability:
        extra = _pick(rng, extras)
        kinds.append((extra, _pick(rng, [c for c in colours if (extra, c) not in kinds])))
    return kinds


def footprint(catalogue: Catalogue, shape: str) -> float:
    return catalogue.shapes[shape].footprint


def spot_is_free(catalogue: Catalogue, scene_objects: Mapping[str, SceneObject], state: WorldState,
                 point: Point, radius: float, ignore: frozenset[str] = frozenset()) -> bool:
    """No object resting on the table, nor any opened lid, overlaps a disc at `point`."""
    spacing = catalogue.layout.spacing
    for object_id, obj_state in state.objects.items():
        shape = scene_objects[object_id].shape
        if obj_state.lid is not None:
            lid_radius = footprint(catalogue, shape) * LID_FOOTPRINT_RATIO
            if np.hypot(point[0] - obj_state.lid[0], point[1] - obj_state.lid[1]) < radius + lid_radius + spacing:
                return False
        if object_id in ignore or obj_state.held_by is not None or obj_state.on is not None:
            continue
        distance = np.hypot(point[0] - obj_state.x, point[1] - obj_state.y)
        if distance < radius + footprint(catalogue, shape) + spacing:
            return False
    return True


def in_object_area(catalogue: Catalogue, point: Point) -> bool:
    (x0, x1), (y0, y1) = catalogue.layout.object_area_x, catalogue.layout.object_area_y
    return x0 <= point[0] <= x1 and y0 <= point[1] <= y1


def find_free_spot(rng: np.random.Generator, catalogue: Catalogue, scene_objects: Mapping[str, SceneObject],
                   state: WorldState, radius: float) -> Point | None:
    layout = catalogue.layout
    for _ in range(layout.placement_attempts):
        point = (_uniform(rng, layout.object_area_x), _uniform(rng, layout.object_area_y))
        if spot_is_free(catalogue, scene_objects, state, point, radius):
            return point
    return None


def _name(catalogue: Catalogue, obj: SceneObject, is_twin: bool) -> str:
    template = catalogue.twin_name if is_twin else catalogue.object_name
    return template.format(colour=obj.colour, shape=obj.shape, label=obj.label)


def _build_objects(rng: np.random.Generator, catalogue: Catalogue,
                   kinds: list[tuple[str, str]]) -> tuple[list[SceneObject], WorldState]:
    """Give each object a label, patch and place; drop objects the table has no room for."""
    objects: list[SceneObject] = []
    state = WorldState({})
    used_labels: dict[str, set[str]] = {}
    for index, (shape, colour) in enumerate(kinds):
        spec = catalogue.shapes[shape]
        label = patch = liquid = None
        if spec.labels:
            free = [lab for lab in spec.labels if lab not in used_labels.setdefault(shape, set())]
            if not free:
                continue
            label = _pick(rng, free)
            used_labels[shape].add(label)
        if spec.patch is not None:
            patch = _pick(rng, [c for c in catalogue.colours if c != colour])
        if spec.pourable:
            liquid = catalogue.liquids[label]
        obj = SceneObject(f"obj{index}", shape, colour, name="", label=label, patch_colour=patch, liquid=liquid)
        lookup = {o.object_id: o for o in objects + [obj]}
        spot = find_free_spot(rng, catalogue, lookup, state, spec.footprint)
        if spot is None:
            continue
        objects.append(obj)
        state = WorldState({**state.objects, obj.object_id: ObjectState(*spot)})
    keys = [(obj.shape, obj.colour) for obj in objects]
    named = [replace(obj, name=_name(catalogue, obj, keys.count(key) > 1))
             for obj, key in zip(objects, keys, strict=True)]
    return named, state


def _sample_distractors(rng: np.random.Generator, catalogue: Catalogue) -> tuple[DistractorParams, ...]:
    spec = catalogue.distractors
    chosen = rng.permutation(len(DISTRACTOR_KINDS))[:_count(rng, spec.per_episode)]
    params = []
    for kind in (DISTRACTOR_KINDS[int(i)] for i in sorted(chosen)):
        phase = float(rng.random())
        if kind == "walker":
            params.append(DistractorParams(kind, _uniform(rng, spec.walker_period_s), phase,
                                           colour=_pick(rng, list(spec.walker_colours))))
        elif kind == "pendulum":
            params.append(DistractorParams(kind, _uniform(rng, spec.pendulum_period_s), phase,
                                           amplitude=_uniform(rng, spec.pendulum_amplitude),
                                           x=_uniform(rng, PENDULUM_X_RANGE)))
        else:
            params.append(DistractorParams(kind, _uniform(rng, spec.ball_period_s), phase,
                                           colour=_pick(rng, list(spec.ball_colours))))
    return tuple(params)


def sample_scene(rng: np.random.Generator, catalogue: Catalogue, heldout: bool) -> Scene:
    """A scene with no held-out combination (train/val) or at least one (heldout)."""
    for _ in range(MAX_SCENE_ATTEMPTS):
        objects, state = _build_objects(rng, catalogue, _sample_kinds(rng, catalogue, heldout))
        combos = heldout_combinations([(obj.shape, obj.colour) for obj in objects], catalogue)
        if bool(combos) == heldout and any(catalogue.shapes[o.shape].holdable for o in objects):
            break
    else:
        raise RuntimeError("could not sample a scene that satisfies the held-out rule; check the catalogue")
    return Scene(
        objects=tuple(objects),
        initial=state,
        table_colour=_pick(rng, list(catalogue.table_colours)),
        wall_colour=_pick(rng, list(catalogue.wall_colours)),
        skin_tone=_pick(rng, list(catalogue.skin_tones)),
        sleeve_colour=_pick(rng, list(catalogue.sleeve_colours)),
        grain_rows=tuple(sorted(float(v) for v in rng.uniform(catalogue.layout.table_top, 1.0, size=GRAIN_LINES))),
        distractors=_sample_distractors(rng, catalogue),
        heldout_combinations=tuple(combos),
    )
