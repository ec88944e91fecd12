"""Language modelling and long-context recall: tokenisers, corpora, token shards, the LM and passkey
tasks, generation through the state, S-NIAH and BABILong."""
from . import cli
from .passkey import PasskeyTask
from .task import LanguageModelTask

__all__ = ["LanguageModelTask", "PasskeyTask", "cli"]
