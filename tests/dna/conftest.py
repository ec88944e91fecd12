"""DNA tests: FASTA indexes built without an explicit index_dir go to a temporary cache, not the user's."""
import pytest


@pytest.fixture(autouse=True)
def _index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
