"""LionFSModel: encoders -> connectors -> aggregation router -> LLM with token dropping.

Shapes: ``T`` frames, ``n`` tokens per frame, ``C`` vision width, ``d`` LLM width, ``V`` vocab.
The fast path per frame is ``embed_frames`` then ``step`` on ``[interval] + n placeholders``
with a ``StreamKVCache``; ``stream_decision`` on the last logits decides whether to speak (the one
decision rule). Answers are written by the stream engine's slow thinker (the ROS-free runtime package): the model
has no generation loop of its own.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .aggregation import Connector, TokenAggregationRouter
from .backbone import apply_lora, load_llm, merge_lora
from .configuration_lionfs import CropConfig, LionFSConfig, VisionConfig
from .crop_reader import CropReader, region_tag
from .decoder import DecoderOutput, run_decoder
from .hub import resolve
from .keyframe_tokens import PoolRun, pool_runs
from .kv_cache import StreamKVCache
from .stream_format import StreamFormatter
from .token_dropping import TokenDropping
from .tokenization import load_tokenizer
from .vision import VisionEncoder, load_vision_tower, pool_ego_tokens, vision_config_to_inline

NUM_SOURCES_FUSED = 2  # general + egocentric


@dataclass
class LionFSOutput:
    logits: torch.Tensor  # [B, L, V]
    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    stream_loss: torch.Tensor | None = None
    router_aux_loss: torch.Tensor | None = None
    past_key_values: StreamKVCache | None = None
    kept: dict[int, torch.Tensor] = field(default_factory=dict)


def default_dtype(device: torch.device | str | None) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU."""
    return torch.bfloat16 if torch.device(device or "cpu").type == "cuda" else torch.float32


class LionFSModel(nn.Module):
    def __init__(
        self,
        config: LionFSConfig,
        tokenizer: PreTrainedTokenizerBase,
        llm: PreTrainedModel,
        vision_tower: PreTrainedModel,
        ego_tower: PreTrainedModel | None = None,
        crop_tower: PreTrainedModel | None = None,
    ):
        super().__init__()
        self.config = config.validate()
        self.tokenizer = tokenizer
        n = config.tokens_per_frame
        self.vision = VisionEncoder(config.vision, vision_tower)
        self.llm = llm
        width = llm.config.hidden_size
        self.connector = Connector(self.vision.hidden_size, width)
        self.ego = VisionEncoder(config.ego.tower, ego_tower) if config.ego.source == "tower" else None
        self.crop_vision = VisionEncoder(crop_vision_config(config), crop_tower) if config.crop.source == "tower" else None
        self.crop_reader = None
        if config.crop.reader_classes is not None:
            self.crop_reader = CropReader(self.crop_vision.hidden_size, config.crop.reader_pool, config.crop.reader_classes,
                                          config.crop.reader_parts)
            self.crop_reader.requires_grad_(False)
        self.ego_connector = self.aggregation_router = None
        if config.ego.source != "none":
            ego_width = self.ego.hidden_size if self.ego is not None else config.ego.feature_dim
            self.ego_connector = Connector(ego_width, width)
        if config.aggregation.mode == "router":
            self.aggregation_router = TokenAggregationRouter(width, NUM_SOURCES_FUSED, n, config.aggregation.router_hidden)
        self.token_dropping = None
        if config.dropping.mode == "mod":
            layers = config.dropping.layer_indices(llm.config.num_hidden_layers)
            self.token_dropping = TokenDropping(width, layers, n, config.dropping.beta, config.dropping.router_init_std)
        self.formatter = StreamFormatter(tokenizer, config.stream, n)
        self.token_ids = self.formatter.ids
        if not config.llm.lora.enabled:
            self.llm.requires_grad_(config.llm.trainable)

    # Construction and persistence.
    @classmethod
    def from_config(
        cls,
        config: LionFSConfig,
        tokenizer: PreTrainedTokenizerBase | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "LionFSModel":
        """Build every part the config names: pretrained where it gives a path, fresh where it gives an inline config."""
        config.validate()
        dtype = dtype or default_dtype(device)
        local = resolve_paths(config)  # hub ids -> the hub cache; the model keeps the names as given
        if tokenizer is None:
            source = local.llm.tokenizer_path or local.llm.path
            if source is None:
                raise ValueError("an inline llm.config needs a tokenizer: pass one or set llm.tokenizer_path")
            tokenizer = load_tokenizer(source)
        llm = load_llm(local.llm, dtype)
        if config.llm.lora.enabled:
            llm = apply_lora(llm, config.llm.lora)
        vision = load_vision_tower(local.vision, dtype)
        ego = load_vision_tower(local.ego.tower, dtype) if config.ego.source == "tower" else None
        crop = load_vision_tower(crop_vision_config(config), dtype) if config.crop.source == "tower" else None
        model = cls(config, tokenizer, llm, vision, ego, crop)
        return model.to(device=device or "cpu", dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A model directory, or a hub id (``org/name``) resolved into the hub cache."""
        from .checkpoint import load_model

        return load_model(cls, resolve(str(path)), device=device, dtype=dtype)

    def save_pretrained(self, path: str | Path, adapter_only: bool | None = None) -> None:
        """``adapter_only`` (default: for a LoRA model on a named base) stores the adapter and the trained parts."""
        from .checkpoint import save_model

        save_model(self, path, adapter_only)

    def merge_lora(self) -> "LionFSModel":
        """Fold LoRA into the backbone (inference); the config then says LoRA is off."""
        merge_lora(self.llm)
        self.config.llm.lora.enabled = False
        return self

    # Properties the engine needs.
    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def hidden_size(self) -> int:
        return self.llm.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.llm.parameters()).dtype

    # Vision side.
    def preprocess(self, frames: np.ndarray, source: str = "general") -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> float ``[T, 3, S, S]`` pixels for the ``general`` or ``ego`` encoder."""
        encoder = self.vision if source == "general" else self.ego
        if encoder is None:
            raise ValueError(f"this model has no {source!r} vision tower")
        return encoder.preprocess(frames)

    def patch_grid(self, general_pixels: torch.Tensor) -> torch.Tensor:
        """General encoder patch features ``[T, h, w, C]`` (for finer keyframe tokens)."""
        return self.vision.patch_grid(general_pixels)

    def crop_grid(self, crop_pixels: torch.Tensor) -> torch.Tensor:
        """Crop pixels ``[N, 3, S, S]`` (general-encoder preprocessing) -> patch features ``[N, h, w, C]``
        from the crop tower (``crop.source: tower``), else from the general tower."""
        return (self.crop_vision or self.vision).patch_grid(crop_pixels)

    def add_crop_tower(self, trainable: bool = True) -> VisionEncoder:
        """Give the slow path's crops a tower of their own: a copy of the general tower, weights included
        (the general tower is left as it is); a model that has one keeps it. Returns the crop encoder."""
        if self.crop_vision is None:
            self.config.crop = CropConfig("tower", vision_config_to_inline(self.vision.tower), trainable)
            self.crop_vision = VisionEncoder(crop_vision_config(self.config), copy.deepcopy(self.vision.tower))
        self.config.crop.trainable = trainable
        self.crop_vision.tower.requires_grad_(trainable)
        return self.crop_vision

    def add_crop_reader(self, reader: CropReader) -> None:
        """Keep ``reader`` (crop pretraining's heads on the crop tower) as the model's frozen crop reader; its
        classes and part nouns go into the config (``crop.reader_classes``, ``crop.reader_parts``), its weights
        into the model's safetensors."""
        if self.crop_vision is None:
            raise ValueError("a crop reader reads the crop tower's patch grid: add the crop tower first")
        self.crop_reader = reader.to(device=self.device, dtype=self.dtype).requires_grad_(False)
        self.config.crop.reader_pool = reader.pool
        self.config.crop.reader_classes = {name: list(values) for name, values in reader.classes.items()}
        self.config.crop.reader_parts = dict(reader.parts) or None

    def region_tags(self, crop_grids: torch.Tensor) -> list[str]:
        """Crops' patch grids ``[N, h, w, C]`` (``crop_grid``) -> what the crop reader reads on each, as the
        text the thinking template writes after the region's box tokens (``crop_reader.region_tag``)."""
        if self.crop_reader is None:
            raise ValueError("region tags need the model's crop reader (crop.reader_classes)")
        if not len(crop_grids):
            return []
        return [region_tag(read, self.crop_reader.parts) for read in self.crop_reader.read(crop_grids)]

    def project_general(self, features: torch.Tensor) -> torch.Tensor:
        """General-encoder features ``[..., C]`` -> LLM width ``[..., d]`` through its connector."""
        return self.connector(features.to(self.dtype))

    def embed_frames(self, general: torch.Tensor, ego: torch.Tensor | None = None, return_weights: bool = False):
        """Frames -> fused tokens ``[T, n, d]`` (and the aggregation weights ``[T, n, 2]`` if asked).

        ``general``: pixels ``[T, 3, S, S]`` or precomputed tokens ``[T, n, C]``.
        ``ego``: pixels ``[T*r, 3, S', S']`` or features ``[T*r, C']`` / ``[T*r, k, C']`` (k = 1 or n).
        """
        tokens = general if general.dim() == 3 else self.vision.frame_tokens(general)
        projected = self.project_general(tokens)  # [T, n, d]
        if self.aggregation_router is None:
            if ego is not None:
                raise ValueError("this model has no egocentric source (aggregation.mode='none')")
            return (projected, None) if return_weights else projected
        if ego is None:
            raise ValueError("this model fuses an egocentric source: pass ego pixels or features")
        ego_tokens = self.ego.frame_tokens(ego) if ego.dim() == 4 else ego.to(self.device)
        ego_tokens = pool_ego_tokens(ego_tokens, self.config.ego.frames_per_frame, self.tokens_per_frame)
        if ego_tokens.shape[0] != projected.shape[0]:
            raise ValueError(f"{projected.shape[0]} general frames but {ego_tokens.shape[0]} pooled ego frames")
        fused, weights = self.aggregation_router([projected, self.ego_connector(ego_tokens.to(self.dtype))])
        return (fused, weights) if return_weights else fused

    # Language side.
    def joint_embed(self, input_ids: torch.Tensor, frame_embeds: torch.Tensor | None = None,
                    template_mask: torch.Tensor | None = None, template_embeds: torch.Tensor | None = None):
        """``input_ids [B, L]`` + ``frame_embeds [T, n, d]`` (frames in reading order) -> ``([B, L, d], visual [B, L])``.

        ``template_mask [B, L]`` marks the placeholders of thinking templates, filled in reading
        order by ``template_embeds [P, d]``; they are not visual (token dropping never drops them).
        """
        input_ids = input_ids.to(self.device)
        placeholder = input_ids == self.token_ids.placeholder
        template = torch.zeros_like(placeholder) if template_mask is None else template_mask.to(self.device) & placeholder
        visual = placeholder & ~template
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
        count = int(visual.sum())
        given = 0 if frame_embeds is None else frame_embeds.shape[0] * frame_embeds.shape[1]
        if count != given:
            raise ValueError(f"{count} placeholder tokens but {given} frame token embeddings")
        if count:
            embeds = embeds.masked_scatter(visual[..., None], frame_embeds.reshape(-1, embeds.shape[-1]).to(embeds.dtype))
        count = int(template.sum())
        given = 0 if template_embeds is None else template_embeds.shape[0]
        if count != given:
            raise ValueError(f"{count} template placeholder tokens but {given} template embeddings")
        if count:
            embeds = embeds.masked_scatter(template[..., None], template_embeds.to(embeds.dtype))
        return embeds, visual

    def new_cache(self) -> StreamKVCache:
        return StreamKVCache(self.llm.config.num_hidden_layers)

    def step(
        self,
        inputs_embeds: torch.Tensor,
        visual_mask: torch.Tensor,
        past_key_values: StreamKVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        branch_ids: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """One LLM pass over new positions ``[B, L, d]``; the cache (if given) is extended in place.

        ``position_ids`` / ``branch_ids [B, L]``: forks in one training sequence (``decoder.run_decoder``)."""
        return run_decoder(
            self.llm, inputs_embeds, visual_mask, dropping=self.token_dropping,
            past_key_values=past_key_values, attention_mask=attention_mask,
            position_ids=position_ids, branch_ids=branch_ids,
        )

    def step_ids(self, input_ids, frame_embeds: torch.Tensor | None = None, past_key_values: StreamKVCache | None = None):
        """``step`` from token ids (list or ``[L]`` / ``[B, L]`` tensor) with placeholders filled by ``frame_embeds``."""
        ids = torch.as_tensor(input_ids, dtype=torch.long)
        embeds, visual = self.joint_embed(ids[None] if ids.dim() == 1 else ids, frame_embeds)
        return self.step(embeds, visual, past_key_values)

    def p_interval(self, logits: torch.Tensor) -> torch.Tensor:
        """P(interval token) from logits ``[..., V]``: the probability of staying silent."""
        return logits.float().softmax(dim=-1)[..., self.token_ids.interval]

    def should_respond(self, logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """``stream_decision``'s rule: respond when P(interval) < threshold or the interval is not the argmax."""
        threshold = self.config.stream.interval_threshold if threshold is None else threshold
        return respond_mask(logits, self.token_ids.interval, threshold)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        general: torch.Tensor | None = None,
        ego: torch.Tensor | None = None,
        frame_embeds: torch.Tensor | None = None,
        past_key_values: StreamKVCache | None = None,
        keyframe_general: torch.Tensor | None = None,
        keyframe_runs: list[PoolRun] | None = None,
        keyframe_crops: torch.Tensor | None = None,
        keyframe_crop_grids: torch.Tensor | None = None,
        template_mask: torch.Tensor | None = None,
        template_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        branch_ids: torch.Tensor | None = None,
        label_weights: torch.Tensor | None = None,
    ) -> LionFSOutput:
        """Full-sequence forward. ``labels [B, L]`` are next-token targets already aligned to positions
        (``labels[i]`` is the token after ``i``, as ``StreamFormatter`` makes them).

        Thinking templates in the sequence (training with ``data.thinking``): ``keyframe_general``
        ``[K, 3, S, S]`` are the general-encoder pixels of every template's keyframes, ``keyframe_runs``
        the pooled runs of all templates in reading order (``keyframe`` indexes ``keyframe_general``),
        ``keyframe_crops [N, 3, S, S]`` the pixels of their ``crop`` runs (reading order; read by ``crop_grid``;
        or ``keyframe_crop_grids [N, h, w, C]``, their patch grids read already),
        ``template_mask [B, L]`` their placeholders; the runs are pooled from the tower's patch grid
        (gradients reach the tower and the connector through them); or ``template_embeds [P, d]``, those
        pooled features through the connector computed already (frozen parts, cached: ``train.fork_stage``).
        ``position_ids``/``branch_ids`` put each template and its answer on a fork of the context
        (``decoder.run_decoder``).

        loss = lm_loss + stream_loss_weight * stream_loss + aux_loss_coef * router_aux_loss, where the
        LM and stream parts are summed cross-entropies over their positions divided by the number of
        learned positions (VideoLLM-online's normalisation). ``label_weights [B, L]`` (optional) scales each
        position's cross-entropy (``training.detail_answer_weight``); the divisor stays the position count.
        """
        if frame_embeds is None and general is not None:
            frame_embeds = self.embed_frames(general, ego)
        if template_embeds is None and keyframe_general is not None:
            grids = self.patch_grid(keyframe_general)  # [K, h, w, C]
            crop_grids = keyframe_crop_grids  # [N, h, w, C]: read already (a frozen tower), else read here
            if crop_grids is None and keyframe_crops is not None:
                crop_grids = self.crop_grid(keyframe_crops)
            template_embeds = self.project_general(pool_runs(grids, keyframe_runs or [], crop_grids))  # [P, d]
        embeds, visual = self.joint_embed(input_ids, frame_embeds, template_mask, template_embeds)
        out = self.step(embeds, visual, past_key_values, attention_mask, position_ids, branch_ids)
        result = LionFSOutput(logits=out.logits, router_aux_loss=out.router_aux_loss, past_key_values=out.past_key_values, kept=out.kept)
        if labels is None:
            return result
        labels = labels.to(self.device)
        ignore = self.config.stream.ignore_index
        ce = F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=ignore, reduction="none")
        ce = ce.view_as(labels)
        if label_weights is not None:
            ce = ce * label_weights.to(ce.device, ce.dtype)
        learned = labels != ignore
        count = learned.sum().clamp(min=1)
        result.lm_loss = ce[learned & ~visual].sum() / count
        result.stream_loss = ce[learned & visual].sum() / count
        result.loss = (
            result.lm_loss
            + self.config.stream.stream_loss_weight * result.stream_loss
            + self.config.dropping.aux_loss_coef * out.router_aux_loss
        )
        return result


def crop_vision_config(config: LionFSConfig) -> VisionConfig:
    """The crop tower's ``VisionConfig``: its own HF config and trainability, the general tower's preprocessing."""
    return replace(config.vision, path=None, config=config.crop.config, trainable=config.crop.trainable)


def resolve_paths(config: LionFSConfig) -> LionFSConfig:
    """A copy of ``config`` whose backbone paths (local paths or hub ids) are local paths."""
    import copy

    local = copy.deepcopy(config)
    for part in (local.llm, local.vision, local.ego.tower):
        if part is not None and part.path is not None:
            part.path = str(resolve(part.path))
    if local.llm.tokenizer_path is not None:
        local.llm.tokenizer_path = str(resolve(local.llm.tokenizer_path))
    return local


def stream_decision(logits: torch.Tensor, interval_id: int, threshold: float):
    """The one speak-or-stay-silent rule (VideoLLM-online's), used by the engine, evaluation and training metrics.

    ``logits [..., V]`` at a frame's last placeholder -> ``(p_interval [...], respond bool [...], top [...])``:
    respond when P(interval) < threshold or the interval token is not the most likely one.
    """
    probs = logits.float().softmax(dim=-1)
    p_interval, top = probs[..., interval_id], probs.argmax(dim=-1)
    return p_interval, (p_interval < threshold) | (top != interval_id), top


def respond_mask(logits: torch.Tensor, interval_id: int, threshold: float) -> torch.Tensor:
    """``[..., V]`` -> bool ``[...]``: speak now (``stream_decision``'s rule)."""
    return stream_decision(logits, interval_id, threshold)[1]
