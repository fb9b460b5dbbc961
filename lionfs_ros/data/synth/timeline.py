"""Plan an episode's timeline: which actions happen, in which frames, with what world state."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .actions import ActionChoice, PlanContext, apply_action, feasible_actions
from .catalogue import Catalogue, Range
from .scene import Scene, WorldState, heldout_object_ids

QUICK_MIN_FRAMES = 2  # a quick action needs one frame strictly inside it to be visible at all


@dataclass(frozen=True)
class TimedAction:
    index: int
    choice: ActionChoice
    start_frame: int
    end_frame: int  # the first frame showing the completed action; its narration is stamped here
    before: WorldState
    after: WorldState
    quick: bool


@dataclass(frozen=True)
class FrameSpan:
    start_frame: int
    end_frame: int  # exclusive


@dataclass(frozen=True)
class Pause(FrameSpan):
    after_action: int


@dataclass(frozen=True)
class Timeline:
    fps: int
    num_frames: int
    actions: tuple[TimedAction, ...]
    pauses: tuple[Pause, ...]
    static_segments: tuple[FrameSpan, ...]
    initial: WorldState
    quick_hidden_from_general_encoder: bool

    def active_action(self, frame: int) -> TimedAction | None:
        return next((a for a in self.actions if a.start_frame <= frame < a.end_frame), None)

    def state_at(self, frame: int) -> WorldState:
        """World state at a frame outside any action (inside one, the state before it)."""
        state = self.initial
        for action in self.actions:
            if action.end_frame <= frame:
                state = action.after
            elif action.start_frame <= frame:
                return action.before
        return state


def general_encoder_stride(fps: int, general_fps: int) -> int | None:
    """Frames between two general-encoder samples, when that is a whole number."""
    return fps // general_fps if fps % general_fps == 0 else None


def _frames(seconds: float, fps: int, minimum: int = 1) -> int:
    return max(minimum, int(round(seconds * fps)))


def _sample_frames(rng: np.random.Generator, bounds: Range, fps: int, minimum: int = 1) -> int:
    return _frames(float(rng.uniform(bounds[0], bounds[1])), fps, minimum)


def _weighted_choice(rng: np.random.Generator, choices: list[ActionChoice], weights: list[float]) -> ActionChoice:
    probabilities = np.asarray(weights, dtype=np.float64)
    return choices[int(rng.choice(len(choices), p=probabilities / probabilities.sum()))]


def _involves(choice: ActionChoice, object_ids: frozenset[str]) -> bool:
    return choice.object_id in object_ids or choice.target_id in object_ids


def _advances_pour(ctx: PlanContext, state: WorldState, choice: ActionChoice) -> bool:
    """Opening a bottle, lifting an open one or pouring it, while an empty container waits."""
    if choice.verb == "pour":
        return True
    shapes = ctx.catalogue.shapes
    if not shapes[ctx.objects[choice.object_id].shape].pourable:
        return False
    empty_container = any(shapes[obj.shape].container and state.objects[oid].fill is None
                          for oid, obj in ctx.objects.items())
    lifting_open = choice.verb == "pick_up" and state.objects[choice.object_id].is_open
    return empty_container and (choice.verb == "open" or lifting_open)


def _choose_action(ctx: PlanContext, state: WorldState, want_quick: bool, focus: frozenset[str],
                   force_focus: bool, done: list[ActionChoice]) -> ActionChoice | None:
    """Pick a feasible action by catalogue weight, honouring quick and held-out-focus quotas.

    Repeating an earlier (verb, object) is penalised so episodes do not loop pick-up/put-down.
    """
    catalogue = ctx.catalogue
    verbs = [name for name, spec in catalogue.actions.items() if spec.quick or not want_quick]
    if want_quick and not any(feasible_actions(ctx, state, v) for v in verbs):
        verbs = list(catalogue.actions)
    choices: list[ActionChoice] = []
    weights: list[float] = []
    for verb in verbs:
        options = feasible_actions(ctx, state, verb)
        for choice in options:
            boost = catalogue.episode.heldout_focus_weight if _involves(choice, focus) else 1.0
            repeats = sum(1 for d in done if (d.verb, d.object_id) == (verb, choice.object_id))
            penalty = catalogue.episode.repeat_penalty ** repeats
            if _advances_pour(ctx, state, choice):
                boost *= catalogue.episode.pour_chain_bonus
            choices.append(choice)
            weights.append(catalogue.actions[verb].weight * boost * penalty / len(options))
    if force_focus and any(_involves(c, focus) for c in choices):
        kept = [(c, w) for c, w in zip(choices, weights, strict=True) if _involves(c, focus)]
        choices, weights = [c for c, _ in kept], [w for _, w in kept]
    return _weighted_choice(ctx.rng, choices, weights) if choices else None


def plan_timeline(rng: np.random.Generator, catalogue: Catalogue, scene: Scene, fps: int,
                  num_actions: int | None = None) -> Timeline:
    """Lay actions end to end with pauses, static stretches and frame-aligned quick actions."""
    spec = catalogue.episode
    ctx = PlanContext(catalogue, scene, rng)
    if num_actions is None:
        num_actions = int(rng.integers(int(spec.actions[0]), int(spec.actions[1]) + 1))
    # Quick slots go in the first half so that, if the hands are full then, later slots can make up.
    early = max(1, (num_actions + 1) // 2)
    quick_slots = set(rng.permutation(early)[:min(spec.min_quick_actions, early)].tolist())
    static_count = int(rng.integers(int(spec.static_per_episode[0]), int(spec.static_per_episode[1]) + 1))
    static_after = set(rng.permutation(num_actions)[:min(static_count, num_actions)].tolist())
    focus = heldout_object_ids(catalogue, scene)
    stride = general_encoder_stride(fps, catalogue.general_fps)

    frame = _sample_frames(rng, spec.lead_in_s, fps)
    state = scene.initial
    actions: list[TimedAction] = []
    pauses: list[Pause] = []
    statics: list[FrameSpan] = []
    quick_hidden = stride is not None
    for slot in range(num_actions):
        force_focus = bool(focus) and slot == 0
        # A held-out episode opens on a held-out object; a quick slot there moves to the next slot.
        want_quick = slot in quick_slots and not force_focus
        choice = _choose_action(ctx, state, want_quick, focus, force_focus, [a.choice for a in actions])
        if choice is None:
            break
        action_spec = catalogue.actions[choice.verb]
        if slot in quick_slots and not action_spec.quick:
            quick_slots.add(slot + 1)  # no quick action was possible now (hands full): try the next slot
        if action_spec.quick:
            length = _sample_frames(rng, action_spec.duration_s, fps, QUICK_MIN_FRAMES)
            if stride is not None:
                # Start on a general-encoder sample so every frame of the motion falls between two samples.
                frame = int(math.ceil(frame / stride) * stride)
                quick_hidden = quick_hidden and length <= stride
        else:
            length = _sample_frames(rng, action_spec.duration_s, fps)
        after = apply_action(ctx, state, choice)
        actions.append(TimedAction(len(actions), choice, frame, frame + length, state, after, action_spec.quick))
        frame += length
        state = after
        pause = _sample_frames(rng, spec.pause_s, fps, minimum=2)
        pauses.append(Pause(frame, frame + pause, after_action=len(actions) - 1))
        frame += pause
        if slot in static_after:
            length = _sample_frames(rng, spec.static_duration_s, fps)
            statics.append(FrameSpan(frame, frame + length))
            frame += length
    frame += _sample_frames(rng, spec.tail_s, fps)
    return Timeline(
        fps=fps,
        num_frames=frame + 1,
        actions=tuple(actions),
        pauses=tuple(pauses),
        static_segments=tuple(statics),
        initial=scene.initial,
        quick_hidden_from_general_encoder=quick_hidden and any(a.quick for a in actions),
    )
