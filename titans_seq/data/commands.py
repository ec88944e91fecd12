"""What ``titans-seq data list | fetch | verify | path`` print."""
from __future__ import annotations

from .registry import cache_dir, get_dataset, mirror_dir, registry, resolve, verify


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def list_table() -> str:
    """Every registered dataset: key, size, licence and description, as a markdown table."""
    rows = ["| key | size | licence | description |", "|---|---|---|---|"]
    for key, dataset in registry().items():
        rows.append(f"| `{key}` | {human_size(dataset.size)} | {dataset.licence} | {dataset.description} |")
    return "\n".join(rows)


def fetch(keys: list[str]) -> str:
    """Resolve each key (mirror, cache or download, with a progress bar) and say where it is."""
    for key in keys:
        get_dataset(key)   # every key is checked before anything is downloaded
    return "\n".join(f"{key}: {resolve(key, progressbar=True)}" for key in keys)


def verify_table(keys: list[str]) -> tuple[str, bool]:
    """Hash every file of the datasets found in the mirror or the cache: the report, and whether all match."""
    checks = verify(keys or None)
    lines = [f"{c.status:9s} {c.key}  {c.path or '(not fetched)'}"
             + (f"  sha256 {c.sha256}" if c.status == "unpinned" else "") for c in checks]
    ok = sum(c.status == "ok" for c in checks)
    lines.append(f"{ok} ok of {len(checks)} files (mirror {mirror_dir() or '(none)'}, cache {cache_dir()})")
    return "\n".join(lines), not any(c.status == "mismatch" for c in checks)


def path(key: str) -> str:
    return str(resolve(key, progressbar=True))
