"""Backbones: TitansConfig and the Backbone built from one mixer per variant."""
from .backbone import Backbone, Block
from .config import VARIANTS, TitansConfig
from .documents import Documents

__all__ = ["VARIANTS", "Backbone", "Block", "Documents", "TitansConfig"]
