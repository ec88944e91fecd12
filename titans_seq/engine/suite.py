"""Suites: grids of runs over recipes x datasets x recipe-key axes x variants x seeds.

A suite is one or more *groups* (a family of experiments: a task, its datasets, its metrics), each
crossed with the suite's variants and seeds. A suite file without ``groups`` is one group::

    name: paper_cpu
    variants: [transformer, swa, lmm, mac, mag, mal]
    seeds: [0, 1, 2]
    groups:
      - name: forecasting
        recipes: [forecast]
        datasets: [ett/ETTm1, ett/ETTh1]        # registry keys or paths
        axes: {task.horizon: [96, 192, 336, 720]}
        metrics: [mse, mae]

A *column* is one (recipe, dataset, axis values) of a group; its label reads
``forecast@ett/ETTm1 task.horizon=96``, and every run of it is one variant at one seed. A group
with ``stages`` trains each run as a curriculum: stage after stage, each from the previous
stage's best checkpoint, the last stage's test being the run's result.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from titans_seq.backbones import VARIANTS
from titans_seq.data import data_overrides, is_dataset_key
from titans_seq.errors import UserError

from .config import resolve_recipe_path
from .targets import Target, check_targets


@dataclass
class Group:
    name: str = ""                                          # default: the first recipe's name
    recipes: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)      # registry keys or paths; empty: the recipe's own data
    axes: dict[str, list[Any]] = field(default_factory=dict)   # recipe keys -> values, crossed with each other
    metrics: list[str] = field(default_factory=lambda: ["loss"])
    overrides: list[str] = field(default_factory=list)     # this group's runs
    variants: list[str] = field(default_factory=list)      # this group's rows; empty: the suite's
    variant_overrides: dict[str, list[str]] = field(default_factory=dict)   # after the suite's
    stages: list[list[str]] = field(default_factory=list)  # a curriculum: each stage's overrides, each stage
    #   trained from the previous one's best checkpoint (model.init_from); the last stage's test is the run's
    minutes_per_run: float = 0.0                            # a CPU estimate for --dry-run; 0: unknown
    targets: list[Target] = field(default_factory=list)    # what the report checks of its rows (see targets.py)


@dataclass
class Suite:
    name: str = "suite"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))   # rows: backbone variants or models
    models: dict[str, list[str]] = field(default_factory=dict)   # rows that are not a backbone, by their overrides
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)     # every run
    variant_overrides: dict[str, list[str]] = field(default_factory=dict)   # e.g. to match parameter counts
    out_dir: str = "runs"
    groups: list[Group] = field(default_factory=list)
    # a suite of one group may give the group's fields at the top level instead
    recipes: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["loss"])
    stages: list[list[str]] = field(default_factory=list)
    minutes_per_run: float = 0.0
    targets: list[Target] = field(default_factory=list)


@dataclass(frozen=True)
class Column:
    """One (recipe, dataset, axis values) of a group: a cell per variant in the group's table."""

    group: str
    recipe: str
    dataset: str | None
    settings: tuple[tuple[str, Any], ...]   # (recipe key, value) of each axis

    @property
    def label(self) -> str:
        name = self.recipe + (f"@{self.dataset}" if self.dataset else "")
        return " ".join([name, *(f"{key}={value}" for key, value in self.settings)])

    @property
    def folder(self) -> str:
        parts = [self.recipe]
        if self.dataset:
            parts.append(self.dataset if is_dataset_key(self.dataset) else Path(self.dataset).name)
        parts.extend(f"{key.split('.')[-1]}-{value}" for key, value in self.settings)
        return "/".join(parts)

    def overrides(self) -> list[str]:
        """What makes this column's runs differ from the recipe's: its dataset and axis values."""
        source = data_overrides(self.dataset) if self.dataset else []
        return [*source, *(f"{key}={value}" for key, value in self.settings)]


@dataclass(frozen=True)
class Run:
    column: Column
    variant: str                             # the row: a backbone variant, or one of the suite's models
    seed: int
    stages: tuple[tuple[str, ...], ...]      # per stage (one without a curriculum): every override, in order
    minutes: float                           # the group's estimate; 0: unknown
    run_dir: Path                            # the last stage's folder (run.out_dir / run.name): the run's result


def packaged_suites() -> dict[str, Path]:
    """The suites shipped with the package, by name."""
    folder = resources.files("titans_seq.recipes").joinpath("suites")
    return {Path(item.name).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".yaml")}


def load_suite(path: Path) -> Suite:
    """A suite file (or a packaged suite's name), validated; one without ``groups`` is one group."""
    if not path.is_file() and not path.parent.parts and path.stem in packaged_suites():
        path = packaged_suites()[path.stem]
    if not path.is_file():
        raise UserError(f"suite {path} not found (packaged suites: {', '.join(sorted(packaged_suites()))})")
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path)))
    except OmegaConfBaseException as error:
        raise UserError(f"suite {path}: {str(error).splitlines()[0]}") from None
    if suite.groups and suite.recipes:
        raise UserError(f"suite {path}: give either groups or top-level recipes, not both")
    if not suite.groups:
        suite.groups = [Group(recipes=suite.recipes, datasets=suite.datasets, axes=suite.axes, metrics=suite.metrics,
                              stages=suite.stages, minutes_per_run=suite.minutes_per_run, targets=suite.targets)]
    elif suite.targets:
        raise UserError(f"suite {path}: with groups, give targets in each group")
    rows = set(suite.variants).union(*(group.variants for group in suite.groups))
    rows |= set(suite.variant_overrides).union(*(group.variant_overrides for group in suite.groups))
    unknown = sorted(rows - set(VARIANTS) - set(suite.models))
    if unknown or not suite.seeds or not all(group.recipes for group in suite.groups):
        raise UserError(f"suite {path}: needs recipes, seeds and variants among {', '.join(VARIANTS)} or its models"
                        + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    clash = sorted(set(suite.models) & set(VARIANTS))
    if clash:
        raise UserError(f"suite {path}: models {', '.join(clash)} are backbone variants; give them other names")
    for group in suite.groups:
        group.name = group.name or group.recipes[0]
        for recipe in group.recipes:
            resolve_recipe_path(recipe, path.parent)
        check_targets(group.targets, group.metrics, set(group.variants or suite.variants),
                      f"suite {path}, group {group.name}")
    names = [group.name for group in suite.groups]
    if len(set(names)) != len(names):
        raise UserError(f"suite {path}: group names must differ; got {', '.join(names)}")
    return suite


def columns(group: Group) -> list[Column]:
    """The group's columns: recipes x datasets x the product of its axes, in the file's order."""
    keys = list(group.axes)
    settings = [tuple(zip(keys, values)) for values in itertools.product(*(group.axes[k] for k in keys))]
    return [Column(group.name, recipe, dataset, setting) for recipe in group.recipes
            for dataset in (group.datasets or [None]) for setting in settings]


def plan(suite: Suite) -> list[Run]:
    """Every run of the suite, group after group, column after column, variant after variant, seed after seed."""
    runs, out_dir = [], Path(suite.out_dir) / suite.name
    for group in suite.groups:
        for column in columns(group):
            for variant, seed in itertools.product(group.variants or suite.variants, suite.seeds):
                model = suite.models.get(variant, [f"model.variant={variant}"])
                overrides = (*suite.overrides, *group.overrides, *suite.variant_overrides.get(variant, []),
                             *group.variant_overrides.get(variant, []), *column.overrides(), *model, f"run.seed={seed}",
                             f"run.out_dir={out_dir}")
                name = f"{column.folder}/{variant}/seed-{seed}"
                stages = [(*overrides, f"run.name={name}")]
                if group.stages:
                    stages = [(*overrides, *stage, f"run.name={name}/stage-{i + 1}",
                               *([f"model.init_from={out_dir / name / f'stage-{i}' / 'best'}"] if i else []))
                              for i, stage in enumerate(group.stages)]
                    name = f"{name}/stage-{len(group.stages)}"
                runs.append(Run(column, variant, seed, tuple(stages), group.minutes_per_run, out_dir / name))
    return runs


def describe_plan(suite: Suite, runs: list[Run], jobs: int) -> str:
    """What ``--dry-run`` prints: the runs to train per group, and the estimated time with ``jobs`` processes."""
    lines = [f"suite {suite.name}: {len(runs)} runs to train"]
    for group in suite.groups:
        share = [run for run in runs if run.column.group == group.name]
        estimate = f", about {sum(r.minutes for r in share):.0f} CPU minutes" if group.minutes_per_run else ""
        lines.append(f"  {group.name}: {len(share)} runs = {len({r.column for r in share})} columns x "
                     f"{len({r.variant for r in share})} variants x {len({r.seed for r in share})} seeds{estimate}")
    unknown = sum(not run.minutes for run in runs)
    lines.append(f"estimated {sum(r.minutes for r in runs) / jobs / 60:.1f} h with --jobs {jobs}"
                 + (f" ({unknown} runs have no estimate)" if unknown else ""))
    return "\n".join(lines)
