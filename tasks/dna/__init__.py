"""Genomics: DNA tokenisation, sequence tables, genomes and intervals, classification and language-model tasks."""
from .classification import DNAClassificationTask
from .pretraining import DNAPretrainingTask

__all__ = ["DNAClassificationTask", "DNAPretrainingTask"]
