"""Backbones: TitansConfig, the Backbone built from one mixer per variant, and the tied-embedding LM."""
from .backbone import Backbone, Block
from .config import VARIANTS, TitansConfig
from .language_model import IGNORE, CarriedStateLoss, LanguageModel, detach_state, next_token_loss

__all__ = ["IGNORE", "VARIANTS", "Backbone", "Block", "CarriedStateLoss", "LanguageModel", "TitansConfig", "detach_state",
           "next_token_loss"]
