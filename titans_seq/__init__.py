"""titans_seq: the Titans neural long-term memory (MAC, MAG, MAL, LMM) as importable backbones."""
from .backbones import VARIANTS, Backbone, Documents, TitansConfig
from .memory import MemoryState, NeuralMemory, neural_memory, retrieve

__version__ = "0.1.0"
__all__ = ["VARIANTS", "Backbone", "Documents", "MemoryState", "NeuralMemory", "TitansConfig", "neural_memory", "retrieve"]
