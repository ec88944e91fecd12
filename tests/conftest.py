"""Test set-up: without a GPU, Triton kernels run in its interpreter (set before triton is imported)."""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def hermetic_datasets(tmp_path_factory):
    """Datasets come from ../shared/data as a mirror, downloads go to a temporary cache, and nothing reaches the
    network: every https request fails at once (the tests' own servers listen on 127.0.0.1)."""
    values = {"TITANS_SEQ_CACHE": str(tmp_path_factory.mktemp("dataset_cache")), "HTTPS_PROXY": "http://127.0.0.1:9",
              "NO_PROXY": "127.0.0.1,localhost"}
    if SHARED_DATA.is_dir():
        values["TITANS_SEQ_DATA"] = str(SHARED_DATA)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def shared_data():
    """A function giving a path under ../shared/data: it fails in CI (CI=true) when the data is missing, else skips."""
    def locate(*parts: str) -> Path:   # no parts: the folder itself
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            if os.environ.get("CI") == "true":
                pytest.fail(f"shared data missing in CI: {path}")
            pytest.skip(f"shared data not found: {path}")
        return path
    return locate


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: its kind, size, mtime and (for a file) the sha256 of its bytes."""
    import hashlib

    entries = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        entries[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return entries


@pytest.fixture(scope="session", autouse=True)
def shared_data_untouched():
    """Fail the session when any test wrote into ../shared/data (whatever its permissions allow)."""
    before = _snapshot(SHARED_DATA)
    yield
    after = _snapshot(SHARED_DATA)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tests changed ../shared/data: {', '.join(changed[:10])}"
