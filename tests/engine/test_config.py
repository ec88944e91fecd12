import pytest

from titans_seq.engine.config import RecipeError, load_recipe, packaged_recipes, recipe_to_yaml


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_packaged_demo_recipe_loads_with_overrides():
    recipe = load_recipe("demo", ["model.variant=mag", "train.max_steps=7"])
    assert recipe.model.variant == "mag" and recipe.train.max_steps == 7
    assert recipe.task.name == "recall" and recipe.task.n_pairs == 4
    assert "demo" in packaged_recipes()


def test_base_recipe_is_extended(tmp_path):
    write(tmp_path, "base.yaml", "task: {name: recall, n_pairs: 3}\nmodel: {d_model: 32, n_heads: 2}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nmodel: {variant: lmm}\n")
    recipe = load_recipe(str(child))
    assert (recipe.model.variant, recipe.model.d_model, recipe.task.n_pairs) == ("lmm", 32, 3)


def test_base_can_be_a_packaged_recipe(tmp_path):
    child = write(tmp_path, "child.yaml", "base: demo\ntrain: {max_steps: 3}\n")
    recipe = load_recipe(str(child))
    assert recipe.train.max_steps == 3 and recipe.model.d_model == 64


def test_run_name_interpolates_task_and_variant(tmp_path):
    recipe = load_recipe(str(write(tmp_path, "r.yaml", "task: {name: recall}\nmodel: {variant: swa}\n")))
    assert recipe.run.name == "recall-swa"
    assert "name: recall-swa" in recipe_to_yaml(recipe)


@pytest.mark.parametrize("text,overrides,message", [
    ("task: {name: recall}\nmodel: {segment_length: 3}\n", [], r"unknown key 'model.segment_length'.*segment_len"),
    ("task: {name: recall}\n", ["train.max_step=3"], r"unknown key 'train.max_step'.*max_steps"),
    ("task: {name: recall}\n", ["train.max_steps=many"], r"train.max_steps"),
    ("task: {name: recall}\nmodel: {variant: mamba}\n", [], r"unknown variant 'mamba'.*mac"),
    ("task: {name: recall}\nmodel: {d_model: 30, n_heads: 4}\n", [], r"d_model=30"),
    ("task: {name: recall}\neval: {mode: best}\n", [], r"eval.mode='best' is not one of min, max"),
    ("task: {name: recall}\n", ["model.bidirectional=true"], r"bidirectional=true reads .* 'recall' predicts"),
    ("model: {variant: mac}\n", [], r"task.name is missing"),
    ("task: {name: weather}\n", [], r"unknown task 'weather'.*recall"),
    ("task: {name: recall\n", [], r"not valid YAML"),
    ("- a\n- b\n", [], r"must be a mapping"),
    ("task: {name: recall}\n", ["novalue"], r"must look like key=value"),
])
def test_bad_recipes_give_one_clear_line(tmp_path, text, overrides, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(RecipeError, match=message) as error:
        load_recipe(str(path), overrides)
    assert "\n" not in str(error.value)
    if "task.name is missing" not in message and "YAML" not in message and "mapping" not in message \
            and "key=value" not in message:
        assert str(path) in str(error.value)


def test_missing_recipe_and_base_cycles(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(str(tmp_path / "nope.yaml"))
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(RecipeError, match="extends itself"):
        load_recipe(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("text, overrides", [
    ("task: [recall]\n", []),                                  # a section that is a list (found by hypothesis)
    ("task: {name: recall}\nmodel: 3\n", []),
    ("task: {name: recall}\n", ["model.d_model=${nowhere}"]),  # an interpolation of nothing
    ("task: {name: recall}\ntrain: []\n", ["train.max_steps=1"]),   # an override into a list (hypothesis)
])
def test_malformed_sections_and_interpolations_are_one_line(tmp_path, text, overrides):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path), overrides)
    assert str(path) in str(error.value) and len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("override", ["train.max_steps=:", "train.max_steps=a\x00", "model.betas=[1,"])
def test_an_override_that_is_not_yaml_is_named_in_one_line(override):   # found by hypothesis
    with pytest.raises(RecipeError, match="is not valid YAML") as error:
        load_recipe("demo", [override])
    assert repr(override) in str(error.value) and len(str(error.value).splitlines()) == 1
