"""The draft model: fusion, decoder layers and its cache; the drafter that runs it against a target."""

from specflash.draft.config import DraftConfig
from specflash.draft.drafter import Drafter
from specflash.draft.model import Draft

__all__ = ["Draft", "DraftConfig", "Drafter"]
