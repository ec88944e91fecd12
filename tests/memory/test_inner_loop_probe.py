"""scripts/inner_loop_probe.py: a training run's inner loop, one JSON line per step, and the steps near a divergence."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "inner_loop_probe.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd)


def test_the_probe_logs_every_training_step_of_every_memory_and_summarises_a_divergence(tmp_path):
    out = tmp_path / "probe.jsonl"
    result = _run(str(out), "train", "lm_passkey", "model.variant=lmm", "model.n_layers=2", "model.chunk_size=16",
                  "model.memory_chunk_budget=0.25", "task.seq_len=128", "task.n_train=8", "task.n_val=2",
                  "task.n_test=2", "task.test_lengths=[128]", "train.max_steps=2", "train.batch_size=2",
                  "train.eval_every=2", "train.compile=false", "run.out_dir=runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1] and all(row["finite"] for row in rows)
    for call in (call for row in rows for call in row["memories"]):
        assert 0 < call["lr"] <= call["counted"] <= call["along_key"]      # a key overlaps itself
        assert len(call["weights"]) == 2 and call["hidden"] > 0             # a memory of depth 2
    assert len(rows[0]["memories"]) == 2                                     # one call per memory layer

    rows[1]["finite"], rows[1]["loss"] = False, None
    rows[1]["memories"][1].update(weights=None, hidden=None)
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = _run(str(out), "--summary", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.startswith("1 non-finite of 2 attempts")
    assert "| 1 | 1 | False | 1 |" in summary.stdout and "non-finite |" in summary.stdout
