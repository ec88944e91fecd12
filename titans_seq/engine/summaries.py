"""A metric over seeds: its summary (mean ± std), which way is better, and the best of several."""
from __future__ import annotations

import re
import statistics
from typing import Any

LOWER_IS_BETTER = {"loss", "mse", "mae", "mse_original", "mae_original", "mase", "smape", "perplexity",
                   "bits_per_byte"}
AT_LENGTH = re.compile(r"^(?P<metric>.+)@(?P<length>\d+)$")   # accuracy@16384: a metric at a context length


def lower_is_better(metric: str) -> bool:
    """Whether a lower value is better: by the metric's name without a ``val_`` prefix or an ``@<length>``."""
    if match := AT_LENGTH.match(metric):
        metric = match["metric"]
    return metric.removeprefix("val_") in LOWER_IS_BETTER


def better(metric: str, values: list[tuple[float, Any]]) -> tuple[float, Any] | None:
    """The best (value, what) pair of ``values`` for this metric, or None."""
    if not values:
        return None
    return (min if lower_is_better(metric) else max)(values, key=lambda pair: pair[0])


def summary(values: list[float]) -> dict:
    """Mean, sample std (None for one value), n and the values."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def cell(summary: dict | None) -> str:
    """``mean ± std (n=k)``, ``x (n=1)``, or a dash."""
    if summary is None:
        return "—"
    if summary["std"] is None:
        return f"{summary['mean']:.4f} (n=1)"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} (n={summary['n']})"
