"""What each verb may act on (preconditions) and what it changes (effects)."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Mapping

import numpy as np

from .catalogue import Catalogue, Point
from .scene import (LID_FOOTPRINT_RATIO, Scene, SceneObject, WorldState, find_free_spot, in_object_area,
                    spot_is_free)

MAX_STACK_LEVEL = 2  # a tower is at most three blocks high, so it stays inside the frame
SLIDE_DIRECTIONS = {"left": -1.0, "right": 1.0}
# Where an opened lid may go, as multiples of layout.lid_offset rotated: in front, right, left.
LID_DIRECTIONS = ((0.0, 1.0), (1.0, 0.0), (-1.0, 0.0))


@dataclass(frozen=True)
class ActionChoice:
    """One concrete action: verb, acting hand and the objects involved."""
    verb: str
    hand: str
    object_id: str
    target_id: str | None = None
    direction: str | None = None
    destination: Point | None = None  # put_down/slide: where the object ends; open: where the lid goes


@dataclass(frozen=True)
class PlanContext:
    catalogue: Catalogue
    scene: Scene
    rng: np.random.Generator

    @property
    def objects(self) -> Mapping[str, SceneObject]:
        return {obj.object_id: obj for obj in self.scene.objects}


def _side_hand(state: WorldState, x: float) -> str | None:
    """The free hand on the object's side of the body, else the other free hand."""
    free = state.free_hands()
    preferred = "left" if x < 0.5 else "right"
    if preferred in free:
        return preferred
    return free[0] if free else None


def _on_table_and_free(state: WorldState, object_id: str) -> bool:
    obj = state.objects[object_id]
    return obj.held_by is None and state.is_clear(object_id)


def _pick_up(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for object_id, obj in ctx.objects.items():
        if ctx.catalogue.shapes[obj.shape].holdable and _on_table_and_free(state, object_id):
            hand = _side_hand(state, state.objects[object_id].x)
            if hand is not None:
                choices.append(ActionChoice("pick_up", hand, object_id))
    return choices


def _held(state: WorldState) -> list[tuple[str, str]]:
    return [(hand, object_id) for hand, object_id in state.holding.items() if object_id is not None]


def _put_on(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for hand, object_id in _held(state):
        for target_id, target in ctx.objects.items():
            spec = ctx.catalogue.shapes[target.shape]
            target_state = state.objects[target_id]
            if (target_id != object_id and spec.support and not target_state.is_open
                    and target_state.on is None and _on_table_and_free(state, target_id)):
                choices.append(ActionChoice("put_on", hand, object_id, target_id))
    return choices


def _put_down(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for hand, object_id in _held(state):
        radius = ctx.catalogue.shapes[ctx.objects[object_id].shape].footprint
        spot = find_free_spot(ctx.rng, ctx.catalogue, ctx.objects, state, radius)
        if spot is not None:
            choices.append(ActionChoice("put_down", hand, object_id, destination=spot))
    return choices


def _slide(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    distance = ctx.catalogue.layout.slide_distance
    for object_id, obj in ctx.objects.items():
        obj_state = state.objects[object_id]
        if not (ctx.catalogue.shapes[obj.shape].holdable and obj_state.on is None
                and _on_table_and_free(state, object_id)):
            continue
        hand = _side_hand(state, obj_state.x)
        for direction, sign in SLIDE_DIRECTIONS.items():
            spot = (obj_state.x + sign * distance, obj_state.y)
            radius = ctx.catalogue.shapes[obj.shape].footprint
            if (hand is not None and in_object_area(ctx.catalogue, spot)
                    and spot_is_free(ctx.catalogue, ctx.objects, state, spot, radius, frozenset({object_id}))):
                choices.append(ActionChoice("slide", hand, object_id, direction=direction, destination=spot))
    return choices


def _lid_spot(ctx: PlanContext, state: WorldState, object_id: str) -> Point | None:
    obj_state = state.objects[object_id]
    dx, dy = ctx.catalogue.layout.lid_offset
    offset = float(np.hypot(dx, dy))
    radius = ctx.catalogue.shapes[ctx.objects[object_id].shape].footprint * LID_FOOTPRINT_RATIO
    for ux, uy in LID_DIRECTIONS:
        spot = (obj_state.x + ux * offset, obj_state.y + uy * offset)
        if in_object_area(ctx.catalogue, spot) and spot_is_free(ctx.catalogue, ctx.objects, state, spot, radius,
                                                                frozenset({object_id})):
            return spot
    return None


def _open(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for object_id, obj in ctx.objects.items():
        obj_state = state.objects[object_id]
        if (ctx.catalogue.shapes[obj.shape].openable and not obj_state.is_open and obj_state.on is None
                and _on_table_and_free(state, object_id)):
            hand, spot = _side_hand(state, obj_state.x), _lid_spot(ctx, state, object_id)
            if hand is not None and spot is not None:
                choices.append(ActionChoice("open", hand, object_id, destination=spot))
    return choices


def _pour(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for hand, object_id in _held(state):
        obj = ctx.objects[object_id]
        if not (ctx.catalogue.shapes[obj.shape].pourable and state.objects[object_id].is_open):
            continue
        for target_id, target in ctx.objects.items():
            target_state = state.objects[target_id]
            if (ctx.catalogue.shapes[target.shape].container and target_state.held_by is None
                    and target_state.fill is None and state.is_clear(target_id)):
                choices.append(ActionChoice("pour", hand, object_id, target_id))
    return choices


def _stack(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    blocks = [oid for oid, obj in ctx.objects.items() if ctx.catalogue.shapes[obj.shape].stackable]
    for object_id in blocks:
        if not _on_table_and_free(state, object_id):
            continue
        hand = _side_hand(state, state.objects[object_id].x)
        for target_id in blocks:
            if (hand is not None and target_id != object_id and _on_table_and_free(state, target_id)
                    and state.level(target_id) < MAX_STACK_LEVEL):
                choices.append(ActionChoice("stack", hand, object_id, target_id))
    return choices


def _tap(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    # Twins are left out: a tap is a quick-mechanism probe and must not also need label reading.
    choices = []
    for object_id, obj in ctx.objects.items():
        spec = ctx.catalogue.shapes[obj.shape]
        if not spec.pressable and object_id not in ctx.scene.twins and _on_table_and_free(state, object_id):
            hand = _side_hand(state, state.objects[object_id].x)
            if hand is not None:
                choices.append(ActionChoice("tap", hand, object_id))
    return choices


def _press(ctx: PlanContext, state: WorldState) -> list[ActionChoice]:
    choices = []
    for object_id, obj in ctx.objects.items():
        if ctx.catalogue.shapes[obj.shape].pressable and _on_table_and_free(state, object_id):
            hand = _side_hand(state, state.objects[object_id].x)
            if hand is not None:
                choices.append(ActionChoice("press", hand, object_id))
    return choices


CANDIDATES: dict[str, Callable[[PlanContext, WorldState], list[ActionChoice]]] = {
    "pick_up": _pick_up, "put_on": _put_on, "put_down": _put_down, "slide": _slide, "open": _open,
    "pour": _pour, "stack": _stack, "tap": _tap, "press": _press,
}


def feasible_actions(ctx: PlanContext, state: WorldState, verb: str) -> list[ActionChoice]:
    if verb not in CANDIDATES:
        raise KeyError(f"catalogue action '{verb}' has no implementation; known: {sorted(CANDIDATES)}")
    return CANDIDATES[verb](ctx, state)


def _move_to(state: WorldState, object_id: str, point: Point, on: str | None) -> WorldState:
    return state.with_object(object_id, x=point[0], y=point[1], held_by=None, on=on)


def apply_action(ctx: PlanContext, state: WorldState, choice: ActionChoice) -> WorldState:
    """The world right after `choice` completes."""
    oid, verb = choice.object_id, choice.verb
    if verb == "pick_up":
        return state.with_object(oid, held_by=choice.hand, on=None).with_holding(choice.hand, oid)
    if verb in ("put_on", "stack"):
        target = state.objects[choice.target_id]
        return _move_to(state, oid, (target.x, target.y), choice.target_id).with_holding(
            choice.hand, state.holding[choice.hand] if verb == "stack" else None)
    if verb == "put_down":
        return _move_to(state, oid, choice.destination, None).with_holding(choice.hand, None)
    if verb == "slide":
        return _move_to(state, oid, choice.destination, None)
    if verb == "open":
        return state.with_object(oid, is_open=True, lid=choice.destination)
    if verb == "pour":
        return state.with_object(choice.target_id, fill=ctx.objects[oid].liquid)
    if verb in ("tap", "press"):
        return state
    raise KeyError(f"no effect defined for action '{verb}'")
