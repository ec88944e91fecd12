"""The LM recipes: the paper's sizes and training settings, each scale extending the one below, suites of every variant."""
from pathlib import Path

import pytest
import torch

from titans_seq.backbones import VARIANTS
from titans_seq.tasks.language_model import LanguageModel
from titans_seq.engine.bench import load_suite
from titans_seq.engine.config import load_recipe, packaged_recipes

SUITES = Path(__file__).resolve().parents[2] / "recipes" / "suites"


@pytest.mark.parametrize("name,d_model,n_layers,max_steps", [("lm_170m", 768, 12, 30_000),
                                                             ("lm_340m", 1024, 24, 30_000),
                                                             ("lm_760m", 1536, 24, 60_000)])
def test_paper_scales(name, d_model, n_layers, max_steps):
    recipe = load_recipe(name)
    assert (recipe.model.d_model, recipe.model.n_layers, recipe.model.n_heads) == (d_model, n_layers, 16)
    assert (recipe.optim.lr, recipe.optim.weight_decay, recipe.data.seq_len) == (4e-4, 0.1, 4096)
    assert recipe.train.max_steps == max_steps and recipe.run.name == f"lm-{name[3:]}-mac"


@pytest.mark.parametrize("scale", ["tiny", "170m", "340m", "760m"])
def test_each_scale_has_a_suite_of_every_variant(scale):
    suite = load_suite(SUITES / f"lm_{scale}.yaml")
    assert suite.recipes == [f"lm_{scale}"] and sorted(suite.variants) == sorted(VARIANTS)
    assert f"lm_{scale}" in packaged_recipes()
    for variant in VARIANTS:
        assert load_recipe(f"lm_{scale}", [f"model.variant={variant}"]).run.name == f"lm-{scale}-{variant}"


@pytest.mark.parametrize("scale", ["170m", "340m", "760m"])
def test_paper_scale_suites_match_parameter_counts(scale):
    suite = load_suite(SUITES / f"lm_{scale}.yaml")
    counts = {}
    for variant in VARIANTS:
        recipe = load_recipe(f"lm_{scale}", [*suite.variant_overrides.get(variant, []), f"model.variant={variant}"])
        with torch.device("meta"):
            model = LanguageModel(32_000, recipe.model.backbone())
        counts[variant] = sum(p.numel() for p in model.parameters())
    for variant, count in counts.items():   # within 1% of the transformer (without the overrides: up to +43%)
        assert abs(count / counts["transformer"] - 1) < 0.01, (variant, count, counts["transformer"])
