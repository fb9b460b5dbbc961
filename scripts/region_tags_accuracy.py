"""How often the slow thinker's region tags are right at the detail questions (issue 15, CPU, seconds an episode).

    python scripts/region_tags_accuracy.py MODEL_DIR SYNTH_DIR [--episodes N] [--out FILE.json] [--candidates N]

Runs the engine over the validation episodes of a ``lionfs synth`` folder as the eval runs it (its settings,
the clip embedded once, the questions asked at their times) and records, at every answer, the keyframes and
regions the slow thinker's template got (``LocalSlowThinker.prompt``, the engine's own call). For each DETAIL
question (its asked object: the question's first object id) on the frame of each keyframe with regions, the
objects standing there (``data.synth_objects.standing_objects``, the boxes crop pretraining cuts around):

- ``a_region_holds_object``: some region holds the asked object (its centre in the region's box);
- ``b_holding_region_tagged_label``: some region holding it is tagged with its printed label
  (``b_given_a``: the same among the questions of a);
- ``b_holding_region_tagged_asked``: some region holding it is tagged right on what the question asks: its
  printed label, or for ``patch_colour`` questions (the colour of a bottle's cap, a jar's lid) its part's colour
  (a reader with a ``patch`` head, ``crop_pretraining.part_colour``; ``by_type``'s ``b_patch`` and the rows'
  ``tagged_patch_right``: that colour alone);
- ``c_reader``: over all regions of those answers, the reader's label / shape / colour (/ patch) / whole tag
  against the object the region holds (``object_in_region``: the largest whose centre is in the box; ``none``
  when it holds none; only a reader trained with ``none`` shapes can be right there on shape and colour), also
  split into regions on an object / on none, ``printed_label``: the label read on regions whose object has one,
  and ``part_colour``: the patch read on regions whose object has a part (a reader with a ``patch`` head);
- ``d_question_match`` (``keyframes.region_order: question_last``, whatever the model's own order): on the trigger
  keyframe, the region whose tag shares the most words with the question (``model.region_order.matched_index``):
  how often one is picked, holds the asked object, and is tagged right on what is asked (the copy it offers);
- ``e_candidates`` (``--candidates N``): the same on the trigger keyframe's first N proposals, each read by the
  reader (the engine proposes ``max_regions``): whether any holds the asked object, and the one the question's words
  pick (a question-guided choice of the region to lay out last).

Writes a JSON report (``--out``, with every question's regions) and prints one line.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace

import torch

from lionfs_ros.data.stream_examples import USER
from lionfs_ros.data.synth import load_episode
from lionfs_ros.data.synth_objects import DETAIL, object_in_region, standing_objects
from lionfs_ros.engine import StreamEngine
from lionfs_ros.eval import evaluate as ev
from lionfs_ros.eval.free_running import same_words
from lionfs_ros.model.crop_reader import ATTRIBUTES, NO_LABEL, parse_region_tag
from lionfs_ros.model.image_processing import LETTERBOX
from lionfs_ros.model.region_order import matched_index
from lionfs_ros.model.template_regions import propose_regions, trigger_tags
from lionfs_ros.model.thinking_template import keyframe_pixels
from lionfs_ros.model_loading import load_for_inference

PATCH_QUESTION = "patch_colour"  # the catalogue's detail question about the colour of an object's part
ASKED = {PATCH_QUESTION: "patch"}  # the attribute each detail question type asks (default: the printed label)


def run_recording(model, config, example, frames, embeds, candidates: int = 0):
    """The clip through the engine (as ``eval.free_running.run_clip``); per question turn index (its
    ``query_id``): ``(answer text, keyframe times, regions per keyframe, candidates)`` as the slow thinker got them;
    ``candidates`` > 0: also the trigger keyframe's first ``candidates`` proposals with their tags (the same
    proposer and reader at a larger ``max_regions``; what a question-guided choice among them could pick)."""
    engine = StreamEngine(model, config)
    thinker, seen, finals = engine.slow_thinker, {}, {}
    prompt, kf = thinker.prompt, thinker.cfg.keyframes

    def recording(request):
        inputs = prompt(request)
        more = []
        if candidates:  # the engine's own helpers, as a question_candidates model runs them
            frames = [rgb for rgb, _ in request.keyframes]
            grids = model.patch_grid(keyframe_pixels(model, frames))
            wide = propose_regions(thinker.proposer, frames, grids, kf, candidates)[-1]
            more = [replace(r, tag=tag.strip()) for r, tag in zip(wide, trigger_tags(model, frames, wide, kf))]
        seen[request.turn_index] = ([t for _, t in request.keyframes], inputs.regions, more)
        return inputs

    thinker.prompt = recording
    engine.on_response = lambda u: finals.__setitem__(u.turn_index, u) if u.is_final else None
    for i, turn in enumerate(example.turns):
        if turn.role == USER:
            engine.ask(turn.text, turn.time, query_id=str(i))
    for i in range(example.num_frames):
        engine.process_frame(frames.general[i], i / example.frame_fps, meta=i, embeds=embeds[i])
    engine.flush()
    return {int(u.query_id): (u.text, *seen[k]) for k, u in finals.items()
            if u.query_id is not None and not u.cancelled and u.error is None and k in seen}


def truth_of(obj) -> dict[str, str]:
    return {name: getattr(obj, name) if obj else NO_LABEL for name in ATTRIBUTES}


def score_episode(model, example, answers, tally: dict, rows: list) -> None:
    source = example.source
    episode = load_episode(source.root, source.episode_id, frames=False)
    objects = standing_objects(source.root, episode, source.native_frames())  # per LLM frame
    classes, names = model.crop_reader.classes, model.crop_reader.attributes
    for index, turn in enumerate(example.turns):
        if turn.role != USER or turn.kind != DETAIL:
            continue
        question = next(q for q in episode.questions if q.question == turn.text and abs(q.time - turn.time) < 1e-6)
        tally["detail_questions"] += 1
        if index not in answers:
            tally["unanswered"] += 1
            continue
        text, times, regions, candidates = answers[index]
        asked_id, asked_name = question.object_ids[0], ASKED.get(question.type, "label")
        holds, tagged, tagged_asked, tagged_patch, out_regions, standing = False, False, False, False, [], False
        for t, frame_regions in zip(times, regions):
            frame = round(t * example.frame_fps)
            here = objects[frame]
            asked = next((o for o in here if o.object_id == asked_id), None)
            standing |= bool(frame_regions) and asked is not None
            for r in frame_regions:
                box = (r.x0, r.y0, r.x1, r.y1)
                read, held = parse_region_tag(r.tag, classes), object_in_region(here, box)
                truth = truth_of(held)
                right = {name: read[name] == truth[name] for name in names}
                right["tag"] = all(right.values())
                for name in right:
                    tally[("c_object" if held else "c_none", name)] += right[name]
                tally["c_object_regions" if held else "c_none_regions"] += 1
                if held and held.label != NO_LABEL:
                    tally["c_printed_regions"] += 1
                    tally["c_printed_right"] += right["label"]
                if held and held.patch != NO_LABEL and "patch" in right:
                    tally["c_part_regions"] += 1
                    tally["c_part_right"] += right["patch"]
                holds_asked = asked is not None and asked.centre_in(box)
                holds |= holds_asked
                tagged |= holds_asked and read["label"] == asked.label
                tagged_patch |= holds_asked and asked.patch != NO_LABEL and read["patch"] == asked.patch
                tagged_asked |= holds_asked and read[asked_name] == getattr(asked, asked_name)
                out_regions.append({"frame": frame, "box": [round(float(v), 3) for v in box], "tag": r.tag,
                                    "holds": held.object_id if held else None, "truth": truth,
                                    "holds_asked": bool(holds_asked)})
        tally["answered"] += 1
        tally["asked_standing"] += standing
        if regions and regions[-1]:  # the trigger keyframe: the region the question's words pick
            frame = round(times[-1] * example.frame_fps)
            asked = next((o for o in objects[frame] if o.object_id == asked_id), None)
            pick = matched_index(turn.text, [r.tag for r in regions[-1]])
            picked = None if pick is None else regions[-1][pick]
            box = None if picked is None else (picked.x0, picked.y0, picked.x1, picked.y1)
            holds_picked = box is not None and asked is not None and asked.centre_in(box)
            tally["d_picked"] += picked is not None
            tally["d_holds"] += holds_picked
            tally["d_tagged_asked"] += holds_picked and parse_region_tag(picked.tag, classes)[asked_name] == getattr(
                asked, asked_name)
            tally["d_trigger_holds"] += any(asked is not None and asked.centre_in((r.x0, r.y0, r.x1, r.y1))
                                            for r in regions[-1])
        if candidates:  # the trigger keyframe's wider proposals, the question's words picking one of them
            frame = round(times[-1] * example.frame_fps)
            asked = next((o for o in objects[frame] if o.object_id == asked_id), None)
            boxes = [(r.x0, r.y0, r.x1, r.y1) for r in candidates]
            pick = matched_index(turn.text, [r.tag for r in candidates])
            holds_picked = pick is not None and asked is not None and asked.centre_in(boxes[pick])
            tally["e_any_holds"] += any(asked is not None and asked.centre_in(box) for box in boxes)
            tally["e_picked"] += pick is not None
            tally["e_holds"] += holds_picked
            tally["e_tagged_asked"] += holds_picked and parse_region_tag(candidates[pick].tag, classes)[
                asked_name] == getattr(asked, asked_name)
        tally["a"] += holds
        tally["b"] += tagged
        tally["b_asked"] += tagged_asked
        right = same_words(text, question.answer)
        tally["answer_right"] += right
        copyable = tagged_patch if question.type == PATCH_QUESTION else tagged  # the answer is in a holding region's tag
        tally[("copy_tagged", question.type == PATCH_QUESTION)] += int(copyable)
        tally[("copy_right", question.type == PATCH_QUESTION)] += int(copyable and bool(right))
        tally[("type", question.type)] += 1
        tally[("type_a", question.type)] += holds
        tally[("type_b", question.type)] += tagged
        tally[("type_b_patch", question.type)] += tagged_patch
        row = {"example": example.example_id, "time": turn.time, "type": question.type, "question": turn.text,
               "answer": text, "truth": question.answer, "asked": asked_id, "regions_hold_asked": bool(holds),
               "tagged_right": bool(tagged)}
        if question.type == PATCH_QUESTION:
            row["tagged_patch_right"] = bool(tagged_patch)
        rows.append({**row, "regions": out_regions})


def by_type(tally: dict, frac) -> dict:
    out = {}
    for t in sorted({k[1] for k in tally if isinstance(k, tuple) and k[0] == "type"}):
        n = tally[("type", t)]
        out[t] = {"questions": n, "a": frac(tally[("type_a", t)], n), "b": frac(tally[("type_b", t)], n)}
        if t == PATCH_QUESTION:
            out[t]["b_patch"] = frac(tally[("type_b_patch", t)], n)
    return out


def report(tally: dict, model_dir: str, data: str, episodes: int, names: tuple[str, ...], candidates: int = 0) -> dict:
    """The tallies as fractions; ``names``: the reader's attributes."""
    def frac(a, b):
        return round(a / b, 4) if b else None

    n, fields = tally["answered"], (*names, "tag")
    objects, nones = tally["c_object_regions"], tally["c_none_regions"]
    reader = {"regions": objects + nones, "regions_holding_no_object": nones,
              "on_objects": {name: frac(tally[("c_object", name)], objects) for name in fields},
              "on_no_object": {name: frac(tally[("c_none", name)], nones) for name in fields},
              "printed_label_regions": tally["c_printed_regions"],
              "printed_label": frac(tally["c_printed_right"], tally["c_printed_regions"]),
              "all": {name: frac(tally[("c_object", name)] + tally[("c_none", name)], objects + nones) for name in fields}}
    if "patch" in names:
        reader.update(part_colour_regions=tally["c_part_regions"],
                      part_colour=frac(tally["c_part_right"], tally["c_part_regions"]))
    return {
        "model": model_dir, "data": data, "episodes": episodes, "detail_questions": tally["detail_questions"],
        "answered": n, "asked_object_standing_on_region_frame": tally["asked_standing"],
        "a_region_holds_object": frac(tally["a"], n), "b_holding_region_tagged_label": frac(tally["b"], n),
        "b_given_a": frac(tally["b"], tally["a"]), "b_holding_region_tagged_asked": frac(tally["b_asked"], n),
        "detail_answers_right": frac(tally["answer_right"], n), "by_type": by_type(tally, frac), "c_reader": reader,
        "copy": {kind: {"tagged_right": tally[("copy_tagged", patch)], "answered_right": tally[("copy_right", patch)]}
                 for kind, patch in (("label", False), ("patch_colour", True))},
        "d_question_match": {"trigger_region_holds_asked": frac(tally["d_trigger_holds"], n),
                             "picked": frac(tally["d_picked"], n), "picked_holds_asked": frac(tally["d_holds"], n),
                             "picked_tagged_asked": frac(tally["d_tagged_asked"], n)},
        "e_candidates": {"candidates": candidates, "trigger_any_holds_asked": frac(tally["e_any_holds"], n),
                         "picked": frac(tally["e_picked"], n), "picked_holds_asked": frac(tally["e_holds"], n),
                         "picked_tagged_asked": frac(tally["e_tagged_asked"], n)} if candidates else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", help="a `lionfs synth` folder (validation split)")
    parser.add_argument("--episodes", type=int, default=None, help="the first N episodes (default: all)")
    parser.add_argument("--out", default=None, help="JSON report (default: stdout only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=0,
                        help="also propose this many regions on the trigger keyframe and let the question pick one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _, _ = load_for_inference(args.model, "cpu", "float32")
    if model.crop_reader is None or not model.config.thinking.keyframes.region_tags:
        raise SystemExit(f"{args.model}: no crop reader writing region tags (crop.reader_classes, keyframes.region_tags)")
    config, _ = ev.engine_config_for(model, ev.EvalOptions())
    recipe = ev.FrameRecipe.for_model(model)
    if recipe.general.resize_mode == LETTERBOX:
        raise SystemExit("a letterboxed general tower moves the regions off the frame's coordinates: not handled")
    examples = ev.load_eval_examples(args.data, model.config.stream.frame_fps, limit=args.episodes)
    tally, rows = Counter(), []
    for example in examples:
        frames = ev.load_frames(example, recipe)
        embeds = ev.embed_example(model, example, recipe, frames)
        score_episode(model, example, run_recording(model, config, example, frames, embeds, args.candidates), tally,
                      rows)
    out = report(tally, args.model, args.data, len(examples), model.crop_reader.attributes, args.candidates)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**out, "questions": rows}, f, indent=1)
    c = out["c_reader"]
    print(f"region tags: {out['answered']} detail answers, a (a region holds the asked object) "
          f"{out['a_region_holds_object']}, b (tagged with its label) {out['b_holding_region_tagged_label']} "
          f"(b|a {out['b_given_a']}), tagged with what is asked {out['b_holding_region_tagged_asked']} "
          f"(patch colours {out['by_type'].get(PATCH_QUESTION, {}).get('b_patch')}); c reader over {c['regions']} regions ({c['regions_holding_no_object']} hold "
          f"none): label {c['all']['label']} shape {c['all']['shape']} colour {c['all']['colour']} tag {c['all']['tag']}"
          f", on objects label {c['on_objects']['label']} tag {c['on_objects']['tag']}, printed label "
          f"{c['printed_label']} ({c['printed_label_regions']}), part colour {c.get('part_colour')} "
          f"({c.get('part_colour_regions')}); detail answers right "
          f"{out['detail_answers_right']}; copied (tagged right -> answered right) {json.dumps(out['copy'])}; "
          f"question match on the trigger keyframe {json.dumps(out['d_question_match'])}; among wider proposals "
          f"{json.dumps(out['e_candidates'])}", flush=True)


if __name__ == "__main__":
    main()
