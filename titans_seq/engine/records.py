"""Result records (one JSON per evaluation) and atomic file writes."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import titans_seq


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
