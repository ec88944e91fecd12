"""Datasets by name: the registry of keys, and where a key's files come from.

A key (``ett/ETTm1``, ``gue/prom_core_notata``) names a path in the registry's layout (a file or
a folder, relative to a data root). It resolves, in this order, to:

1. a local mirror, ``TITANS_SEQ_DATA`` (or ``titans-seq --data-dir``), when it holds every file of
   the dataset: an offline machine, a cluster's shared filesystem, the tests and CI;
2. the download cache (``TITANS_SEQ_CACHE``, else the user's cache folder), when its files are
   complete;
3. a download into that cache through pooch: retries, the sha256 checked, the file written to a
   temporary name and renamed once verified, archives unpacked.

The registry itself is data (``datasets.yaml`` beside this module), not code per dataset.
"""
from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pooch
import yaml

from titans_seq.errors import UserError

MIRROR_ENV = "TITANS_SEQ_DATA"
CACHE_ENV = "TITANS_SEQ_CACHE"
RETRIES = 2
pooch.get_logger().setLevel("WARNING")   # the progress bar and our one-line errors say what its info lines would
ARCHIVES = {".zip": pooch.Unzip, ".tar.gz": pooch.Untar, ".tgz": pooch.Untar, ".tar": pooch.Untar}


class DataError(UserError):
    """A dataset cannot be named, found, downloaded or verified; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it sits in the registry's layout and where it comes from."""

    path: str                    # relative to the data root
    url: str                     # the file, or the archive that holds it as ``member``
    sha256: str | None           # of the file itself (of the member, for an archive); None: not pinned
    size: int | None = None      # bytes
    member: str | None = None    # the file's name inside the archive at ``url``


@dataclass(frozen=True)
class Dataset:
    key: str
    description: str
    licence: str
    source: str                  # the publisher's page
    path: str                    # what the key resolves to, relative to the data root
    files: tuple[DataFile, ...]
    note: str = ""               # e.g. why a mirror stands in for the publisher's own URL
    mirror: DataFile | None = None   # a mirror may hold the dataset as this one file instead (e.g. joined)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


@cache
def registry() -> dict[str, Dataset]:
    """Every registered dataset, by key."""
    text = resources.files("titans_seq.data").joinpath("datasets.yaml").read_text()
    entries = yaml.safe_load(text)
    return {key: Dataset(key=key, description=e["description"], licence=e["licence"], source=e["source"],
                         path=e["path"], files=tuple(DataFile(**f) for f in e["files"]), note=e.get("note", ""),
                         mirror=DataFile(url="", **e["mirror"]) if "mirror" in e else None)
            for key, e in entries.items()}


def get_dataset(key: str) -> Dataset:
    """The dataset registered as ``key``; an unknown key is one line naming the closest ones."""
    datasets = registry()
    if key not in datasets:
        close = difflib.get_close_matches(key, datasets, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `titans-seq data list`"
        raise DataError(f"no dataset named {key!r}{hint}")
    return datasets[key]


def is_dataset_key(name: str) -> bool:
    return name in registry()


def mirror_dir() -> Path | None:
    """The local mirror in the registry's layout, if one is set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where downloads go, in the registry's layout."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path(pooch.os_cache("titans-seq"))


def _complete(path: Path, file: DataFile) -> bool:
    return path.is_file() and (file.size is None or path.stat().st_size == file.size)


def locate(dataset: Dataset) -> Path | None:
    """Where ``dataset`` is complete: in the mirror (in the registry's layout or as its one mirror file),
    else in the cache; None when in neither."""
    mirror = mirror_dir()
    if mirror is not None:
        if all(_complete(mirror / f.path, f) for f in dataset.files):
            return mirror / dataset.path
        if dataset.mirror is not None and _complete(mirror / dataset.mirror.path, dataset.mirror):
            return mirror / dataset.mirror.path
    if all(_complete(cache_dir() / f.path, f) for f in dataset.files):
        return cache_dir() / dataset.path
    return None


def resolve(key: str, progressbar: bool = False) -> Path:
    """The local path of dataset ``key``, downloading its missing files into the cache first."""
    return resolve_dataset(get_dataset(key), progressbar)


def resolve_dataset(dataset: Dataset, progressbar: bool = False) -> Path:
    """:func:`resolve` for a :class:`Dataset` (a registered one, or one of your own)."""
    found = locate(dataset)
    if found is not None:
        return found
    root = cache_dir()
    _download(dataset, [f for f in dataset.files if not _complete(root / f.path, f)], root, progressbar)
    return root / dataset.path


def resolve_path(name: str) -> Path:
    """A user's own path, when it exists; else a dataset key, resolved; else the path, for the caller to report."""
    path = Path(name).expanduser()
    if not path.exists() and is_dataset_key(name):
        return resolve(name)
    return path


def _archive_kind(url: str):
    for suffix, processor in ARCHIVES.items():
        if url.split("?")[0].endswith(suffix):
            return processor
    raise DataError(f"{url}: a member is named but the URL is not a .zip or .tar(.gz) archive")


def _download(dataset: Dataset, files: list[DataFile], root: Path, progressbar: bool) -> None:
    plain = [f for f in files if f.member is None]
    fetcher = pooch.create(path=root, base_url="", retry_if_failed=RETRIES,
                           registry={f.path: f.sha256 for f in plain}, urls={f.path: f.url for f in plain})
    for file in plain:
        _pooch_call(dataset, file, root, lambda: fetcher.fetch(file.path, progressbar=progressbar))
    for url in dict.fromkeys(f.url for f in files if f.member is not None):
        _unpack(dataset, [f for f in files if f.url == url], root, progressbar)


def _unpack(dataset: Dataset, members: list[DataFile], root: Path, progressbar: bool) -> None:
    """Download the archive at ``members[0].url`` into the cache and move the named members into place."""
    url = members[0].url
    downloads = root / "downloads"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as scratch:
        processor = _archive_kind(url)(members=[f.member for f in members], extract_dir=scratch)
        _pooch_call(dataset, members[0], root, lambda: pooch.retrieve(
            url, known_hash=None, fname=Path(url.split("?")[0]).name, path=downloads, processor=processor,
            progressbar=progressbar))
        for file in members:
            extracted = Path(scratch) / file.member
            if not extracted.is_file():
                raise DataError(f"{dataset.key}: {url} holds no {file.member}")
            _check_hash(dataset, file, extracted)
            target = root / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(extracted, target)


def _check_hash(dataset: Dataset, file: DataFile, path: Path) -> None:
    if file.sha256 is None:
        return
    got = pooch.file_hash(str(path))
    if got != file.sha256:
        path.unlink()
        raise DataError(_mismatch(dataset, file.url, file.sha256, got))


def _mismatch(dataset: Dataset, url: str, expected: str, got: str) -> str:
    return f"{dataset.key}: {url}: sha256 mismatch (expected {expected}, got {got}); the download was deleted"


def _pooch_call(dataset: Dataset, file: DataFile, root: Path, call) -> None:
    """Run a pooch download, turning its network and checksum failures into one :class:`DataError` line."""
    import requests

    try:
        call()
    except requests.exceptions.RequestException as error:
        status = getattr(error.response, "status_code", None)
        reason = f"HTTP {status}" if status else type(error).__name__
        mirror = mirror_dir() or "a folder"
        raise DataError(f"{dataset.key}: cannot download {file.url} ({reason}); offline? put the file at "
                        f"{root / file.path}, or set {MIRROR_ENV} to {mirror} holding {file.path}") from None
    except ValueError as error:
        found = re.search(r"expected (\S+) but got (\S+?)\.", str(error))
        if not found:
            raise
        raise DataError(_mismatch(dataset, file.url, *found.groups())) from None


@dataclass(frozen=True)
class FileCheck:
    key: str
    path: Path | None            # None: in neither the mirror nor the cache
    status: str                  # ok | mismatch | missing | unpinned
    sha256: str | None = None    # what the file hashes to


def verify(keys: list[str] | None = None) -> list[FileCheck]:
    """Hash every file of the named datasets (default: all) found in the mirror or the cache."""
    checks = []
    for key in keys or list(registry()):
        dataset = get_dataset(key)
        mirror = mirror_dir()
        if dataset.mirror is not None and mirror is not None and (mirror / dataset.mirror.path).is_file():
            files = [dataset.mirror]                   # the mirror holds the one file that stands for the rest
        else:
            files = dataset.files
        for file in files:
            roots = [r for r in (mirror, cache_dir()) if r is not None and (r / file.path).is_file()]
            if not roots:
                checks.append(FileCheck(key, None, "missing"))
                continue
            path = roots[0] / file.path
            got = pooch.file_hash(str(path))
            status = "unpinned" if file.sha256 is None else "ok" if got == file.sha256 else "mismatch"
            checks.append(FileCheck(key, path, status, got))
    return checks

