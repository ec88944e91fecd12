"""Training progress for people (a bar on a terminal, plain lines elsewhere) and for machines (JSONL, TensorBoard)."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Reports steps: a tqdm bar with loss, tokens/s and ETA on a terminal, periodic lines otherwise."""

    def __init__(self, total: int, start: int, log_every: int, enabled: bool = True):
        self.total, self.log_every, self.enabled = total, log_every, enabled
        self.started, self.start_step = time.perf_counter(), start
        self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, unit="step") \
            if enabled and sys.stderr.isatty() else None

    def update(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        elif step % self.log_every == 0 or step == self.total:
            done = step - self.start_step
            eta = (time.perf_counter() - self.started) / max(done, 1) * (self.total - step)
            print(f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s  "
                  f"eta {_duration(eta)}", flush=True)

    def say(self, message: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class MetricsLog:
    """Appends one JSON object per record to metrics.jsonl; mirrors scalars to TensorBoard when installed.

    ``fresh``: the run starts from step 0, so the lines of an earlier run in the same folder are dropped
    with its TensorBoard events (a resumed run appends, and its later lines replace the earlier ones for a reader).
    """

    def __init__(self, run_dir: Path, enabled: bool = True, fresh: bool = False):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard = None
        if enabled:
            if fresh:
                self.path.unlink(missing_ok=True)
                shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:   # tensorboard is optional
                pass
            else:
                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        line = (json.dumps({"step": step, "split": split, **values}) + "\n").encode()
        with self.path.open("ab", buffering=0) as file:
            end = file.seek(0, 2)
            try:
                written = 0
                while written < len(line):
                    written += file.write(line[written:])
            except OSError:          # a full disk: no half line is left for a reader to trip on
                file.truncate(end)
                raise
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
