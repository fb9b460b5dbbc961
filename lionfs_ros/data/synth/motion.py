"""Where every hand and object is in a given frame: interpolates the planned actions.

Each verb is a short choreography of keyframes over the action's progress p in [0, 1]:
the hand path, the grip, and a window during which an object (or a lid) rides in the hand.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .catalogue import Catalogue, Point
from .scene import HANDS, Scene, WorldState
from .timeline import TimedAction, Timeline

# The hand grasps an object from the camera side, so its palm sits a little below the object.
GRASP_OFFSET = (0.0, 0.045)
# Where a bottle is held while pouring, relative to the container: beside it, on the side
# facing the middle of the table (so it stays in view), and a little above its opening.
POUR_OFFSET = (0.09, -0.09)
POUR_STREAM_TILT = 0.5  # liquid flows once the bottle is tipped at least this far

# Choreography keyframes, as progress through the action (START = it begins, END = it completes).
START, END = 0.0, 1.0
PICK_ARRIVE, PICK_GRIP, PICK_LEAVE = 0.4, 0.5, 0.55  # reach the object, close the hand, lift it away
PLACE_ARRIVE, PLACE_LET_GO, PLACE_RELEASE = 0.6, 0.65, 0.7  # reach the spot, object rests, hand opens
# slide/stack/open: reach, grip, set down at the destination, object rests, hand opens
MOVE_ARRIVE, MOVE_GRIP, MOVE_SET, MOVE_LET_GO, MOVE_RELEASE = 0.35, 0.45, 0.8, 0.85, 0.9
# over the container, fully tipped, container full, upright again, start back
POUR_ARRIVE, POUR_TIPPED, POUR_FULL, POUR_UPRIGHT, POUR_LEAVE = 0.3, 0.45, 0.7, 0.8, 0.85
TAP_CONTACT = 0.5  # a tap or press touches the object halfway, then the hand returns
CLOSED_GRIP, OPEN_GRIP = 1.0, 0.0

Keyframes = tuple[tuple[float, object], ...]


@dataclass(frozen=True)
class ObjectPose:
    object_id: str
    x: float
    y: float
    level: int
    base_y: float  # y of the bottom of its stack, for back-to-front draw order
    scale: float = 1.0
    held: bool = False
    is_open: bool = False
    lid: Point | None = None
    fill: str | None = None
    fill_level: float = 0.0
    tilt: float = 0.0  # 0 upright, 1 fully tipped (mouth to the image's left); negative tips it right
    stream_to: Point | None = None  # pouring: where the liquid lands
    lit: bool = False


@dataclass(frozen=True)
class HandPose:
    hand: str
    x: float
    y: float
    grip: float


@dataclass(frozen=True)
class FramePose:
    objects: tuple[ObjectPose, ...]  # in drawing order, back to front
    hands: tuple[HandPose, ...]


def _smooth(t: float) -> float:
    # Ease in and out so hands accelerate and stop like real reaches.
    return t * t * (3.0 - 2.0 * t)


def _interp(keys: Keyframes, p: float):
    """Value at progress p of piecewise eased keyframes (numbers or 2-D points)."""
    if p <= keys[0][0]:
        return keys[0][1]
    for (p0, v0), (p1, v1) in itertools.pairwise(keys):
        if p <= p1:
            t = _smooth((p - p0) / (p1 - p0)) if p1 > p0 else 1.0
            if isinstance(v0, tuple):
                return (v0[0] + (v1[0] - v0[0]) * t, v0[1] + (v1[1] - v0[1]) * t)
            return v0 + (v1 - v0) * t
    return keys[-1][1]


def _add(a: Point, b: Point, sign: float = 1.0) -> Point:
    return a[0] + sign * b[0], a[1] + sign * b[1]


def _display_point(catalogue: Catalogue, scene: Scene, state: WorldState, object_id: str) -> Point:
    """Where a resting object appears: raised by the height of everything it is stacked on."""
    obj = state.objects[object_id]
    lift, below = 0.0, obj.on
    while below is not None:
        spec = catalogue.shapes[scene.get(below).shape]
        lift += spec.stack_height * spec.size
        below = state.objects[below].on
    return obj.x, obj.y - lift


def _base_y(state: WorldState, object_id: str) -> float:
    below = object_id
    while state.objects[below].on is not None:
        below = state.objects[below].on
    return state.objects[below].y


def _resting_pose(catalogue: Catalogue, scene: Scene, state: WorldState, object_id: str) -> ObjectPose:
    obj = state.objects[object_id]
    if obj.held_by is not None:
        x, y = _add(catalogue.layout.hold[obj.held_by], GRASP_OFFSET, -1.0)
        return ObjectPose(object_id, x, y, 0, y, catalogue.layout.held_scale, True, obj.is_open, obj.lid,
                          obj.fill, 1.0 if obj.fill else 0.0)
    x, y = _display_point(catalogue, scene, state, object_id)
    return ObjectPose(object_id, x, y, state.level(object_id), _base_y(state, object_id), 1.0, False,
                      obj.is_open, obj.lid, obj.fill, 1.0 if obj.fill else 0.0)


def _grasp(point: Point) -> Point:
    """Where the hand centre goes to hold an object shown at `point`."""
    return _add(point, GRASP_OFFSET)


def _resting_hand(catalogue: Catalogue, state: WorldState, hand: str) -> HandPose:
    if state.holding[hand] is not None:
        return HandPose(hand, *catalogue.layout.hold[hand], CLOSED_GRIP)
    return HandPose(hand, *catalogue.layout.rest[hand], OPEN_GRIP)


@dataclass(frozen=True)
class _Choreography:
    hand_path: Keyframes
    grip: Keyframes
    carry: tuple[float, float] | None = None  # progress window the object (or lid) rides in the hand
    carries_lid: bool = False
    scale: Keyframes = ((0.0, 1.0),)
    tilt: Keyframes = ((0.0, 0.0),)
    fill: Keyframes = ((0.0, 0.0),)
    lit: tuple[float, float] | None = None


def _choreography(catalogue: Catalogue, scene: Scene, action: TimedAction) -> _Choreography:
    layout, choice = catalogue.layout, action.choice
    before, after = action.before, action.after
    rest, hold = layout.rest[choice.hand], layout.hold[choice.hand]
    held = layout.held_scale
    source = _grasp(_display_point(catalogue, scene, before, choice.object_id))
    verb = choice.verb
    if verb == "pick_up":
        return _Choreography(((START, rest), (PICK_ARRIVE, source), (PICK_LEAVE, source), (END, hold)),
                             ((PICK_ARRIVE, OPEN_GRIP), (PICK_GRIP, CLOSED_GRIP)), (PICK_GRIP, END),
                             scale=((PICK_LEAVE, 1.0), (END, held)))
    if verb in ("put_on", "put_down"):
        target = _grasp(_display_point(catalogue, scene, after, choice.object_id))
        return _Choreography(((START, hold), (PLACE_ARRIVE, target), (PLACE_RELEASE, target), (END, rest)),
                             ((PLACE_ARRIVE, CLOSED_GRIP), (PLACE_RELEASE, OPEN_GRIP)), (START, PLACE_LET_GO),
                             scale=((START, held), (PLACE_ARRIVE, 1.0)))
    if verb in ("slide", "stack", "open"):
        carries_lid = verb == "open"
        target = _grasp(after.objects[choice.object_id].lid if carries_lid
                        else _display_point(catalogue, scene, after, choice.object_id))
        return _Choreography(((START, rest), (MOVE_ARRIVE, source), (MOVE_GRIP, source), (MOVE_SET, target),
                              (MOVE_RELEASE, target), (END, rest)),
                             ((MOVE_ARRIVE, OPEN_GRIP), (MOVE_GRIP, CLOSED_GRIP), (MOVE_SET, CLOSED_GRIP),
                              (MOVE_RELEASE, OPEN_GRIP)),
                             (MOVE_GRIP, MOVE_LET_GO), carries_lid=carries_lid)
    if verb == "pour":
        container = _display_point(catalogue, scene, before, choice.target_id)
        side = 1.0 if container[0] < 0.5 else -1.0
        over = _grasp(_add(container, (side * POUR_OFFSET[0], POUR_OFFSET[1])))
        return _Choreography(((START, hold), (POUR_ARRIVE, over), (POUR_LEAVE, over), (END, hold)),
                             ((START, CLOSED_GRIP),), (START, END),
                             scale=((START, held), (POUR_ARRIVE, 1.0), (POUR_LEAVE, 1.0), (END, held)),
                             tilt=((POUR_ARRIVE, 0.0), (POUR_TIPPED, side), (POUR_FULL, side), (POUR_UPRIGHT, 0.0)),
                             fill=((POUR_TIPPED, 0.0), (POUR_FULL, 1.0)))
    if verb in ("tap", "press"):
        touch = _grasp(_display_point(catalogue, scene, before, choice.object_id))
        return _Choreography(((START, rest), (TAP_CONTACT, touch), (END, rest)), ((START, OPEN_GRIP),),
                             lit=(START, END) if verb == "press" else None)
    raise KeyError(f"no motion defined for action '{verb}'")


def _object_poses(catalogue: Catalogue, scene: Scene, state: WorldState, action: TimedAction | None,
                  p: float, hand_point: Point) -> list[ObjectPose]:
    poses = {obj.object_id: _resting_pose(catalogue, scene, state, obj.object_id) for obj in scene.objects}
    if action is None:
        return list(poses.values())
    plan = _choreography(catalogue, scene, action)
    choice = action.choice
    pose = poses[choice.object_id]
    carried = plan.carry is not None and plan.carry[0] <= p < plan.carry[1]
    if plan.carries_lid:
        if carried:
            pose = replace(pose, is_open=True, lid=_add(hand_point, GRASP_OFFSET, -1.0))
        elif plan.carry is not None and p >= plan.carry[1]:
            pose = _resting_pose(catalogue, scene, action.after, choice.object_id)
    elif carried:
        x, y = _add(hand_point, GRASP_OFFSET, -1.0)
        pose = replace(pose, x=x, y=y, level=0, base_y=y, held=True, scale=_interp(plan.scale, p),
                     tilt=_interp(plan.tilt, p))
    elif plan.carry is not None and p >= plan.carry[1]:
        pose = _resting_pose(catalogue, scene, action.after, choice.object_id)
    if plan.lit is not None and plan.lit[0] < p < plan.lit[1]:
        pose = replace(pose, lit=True)
    poses[choice.object_id] = pose
    if choice.verb == "pour":
        target = poses[choice.target_id]
        if abs(pose.tilt) >= POUR_STREAM_TILT:
            poses[choice.object_id] = replace(pose, stream_to=(target.x, target.y))
        poses[choice.target_id] = replace(target, fill=action.after.objects[choice.target_id].fill,
                                        fill_level=_interp(plan.fill, p))
    return list(poses.values())


def _draw_order(pose: ObjectPose) -> tuple:
    # Table objects back to front, stacks bottom-up, then whatever is in a hand.
    return (pose.held, pose.base_y, pose.level, pose.object_id)


def frame_pose(catalogue: Catalogue, scene: Scene, timeline: Timeline, frame: int) -> FramePose:
    action = timeline.active_action(frame)
    state = timeline.state_at(frame)
    hands = {hand: _resting_hand(catalogue, state, hand) for hand in HANDS}
    p = 0.0
    hand_point: Point = (0.0, 0.0)
    if action is not None:
        p = (frame - action.start_frame) / (action.end_frame - action.start_frame)
        plan = _choreography(catalogue, scene, action)
        hand_point = _interp(plan.hand_path, p)
        hands[action.choice.hand] = HandPose(action.choice.hand, *hand_point, _interp(plan.grip, p))
    objects = _object_poses(catalogue, scene, state, action, p, hand_point)
    return FramePose(tuple(sorted(objects, key=_draw_order)), tuple(hands[h] for h in HANDS))
