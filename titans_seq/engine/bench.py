"""``titans-seq bench SUITE``: a grid of recipes x variants x seeds, tabulated as mean ± std."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from titans_seq.backbones import VARIANTS

from .config import load_recipe
from .errors import UserError
from .records import write_atomically
from .trainer import train

BASELINES = ("transformer", "swa")


@dataclass
class Suite:
    name: str = "suite"
    recipes: list[str] = field(default_factory=list)       # one column group per recipe (task / dataset)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=lambda: ["loss"])
    overrides: list[str] = field(default_factory=list)     # applied to every run
    out_dir: str = "runs"


def load_suite(path: Path) -> Suite:
    if not path.is_file():
        raise UserError(f"suite {path} not found")
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path)))
    except OmegaConfBaseException as error:
        raise UserError(f"suite {path}: {str(error).splitlines()[0]}") from None
    unknown = sorted(set(suite.variants) - set(VARIANTS))
    if unknown or not suite.recipes or not suite.seeds:
        raise UserError(f"suite {path}: needs recipes, seeds and variants among {', '.join(VARIANTS)}"
                        + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return suite


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def results_table(records: list[dict], suite: Suite) -> str:
    """Markdown: a row per variant (baselines first), a column per recipe and metric, mean ± std over seeds."""
    header = ["model"] + [f"{recipe} {metric}" for recipe in suite.recipes for metric in suite.metrics]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ordered = [v for v in BASELINES if v in suite.variants] + [v for v in suite.variants if v not in BASELINES]
    for variant in ordered:
        cells = [variant]
        for recipe in suite.recipes:
            for metric in suite.metrics:
                cells.append(_cell([r["metrics"][metric] for r in records
                                    if r["recipe"] == recipe and r["variant"] == variant and metric in r["metrics"]]))
        rows.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(str(s) for s in suite.seeds)
    return "\n".join(rows) + f"\n\nTest metrics, mean ± std over seeds {seeds}.\n"


def run_suite(path: Path, out: Path | None = None) -> str:
    """Train and test every (recipe, variant, seed) of a suite; write records.jsonl and the table."""
    suite = load_suite(path)
    base = Path(suite.out_dir) / suite.name
    runs = [(recipe, variant, seed) for recipe in suite.recipes for variant in suite.variants for seed in suite.seeds]
    recipes = {run: load_recipe(run[0], [*suite.overrides, f"model.variant={run[1]}", f"run.seed={run[2]}",
                                         f"run.out_dir={base}", f"run.name={run[0]}/{run[1]}/seed-{run[2]}"])
               for run in runs}                        # every recipe is checked before the first run starts
    records = []
    for (recipe_name, variant, seed), recipe in recipes.items():
        print(f"== {recipe_name} / {variant} / seed {seed}", flush=True)
        records.append({**train(recipe), "recipe": recipe_name})
    write_atomically(base / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    table = results_table(records, suite)
    write_atomically(out or base / "results.md", f"# {suite.name}\n\n{table}")
    return table
