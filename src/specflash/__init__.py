"""specflash: FLASH speculative decoding for large multimodal models."""

from specflash.draft import Draft, DraftConfig
from specflash.generate import (
    GenerationResult,
    GenerationStats,
    SpeculativeGenerator,
    autoregressive_generate,
)
from specflash.pipeline import Pipeline, load
from specflash.sizing import CycleCost
from specflash.targets import Target
from specflash.tree import TreeConfig

__version__ = "0.1.0"

__all__ = [
    "CycleCost",
    "Draft",
    "DraftConfig",
    "GenerationResult",
    "GenerationStats",
    "Pipeline",
    "SpeculativeGenerator",
    "Target",
    "TreeConfig",
    "autoregressive_generate",
    "load",
]
