"""The packaged recipes (YAML), installed as ``titans_seq.recipes``."""
