"""A recipe's ``data`` section names its data by registered key (``dataset``) or by ``path``."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .registry import DataError, is_dataset_key, resolve

Source = TypeVar("Source")


@dataclass
class DataSource:
    """Where a task's data comes from: ``path``, the user's own files, wins over ``dataset``, a registry key."""

    dataset: str | None = None    # a key of `titans-seq data list`, fetched and cached on first use
    path: str | None = None       # a file or folder of your own


def data_overrides(source: str) -> list[str]:
    """The recipe overrides that point a data section at ``source``: a registry key (unless a local file or
    folder of that name exists) or a path."""
    if is_dataset_key(source) and not Path(source).expanduser().exists():
        return [f"data.dataset={source}", "data.path=null"]
    return [f"data.path={source}"]


def with_resolved_path(data: Source) -> Source:
    """``data`` with ``path`` set: as given, or the local path of its ``dataset`` (fetched if needed)."""
    if not isinstance(data, DataSource) or data.path is not None:
        return data
    if data.dataset is None:
        raise DataError("the data section names no data: set data.dataset (see `titans-seq data list`) "
                        "or data.path (a file or folder of your own)")
    return dataclasses.replace(data, path=str(resolve(data.dataset, progressbar=sys.stderr.isatty())))
