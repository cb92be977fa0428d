"""Draft training: dump a target's features, then train a draft on them (see docs/training.md)."""

from specflash.train.config import RunConfig, TrainConfig, load_config
from specflash.train.dump import dump, extend_with_generation, record_from_inputs, self_distill, write_dump
from specflash.train.encode import encode_conversation
from specflash.train.sources import Conversation, open_source
from specflash.train.store import FeatureStore, Record
from specflash.train.trainer import Trainer, TrainResult, train

__all__ = [
    "Conversation",
    "FeatureStore",
    "Record",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "dump",
    "encode_conversation",
    "extend_with_generation",
    "load_config",
    "open_source",
    "record_from_inputs",
    "self_distill",
    "train",
    "write_dump",
]
