"""The neural long-term memory: the functional operator and the NeuralMemory layer."""
from .module import NeuralMemory, NeuralMemoryState
from .ops import neural_memory, retrieve
from .state import MemoryState

__all__ = ["MemoryState", "NeuralMemory", "NeuralMemoryState", "neural_memory", "retrieve"]
