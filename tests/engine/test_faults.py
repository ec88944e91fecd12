"""Faults from outside: a process killed mid-checkpoint resumes exactly; a full disk is one line and leaves
nothing half-written. Each fault is injected in a subprocess by a launcher script the test writes."""
import json
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from titans_seq.cli import main
from titans_seq.engine.checkpoint import latest_checkpoint, read_model_state, restore_training_state
from titans_seq.engine.progress import MetricsLog

from .test_trainer import TINY, train_losses

RUN = [*TINY, "train.max_steps=8", "train.save_every=3", "train.eval_every=4"]

# Patches the safetensors writer so that the process kills itself with SIGKILL half-way through
# writing the optimizer file of the step-6 checkpoint: the model file is already written.
KILL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from titans_seq.engine import checkpoint
from titans_seq.cli import main

real_save_file = checkpoint.save_file

def save_file_then_die(tensors, path):
    real_save_file(tensors, path)
    path = Path(path)
    if path.parent.name.startswith(".tmp-step-000006") and path.name == "optimizer.safetensors":
        os.truncate(path, path.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.save_file = save_file_then_die
sys.exit(main(sys.argv[1:]))
"""


def _launch(tmp_path, script, *args, limit_bytes=None):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(textwrap.dedent(script))
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))) \
        if limit_bytes else None
    return subprocess.run([sys.executable, str(launcher), *args], capture_output=True, text=True, timeout=600,
                          preexec_fn=limit)


def test_a_run_killed_while_writing_a_checkpoint_resumes_exactly(tmp_path):
    assert main(["train", "demo", *RUN, f"run.out_dir={tmp_path}", "run.name=whole"]) == 0
    expected = train_losses(tmp_path / "whole")

    killed = _launch(tmp_path, KILL_MID_WRITE, "train", "demo", *RUN, f"run.out_dir={tmp_path}", "run.name=killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "killed"
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert left[0].startswith(".tmp-step-000006") and left[1:] == ["step-000003"]   # the half-written one is hidden
    assert latest_checkpoint(run) == run / "checkpoints" / "step-000003"

    assert main(["train", "demo", *RUN, f"run.out_dir={tmp_path}", "run.name=killed", "--resume"]) == 0
    assert train_losses(run) == expected          # exactly, every step, the re-done steps 4-6 included
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000006", "step-000008"]
    assert json.loads((run / "test_results.json").read_text())["metrics"] == \
        json.loads((tmp_path / "whole" / "test_results.json").read_text())["metrics"]


def _every_file_is_whole(run):
    """No temporary left anywhere; every checkpoint there reads back; every metrics line parses."""
    hidden = [p for p in run.rglob(".*")]
    assert not hidden, hidden
    for marker in run.rglob("COMPLETE"):
        read_model_state(marker.parent)
        restore_training_state(marker.parent, None)
    if (run / "metrics.jsonl").exists():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            json.loads(line)


@pytest.mark.parametrize("limit_bytes, what", [(60_000, "checkpoints/step-000003"), (400, "config.yaml")])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, limit_bytes, what):
    result = _launch(tmp_path, "import sys\nfrom titans_seq.cli import main\nsys.exit(main(sys.argv[1:]))\n",
                     "train", "demo", *RUN, f"run.out_dir={tmp_path}", limit_bytes=limit_bytes)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "File too large" in lines[0] and str(tmp_path / "demo" / what) in lines[0], lines[0]
    _every_file_is_whole(tmp_path / "demo")


def test_a_metrics_line_cut_by_a_full_disk_is_taken_back(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    log.tensorboard = None
    log.write(1, "train", {"loss": 1.0})
    whole = (tmp_path / "metrics.jsonl").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(whole) + 10, hard))
    try:
        with pytest.raises(OSError, match="File too large"):
            log.write(2, "train", {"loss": 2.0, "note": "x" * 100})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (tmp_path / "metrics.jsonl").read_bytes() == whole
