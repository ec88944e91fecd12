"""Result records: one JSON per evaluation, written atomically."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import titans_seq
from titans_seq.files import write_atomically

__all__ = ["git_revision", "result_record", "write_atomically", "write_record"]


def git_revision() -> str:
    """The project's git revision (with ``+dirty`` for uncommitted changes), or the package version."""
    source = Path(titans_seq.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=source, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"titans_seq-{titans_seq.__version__}"


def result_record(*, task: str, dataset: str, split: str, variant: str, parameters: int,
                  metrics: dict[str, float], tokens_per_s: float, seed: int, **extra: Any) -> dict:
    return {"task": task, "dataset": dataset, "split": split, "variant": variant, "parameters": parameters,
            "metrics": metrics, "tokens_per_s": tokens_per_s, "seed": seed, "git_revision": git_revision(), **extra}


def write_record(path: str | os.PathLike, record: dict) -> None:
    write_atomically(path, json.dumps(record, indent=2) + "\n")
