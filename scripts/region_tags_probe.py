"""What the slow thinker's regions say when a question is answered (issue 15 diagnostic, CPU, seconds an episode).

    python scripts/region_tags_probe.py MODEL_DIR SYNTH_DIR val_000006,val_000001

Runs the engine (the eval's settings) over the listed episodes of a `lionfs synth` folder with their questions and
prints each answer, the truth and the regions (box, label: tag) the answer's template used.
"""
import sys, json, torch
from lionfs_ros.model_loading import load_for_inference
from lionfs_ros.eval.evaluate import load_eval_examples, embed_example, engine_config_for, EvalOptions, FrameRecipe
from lionfs_ros.eval import evaluate as ev
from lionfs_ros.engine import StreamEngine
model, _, _ = load_for_inference(sys.argv[1], "cpu", "float32")
cfg, _ = engine_config_for(model, EvalOptions())
recipe = FrameRecipe.for_model(model)
examples = load_eval_examples(sys.argv[2], model.config.stream.frame_fps)
want = sys.argv[3].split(",")
for example in examples:
    if example.example_id.split("/")[-1] not in want: continue
    frames = ev.load_frames(example, recipe)
    fe = embed_example(model, example, recipe, frames)
    engine = StreamEngine(model, cfg)
    finals = []
    engine.on_response = lambda u: finals.append(u) if u.is_final else None
    for i, turn in enumerate(example.turns):
        if turn.role == "user":
            engine.ask(turn.text, turn.time, query_id=str(i))
    for i in range(example.num_frames):
        engine.process_frame(frames.general[i], i / example.frame_fps, meta=i, embeds=fe[i])
    engine.flush()
    truth = {str(i): t.text for i, t in enumerate(example.turns)}
    for u in finals:
        if u.query:
            qi = int(u.query_id)
            ans = example.turns[qi + 1].text if qi + 1 < len(example.turns) else None
            print(example.example_id, u.query, "->", repr(u.text), "| truth", repr(ans))
            for r in u.regions:
                print("    ", [round(float(v), 2) for v in r[:4]], r[4])
