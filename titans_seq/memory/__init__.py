"""The neural long-term memory: the functional operator and the NeuralMemory layer."""
from .ops import neural_memory, retrieve
from .state import MemoryState

__all__ = ["MemoryState", "neural_memory", "retrieve"]
