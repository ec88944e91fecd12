"""``titans-seq bench SUITE``: a grid of recipes x datasets x models x seeds, tabulated as mean ± std.

The models (the table's rows) are backbone variants, and baselines that swap the backbone out
(a row name, and the overrides that choose it, e.g. ``cnn: [task.architecture=cnn]``).

A run whose directory already holds test results of the same recipe (options added since it ran
taking their defaults) is not trained again, so an interrupted suite resumes where it stopped, and
a suite can be split across processes or machines (``--variants``, ``--seeds``) and tabulated by
a last call that finds every run done.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from titans_seq.backbones import VARIANTS
from titans_seq.data import is_dataset_key
from titans_seq.errors import UserError

from .config import Recipe, load_recipe
from .records import write_atomically
from .trainer import train

BASELINES = ("transformer", "swa")


@dataclass
class Suite:
    name: str = "suite"
    recipes: list[str] = field(default_factory=list)       # one column group per recipe (task / dataset)
    datasets: list[str] = field(default_factory=list)      # registry keys or paths: each recipe runs on each
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=lambda: ["loss"])
    overrides: list[str] = field(default_factory=list)     # applied to every run
    variant_overrides: dict[str, list[str]] = field(default_factory=dict)   # e.g. to match parameter counts
    baselines: dict[str, list[str]] = field(default_factory=dict)   # rows without a backbone: name -> overrides
    out_dir: str = "runs"


def load_suite(path: Path) -> Suite:
    if not path.is_file():
        raise UserError(f"suite {path} not found")
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path)))
    except OmegaConfBaseException as error:
        raise UserError(f"suite {path}: {str(error).splitlines()[0]}") from None
    unknown = sorted((set(suite.variants) | set(suite.variant_overrides)) - set(VARIANTS))
    if unknown or not suite.recipes or not suite.seeds:
        raise UserError(f"suite {path}: needs recipes, seeds and variants among {', '.join(VARIANTS)}"
                        + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    clash = sorted(set(suite.baselines) & set(VARIANTS))
    if clash:
        raise UserError(f"suite {path}: baselines {', '.join(clash)} are backbone variants; list them in variants")
    return suite


def models(suite: Suite) -> list[str]:
    """The table's models, in order: the suite's baselines, then transformer and swa, then the Titans variants."""
    return [*suite.baselines, *(v for v in BASELINES if v in suite.variants),
            *(v for v in suite.variants if v not in BASELINES)]


def _row_overrides(suite: Suite, row: str) -> list[str]:
    if row in suite.baselines:
        return list(suite.baselines[row])
    return [*suite.variant_overrides.get(row, []), f"model.variant={row}"]


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f} (n=1)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def _metric(record: dict, name: str) -> float | None:
    """A test metric, or with a ``val_`` prefix the best checkpoint's validation metric."""
    if name.startswith("val_") and name not in record["metrics"]:
        return record.get("val_metrics", {}).get(name[4:])
    return record["metrics"].get(name)


def columns(suite: Suite) -> list[str]:
    """The suite's column groups: each recipe, or each recipe on each of its datasets (``recipe@dataset``)."""
    return [f"{recipe}@{dataset}" for recipe in suite.recipes for dataset in suite.datasets] or list(suite.recipes)


def _column_overrides(column: str) -> list[str]:
    if "@" not in column:
        return []
    source = column.split("@", 1)[1]
    return ([f"data.dataset={source}", "data.path=null"] if is_dataset_key(source) else [f"data.path={source}"])


def _run_folder(column: str) -> str:
    recipe, _, source = column.partition("@")
    return recipe if not source else f"{recipe}/{source if is_dataset_key(source) else Path(source).name}"


def results_table(records: list[dict], suite: Suite) -> str:
    """Markdown: a row per model (baselines first), a column per recipe (on a dataset) and metric, mean ± std."""
    header = ["model"] + [f"{recipe} {column}" for recipe in columns(suite)
                          for column in ["params", *suite.metrics]]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in models(suite):
        cells = [variant]
        for recipe in columns(suite):
            runs = [r for r in records if r["recipe"] == recipe and r["variant"] == variant]
            cells.append(f"{runs[0]['parameters'] / 1e6:.2f}M" if runs else "—")
            cells.extend(_cell([value for r in runs if (value := _metric(r, metric)) is not None])
                         for metric in suite.metrics)
        rows.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in records}))
    return "\n".join(rows) + (f"\n\nTest metrics (`val_` ones: the selected checkpoint's validation metrics), "
                              f"mean ± std over the n seeds run (of seeds {seeds or 'none'}).\n")


def finished_record(recipe: Recipe) -> dict | None:
    """The test record of an earlier run of this recipe, if that run finished.

    The earlier run's saved recipe is read with today's schema, so options added since (which default
    to what it ran) do not set it apart; nor does where the data's shard cache lives.
    """
    results, config = recipe.run_dir / "test_results.json", recipe.run_dir / "config.yaml"
    if not (results.is_file() and config.is_file()):
        return None
    try:
        earlier = load_recipe(str(config))
    except UserError:
        return None
    return json.loads(results.read_text()) if _what_runs(earlier) == _what_runs(recipe) else None


def _what_runs(recipe: Recipe) -> dict:
    """The recipe's values, less the shard cache's folder (which changes no result)."""
    values = recipe.to_dict()
    if isinstance(values["data"], dict):
        values["data"].pop("cache_dir", None)
    return values


def run_suite(path: Path, out: Path | None = None, variants: list[str] | None = None,
              seeds: list[int] | None = None, overrides: list[str] | None = None, name: str | None = None) -> str:
    """Train and test the (recipe, model, seed) runs of a suite not done yet; tabulate every finished one.

    ``variants`` (models: variants or baselines) and ``seeds`` restrict which runs this call may
    train (default: all of the suite's); ``overrides`` are added to every run's, and ``name``
    replaces the suite's (and so its folder).
    """
    suite = load_suite(path)
    suite.overrides, suite.name = [*suite.overrides, *(overrides or [])], name or suite.name
    for asked, known, what in ((variants, models(suite), "variants"), (seeds, suite.seeds, "seeds")):
        if asked is not None and not set(asked) <= set(known):
            raise UserError(f"--{what} {','.join(map(str, asked))}: the suite's {what} are "
                            f"{', '.join(map(str, known))}")
    base = Path(suite.out_dir) / suite.name
    runs = [(column, variant, seed) for column in columns(suite) for variant in [*suite.baselines, *suite.variants]
            for seed in suite.seeds]
    recipes = {run: load_recipe(run[0].split("@")[0], [
        *suite.overrides, *_row_overrides(suite, run[1]), *_column_overrides(run[0]),
        f"run.seed={run[2]}", f"run.out_dir={base}",
        f"run.name={_run_folder(run[0])}/{run[1]}/seed-{run[2]}"]) for run in runs}   # all checked first
    records = []
    for (recipe_name, variant, seed), recipe in recipes.items():
        record = finished_record(recipe)
        if record is None and (variants is None or variant in variants) and (seeds is None or seed in seeds):
            print(f"== {recipe_name} / {variant} / seed {seed}", flush=True)
            record = train(recipe)
        elif record is not None:
            print(f"== {recipe_name} / {variant} / seed {seed}: done before, results reused", flush=True)
        if record is not None:
            if record["variant"] != variant:
                raise UserError(f"suite {path}: the runs of row {variant!r} report the model {record['variant']!r}; "
                                "name the row after it")
            records.append({**record, "recipe": recipe_name})
    write_atomically(base / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    table = results_table(records, suite)
    write_atomically(out or base / "results.md", f"# {suite.name}\n\n{table}")
    return table
