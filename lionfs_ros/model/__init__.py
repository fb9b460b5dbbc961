"""The LION-FS network, ROS-free: encoders, aggregation, token dropping, stream format, checkpoints."""
from .configuration_lionfs import (
    AggregationConfig,
    ConfigError,
    DroppingConfig,
    EgoConfig,
    LionFSConfig,
    LLMConfig,
    LoraSettings,
    StreamConfig,
    VisionConfig,
)
from .hf_lionfs import LionFSForVideoStreaming, LionFSPretrainedConfig, register
from .kv_cache import StreamKVCache
from .modeling_lionfs import LionFSModel, LionFSOutput, respond_mask, stream_decision
from .stream_format import StreamFormatter, StreamSample, pad_batch

register()  # AutoConfig / AutoModel know model_type 'lionfs' once lionfs_ros.model is imported

__all__ = [
    "AggregationConfig",
    "ConfigError",
    "DroppingConfig",
    "EgoConfig",
    "LionFSConfig",
    "LionFSForVideoStreaming",
    "LionFSPretrainedConfig",
    "LionFSModel",
    "LionFSOutput",
    "LLMConfig",
    "LoraSettings",
    "StreamConfig",
    "StreamFormatter",
    "StreamKVCache",
    "StreamSample",
    "VisionConfig",
    "pad_batch",
    "respond_mask",
    "stream_decision",
]
