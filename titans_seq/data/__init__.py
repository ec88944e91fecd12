"""Datasets by name: the registry, the mirror / cache / download resolution, and recipes' data sources."""
from .registry import (CACHE_ENV, MIRROR_ENV, DataError, DataFile, Dataset, cache_dir, get_dataset, is_dataset_key,
                       mirror_dir, registry, resolve, resolve_dataset, resolve_path, verify)
from .source import DataSource, data_overrides, with_resolved_path

__all__ = ["CACHE_ENV", "MIRROR_ENV", "DataError", "DataFile", "DataSource", "Dataset", "cache_dir", "data_overrides",
           "get_dataset", "is_dataset_key", "mirror_dir", "registry", "resolve", "resolve_dataset", "resolve_path", "verify",
           "with_resolved_path"]
