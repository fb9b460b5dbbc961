"""The sections of a LION-FS model config (``configuration_lionfs.LionFSConfig`` holds one of each).

Encoders (``VisionConfig``, ``EgoConfig``), fusion (``AggregationConfig``), the backbone
(``DroppingConfig``, ``LoraSettings``, ``LLMConfig``), the stream format (``StreamConfig``) and the
slow thinker's template as trained (``KeyframeConfig``, ``RegionConfig``, ``ThinkingConfig``) and what
reads its crops (``CropConfig``); each
checks itself in ``validate`` and raises ``ConfigError`` with the key's dotted name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

VIDEOLLM_ONLINE_SYSTEM_PROMPT = (
    "A multimodal AI assistant is helping users with some activities."
    " Below is their conversation, interleaved with the list of video frames received by the assistant."
)

GLOBAL_TOKEN_KINDS = ("pooler", "cls", "mean", "none")
EGO_SOURCES = ("none", "tower", "features")
AGGREGATION_MODES = ("none", "router")
DROPPING_MODES = ("none", "mod")
DROPPING_LAYER_PRESETS = ("interleaved", "all")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
RESAMPLE_MODES = ("nearest", "bilinear", "bicubic", "lanczos")
RESIZE_MODES = ("stretch", "letterbox")
REGIONS_ON = ("all", "trigger", "none")
BOX_SOURCES = ("grid", "crop")
REGION_ORDERS = ("proposer", "question_last")  # keyframes.region_order
REGION_FEATURES = ("tower", "pixels")
REGION_PROPOSERS = ("saliency_motion", "object_scale")  # model.regions.make_proposer
THINKING_MODES = ("none", "answers", "all")
THINKING_QUESTIONS = ("before", "after")
CROP_SOURCES = ("general", "tower")
TOKENIZE_MODES = ("pieces", "rendered")
COMMIT_MODES = ("text", "generated")
QUESTION_TIMINGS = ("next_frame", "before_next_frame")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong kind or inconsistent."""


@dataclass
class VisionConfig:
    """One vision tower (any HF vision model: SigLIP, CLIP, ...) and how a frame becomes tokens.

    A frame becomes ``[global] + pool_grid x pool_grid`` tokens: the global token (SigLIP's
    attention-pool ``pooler`` output, CLIP's ``cls`` token, or the ``mean`` of all patches) and the
    patch grid average-pooled to ``pool_grid x pool_grid``. Frames are resized to the tower's square
    input (``model.image_processing``): ``stretch`` (the aspect ratio is not kept) or ``letterbox``
    (padded with black to a centred square first, as VideoLLM-online does).
    """

    path: str | None = None
    config: dict | None = None
    image_size: int | None = None
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "bicubic"
    resize: str = "stretch"  # to the square input: 'stretch', or 'letterbox' (pad with black, centred; VideoLLM-online)
    global_token: str = "pooler"
    pool_grid: int = 3
    trainable: bool = False

    @property
    def tokens_per_frame(self) -> int:
        return (self.global_token != "none") + self.pool_grid * self.pool_grid

    def validate(self, where: str) -> None:
        if (self.path is None) == (self.config is None):
            raise ConfigError(f"{where}: give exactly one of 'path' (local HF dir) or 'config' (inline HF config dict)")
        if self.config is not None and "model_type" not in self.config:
            raise ConfigError(f"{where}.config: an inline HF config needs a 'model_type' (e.g. 'siglip_vision_model')")
        if self.global_token not in GLOBAL_TOKEN_KINDS:
            raise ConfigError(f"{where}.global_token: {self.global_token!r} is not one of {GLOBAL_TOKEN_KINDS}")
        if self.resample not in RESAMPLE_MODES:
            raise ConfigError(f"{where}.resample: {self.resample!r} is not one of {RESAMPLE_MODES}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"{where}.resize: {self.resize!r} is not one of {RESIZE_MODES}")
        if self.pool_grid < 1:
            raise ConfigError(f"{where}.pool_grid must be >= 1, got {self.pool_grid}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError(f"{where}: image_mean and image_std need 3 values (RGB)")


@dataclass
class EgoConfig:
    """The egocentric source: a second vision tower, or precomputed per-frame features.

    It runs at ``frames_per_frame`` times the general frame rate (EgoVLPv2 at 8 fps beside SigLIP
    at 2 fps: 4); its tokens are averaged over those frames onto each general frame.
    Precomputed features carry either one vector or ``tokens_per_frame`` vectors per ego frame.
    """

    source: str = "none"
    tower: VisionConfig | None = None
    feature_dim: int | None = None
    frames_per_frame: int = 4

    def validate(self, general: VisionConfig) -> None:
        if self.source not in EGO_SOURCES:
            raise ConfigError(f"ego.source: {self.source!r} is not one of {EGO_SOURCES}")
        if self.frames_per_frame < 1:
            raise ConfigError(f"ego.frames_per_frame must be >= 1, got {self.frames_per_frame}")
        if self.source == "tower":
            if self.tower is None:
                raise ConfigError("ego.source='tower' needs ego.tower (a vision config)")
            self.tower.validate("ego.tower")
            if self.tower.tokens_per_frame != general.tokens_per_frame:
                raise ConfigError(
                    f"ego.tower gives {self.tower.tokens_per_frame} tokens per frame but the general encoder gives "
                    f"{general.tokens_per_frame}: use the same pool_grid and global token presence"
                )
        if self.source == "features" and not self.feature_dim:
            raise ConfigError("ego.source='features' needs ego.feature_dim (width of one precomputed feature)")


@dataclass
class AggregationConfig:
    """Token Aggregation Router: per-token softmax weights over the sources (``none``: general only)."""

    mode: str = "none"
    router_hidden: int | None = None

    def validate(self, ego: EgoConfig) -> None:
        if self.mode not in AGGREGATION_MODES:
            raise ConfigError(f"aggregation.mode: {self.mode!r} is not one of {AGGREGATION_MODES}")
        if self.mode == "router" and ego.source == "none":
            raise ConfigError("aggregation.mode='router' fuses two sources: set ego.source to 'tower' or 'features'")
        if self.mode == "none" and ego.source != "none":
            raise ConfigError("aggregation.mode='none' uses the general encoder only: set ego.source='none'")


@dataclass
class DroppingConfig:
    """Token Dropping Router: mixture-of-depths over visual tokens in some decoder layers.

    In a dropping layer each frame keeps ``round((1 - beta) * tokens_per_frame)`` of its visual
    tokens (the router's top scores within that frame); text tokens always pass. ``layers`` is
    ``"interleaved"`` (0, 2, 4, ...), ``"all"`` or an explicit list of layer indices.
    """

    mode: str = "none"
    layers: str | list[int] = "interleaved"
    beta: float = 0.5
    aux_loss_coef: float = 0.01
    router_init_std: float = 0.02

    def validate(self) -> None:
        if self.mode not in DROPPING_MODES:
            raise ConfigError(f"dropping.mode: {self.mode!r} is not one of {DROPPING_MODES}")
        if isinstance(self.layers, str) and self.layers not in DROPPING_LAYER_PRESETS:
            raise ConfigError(f"dropping.layers: {self.layers!r} is neither a list of ints nor one of {DROPPING_LAYER_PRESETS}")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"dropping.beta must be in [0, 1], got {self.beta}")

    def layer_indices(self, num_layers: int) -> list[int]:
        if self.mode == "none":
            return []
        if self.layers == "interleaved":
            return list(range(0, num_layers, 2))
        if self.layers == "all":
            return list(range(num_layers))
        bad = [i for i in self.layers if not 0 <= int(i) < num_layers]
        if bad:
            raise ConfigError(f"dropping.layers {bad} are outside the backbone's {num_layers} layers")
        return sorted({int(i) for i in self.layers})


@dataclass
class LoraSettings:
    """LoRA on the LLM through peft; ``target_modules`` is a list of names or one regex string."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class LLMConfig:
    """The causal LM backbone: local HF dir, a ``.gguf`` file, or an inline HF config dict."""

    path: str | None = None
    config: dict | None = None
    tokenizer_path: str | None = None
    attn_implementation: str = "sdpa"
    trainable: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self) -> None:
        if (self.path is None) == (self.config is None):
            raise ConfigError("llm: give exactly one of 'path' (local HF dir or .gguf file) or 'config' (inline HF config dict)")
        if self.config is not None and "model_type" not in self.config:
            raise ConfigError("llm.config: an inline HF config needs a 'model_type' (e.g. 'llama', 'qwen2')")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(
                f"llm.attn_implementation: {self.attn_implementation!r} is not one of {ATTENTION_IMPLEMENTATIONS}"
                " (the stream decoder builds position-based additive masks, which flash_attention_2 does not take)"
            )


@dataclass
class StreamConfig:
    """Stream format (VideoLLM-online's by default), the per-frame decision and how answers enter the context.

    ``tokenize``: ``pieces`` tokenizes each turn piece on its own (what this project's models are
    trained with); ``rendered`` tokenizes the text between two frames as one string, as
    VideoLLM-online renders its chat template (a BPE such as Llama-3's merges ``'.\\n\\n'`` across
    what would be two pieces). ``commit``: ``text`` re-tokenizes a finished answer into the context;
    ``generated`` keeps the generated ids as they were decoded, an empty answer included, and feeds
    the last one (EOS, or the last token of a truncated answer) before the next frame, as
    VideoLLM-online's demo does. ``question_timing``: ``next_frame`` answers a question after the
    first frame at or after it; ``before_next_frame`` answers it before the first frame after it
    (VideoLLM-online's demo). ``max_new_tokens``: the answer length the engine uses unless told.
    """

    placeholder_token: str = "<v>"
    interval_token: str = ","
    eos_token: str | None = None
    system_prompt: str = VIDEOLLM_ONLINE_SYSTEM_PROMPT
    add_bos: bool = True
    system_suffix: str = "\n"
    stream_open: str = "\n["
    stream_close: str = "]"
    user_prefix: str = "\nUser: "
    assistant_prefix: str = "\nAssistant:"
    content_separator: str = " "
    frame_fps: float = 2.0
    stream_loss_weight: float = 1.0
    interval_threshold: float = 0.725
    ignore_index: int = -100
    tokenize: str = "pieces"
    commit: str = "text"
    question_timing: str = "next_frame"
    max_new_tokens: int = 64

    def validate(self) -> None:
        if not self.placeholder_token or not self.interval_token:
            raise ConfigError("stream: placeholder_token and interval_token must be non-empty")
        if self.frame_fps <= 0:
            raise ConfigError(f"stream.frame_fps must be > 0, got {self.frame_fps}")
        if not 0.0 <= self.interval_threshold <= 1.0:
            raise ConfigError(f"stream.interval_threshold must be in [0, 1], got {self.interval_threshold}")
        for name, allowed in (("tokenize", TOKENIZE_MODES), ("commit", COMMIT_MODES), ("question_timing", QUESTION_TIMINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"stream.{name}: {getattr(self, name)!r} is not one of {allowed}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"stream.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class KeyframeConfig:
    """Multi-granularity keyframe augmentation (the slow thinker's extra visual tokens).

    Keyframes: the triggering frame plus up to ``num_keyframes - 1`` of the last ``history_frames``
    decided frames, picked greedily for novelty (``model.thinking_template.select_keyframe_indices``).
    Grid tokens: the keyframe's patch grid average-pooled to each ``g x g`` in ``grid_sizes`` (a size
    finer than the encoder's patch grid is clipped to it; repeated sizes count once).
    Box tokens: ``box_grid x box_grid`` tokens for each of at most ``max_regions`` proposed regions,
    on the keyframes ``regions_on`` names. ``box_source``: ``grid`` pools the keyframe's patch
    features inside the box; ``crop`` re-encodes the box from the keyframe's full-resolution pixels
    (a square around it, ``crop_margin`` of its side added on each side and at least ``crop_min``
    of the frame's shorter side, resized to the general tower's input) and pools that crop's whole
    patch grid, so details too small for the frame's patches (printed labels) get a patch grid of
    their own. Tile tokens (``tiles > 0``): the keyframe cut into ``tiles x tiles`` tiles, each
    re-encoded at the tower's full input size and its patch grid pooled to ``tile_grid x tile_grid``
    (finer grid tokens from the full-resolution frame, with no proposer). ``region_tags`` (needs
    ``box_source: crop`` and a crop reader, ``crop.reader_classes``): after each region's box tokens the
    template writes, as text, what the model's crop reader reads on that region's crop
    (`` red cube labelled K``; ``model.crop_reader``). ``region_order`` (``question_last`` needs ``region_tags``):
    ``proposer`` lays the regions out in the proposer's order; ``question_last`` moves, when the slow thinker answers
    a question, the trigger keyframe's region whose tag shares the most words with the question to the end of its
    regions, next to the answer (``model.regions.question_match``; in training the region holding the asked object,
    ``train.thinking``): the LLM then copies from a tag a few tokens back instead of looking up the matching one
    among several (issue 15, docs/RESULTS.md round 14). ``question_candidates`` (with ``question_last``; 0: off):
    when a question is answered, the trigger keyframe's first this-many proposals are read and the question picks
    among them; a pick past the first ``max_regions`` takes the last place after the first ``max_regions - 1`` (the
    template keeps its length; in training the proposal holding the asked object; docs/RESULTS.md round 15: 8
    candidates hold the asked object on 0.90 of the validation detail questions, the first 3-4 on 0.63).
    Training writes it (``data.keyframes``) into the model's ``thinking.keyframes``, which the engine
    reads (``EngineConfig.keyframes`` overrides it only when set): a model records the template it
    was trained with.
    """

    num_keyframes: int = 3
    history_frames: int = 8
    min_novelty: float = 0.02  # cosine distance under which a frame adds nothing new
    grid_sizes: tuple[int, ...] = (4, 6)
    box_grid: int = 1
    max_regions: int = 3
    regions_on: str = "all"
    box_source: str = "grid"
    crop_margin: float = 0.25
    crop_min: float = 0.25
    tiles: int = 0
    tile_grid: int = 2
    region_tags: bool = False
    region_order: str = "proposer"
    question_candidates: int = 0

    def validate(self) -> None:
        if self.num_keyframes < 1:
            raise ConfigError(f"keyframes.num_keyframes must be >= 1, got {self.num_keyframes}")
        if self.history_frames < self.num_keyframes:
            raise ConfigError("keyframes.history_frames must be >= keyframes.num_keyframes")
        if not self.grid_sizes or any(int(g) < 1 for g in self.grid_sizes):
            raise ConfigError(f"keyframes.grid_sizes must be positive ints, got {self.grid_sizes}")
        if self.box_grid < 1 or self.max_regions < 0:
            raise ConfigError("keyframes.box_grid must be >= 1 and keyframes.max_regions >= 0")
        if self.regions_on not in REGIONS_ON:
            raise ConfigError(f"keyframes.regions_on: {self.regions_on!r} is not one of {REGIONS_ON}")
        if self.box_source not in BOX_SOURCES:
            raise ConfigError(f"keyframes.box_source: {self.box_source!r} is not one of {BOX_SOURCES}")
        if self.tiles < 0 or self.tile_grid < 1:
            raise ConfigError("keyframes.tiles must be >= 0 and keyframes.tile_grid >= 1")
        if self.crop_margin < 0 or not 0.0 < self.crop_min <= 1.0:
            raise ConfigError("keyframes.crop_margin must be >= 0 and keyframes.crop_min in (0, 1]")
        if self.region_tags and self.box_source != "crop":
            raise ConfigError("keyframes.region_tags reads the regions' crops: it needs keyframes.box_source 'crop'")
        if self.region_order not in REGION_ORDERS:
            raise ConfigError(f"keyframes.region_order: {self.region_order!r} is not one of {REGION_ORDERS}")
        if self.region_order == "question_last" and not self.region_tags:
            raise ConfigError("keyframes.region_order 'question_last' ranks the regions by their tags: it needs"
                              " keyframes.region_tags")
        if self.question_candidates and (self.region_order != "question_last"
                                         or self.question_candidates < self.max_regions or self.regions_on == "none"):
            raise ConfigError(f"keyframes.question_candidates ({self.question_candidates}) lets the question pick among "
                              f"more proposals: it needs region_order 'question_last', regions on the trigger keyframe"
                              f" and at least max_regions ({self.max_regions}); 0 is off")


@dataclass
class RegionConfig:
    """The default region proposer (``model.regions.SaliencyMotionProposer``: motion + feature
    saliency on the patch grid, no extra weights). ``features``: what "stands out" is measured on:
    the general tower's patch features (``tower``) or each cell's mean colour (``pixels``: no tower
    pass, so training proposes regions in its data loader exactly as the engine does)."""

    motion_weight: float = 0.5  # saliency = motion_weight * motion + (1 - motion_weight) * feature distinctiveness
    min_score: float = 0.2  # a peak under this (saliency is scaled to [0, 1]) is no region
    grow_fraction: float = 0.5  # a region grows over neighbouring cells whose saliency >= this * peak
    max_cells: int = 4  # a region spans at most this many patch cells per side
    features: str = "tower"
    # ``object_scale`` (``model.regions.ObjectScaleProposer``): colour against each row's background on a
    # finer pixel grid, centre-surround peaks at the object scale, one ``object_size`` square per peak
    proposer: str = "saliency_motion"
    object_size: float = 0.2  # object_scale: a region's side, as a fraction of min(frame width, height)
    cell_grid: int = 32  # object_scale: saliency cells per frame side (from the pixels)

    def validate(self) -> None:
        if self.proposer not in REGION_PROPOSERS:
            raise ConfigError(f"regions.proposer: {self.proposer!r} is not one of {REGION_PROPOSERS}")
        if not 0.0 < self.object_size <= 1.0 or self.cell_grid < 4:
            raise ConfigError("regions.object_size must be in (0, 1] and regions.cell_grid >= 4")
        if self.proposer == "object_scale" and self.features != "pixels":
            raise ConfigError("regions.proposer 'object_scale' reads the pixels alone: it needs regions.features 'pixels'")
        if not 0.0 <= self.motion_weight <= 1.0:
            raise ConfigError(f"regions.motion_weight must be in [0, 1], got {self.motion_weight}")
        if not 0.0 < self.grow_fraction <= 1.0 or self.max_cells < 1:
            raise ConfigError("regions.grow_fraction must be in (0, 1] and regions.max_cells >= 1")
        if self.features not in REGION_FEATURES:
            raise ConfigError(f"regions.features: {self.features!r} is not one of {REGION_FEATURES}")


@dataclass
class ThinkingConfig:
    """How the model was trained with the slow thinker's thinking template (written by training).

    ``mode``: ``none`` (never: the template is unseen), ``answers`` (before the answer to every
    user question) or ``all`` (also before every proactive narration). ``keyframes`` and
    ``regions``: the template and region proposer settings of that training, the ones training,
    evaluation and the engine use (``model.thinking_template``). ``question``: where an answer's
    question stands on the fork: ``before`` the template only (in the context it forks from), or also
    restated ``after`` it, right before the assistant header (``... [template] User: q Assistant: a``),
    so the answer follows its question as in every other turn.
    """

    mode: str = "none"
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    question: str = "before"

    def validate(self) -> None:
        if self.mode not in THINKING_MODES:
            raise ConfigError(f"thinking.mode: {self.mode!r} is not one of {THINKING_MODES}")
        if self.question not in THINKING_QUESTIONS:
            raise ConfigError(f"thinking.question: {self.question!r} is not one of {THINKING_QUESTIONS}")
        if self.question == "after" and self.mode == "none":
            raise ConfigError("thinking.question: 'after' restates questions after the template, which mode 'none' never uses")
        self.keyframes.validate()
        self.regions.validate()

    def thinks_before(self, question: bool) -> bool:
        """Whether training put the template before this answer (one to a user question, or a narration)."""
        return self.mode == "all" or (self.mode == "answers" and question)

    @property
    def restates_question(self) -> bool:
        """Whether an answer's question is restated after the template (``question: after``)."""
        return self.question == "after"


@dataclass
class CropConfig:
    """What re-encodes the slow path's crops (``keyframes.box_source: crop`` boxes, and tiles).

    ``general``: the general tower, the fast path's own. ``tower``: a crop tower of their own, the general
    tower's architecture (``config``: its HF config, inline) with weights of its own, started as a copy of
    the general tower's and trained on crops (``train.crop_pretraining``), so the fast path's tower stays as
    it is. Crops are cut and resized by the general tower's image processor either way.
    ``reader_classes`` (``tower`` only; None: no reader): the crop reader's classes per attribute
    (``label``, ``shape``, ``colour``, optionally ``patch``: a part's colour), heads kept from crop pretraining on
    the tower's patch grid pooled to ``reader_pool x reader_pool`` (``model.crop_reader.CropReader``;
    ``thinking.keyframes.region_tags``); ``reader_parts``: each shape's part noun, for ``patch`` in the tags.
    """

    source: str = "general"
    config: dict | None = None
    trainable: bool = False
    reader_pool: int = 1
    reader_classes: dict[str, list[str]] | None = None
    reader_parts: dict[str, str] | None = None

    def validate(self) -> None:
        if self.source not in CROP_SOURCES:
            raise ConfigError(f"crop.source: {self.source!r} is not one of {CROP_SOURCES}")
        if self.source == "tower" and (self.config is None or "model_type" not in self.config):
            raise ConfigError("crop.source='tower' needs crop.config: the crop tower's HF config (with a 'model_type')")
        if self.source == "general" and self.config is not None:
            raise ConfigError("crop.config is only for crop.source='tower' (the general tower reads crops otherwise)")
        if self.reader_classes is not None and (self.source != "tower" or self.reader_pool < 1):
            raise ConfigError("crop.reader_classes is a crop tower's reader: it needs crop.source 'tower' and"
                              " crop.reader_pool >= 1")
        if self.reader_classes is not None and not {"label", "shape", "colour"} <= set(self.reader_classes):
            raise ConfigError(f"crop.reader_classes needs label, shape and colour, got {sorted(self.reader_classes)}")
        if self.reader_parts and "patch" not in (self.reader_classes or {}):
            raise ConfigError("crop.reader_parts names the parts a reader's 'patch' head reads: it needs that head")
