"""Typed configuration of the online engine (ROS-free). Every number the engine uses is named here.

Checks that need the model (positions, budget, grid sizes) live in ``check_against_model``: an
engine built with a config that could overflow the backbone's ``max_position_embeddings`` or a
budget too small to hold what it promises to keep fails at construction with the reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from lionfs_ros.model.configuration_lionfs import ConfigError, KeyframeConfig, RegionConfig  # noqa: F401

TRIGGER_POLICIES = ("skip", "queue", "replace")
POSITION_MODES = ("reindex", "grow")
BACKENDS = ("auto", "dynamic", "static")
SLOW_PATH_MODES = ("auto", "on", "off")
ATTENTION_KINDS = ("sdpa", "split", "triton")  # the static backend's attention (static_decoder.py)
WEIGHT_FORMATS = ("native", "fp8")  # the model's own dtype, or weight-only FP8 (engine/quantization.py)
LINEAR_KERNELS = ("auto", "torch")  # the bf16 products: the faster of cuBLAS and the few-rows kernel, or F.linear
CAMERA_SIDE_RANGE = (2, 8192)  # camera_size: each side, in pixels (2: the smallest frame letterbox can place)
DEFAULT_KV_BUDGET = 4096  # kv_budget_tokens None: this, or less where the model's positions need it
LOG = logging.getLogger(__name__)


class EngineConfigError(ValueError):
    """An engine setting is out of range or cannot work with this model."""


@dataclass
class EngineConfig:
    # Rates. The general encoder runs on a time grid of ``general_fps``; the egocentric one on a
    # grid of ``ego_fps`` (None: general_fps x the model's ego.frames_per_frame). A frame on
    # neither grid is skipped (counted), never queued.
    general_fps: float = 2.0
    ego_fps: float | None = None
    rate_tolerance: float = 0.1  # a frame this fraction of a period before a grid point counts as on it

    # The fast decision: respond when P(interval) < threshold or the interval is not the argmax.
    threshold: float | None = None  # None: the model's stream.interval_threshold

    # Overload: frames wait in a queue of this size; when full the oldest waiting frame is dropped.
    frame_queue_size: int = 2

    # The slow thinker.
    answers: bool = True  # False: decide only (evaluation, benchmarks): no response starts, questions wait
    trigger_policy: str = "skip"  # what a proactive trigger does while an answer is being written
    max_pending_triggers: int = 1  # 'queue': proactive triggers waiting (oldest dropped beyond)
    max_pending_questions: int = 8  # questions waiting (oldest dropped beyond)
    max_new_tokens: int | None = None  # None: the model's stream.max_new_tokens
    stop_on_eos: bool = True  # benchmarks turn this off to decode a fixed length
    max_query_tokens: int = 64  # a longer question is cut to this many tokens
    context_turns: int = 8  # dialogue turns a portable (remote) request carries
    partial_every_tokens: int = 1  # a partial ResponseUpdate every this many tokens
    # Whether the slow thinker puts the thinking template (keyframe grid and box tokens) before an
    # answer: 'auto' follows how the model was trained (config.json thinking.mode: none = never,
    # answers = before answers to questions, all = always); a template the model never saw makes it
    # write worse, not better. 'on' / 'off' force it.
    slow_path: str = "auto"
    # The thinking template's keyframe and region settings are the model's (config.json
    # thinking.keyframes / thinking.regions, what training used). Setting one here overrides the
    # model's explicitly: ``thinking_overrides`` names it and ``for_model`` logs it.
    keyframes: KeyframeConfig | None = None
    regions: RegionConfig | None = None

    # Bounded memory: KV entries (tokens) kept; eviction runs when the cache exceeds the budget
    # and frees down to budget - evict_chunk_tokens (fewer, larger compactions). None: fitted to the
    # model by ``for_model``: DEFAULT_KV_BUDGET, or the largest that fits its positions with the
    # slow thinker's template and an answer (a thinking model on a 4096-position backbone).
    kv_budget_tokens: int | None = None
    evict_chunk_tokens: int = 256
    keep_recent_frames: int = 16
    position_mode: str = "reindex"  # 'reindex': kept entries renumbered 0.. (keys re-rotated); 'grow'

    # Runtime.
    backend: str = "auto"  # 'dynamic' (any model, StreamKVCache), 'static' (CUDA graphs), 'auto'
    # static backend on CUDA: fuse the elementwise pieces with torch.compile (compiled once, when the engine is
    # built: ~20 s); where Triton is missing or compilation fails, the plain pieces run (compile_fallback says why)
    compile: bool = True
    # static backend: 'triton' (a decode-attention kernel masking from slot positions, kernels/decode_attention.py;
    # where CUDA + Triton cannot run it, 'split' runs and the decoder's attention_fallback says why), 'split'
    # (split-K over keys in plain torch, see static_decoder) or 'sdpa' (PyTorch's fused kernel with a mask). The
    # vision towers' graphs follow it: 'triton' runs their own kernel (kernels/tower_attention.py; where it cannot
    # run or fails, SDPA, the tower's attention_fallback says why), the others PyTorch's SDPA
    attention: str = "triton"
    # static backend: the decoder's projection weights as the model holds them ('native': bf16 on a GPU) or as
    # weight-only FP8 with per-output-channel scales ('fp8', quantized once when the engine is built; a CUDA GPU of
    # compute capability >= 8.9 with Triton: H100/H200, L4/L40). See engine/quantization.py.
    weights: str = "native"
    # with weights 'fp8': the output head as FP8 codes too (its weight is the largest single matrix: 1 GB of bf16 on a
    # Llama-3-8B, read at every step; the decision is read from its logits, so the bench checks the decisions against
    # the bf16 engine). False: the head stays in the model's dtype.
    fp8_head: bool = True
    # static backend: 'auto' runs each bf16 projection and the output head with whichever of cuBLAS and the engine's
    # few-rows Triton kernel was faster for its shape when the engine was built (timed there, ~seconds; a CUDA GPU of
    # compute capability >= 8.0 with Triton; elsewhere F.linear, the decoder's linear_fallback says why); 'torch':
    # F.linear (cuBLAS) always. See engine/quantization.py.
    linear_kernel: str = "auto"
    # static backend on a Hopper (or later) GPU with Triton: True launches the engine's own kernels (few-rows
    # products, decode attention, rotary + KV writes) with programmatic dependent launch, each overlapping the
    # previous kernel's tail (engine/kernels/dependent_launch.py; the same results). Off by default: on the H200 it
    # did not pay in the engine (llama3-8b, two runs, with / without: 7.24 / 7.05 ms and 195.8 / 201.3 tokens/s,
    # then 7.00 / 6.99 ms and 200.2 / 199.1; with the early launch of the next kernel, twelfth session: bf16 6.80 / 6.99
    # ms, FP8 5.66 / 5.50 ms, PDL first each time). A process-wide setting: the last engine built sets it for the kernels
    # it captures.
    dependent_launch: bool = False
    # static backend: where a projection runs in the few-rows kernel (linear_kernel 'auto' or weights 'fp8', a step of
    # at most 16 rows), the residual add after a sublayer runs inside the product, which also hands over the next
    # RMSNorm's statistics; where the next product runs the kernel's one-row path (a generated token) it applies that
    # norm as it loads its input. No add + norm kernel between the products of a token. The same arithmetic (the
    # statistics summed in another order). With weights 'fp8' the norms' weights go into the q/k/v and gate/up codes
    # and those products scale their output rows by the norm's statistics: a decided frame folds too (not HF's
    # rounding of the normalized rows; FP8 is approximate anyway). False: the add + norm kernel between the products.
    fold_norms: bool = True
    latency_window: int = 2048  # decisions kept for the latency percentiles
    # The camera's frame size, (width, height) in pixels, where it is known before the first frame (e.g. from
    # camera_info): the engine then makes everything it makes per frame size (the towers' device resize, compiled
    # and checked against the plain passes, and the CUDA graphs of the resize, the towers and the fusion) when it is
    # built, from a black frame of that size that nothing keeps; the first frame costs what later ones do. None:
    # made at the first frame of each size (~3 s on an H200 for lionfs-8b). A frame of another size still works.
    camera_size: tuple[int, int] | None = None
    system_prompt: str | None = None  # None: the model's stream.system_prompt

    def validate(self) -> "EngineConfig":
        if self.general_fps <= 0 or (self.ego_fps is not None and self.ego_fps <= 0):
            raise EngineConfigError("general_fps and ego_fps must be > 0")
        if not 0.0 <= self.rate_tolerance < 1.0:
            raise EngineConfigError(f"rate_tolerance must be in [0, 1), got {self.rate_tolerance}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise EngineConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.frame_queue_size < 1:
            raise EngineConfigError(f"frame_queue_size must be >= 1, got {self.frame_queue_size}")
        if self.slow_path not in SLOW_PATH_MODES:
            raise EngineConfigError(f"slow_path: {self.slow_path!r} is not one of {SLOW_PATH_MODES}")
        if self.trigger_policy not in TRIGGER_POLICIES:
            raise EngineConfigError(f"trigger_policy: {self.trigger_policy!r} is not one of {TRIGGER_POLICIES}")
        if self.max_pending_triggers < 1 or self.max_pending_questions < 1:
            raise EngineConfigError("max_pending_triggers and max_pending_questions must be >= 1")
        if (self.max_new_tokens is not None and self.max_new_tokens < 1) or self.max_query_tokens < 1 or self.partial_every_tokens < 1:
            raise EngineConfigError("max_new_tokens, max_query_tokens and partial_every_tokens must be >= 1")
        if self.position_mode not in POSITION_MODES:
            raise EngineConfigError(f"position_mode: {self.position_mode!r} is not one of {POSITION_MODES}")
        if self.attention not in ATTENTION_KINDS:
            raise EngineConfigError(f"attention: {self.attention!r} is not one of {ATTENTION_KINDS}")
        if self.weights not in WEIGHT_FORMATS:
            raise EngineConfigError(f"weights: {self.weights!r} is not one of {WEIGHT_FORMATS}")
        if self.linear_kernel not in LINEAR_KERNELS:
            raise EngineConfigError(f"linear_kernel: {self.linear_kernel!r} is not one of {LINEAR_KERNELS}")
        if self.weights == "fp8" and self.backend == "dynamic":
            raise EngineConfigError("weights='fp8' runs on the static backend only (backend 'auto' or 'static', on a GPU)")
        if self.backend not in BACKENDS:
            raise EngineConfigError(f"backend: {self.backend!r} is not one of {BACKENDS}")
        if not 0 < self.evict_chunk_tokens < (self.kv_budget_tokens or DEFAULT_KV_BUDGET):
            raise EngineConfigError("evict_chunk_tokens must be > 0 and < kv_budget_tokens")
        if self.keep_recent_frames < 1 or self.latency_window < 1 or self.context_turns < 0:
            raise EngineConfigError("keep_recent_frames and latency_window must be >= 1, context_turns >= 0")
        if self.camera_size is not None:
            self.camera_size = _camera_size(self.camera_size)
        try:
            for section in (self.keyframes, self.regions):
                if section is not None:
                    section.validate()
        except ConfigError as err:
            raise EngineConfigError(str(err)) from None
        return self

    def for_model(self, model) -> "EngineConfig":
        """The keyframe and region settings filled in from the model's config unless set here (then logged);
        ``max_new_tokens`` None: the model's ``stream.max_new_tokens``; ``kv_budget_tokens`` None: fitted."""
        cfg = self if self.max_new_tokens is not None else replace(self, max_new_tokens=model.config.stream.max_new_tokens)
        trained = model.config.thinking
        resolved = replace(cfg, keyframes=cfg.keyframes or trained.keyframes, regions=cfg.regions or trained.regions)
        overrides = resolved.thinking_overrides(model)
        if overrides:
            LOG.warning("engine settings override the model's thinking settings: %s", overrides)
        if resolved.kv_budget_tokens is None:
            resolved = replace(resolved, kv_budget_tokens=fitted_kv_budget(model, resolved))
        return resolved

    def thinking_overrides(self, model) -> dict[str, dict]:
        """The thinking settings set here that differ from the model's: ``{section: {key: (model, engine)}}``."""
        trained = model.config.thinking
        out: dict[str, dict] = {}
        for name in ("keyframes", "regions"):
            mine, theirs = getattr(self, name), getattr(trained, name)
            if mine is not None and mine != theirs:
                out[name] = {k: (getattr(theirs, k), v) for k, v in vars(mine).items() if getattr(theirs, k) != v}
        return out


def _camera_size(value) -> tuple[int, int]:
    """``camera_size`` checked: two integers (width, height), each in ``CAMERA_SIDE_RANGE``."""
    low, high = CAMERA_SIDE_RANGE
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value)
    if not ok:
        raise EngineConfigError(f"camera_size must be (width, height), two integers in [{low}, {high}], got {value!r}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class TokenBounds:
    """Upper bounds, in tokens, of everything the engine feeds (for the position and budget checks)."""

    system: int
    frame: int  # one decided frame, stream opener included
    query: int  # one user turn
    answer: int  # one committed assistant turn
    thinking: int  # the slow thinker's template on a fork

    @property
    def largest_feed(self) -> int:
        return max(self.frame, self.query, self.answer)


def fitted_kv_budget(model, cfg: EngineConfig) -> int:
    """DEFAULT_KV_BUDGET, or less where positions could pass the backbone's (``position_mode: reindex``):
    the budget + one feed + the slow thinker's template + an answer must stay within them."""
    from .bounds import token_bounds  # bounds reads this module's types

    positions = getattr(model.llm.config, "max_position_embeddings", None)
    if cfg.position_mode != "reindex" or positions is None:
        return DEFAULT_KV_BUDGET
    bounds = token_bounds(model, cfg)
    return min(DEFAULT_KV_BUDGET, positions - bounds.largest_feed - bounds.thinking - cfg.max_new_tokens)


def check_against_model(cfg: EngineConfig, bounds: TokenBounds, max_positions: int | None) -> None:
    """Refuse settings that could exceed the backbone's positions or that the budget cannot honour."""
    protected = bounds.system + cfg.keep_recent_frames * bounds.frame + bounds.query + bounds.answer
    low_water = cfg.kv_budget_tokens - cfg.evict_chunk_tokens
    if protected > low_water:
        raise EngineConfigError(
            f"kv_budget_tokens={cfg.kv_budget_tokens} - evict_chunk_tokens={cfg.evict_chunk_tokens} = {low_water} cannot"
            f" hold what is always kept: system prompt ({bounds.system}) + {cfg.keep_recent_frames} recent frames"
            f" ({bounds.frame} each) + one question ({bounds.query}) + one answer ({bounds.answer}) = {protected} tokens")
    if cfg.position_mode == "reindex" and max_positions is not None:
        # Positions stay below the entries held: the budget, one feed over it, and a fork's thinking + answer.
        worst = cfg.kv_budget_tokens + bounds.largest_feed + bounds.thinking + cfg.max_new_tokens
        if worst > max_positions:
            raise EngineConfigError(
                f"positions could reach {worst} (budget {cfg.kv_budget_tokens} + largest feed {bounds.largest_feed}"
                f" + thinking {bounds.thinking} + max_new_tokens {cfg.max_new_tokens}) but the backbone has"
                f" max_position_embeddings={max_positions}: lower kv_budget_tokens")
