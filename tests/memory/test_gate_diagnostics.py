"""scripts/gate_diagnostics.py: gradients per parameter group, the gates, MAC's join, and movement from init."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gate_diagnostics.py"


def test_diagnostics_of_a_trained_mac_against_its_initialisation(tmp_path):
    train = subprocess.run(
        [sys.executable, "-m", "titans_seq.cli", "train", "lm_passkey", "model.variant=mac", "model.d_model=16",
         "model.n_heads=2", "model.chunk_size=8", "model.segment_len=32", "task.seq_len=128", "task.n_train=8",
         "task.n_val=2", "task.n_test=2", "task.test_lengths=[128]", "train.max_steps=2", "train.batch_size=2",
         "train.eval_every=2", "train.compile=false", "run.out_dir=runs", "run.name=mac"],
        capture_output=True, text=True, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    result = subprocess.run([sys.executable, str(SCRIPT), "runs/mac", "--init", "--batches", "1"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trained, initial, moved = result.stdout.split("## ")[1:]
    for section in (trained, initial):
        for group in ("attention", "gates: to_gates.weight", "memory: initial weights",
                      "memory: projections, conv, norm", "the rest of the model"):
            assert f"| {group} |" in section
        assert section.count("mixer.gate |") == 2                   # the join of each of the two blocks
    assert moved.startswith("moved from initialisation (seed 0)")
    rows = {line.split(" | ")[0].strip("| "): float(line.split(" | ")[-1].strip(" |"))
            for line in moved.splitlines() if line.startswith("| ") and not line.startswith("| parameters")}
    assert set(rows) >= {"attention", "memory: initial weights"}
    assert all(0 < value < 1 for value in rows.values())           # two steps move every group a little
