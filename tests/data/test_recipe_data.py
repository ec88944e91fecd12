"""Every packaged recipe finds its data by key in the mirror, without a path of ours in it."""
from pathlib import Path

import pytest

from titans_seq.data import MIRROR_ENV, DataSource, data_overrides, with_resolved_path
from titans_seq.engine.config import load_recipe, packaged_recipes

USER_CORPUS = {"lm_170m", "lm_340m", "lm_760m"}   # the paper-scale recipes train on the user's own corpus


@pytest.mark.parametrize("name", sorted(packaged_recipes()))
def test_a_packaged_recipe_resolves_its_data_from_the_mirror(name, shared_data, monkeypatch):
    mirror = shared_data()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    recipe = load_recipe(name)
    if not isinstance(recipe.data, DataSource):
        assert recipe.data is None, name                  # synthetic data (demo, passkey)
        return
    if name in USER_CORPUS:
        assert recipe.data.path.startswith("data/lm/")   # wins over the default dataset
        return
    assert recipe.data.path is None and recipe.data.dataset
    resolved = with_resolved_path(recipe.data).path
    assert mirror in Path(resolved).parents


def test_a_path_wins_over_the_dataset(tmp_path):
    data = DataSource(dataset="ett/ETTm1", path=str(tmp_path))
    assert with_resolved_path(data) is data


def test_no_dataset_and_no_path_is_one_line():
    with pytest.raises(ValueError, match="data.dataset") as error:
        with_resolved_path(DataSource())
    assert "\n" not in str(error.value)


def test_data_overrides_take_a_key_unless_a_local_file_has_its_name(tmp_path, monkeypatch):
    assert data_overrides("ett/ETTm1") == ["data.dataset=ett/ETTm1", "data.path=null"]
    assert data_overrides(str(tmp_path / "mine.csv")) == [f"data.path={tmp_path / 'mine.csv'}"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ett").mkdir()
    (tmp_path / "ett" / "ETTm1").write_text("date,OT\n")        # a file of the user's, named like a key
    assert data_overrides("ett/ETTm1") == ["data.path=ett/ETTm1"]
