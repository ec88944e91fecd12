"""``titans-seq bench SUITE``: run a suite's grid (see :mod:`.suite`) and tabulate it as mean ± std.

A run whose directory already holds test results of the same recipe (options added since it ran
taking their defaults) is not trained again, and one that was interrupted continues from its latest
complete checkpoint of the same recipe, so an interrupted suite resumes where it stopped, and a
suite can be split across processes or machines (``--variants``, ``--seeds``, ``--columns``) and tabulated by a
last call that finds every run done. ``--jobs N`` trains N runs at a time, each in its own
process pinned to its share of the cores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from queue import Queue
from typing import Callable

from omegaconf import OmegaConf
from tqdm import tqdm

from titans_seq.errors import TrainingError, UserError

from .checkpoint import CHECKPOINTS, latest_checkpoint, read_checkpoint_config
from .config import Recipe, build_recipe, load_recipe
from .records import git_revision, write_atomically
from .report import metric_value, model_order, write_report
from .stability import is_failed
from .suite import Group, Run, Suite, columns, describe_plan, load_suite, plan
from .summaries import cell, summary
from .targets import verdict
from .trainer import train

FAILED = "failed.json"                    # in a run's folder: the error that stopped it, until it is trained again
DONE = ("test_results.json", FAILED)      # a run not asked for this call is reported when its folder holds one


def results_table(records: list[dict], group: Group, variants: list[str]) -> str:
    """Markdown: a row per variant or model (baselines first), a column per column of the group and metric."""
    labels = [column.label for column in columns(group)]
    header = ["model"] + [f"{label} {name}" for label in labels for name in ["params", *group.metrics]]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in model_order(set(variants)):
        cells = [variant]
        for label in labels:
            runs = [r for r in records if r["recipe"] == label and r["model"] == variant]
            cells.append(f"{runs[0]['parameters'] / 1e6:.2f}M" if runs else "—")
            for metric in group.metrics:
                values = [value for r in runs if (value := metric_value(r, metric)) is not None]
                cells.append(cell(summary(values) if values else None))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def suite_tables(records: list[dict], suite: Suite) -> str:
    """Every group's table, under its name when there are several."""
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in records}))
    parts = [(f"## {group.name}\n\n" if len(suite.groups) > 1 else "")
             + results_table([r for r in records if r["group"] == group.name], group,
                             group.variants or suite.variants)
             for group in suite.groups]
    return "\n\n".join(parts) + (f"\n\nTest metrics (`val_` ones: the selected checkpoint's validation metrics), "
                                 f"mean ± std over the n seeds run (of seeds {seeds or 'none'}).\n")


def finished_record(recipe: Recipe) -> dict | None:
    """The test record of an earlier run of this recipe, if that run finished.

    The earlier run's saved recipe is read with today's schema, so options added since (which default
    to what it ran) do not set it apart; nor does where the data's shard cache lives.
    """
    results, config = recipe.run_dir / "test_results.json", recipe.run_dir / "config.yaml"
    if not (results.is_file() and config.is_file()):
        return None
    return json.loads(results.read_text()) if _same_run(partial(load_recipe, str(config)), recipe) else None


def resumable_checkpoint(recipe: Recipe) -> Path | None:
    """The latest complete checkpoint of an interrupted earlier run of this recipe, read with today's
    schema as :func:`finished_record` reads results; None where there is none or it ran another recipe."""
    latest = latest_checkpoint(recipe.run_dir)
    if latest is None:
        return None
    return latest if _same_run(partial(_checkpoint_recipe, latest), recipe) else None


def _checkpoint_recipe(checkpoint: Path) -> Recipe:
    """The recipe saved in a checkpoint, as trained (``model.init_from`` kept, unlike :func:`.runs.saved_recipe`)."""
    return build_recipe(OmegaConf.create(read_checkpoint_config(checkpoint)), str(checkpoint))


def _same_run(earlier: Callable[[], Recipe], recipe: Recipe) -> bool:
    """Whether the recipe that ``earlier`` loads runs what ``recipe`` runs (False where it no longer loads)."""
    try:
        return _what_runs(earlier()) == _what_runs(recipe)
    except UserError:
        return False


def run_record(stage_recipes: list[Recipe]) -> dict | None:
    """A run's result: its last stage's test record (None until that stage has finished), with the steps
    every stage skipped for a non-finite loss summed (None where a stage's count is not known)."""
    records = [finished_record(recipe) for recipe in stage_recipes]
    if records[-1] is None:
        return None
    counts = [record.get("nonfinite_steps") if record else None for record in records]
    return {**records[-1], "nonfinite_steps": None if None in counts else sum(counts)}


def _what_runs(recipe: Recipe) -> dict:
    """The recipe's values, less the shard cache's folder (which changes no result)."""
    values = recipe.to_dict()
    if isinstance(values["data"], dict):
        values["data"].pop("cache_dir", None)
    return values


def _core_shares(jobs: int) -> Queue:
    """``jobs`` disjoint sets of this process's cores, one per concurrent run."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    size = max(1, len(cores) // jobs)
    shares: Queue = Queue()
    for job in range(jobs):
        shares.put(cores[job * size:(job + 1) * size] or cores[-size:])
    return shares


def _train_in_process(recipe_name: str, overrides: tuple[str, ...], recipe: Recipe, cores: list[int],
                      resume: bool) -> None:
    """Train one run (or stage) in its own ``titans-seq train`` process on ``cores``; its output goes to
    bench.log (appended to when the run resumes)."""
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores))}
    command = [sys.executable, "-m", "titans_seq.cli", "train", recipe_name, *overrides, *(["--resume"] * resume)]
    pin = (lambda: os.sched_setaffinity(0, cores)) if hasattr(os, "sched_setaffinity") else None
    log_path = recipe.run_dir / "bench.log"
    with log_path.open("a" if resume else "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=pin).returncode
    if code != 0 or finished_record(recipe) is None:
        last = next((line for line in reversed(log_path.read_text(errors="replace").splitlines()) if line.strip()), "")
        raise TrainingError(f"run {recipe.run_dir} failed (exit {code}): {last.removeprefix('titans-seq: ')}; "
                            f"see {log_path}")


def run_suite(path: Path, out: Path | None = None, variants: list[str] | None = None,
              seeds: list[int] | None = None, overrides: list[str] | None = None, name: str | None = None,
              jobs: int = 1, dry_run: bool = False, columns: list[str] | None = None) -> str:
    """Train and test the runs of a suite not done yet; tabulate every finished one.

    ``variants`` and ``seeds`` restrict which runs this call may train (default: all of the suite's), and
    ``columns`` to the columns whose label contains one of its strings (e.g. ``prom_core``, ``horizon=720``);
    ``overrides`` are added to every run's, and ``name`` replaces the suite's (and so its folder).
    ``jobs`` runs train at once in separate processes; ``dry_run`` returns the plan instead.
    """
    suite = load_suite(path)
    suite.overrides, suite.name = [*suite.overrides, *(overrides or [])], name or suite.name
    rows = list(dict.fromkeys([*suite.variants, *(v for group in suite.groups for v in group.variants)]))
    for asked, known, what in ((variants, rows, "variants"), (seeds, suite.seeds, "seeds")):
        if asked is not None and not set(asked) <= set(known):
            raise UserError(f"--{what} {','.join(map(str, asked))}: the suite's {what} are "
                            f"{', '.join(map(str, known))}")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give at least 1")
    runs = everything = plan(suite)
    labels = list(dict.fromkeys(run.column.label for run in runs))
    unmatched = [text for text in columns or [] if not any(text in label for label in labels)]
    if unmatched:
        raise UserError(f"--columns {','.join(unmatched)}: no column's label contains it; the suite's columns are "
                        f"{'; '.join(labels)}")
    # the runs this call may train, and those of the rest that may have finished before: their recipes are
    # built (and so checked) before anything trains; building one takes a while, so the others are not
    asked = [run for run in runs
             if (variants is None or run.variant in variants) and (seeds is None or run.seed in seeds)
             and (columns is None or any(text in run.column.label for text in columns))]
    runs = [run for run in runs if run in asked or any((run.run_dir / name).is_file() for name in DONE)]
    stages = {run: [load_recipe(run.column.recipe, list(stage)) for stage in run.stages] for run in runs}
    recipes = {run: stages[run][-1] for run in runs}      # the last stage's test is the run's result
    finished = {run: record for run in runs if (record := run_record(stages[run])) is not None}
    failed: dict[Run, dict] = {run: json.loads((run.run_dir / FAILED).read_text()) for run in runs
                               if run not in asked and run not in finished and (run.run_dir / FAILED).is_file()}
    todo = [run for run in asked if run not in finished]
    if dry_run:
        done = f"{len(finished)} of the suite's {len(everything)} runs finished before"
        return f"{describe_plan(suite, todo, jobs)}\n{done}"
    for run in finished:
        print(f"== {run.column.label} / {run.variant} / seed {run.seed}: done before, results reused", flush=True)
    progress = tqdm(total=len(todo), desc=suite.name, unit="run", file=sys.stderr, disable=not todo)
    shares = _core_shares(jobs)

    def train_one(run: Run) -> None:
        """Train one run; a run that fails is noted and the grid goes on."""
        cores = shares.get()
        (run.run_dir / FAILED).unlink(missing_ok=True)
        try:
            for number, (overrides, recipe) in enumerate(zip(run.stages, stages[run]), 1):
                if finished_record(recipe) is not None:   # an earlier stage done before (a curriculum resumes there)
                    continue
                checkpoint = resumable_checkpoint(recipe)
                if checkpoint is None:      # any left are another recipe's: start clean, not over them
                    shutil.rmtree(recipe.run_dir / CHECKPOINTS, ignore_errors=True)
                print(f"== {run.column.label} / {run.variant} / seed {run.seed}"
                      + (f" / stage {number} of {len(run.stages)}" if len(run.stages) > 1 else "")
                      + (f": resumed from {checkpoint.name}" if checkpoint else ""), flush=True)
                if jobs == 1:
                    train(recipe, resume=checkpoint is not None)
                else:
                    _train_in_process(run.column.recipe, overrides, recipe, cores, resume=checkpoint is not None)
            finished[run] = run_record(stages[run])
        except (UserError, TrainingError) as error:
            failed[run] = {"error": str(error), "git_revision": git_revision()}
            write_atomically(run.run_dir / FAILED, json.dumps(failed[run]))
            print(f"== {run.column.label} / {run.variant} / seed {run.seed} failed: {error}", flush=True)
        finally:
            shares.put(cores)
            progress.update()

    if jobs == 1:
        for run in todo:
            train_one(run)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(train_one, todo))
    progress.close()
    records = [{**(finished[run] if run in finished else {"failed": failed[run]["error"], "seed": run.seed,
                                                          "metrics": {}, "git_revision": failed[run]["git_revision"]}),
                "model": run.variant, "group": run.column.group, "recipe": run.column.label,
                "column": {"recipe": run.column.recipe, "dataset": run.column.dataset,
                           "settings": dict(run.column.settings)}, "run_dir": str(recipes[run].run_dir)}
               for run in runs if run in finished or run in failed]
    base = Path(suite.out_dir) / suite.name
    write_atomically(base / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    table = suite_tables([r for r in records if not is_failed(r)], suite)
    write_atomically(out or base / "results.md", f"# {suite.name}\n\n{table}")
    write_report(suite, records, base)
    failed = {run: failure for run, failure in failed.items() if run in todo}
    if failed:
        raise TrainingError(f"{len(failed)} of {len(todo)} runs failed, the rest are tabulated in {base / 'report.md'}"
                            f"; the first: {next(iter(failed.values()))['error']}")
    return table + _target_verdicts(base) + f"\nreport: {base / 'report.md'} (figures in {base / 'figures'})"


def _target_verdicts(base: Path) -> str:
    """The suite's targets as the report checked them (its results.json), a line each; "" when it states none."""
    groups = json.loads((base / "results.json").read_text())["groups"]
    lines = [f"- {f'{name}: ' if len(groups) > 1 else ''}{result['target']}: {verdict(result)}"
             for name, group in groups.items() for result in group.get("targets", [])]
    return "\nTargets:\n" + "\n".join(lines) + "\n" if lines else ""
