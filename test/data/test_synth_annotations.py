"""Narrations and questions agree with the planned world, checked against the world state."""
from __future__ import annotations

from collections import Counter

import pytest

from lionfs_ros.data.synth import GeneratorConfig
from lionfs_ros.data.synth.annotate import ask_questions, narrate
from lionfs_ros.data.synth.generate import STREAM_QUESTIONS, episode_rngs, plan_episode

SEEDS = range(12)


def _annotated(catalogue, seed):
    """Plan only (no pixels) with the catalogue's full episode length."""
    config = GeneratorConfig(seed=seed, catalogue=catalogue)
    plan = plan_episode(config, 0)
    narrations = narrate(catalogue, plan.scene, plan.timeline)
    questions = ask_questions(episode_rngs(config, 0)[STREAM_QUESTIONS], catalogue, plan.scene, plan.timeline)
    return plan, narrations, questions


@pytest.fixture(scope="module")
def annotated(catalogue):
    return [_annotated(catalogue, seed) for seed in SEEDS]


def _check_effect(verb, choice, before, after):
    obj = after.objects[choice.object_id]
    if verb == "pick_up":
        assert obj.held_by == choice.hand and after.holding[choice.hand] == choice.object_id
    elif verb in ("put_on", "stack"):
        assert obj.on == choice.target_id and obj.held_by is None
        assert (obj.x, obj.y) == (after.objects[choice.target_id].x, after.objects[choice.target_id].y)
    elif verb == "put_down":
        assert obj.held_by is None and obj.on is None and after.holding[choice.hand] is None
    elif verb == "slide":
        moved = obj.x - before.objects[choice.object_id].x
        assert (moved < 0) == (choice.direction == "left")
    elif verb == "open":
        assert obj.is_open and not before.objects[choice.object_id].is_open
    elif verb == "pour":
        assert after.objects[choice.target_id].fill is not None
        assert before.objects[choice.target_id].fill is None
    else:
        assert after == before


def test_every_narration_matches_the_action_completing_then(annotated, catalogue):
    for plan, narrations, _ in annotated:
        actions = plan.timeline.actions
        assert len(narrations) == len(actions) > 0
        assert [n.time for n in narrations] == sorted(n.time for n in narrations)
        for narration, action in zip(narrations, actions, strict=True):
            choice = action.choice
            assert narration.action_index == action.index
            assert narration.time == action.end_frame / plan.timeline.fps
            for object_id in filter(None, (choice.object_id, choice.target_id)):
                obj = plan.scene.get(object_id)
                assert obj.colour in narration.text and obj.shape in narration.text
                if object_id in plan.scene.twins:
                    assert obj.label in narration.text
            expected_kind = ("quick" if action.quick else
                             "detail" if {choice.object_id, choice.target_id} & plan.scene.twins else "normal")
            assert narration.kind == expected_kind
            assert action.quick == catalogue.actions[choice.verb].quick
            _check_effect(choice.verb, choice, action.before, action.after)


def _last_completed(timeline, frame):
    done = [a for a in timeline.actions if a.end_frame <= frame]
    return done[-1] if done else None


def test_questions_answers_match_scene_state(annotated):
    for plan, _, questions in annotated:
        timeline, scene = plan.timeline, plan.scene
        for question in questions:
            frame = round(question.time * timeline.fps)
            assert timeline.active_action(frame) is None
            assert not any(s.start_frame <= frame < s.end_frame for s in timeline.static_segments)
            state = timeline.state_at(frame)
            last = _last_completed(timeline, frame)
            obj = scene.get(question.object_ids[0])
            if question.type == "held_colour":
                assert last.choice.verb == "pick_up" and last.choice.object_id == obj.object_id
                assert state.objects[obj.object_id].held_by is not None
                assert question.answer == obj.colour and obj.shape in question.question
            elif question.type == "on_top":
                target = last.choice.target_id
                assert state.objects[obj.object_id].on == target
                assert obj.name in question.answer and scene.get(target).name in question.question
            elif question.type == "last_quick":
                assert last.quick and last.choice.object_id == obj.object_id and obj.name in question.answer
            elif question.type in ("label", "block_letter"):
                assert question.answer == obj.label and obj.label not in question.question
                assert state.objects[obj.object_id].held_by is None
            elif question.type == "patch_colour":
                assert question.answer == obj.patch_colour
            else:
                pytest.fail(f"untested question type {question.type}")


def test_all_mechanisms_are_covered(annotated):
    narration_kinds = Counter(n.kind for _, narrations, _ in annotated for n in narrations)
    question_kinds = Counter(q.kind for _, _, questions in annotated for q in questions)
    assert set(narration_kinds) == {"normal", "quick", "detail"}
    assert set(question_kinds) == {"normal", "quick", "detail"}
    assert all(plan.timeline.static_segments for plan, _, _ in annotated)


def test_static_segments_are_silent(annotated):
    for plan, narrations, questions in annotated:
        for segment in plan.timeline.static_segments:
            start, end = segment.start_frame / plan.timeline.fps, segment.end_frame / plan.timeline.fps
            assert not any(start <= n.time < end for n in narrations)
            assert not any(start <= q.time < end for q in questions)
            assert not any(a.start_frame < segment.end_frame and a.end_frame > segment.start_frame
                           for a in plan.timeline.actions)
