"""Task plugins, one folder per domain; installed as ``titans_seq.tasks`` and found by the engine's registry."""
