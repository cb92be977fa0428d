"""Target adapters: one per model family over the stock Hugging Face classes."""

from specflash.targets.family import VisualSpan
from specflash.targets.state import TargetState
from specflash.targets.target import SUPPORTED, Prefill, Target

__all__ = ["SUPPORTED", "Prefill", "Target", "TargetState", "VisualSpan"]
