"""Engine backends: how the LLM side and the vision towers run, side by side.

A backend gives the engine its vision towers (``towers() -> (general, ego)``, None: the model's
own modules) and the LM states of the main context and of a fresh slow-thinker context
(``main_state()``, ``fresh_state()``); ``name`` appears in ``engine.stats()``.

- ``DynamicBackend``: any model, CPU or GPU: the model's own modules over ``StreamKVCache``s.
- ``StaticBackend`` (``cuda_graphs.py``): preallocated KV buffers and CUDA graphs, Llama/Qwen2
  backbones without token dropping, chosen automatically on CUDA.
"""
from __future__ import annotations

from .config import EngineConfig
from .lm_state import DynamicLMState, LMState


class DynamicBackend:
    """Any model, CPU or GPU: the model's own modules over ``StreamKVCache``s."""

    name = "dynamic"

    def __init__(self, model):
        self.model = model

    def towers(self):
        return None, None

    def main_state(self) -> LMState:
        return DynamicLMState(self.model)

    def fresh_state(self) -> LMState:
        return DynamicLMState(self.model)


def pick_backend(model, cfg: EngineConfig):
    """The backend ``cfg.backend`` asks for (``auto``: static on CUDA when the model allows it, else dynamic)."""
    wants_static = cfg.backend == "static" or (cfg.backend == "auto" and model.device.type == "cuda")
    if wants_static:
        from .cuda_graphs import StaticBackend, static_backend_supported

        reason = static_backend_supported(model)
        if reason is None:
            return StaticBackend(model, cfg)
        if cfg.backend == "static":
            raise ValueError(f"backend='static' is not possible for this model: {reason}")
    return DynamicBackend(model)
