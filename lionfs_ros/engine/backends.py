"""Engine backends: how the LLM side and the vision towers run, side by side.

A backend gives the engine its vision towers (``towers() -> (general, ego)``, None: the model's
own modules), a decided frame's fusion (``fusion()``: tower tokens -> fused tokens; None:
``model.embed_frames``) and the LM states of the main context and of a fresh slow-thinker context
(``main_state()``, ``fresh_state()``); ``name`` appears in ``engine.stats()``.

- ``DynamicBackend``: any model, CPU or GPU: the model's own modules over ``StreamKVCache``s.
- ``StaticBackend``: preallocated KV buffers and CUDA graphs (``cuda_graphs.py``, ``static_decoder.py``),
  Llama/Qwen2 backbones, token dropping included, chosen automatically on CUDA. Its main state
  forks into one preallocated slow buffer (``StaticLMState.fork_into``).
"""
from __future__ import annotations

import importlib.util

from lionfs_ros.model.backbone import has_lora

from .bounds import portable_prompt_bound, token_bounds
from .config import EngineConfig, EngineConfigError
from .cuda_graphs import StaticLMState
from .graphed_frame import FrameUpload, GraphedFusion, GraphedTower
from .lm_state import LENGTH_DEPENDENT_ROPE, DynamicLMState, LMState
from .quantization import fp8_problem
from .static_decoder import SPLIT_CHUNK, FusedDecoder

CAPACITY_ALIGN = SPLIT_CHUNK  # buffer lengths: whole chunks for split attention (and aligned mask rows)
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")


class DynamicBackend:
    """Any model, CPU or GPU: the model's own modules over ``StreamKVCache``s."""

    name = "dynamic"

    def __init__(self, model):
        self.model = model

    def towers(self):
        return None, None

    def fusion(self):
        return None

    def restart(self) -> None:
        """A new stream on this backend: nothing to empty (each engine's main state is a fresh cache)."""

    def main_state(self) -> LMState:
        return DynamicLMState(self.model)

    def fresh_state(self) -> LMState:
        return DynamicLMState(self.model)


def pick_backend(model, cfg: EngineConfig):
    """The backend ``cfg.backend`` asks for (``auto``: static on CUDA when the model allows it, else dynamic; FP8
    weights, which only the static backend runs: static)."""
    if cfg.weights == "fp8":
        reason = fp8_problem(model.device) or static_backend_supported(model)
        if reason is not None:
            raise EngineConfigError(f"weights='fp8' is not possible here: {reason}")
    wants_static = cfg.backend == "static" or (cfg.backend == "auto" and (model.device.type == "cuda"
                                                                          or cfg.weights == "fp8"))
    if wants_static:
        reason = static_backend_supported(model)
        if reason is None:
            return StaticBackend(model, cfg)
        if cfg.backend == "static":
            raise ValueError(f"backend='static' is not possible for this model: {reason}")
    return DynamicBackend(model)


def static_backend_supported(model) -> str | None:
    """None if the static backend can run this model, else the reason it cannot."""
    if has_lora(model.llm):
        return "LoRA layers are not merged (call model.merge_lora() first)"
    if model.llm.config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"backbone type {model.llm.config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(model.llm.config, "sliding_window", None) and getattr(model.llm.config, "use_sliding_window", False):
        return "sliding-window attention is not supported"
    if getattr(model.llm.get_decoder().rotary_emb, "rope_type", "default") in LENGTH_DEPENDENT_ROPE:
        return "length-dependent RoPE"
    return None


def tower_attention_kind(cfg: EngineConfig) -> str:
    """The vision towers' attention (``FusedTower``) for ``cfg.attention``: 'triton' (their own kernel) with the
    LLM's Triton kernel, else 'sdpa'."""
    return "triton" if cfg.attention == "triton" else "sdpa"


def _align(n: int) -> int:
    return -(-n // CAPACITY_ALIGN) * CAPACITY_ALIGN


class StaticBackend:
    """Main + slow static states and graphed vision towers for one model."""

    name = "static"

    def __init__(self, model, cfg: EngineConfig, use_graphs: bool | None = None, fused: FusedDecoder | None = None):
        """``fused``: another backend's ``FusedDecoder`` to share (its fused weight copies), e.g. one per stream of a group."""
        reason = static_backend_supported(model)
        if reason is not None:
            raise ValueError(f"static backend: {reason}")
        if cfg.weights == "fp8" and fp8_problem(model.device) is not None:
            raise EngineConfigError(f"weights='fp8' is not possible here: {fp8_problem(model.device)}")
        for key in ("weights", "fp8_head", "linear_kernel", "fold_norms"):
            if fused is not None and getattr(fused, key) != getattr(cfg, key):
                raise EngineConfigError(f"{key}={getattr(cfg, key)!r} differs from the shared decoder's "
                                        f"({getattr(fused, key)!r})")
        self._share(model, cfg, model.device.type == "cuda" if use_graphs is None else use_graphs)
        bounds = token_bounds(model, cfg)
        main_capacity = _align(cfg.kv_budget_tokens + bounds.largest_feed)
        slow_capacity = _align(max(main_capacity + bounds.thinking + cfg.max_new_tokens,
                                   portable_prompt_bound(model, cfg) + cfg.max_new_tokens))
        if self.use_graphs and importlib.util.find_spec("triton") is not None:
            from .kernels.dependent_launch import set_dependent_launch

            set_dependent_launch(cfg.dependent_launch)
        self.fused = fused or FusedDecoder(model.llm, compile=cfg.compile and self.use_graphs, attention=cfg.attention,
                                           dropping=model.token_dropping, weights=cfg.weights,
                                           linear_kernel=cfg.linear_kernel, fold_norms=cfg.fold_norms,
                                           fp8_head=cfg.fp8_head)
        frame_length = model.tokens_per_frame + 1
        self.slow = StaticLMState(model, self.fused, slow_capacity, self.use_graphs)
        self.main = StaticLMState(model, self.fused, main_capacity, self.use_graphs, frame_length, fork_into=self.slow)
        self.main.warm_up()
        self.slow.warm_up()

    def _share(self, model, cfg: EngineConfig, use_graphs: bool) -> None:
        """What every static backend holds besides its states and decoder (``PooledBackend`` too): the model, whether
        it runs CUDA graphs, its towers' attention kind and, made at the first ``towers()``, the graphed towers."""
        self.model, self.use_graphs = model, use_graphs
        self.tower_attention = tower_attention_kind(cfg)
        self._towers = None  # (general, ego) GraphedTowers

    def towers(self):
        if not self.use_graphs:
            return None, None
        if self._towers is None:  # one pair per backend: an engine built again on it replays the same graphs
            m = self.model
            compile = self.fused.compiled  # the towers compile where the LLM's pieces do
            upload = FrameUpload(m.device)  # shared: a decided frame goes up once for both towers
            attention = self.tower_attention
            self._towers = (GraphedTower(m.vision, m.device, compile, upload, attention),
                            GraphedTower(m.ego, m.device, compile, upload, attention) if m.ego is not None else None)
        return self._towers

    def fusion(self):
        """A decided frame's connectors and aggregation router as a CUDA graph (None: ``model.embed_frames``)."""
        if not self.use_graphs:
            return None
        if getattr(self, "_fusion", None) is None:  # one per backend, made at the first call
            self._fusion = GraphedFusion(self.model)
        return self._fusion

    def restart(self) -> None:
        """A new stream on this backend (e.g. the next clip of an evaluation): the main context is emptied,
        its buffers and graphs are kept, so an engine built on it again captures nothing."""
        if self.slow.in_use:
            raise RuntimeError("restart while the slow thinker holds its buffer")
        self.main.clear()

    def main_state(self) -> LMState:
        return self.main

    def fresh_state(self) -> LMState:
        return self.slow.reset()
