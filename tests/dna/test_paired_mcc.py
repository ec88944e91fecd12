"""scripts/paired_mcc.py: two rows of a DNA suite on the same test sequences, and the paired bootstrap."""
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import matthews_corrcoef

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "paired_mcc.py"
spec = importlib.util.spec_from_file_location("paired_mcc", SCRIPT)
paired_mcc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paired_mcc)


def noisy(labels, flip, rng):
    """The labels with a share ``flip`` of them flipped at random: a classifier of known quality."""
    return np.where(rng.random(len(labels)) < flip, 1 - labels, labels)


def test_the_statistic_is_the_difference_of_seed_means():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    a, b = [noisy(labels, 0.1, rng) for _ in range(3)], [noisy(labels, 0.3, rng) for _ in range(2)]
    expected = (np.mean([matthews_corrcoef(labels, p) for p in a])
                - np.mean([matthews_corrcoef(labels, p) for p in b]))
    assert paired_mcc.mean_mcc_difference(labels, a, b) == expected


def test_the_pairing_narrows_the_interval_of_a_difference_both_rows_share():
    """B is A with 20 of 2,000 answers changed: unpaired, the gap would drown in each MCC's own
    sampling error; paired, the interval is as narrow as those 20 sequences make it."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    a = noisy(labels, 0.2, rng)
    b = a.copy()
    worse = rng.choice(np.flatnonzero(a == labels), 20, replace=False)
    b[worse] = 1 - b[worse]
    result = paired_mcc.paired_bootstrap(labels, [a], [b], resamples=2000)
    assert 0 < result["low"] < result["difference"] < result["high"] < 0.04
    assert result["at_or_below_zero"] == 0.0
    same = paired_mcc.paired_bootstrap(labels, [a], [a.copy()], resamples=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "at_or_below_zero": 1.0}


def train(tmp_path, table, row, *overrides):
    result = subprocess.run(
        [sys.executable, "-m", "titans_seq.cli", "train", "recipes/dna_mac.yaml", f"data.path={table}",
         "data.test_fraction=0.3", "train.max_steps=3", "train.batch_size=8", "train.eval_every=3",
         "train.compile=false", f"run.out_dir={tmp_path / 'suite'}", f"run.name={row}/seed-0", *overrides],
        capture_output=True, text=True, cwd=SCRIPT.parents[1], timeout=600)
    assert result.returncode == 0, result.stderr


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_two_trained_rows_are_scored_again_and_compared(tmp_path):
    rng = random.Random(0)
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(
        f"{''.join(rng.choice('ACGT') for _ in range(24))},{i % 2}\n" for i in range(60)))
    train(tmp_path, table, "lmm", "model.variant=lmm", "model.d_model=16", "model.n_layers=1", "model.n_heads=2")
    train(tmp_path, table, "cnn", "task.architecture=cnn")
    column = tmp_path / "suite"
    result = run_script(str(column), "lmm", "cnn", "--resamples", "200")
    assert result.returncode == 0, result.stderr
    for row in ("lmm", "cnn"):
        recorded = json.loads((column / row / "seed-0" / "test_results.json").read_text())["metrics"]["mcc"]
        assert f"| {row} | seed-0 | {100 * recorded:.2f} |" in result.stdout
    assert "lmm − cnn, mean over seeds:" in result.stdout and "95% interval [" in result.stdout

    record = column / "cnn" / "seed-0" / "test_results.json"
    changed = json.loads(record.read_text())
    changed["metrics"]["mcc"] += 0.01
    record.write_text(json.dumps(changed))
    refused = run_script(str(column), "lmm", "cnn")
    assert refused.returncode == 2 and "changed since the run" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = run_script(str(column), "lmm", "mag")
    assert missing.returncode == 2 and "no finished seed-* run" in missing.stderr
