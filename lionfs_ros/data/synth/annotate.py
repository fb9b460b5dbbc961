"""Ground truth for an episode: the narration stream and the user questions with answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import Catalogue, QuestionSpec
from .episode import Narration, Question, frame_time
from .scene import Scene, WorldState, heldout_object_ids
from .timeline import Pause, TimedAction, Timeline


def _involved(action: TimedAction) -> tuple[str, ...]:
    choice = action.choice
    return (choice.object_id,) if choice.target_id is None else (choice.object_id, choice.target_id)


def narration_kind(action: TimedAction, scene: Scene) -> str:
    """quick: only a high-rate encoder sees it; detail: naming the object needs its label."""
    if action.quick:
        return "quick"
    if any(object_id in scene.twins for object_id in _involved(action)):
        return "detail"
    return "normal"


def narrate(catalogue: Catalogue, scene: Scene, timeline: Timeline) -> list[Narration]:
    """One narration per action, stamped at the frame the action completes."""
    heldout_ids = heldout_object_ids(catalogue, scene)
    narrations = []
    for action in timeline.actions:
        choice = action.choice
        text = catalogue.actions[choice.verb].template.format(
            object=scene.get(choice.object_id).name,
            target=scene.get(choice.target_id).name if choice.target_id else "",
            direction=choice.direction or "",
        )
        involved = _involved(action)
        narrations.append(Narration(
            time=frame_time(action.end_frame, timeline.fps),
            text=text,
            kind=narration_kind(action, scene),
            action_index=action.index,
            object_ids=involved,
            heldout=any(object_id in heldout_ids for object_id in involved),
        ))
    return narrations


@dataclass(frozen=True)
class _Candidate:
    pause: Pause
    spec: QuestionSpec
    object_ids: tuple[str, ...]
    fields: dict[str, Any]


def _object_fields(scene: Scene, object_id: str) -> dict[str, Any]:
    obj = scene.get(object_id)
    return {"object": obj.name, "shape": obj.shape, "colour": obj.colour, "label": obj.label,
            "patch_colour": obj.patch_colour}


def _after_action_candidates(catalogue: Catalogue, scene: Scene, pause: Pause, action: TimedAction,
                             spec: QuestionSpec) -> list[_Candidate]:
    choice = action.choice
    if choice.verb not in spec.after:
        return []
    fields = _object_fields(scene, choice.object_id)
    fields["word"] = catalogue.actions[choice.verb].word
    if choice.target_id is not None:
        fields["target"] = scene.get(choice.target_id).name
    return [_Candidate(pause, spec, _involved(action), fields)]


def _anytime_candidates(catalogue: Catalogue, scene: Scene, pause: Pause, state: WorldState,
                        spec: QuestionSpec) -> list[_Candidate]:
    candidates = []
    for obj in scene.objects:
        obj_state = state.objects[obj.object_id]
        if obj.shape not in spec.shapes or not state.is_clear(obj.object_id) or obj_state.held_by is not None:
            continue  # something on it, or the gripping hand, could hide the detail asked about
        asks_label = "{label}" in spec.answer
        if asks_label and obj.object_id in scene.twins:
            continue  # a twin is named by its label, which would give the answer away
        fields = _object_fields(scene, obj.object_id)
        fields["patch"] = catalogue.shapes[obj.shape].patch
        candidates.append(_Candidate(pause, spec, (obj.object_id,), fields))
    return candidates


def _candidates(catalogue: Catalogue, scene: Scene, timeline: Timeline) -> list[_Candidate]:
    candidates = []
    for pause in timeline.pauses:
        action = timeline.actions[pause.after_action]
        for spec in catalogue.questions.values():
            if spec.when == "after_action":
                candidates += _after_action_candidates(catalogue, scene, pause, action, spec)
            else:
                candidates += _anytime_candidates(catalogue, scene, pause, action.after, spec)
    return candidates


def _select(rng: np.random.Generator, candidates: list[_Candidate], count: int) -> list[_Candidate]:
    """Up to `count` distinct questions, one per pause, covering as many kinds as possible first."""
    order = [candidates[int(i)] for i in rng.permutation(len(candidates))]
    chosen: list[_Candidate] = []
    used_pauses: set[int] = set()
    asked: set[tuple[str, tuple[str, ...]]] = set()
    for prefer_new_kind in (True, False):
        for candidate in order:
            if len(chosen) >= count:
                break
            kinds = {c.spec.kind for c in chosen}
            key = (candidate.spec.name, candidate.object_ids)
            if (candidate.pause.start_frame in used_pauses or key in asked
                    or (prefer_new_kind and candidate.spec.kind in kinds)):
                continue
            chosen.append(candidate)
            used_pauses.add(candidate.pause.start_frame)
            asked.add(key)
    return sorted(chosen, key=lambda c: c.pause.start_frame)


def question_frame(catalogue: Catalogue, pause: Pause, fps: int) -> int:
    """A question comes shortly after the narration that opens the pause, never after the pause."""
    delay = max(1, int(round(catalogue.episode.question_delay_s * fps)))
    return min(pause.start_frame + delay, pause.end_frame - 1)


def ask_questions(rng: np.random.Generator, catalogue: Catalogue, scene: Scene,
                  timeline: Timeline) -> list[Question]:
    low, high = catalogue.episode.questions
    count = int(rng.integers(int(low), int(high) + 1))
    questions = []
    for candidate in _select(rng, _candidates(catalogue, scene, timeline), count):
        spec = candidate.spec
        questions.append(Question(
            time=frame_time(question_frame(catalogue, candidate.pause, timeline.fps), timeline.fps),
            question=spec.template.format(**candidate.fields),
            answer=spec.answer.format(**candidate.fields),
            kind=spec.kind,
            type=spec.name,
            object_ids=candidate.object_ids,
        ))
    return questions
