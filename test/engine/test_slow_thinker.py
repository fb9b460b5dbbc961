"""The thinking template (layout, token accounting, purity), keyframe choice and the local slow thinker."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import KeyframeConfig, LocalSlowThinker, Region, SlowThinkRequest
from lionfs_ros.engine.context import StreamContext
from lionfs_ros.engine.keyframes import HistoryFrame, select_keyframes
from lionfs_ros.engine.lm_state import DynamicLMState
from lionfs_ros.model.regions import pool_box
from lionfs_ros.model.thinking_template import ThinkingTemplate, build_thinking_inputs

KF = KeyframeConfig(num_keyframes=2, grid_sizes=(2, 4, 8), max_regions=2, box_grid=1)  # 8 > the 4x4 grid: clipped
REGIONS = [[Region(0.0, 0.0, 0.5, 0.5, "motion", 0.9)], [Region(0.25, 0.5, 1.0, 1.0, "salient", 0.8),
                                                          Region(0.0, 0.0, 0.25, 0.25, "salient", 0.5)]]


def test_template_layout_and_accounting(fused_model):
    model, fmt, tpl = fused_model, fused_model.formatter, ThinkingTemplate()
    keyframes = list(stream_frames(2, seed=1))
    with torch.no_grad():
        inputs = build_thinking_inputs(model, keyframes, after_stream=True, config=KF, regions=REGIONS)
    v = [fmt.ids.placeholder]
    expected = fmt.text_ids(fmt.cfg.stream_close + tpl.open)
    for regions in REGIONS:
        expected += fmt.text_ids(tpl.keyframe_open) + v * 4 + v * 16
        expected += fmt.text_ids(tpl.regions_open) + v * len(regions) + fmt.text_ids(tpl.keyframe_close)
    expected += fmt.assistant_header_ids(after_stream=False)
    assert inputs.input_ids.tolist() == expected
    acc = inputs.accounting
    assert (acc.grid, acc.box, acc.frame) == (2 * (4 + 16), 3, 0)
    assert acc.total == len(expected) and acc.text == len(expected) - acc.grid - acc.box
    assert inputs.embeds.shape == (acc.grid + acc.box, model.hidden_size)
    assert not inputs.visual_mask.any()  # keyframe tokens are never dropped
    assert sum(n for _, n in inputs.pieces) == len(expected)

    with torch.no_grad():  # the values: pooled patch features through the general connector
        grid = model.patch_grid(model.preprocess(keyframes[1]))[0]  # [4, 4, C]
        coarse = F.adaptive_avg_pool2d(grid.permute(2, 0, 1), (2, 2)).flatten(1).T
        box = grid[2:4, 1:4].reshape(-1, grid.shape[-1]).mean(0, keepdim=True)
    second = inputs.embeds[20 + 1:]  # after keyframe 1's 20 grid tokens and 1 box token
    torch.testing.assert_close(second[:4], model.project_general(coarse))
    torch.testing.assert_close(second[20:21], model.project_general(box))
    torch.testing.assert_close(pool_box(grid, REGIONS[1][0], 1), box)


def test_template_is_pure_and_follows_the_context_end(fused_model):
    keyframes = list(stream_frames(2, seed=1))
    with torch.no_grad():
        a = build_thinking_inputs(fused_model, keyframes, after_stream=True, config=KF)
        b = build_thinking_inputs(fused_model, keyframes, after_stream=True, config=KF)
        c = build_thinking_inputs(fused_model, keyframes, after_stream=False, config=KF)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.embeds, b.embeds) and a.regions == b.regions
    close = len(fused_model.formatter.text_ids(fused_model.formatter.cfg.stream_close + ThinkingTemplate().open))
    assert c.input_ids.numel() < a.input_ids.numel() and a.input_ids.numel() - c.input_ids.numel() == close - len(
        fused_model.formatter.text_ids(ThinkingTemplate().open))


def test_portable_prompt_holds_dialogue_keyframe_stream_and_question(fused_model):
    model, fmt = fused_model, fused_model.formatter
    keyframes = list(stream_frames(2, seed=1))
    context = [("system", "Be brief."), ("user", "hi"), ("assistant", "hello")]
    with torch.no_grad():
        inputs = build_thinking_inputs(model, keyframes, context=context, query="where?", config=KF, regions=REGIONS)
    ids = inputs.input_ids.tolist()
    n = model.tokens_per_frame
    prefix = fmt.system_ids("Be brief.") + fmt.user_ids("hi", after_stream=False)
    prefix += fmt.assistant_header_ids(after_stream=False) + fmt.assistant_body_ids("hello") + fmt.stream_open_ids()
    prefix += fmt.frame_ids(after_frame=False) + fmt.frame_ids(after_frame=True) + fmt.user_ids("where?", after_stream=True)
    assert ids[:len(prefix)] == prefix
    assert int(inputs.visual_mask.sum()) == inputs.accounting.frame == 2 * n  # keyframes as ordinary frames
    assert inputs.embeds.shape[0] == 2 * n + inputs.accounting.grid + inputs.accounting.box
    assert ids.count(fmt.ids.placeholder) == inputs.embeds.shape[0]


def test_keyframes_are_the_trigger_plus_the_most_novel_recent_frames():
    d = 8
    base = torch.zeros(d)
    base[0] = 1.0

    def frame(t, direction):
        f = base.clone()
        f[direction] += 1.0
        return HistoryFrame(np.zeros((2, 2, 3), np.uint8), t, f)

    history = [frame(0.0, 1), frame(0.5, 2), frame(1.0, 0), frame(1.5, 0), frame(2.0, 0)]  # last: the trigger
    picked = select_keyframes(history, KeyframeConfig(num_keyframes=3, history_frames=5, min_novelty=0.05))
    assert [h.time for h in picked] == [0.0, 0.5, 2.0]  # the two different frames, oldest first; trigger kept
    same = [frame(t, 0) for t in (0.0, 0.5, 1.0)]
    picked = select_keyframes(same, KeyframeConfig(num_keyframes=3, history_frames=3, min_novelty=0.05))
    assert [h.time for h in picked] == [1.0]  # near-duplicates add nothing


def _fork(model, frames):
    context = StreamContext(model, DynamicLMState(model), budget=900, chunk=100, keep_recent_frames=4, reindex=True,
                            max_query_tokens=16)
    with torch.no_grad():
        for k, rgb in enumerate(frames):
            general = model.vision.frame_tokens(model.preprocess(rgb))
            ego = model.ego.frame_tokens(model.preprocess(np.stack([rgb, rgb]), "ego"))
            context.feed_frame(model.embed_frames(general, ego)[0], k * 0.5)
    return context


def test_local_slow_thinker_on_a_fork_and_from_portable_fields(fused_model):
    model = fused_model
    frames = stream_frames(3, seed=2)
    context = _fork(model, frames)
    before = context.state.next_position
    thinker = LocalSlowThinker(model, engine_config(max_new_tokens=5, stop_on_eos=False, keyframes=KF))
    keyframes = [(frames[1], 0.5), (frames[2], 1.0)]
    seen = []
    fork = context.fork()
    result = thinker.generate(SlowThinkRequest(keyframes, context.portable_dialogue(4), max_new_tokens=5, fork=fork),
                              lambda text, count: seen.append((text, count)))
    assert result.num_tokens == 5 and result.truncated and [c for _, c in seen] == [1, 2, 3, 4, 5]
    assert seen[-1][0] == result.text and result.accounting.total == result.prompt_tokens
    assert fork.state.next_position == before + result.prompt_tokens + result.num_tokens - 1
    assert context.state.next_position == before  # the main context is untouched
    assert len(result.regions) <= 2 * KF.max_regions and result.time_to_first_token > 0

    portable = thinker.generate(SlowThinkRequest(keyframes, context.portable_dialogue(4), max_new_tokens=5),
                                lambda *_: None)
    assert portable.num_tokens == 5 and portable.prompt_tokens > result.prompt_tokens  # re-encodes the keyframes
    assert portable.accounting.frame == 2 * model.tokens_per_frame


def test_generation_stops_at_eos_and_on_cancel(fused_model):
    model = fused_model
    frames = stream_frames(2, seed=2)
    thinker = LocalSlowThinker(model, engine_config(max_new_tokens=8, keyframes=KF))
    request = SlowThinkRequest([(frames[1], 0.5)], [("system", "")], max_new_tokens=8)
    cancel_after = 2

    def cancel(text, count):
        if count == cancel_after:
            request.cancel.set()

    result = thinker.generate(request, cancel)
    assert result.cancelled and result.num_tokens == cancel_after and not result.truncated

    head = model.llm.get_output_embeddings().weight
    saved = head[model.token_ids.eos].clone()
    try:
        with torch.no_grad():
            head[model.token_ids.eos] = 2.0 * head[model.token_ids.interval]  # outbids the (calibrated) interval token
        result = thinker.generate(SlowThinkRequest([(frames[1], 0.5)], [("system", "")], max_new_tokens=8), lambda *_: None)
    finally:
        with torch.no_grad():
            head[model.token_ids.eos] = saved
    assert not result.truncated and result.num_tokens < 8 and model.token_ids.eos not in result.token_ids


@pytest.mark.parametrize("grid_sizes", [(2, 4, 8), (4, 4)])
def test_grid_sizes_are_clipped_to_the_patch_grid(fused_model, grid_sizes):
    with torch.no_grad():
        inputs = build_thinking_inputs(fused_model, list(stream_frames(1, seed=4)),
                                       config=KeyframeConfig(grid_sizes=grid_sizes, max_regions=0))
    assert inputs.accounting.grid == (4 + 16 if 2 in grid_sizes else 16)


def test_slow_path_auto_follows_how_the_model_was_trained(fused_model):
    """A model never trained with the template answers without it; 'on' forces it; 'answers' thinks for questions only."""
    model = fused_model
    frames = stream_frames(3, seed=4)
    keyframes = [(frames[1], 0.5), (frames[2], 1.0)]

    def generate(slow_path: str, query: str | None = None):
        context = _fork(model, frames)
        thinker = LocalSlowThinker(model, engine_config(slow_path=slow_path, max_new_tokens=2, stop_on_eos=False))
        fork = context.fork()
        before = fork.state.next_position
        result = thinker.generate(SlowThinkRequest(keyframes, [], query=query, max_new_tokens=2, fork=fork),
                                  lambda *_: None)
        return result, fork.state.next_position - before - (result.num_tokens - 1)

    assert model.config.thinking.mode == "none"
    plain, fed = generate("auto")
    header = model.formatter.assistant_header_ids(after_stream=True)
    assert plain.prompt_tokens == fed == len(header) and plain.accounting.grid == 0 and plain.regions == []
    assert generate("off")[0].prompt_tokens == len(header)
    thought, fed = generate("on")
    assert thought.accounting.grid > 0 and fed == thought.prompt_tokens > len(header)

    trained = model.config.thinking.mode
    try:
        model.config.thinking.mode = "answers"
        assert generate("auto")[0].accounting.grid == 0
        assert generate("auto", query="what did I tap?")[0].accounting.grid > 0
        model.config.thinking.mode = "all"
        assert generate("auto")[0].accounting.grid > 0
    finally:
        model.config.thinking.mode = trained


def test_portable_prompt_without_thinking_ends_in_the_plain_header(fused_model):
    model = fused_model
    frames = stream_frames(2, seed=5)
    inputs = build_thinking_inputs(model, list(frames), context=[("system", "hi")], query="what?", think=False)
    header = model.formatter.assistant_header_ids(after_stream=False)
    assert inputs.input_ids[-len(header):].tolist() == header
    assert inputs.accounting.grid == inputs.accounting.box == 0
    assert inputs.accounting.frame == 2 * model.tokens_per_frame == inputs.embeds.shape[0]


def test_slow_path_setting_is_checked():
    from lionfs_ros.engine import EngineConfigError

    with pytest.raises(EngineConfigError, match="slow_path"):
        engine_config(slow_path="maybe").validate()


def test_engine_reads_the_models_thinking_settings_unless_overridden(fused_model):
    from lionfs_ros.engine import EngineConfig, RegionConfig

    resolved = EngineConfig().for_model(fused_model)
    assert resolved.keyframes == fused_model.config.thinking.keyframes
    assert resolved.regions == fused_model.config.thinking.regions
    assert LocalSlowThinker(fused_model).proposer.cfg == fused_model.config.thinking.regions
    override = EngineConfig(regions=RegionConfig(min_score=0.45))
    assert override.thinking_overrides(fused_model) == {"regions": {"min_score": (0.2, 0.45)}}
    assert LocalSlowThinker(fused_model, override).proposer.cfg.min_score == 0.45


def test_default_kv_budget_is_fitted_to_the_models_positions(fused_model):
    """kv_budget_tokens left open: the largest budget whose worst case (a feed over it, the slow
    thinker's template on a fork, an answer) stays within the backbone's positions, at most 4096."""
    from dataclasses import replace

    from lionfs_ros.engine import EngineConfig, EngineConfigError, StreamEngine
    from lionfs_ros.engine.bounds import token_bounds
    from lionfs_ros.engine.config import DEFAULT_KV_BUDGET, check_against_model

    positions = fused_model.llm.config.max_position_embeddings
    cfg = EngineConfig(slow_path="on").for_model(fused_model)
    bounds = token_bounds(fused_model, cfg)
    assert cfg.kv_budget_tokens == min(DEFAULT_KV_BUDGET, positions - bounds.largest_feed - bounds.thinking
                                       - cfg.max_new_tokens)
    assert StreamEngine(fused_model, EngineConfig(slow_path="on")).cfg.kv_budget_tokens == cfg.kv_budget_tokens
    with pytest.raises(EngineConfigError, match="positions could reach"):  # one more token is refused
        check_against_model(replace(cfg, kv_budget_tokens=cfg.kv_budget_tokens + 1), bounds, positions)
    assert EngineConfig(kv_budget_tokens=700).for_model(fused_model).kv_budget_tokens == 700  # a set budget stays


@pytest.mark.parametrize("slow_path", ["on", "off"])
def test_responses_carry_the_keyframe_regions_when_the_slow_path_ran(fused_model, slow_path):
    """What GuidanceEvent.regions and the replay report get: the final update of an answer written with
    the template holds its keyframes' regions (normalized boxes, what each is); without it, none."""
    from lionfs_ros.engine import StreamEngine
    from lionfs_ros.model.regions import MOTION, SALIENT

    engine = StreamEngine(fused_model, engine_config(threshold=1.0, slow_path=slow_path))
    finals = []
    engine.on_response = lambda update: finals.append(update) if update.is_final else None
    for i, rgb in enumerate(stream_frames(4, seed=3)):
        engine.process_frame(rgb, i / engine.cfg.general_fps)
    engine.flush()
    assert finals
    for update in finals:
        if slow_path == "off":
            assert update.regions == []
            continue
        assert 0 < len(update.regions) <= engine.cfg.keyframes.num_keyframes * engine.cfg.keyframes.max_regions
        for x0, y0, x1, y1, label, score in update.regions:
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0 and label in (MOTION, SALIENT) and score > 0


def test_a_question_restated_after_the_template_fits_the_fitted_kv_budget(fused_model, monkeypatch):
    """``thinking.question: after``: the slow thinker restates the question between the keyframes and the header,
    on a fork and in a portable prompt; the thinking bound counts it (a longest question included), and the
    engine builds at the budget fitted with it, while one more token is refused."""
    from dataclasses import replace

    from lionfs_ros.engine import EngineConfigError, StreamEngine
    from lionfs_ros.engine.bounds import token_bounds
    from lionfs_ros.engine.config import check_against_model
    from lionfs_ros.engine.context import ContextFork
    from lionfs_ros.model.configuration_lionfs import ThinkingConfig

    fmt, positions = fused_model.formatter, fused_model.llm.config.max_position_embeddings
    cfg = engine_config(slow_path="auto", kv_budget_tokens=None, keyframes=None)
    monkeypatch.setattr(fused_model.config, "thinking", ThinkingConfig("answers", KF, question="before"))
    before = token_bounds(fused_model, cfg.for_model(fused_model))
    monkeypatch.setattr(fused_model.config, "thinking", ThinkingConfig("answers", KF, question="after"))
    resolved = cfg.for_model(fused_model)
    bounds = token_bounds(fused_model, resolved)
    assert bounds.thinking == before.thinking + len(fmt.user_ids("", after_stream=False)) + cfg.max_query_tokens
    assert resolved.kv_budget_tokens == positions - bounds.largest_feed - bounds.thinking - resolved.max_new_tokens
    engine = StreamEngine(fused_model, cfg)  # builds: the position check passes at the fitted budget
    assert engine.cfg.kv_budget_tokens == resolved.kv_budget_tokens
    with pytest.raises(EngineConfigError, match="positions could reach"):
        check_against_model(replace(resolved, kv_budget_tokens=resolved.kv_budget_tokens + 1), bounds, positions)

    question = engine.context.cut_query("What is written on the label of the small red bottle " * 4)
    thinker = LocalSlowThinker(fused_model, resolved)
    keyframes = [(rgb, 0.0) for rgb in stream_frames(2, seed=1)]
    with torch.no_grad():
        forked = thinker.prompt(SlowThinkRequest(keyframes=keyframes, context=[], query=question,
                                                 fork=ContextFork(DynamicLMState(fused_model), after_stream=False)))
        portable = thinker.prompt(SlowThinkRequest(keyframes=keyframes, context=[("system", "s")], query=question))
        narration = thinker.prompt(SlowThinkRequest(keyframes=keyframes, context=[], query=None,
                                                    fork=ContextFork(DynamicLMState(fused_model), after_stream=True)))
    restated = fmt.user_ids(question, after_stream=False) + fmt.assistant_header_ids(after_stream=False)
    for inputs in (forked, portable):
        assert inputs.input_ids.tolist()[-len(restated):] == restated and ("question", len(restated) - len(
            fmt.assistant_header_ids(after_stream=False))) in inputs.pieces
    assert forked.input_ids.numel() <= bounds.thinking  # the longest question still within the bound
    assert [what for what, _ in narration.pieces] == ["assistant_header"]  # 'answers': a narration does not think
