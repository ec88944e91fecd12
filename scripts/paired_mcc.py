"""Two rows of a DNA suite on the same test sequences: their MCC difference and its paired bootstrap.

    python scripts/paired_mcc.py runs/gue_pretrained/dna_mac/gue/tf_0 lmm-pretrained cnn
    python scripts/paired_mcc.py COLUMN ROW_A ROW_B --resamples 20000 --confidence 0.9

COLUMN is a suite's folder for one task, holding a folder per row and in it ``seed-*`` runs. Each
seed's best checkpoint is scored again on the test split (its recorded test MCC must come back
exactly: otherwise the data or the code changed since the run, and the comparison is refused). The
statistic is the mean over seeds of row A's MCC less row B's. Both rows are scored on the same
sequences, so the bootstrap resamples sequences once for both (``scipy.stats.bootstrap``,
``paired=True``, BCa interval): the sequences that are hard for one model are mostly hard for the
other, so the difference varies less than either MCC, and the interval says how much of an
observed gap the choice of test sequences alone could make. It does not cover the seeds' spread.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import DegenerateDataWarning, bootstrap
from sklearn.metrics import matthews_corrcoef
from torch.utils.data import DataLoader

from titans_seq.engine.runs import open_run
from titans_seq.errors import UserError


def seed_runs(column: Path, row: str) -> list[Path]:
    """The row's finished seed runs, in seed order."""
    runs = sorted((column / row).glob("seed-*"), key=lambda p: int(p.name.split("-")[1]))
    runs = [run for run in runs if (run / "test_results.json").is_file()]
    if not runs:
        raise UserError(f"{column / row}: no finished seed-* run (test_results.json) of row {row!r}")
    return runs


def scored_test_split(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted classes) of a run's best checkpoint on its test split; its recorded MCC must return."""
    run = open_run(run_dir, device="cpu", task="dna_classification")
    loader = DataLoader(run.task.datasets()["test"], batch_size=run.recipe.train.batch_size, shuffle=False)
    with torch.no_grad():
        logits, labels = run.task.predict(run.model, loader)
    predicted = logits.argmax(-1).numpy()
    recorded = json.loads((run_dir / "test_results.json").read_text())["metrics"]["mcc"]
    measured = matthews_corrcoef(labels, predicted)
    if abs(measured - recorded) > 1e-9:
        raise UserError(f"{run_dir}: test MCC {measured:.6f} on scoring again, {recorded:.6f} recorded; the data or "
                        "the code changed since the run, so its predictions are not the published ones")
    return labels, predicted


def mean_mcc_difference(labels: np.ndarray, a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean over A's seeds of the MCC less the mean over B's."""
    return float(np.mean([matthews_corrcoef(labels, p) for p in a]) - np.mean([matthews_corrcoef(labels, p) for p in b]))


def paired_bootstrap(labels: np.ndarray, a: list[np.ndarray], b: list[np.ndarray], resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """The difference, its paired-bootstrap interval over the sequences and the share of resamples at or below 0."""
    def statistic(y, *predictions):
        return mean_mcc_difference(y, list(predictions[:len(a)]), list(predictions[len(a):]))

    difference = mean_mcc_difference(labels, a, b)
    with warnings.catch_warnings():   # rows that agree on every sequence: every resample gives one value
        warnings.simplefilter("ignore", (DegenerateDataWarning, RuntimeWarning))
        result = bootstrap((labels, *a, *b), statistic, paired=True, vectorized=False, n_resamples=resamples,
                           confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.ptp(result.bootstrap_distribution) == 0:
        low = high = difference
    return {"difference": difference, "low": float(low), "high": float(high),
            "at_or_below_zero": float(np.mean(result.bootstrap_distribution <= 0))}


def report(column: Path, row_a: str, row_b: str, resamples: int, confidence: float) -> str:
    """A markdown table of each seed's test MCC, then the difference and its interval (MCC x 100)."""
    labels, rows = None, {}
    for row in (row_a, row_b):
        rows[row] = []
        for run_dir in seed_runs(column, row):
            y, predicted = scored_test_split(run_dir)
            if labels is not None and not np.array_equal(y, labels):
                raise UserError(f"{run_dir}: its test split's labels differ from {row_a}'s; not the same sequences")
            labels = y
            rows[row].append((run_dir.name, predicted))
    lines = [f"{column}: {len(labels):,} test sequences", "", "| row | seed | test MCC ×100 |", "|---|---|---|"]
    for row, seeds in rows.items():
        lines += [f"| {row} | {seed} | {100 * matthews_corrcoef(labels, p):.2f} |" for seed, p in seeds]
    result = paired_bootstrap(labels, [p for _, p in rows[row_a]], [p for _, p in rows[row_b]], resamples, confidence)
    lines += ["", f"{row_a} − {row_b}, mean over seeds: {100 * result['difference']:+.2f}; paired bootstrap over the "
              f"sequences ({resamples:,} resamples, BCa): {confidence:.0%} interval [{100 * result['low']:+.2f}, "
              f"{100 * result['high']:+.2f}]; share of resamples at or below 0: {result['at_or_below_zero']:.3f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("column", type=Path, help="a suite's folder for one task: <row>/seed-*/ runs in it")
    parser.add_argument("row_a")
    parser.add_argument("row_b")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args()
    try:
        print(report(args.column, args.row_a, args.row_b, args.resamples, args.confidence))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
