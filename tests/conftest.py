"""Test set-up: without a GPU, Triton kernels run in its interpreter (set before triton is imported)."""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """A function giving a path under ../shared/data: it fails in CI (CI=true) when the data is missing, else skips."""
    def locate(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            if os.environ.get("CI") == "true":
                pytest.fail(f"shared data missing in CI: {path}")
            pytest.skip(f"shared data not found: {path}")
        return path
    return locate
