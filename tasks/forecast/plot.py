"""The forecast plot: recent history and the forecast beyond it, beside the fit over the test period."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")                     # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from titans_seq.files import write_atomically_with  # noqa: E402

MAX_PANELS = 4
TEST_WINDOWS = 4


def test_period_fit(task, model: torch.nn.Module, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and (rows, C) median forecasts, original units, of the last few back-to-back test windows."""
    c, series = task.config, task.series
    start, end = series.borders["test"]
    horizon = c.horizon
    windows = min(TEST_WINDOWS, (end - start - c.lookback) // horizon)
    first_target = end - windows * horizon
    pasts = np.stack([series.values[t - c.lookback:t] for t in range(first_target, end, horizon)])
    past = torch.from_numpy(pasts).to(device)                                   # (W, L, C)
    if not c.channel_mixing:
        past = past.permute(0, 2, 1).reshape(-1, c.lookback, 1)
    with torch.no_grad():
        forecast = task.predict(model, past)[..., task.median].cpu().numpy()   # (W, H, C) or (W*C, H, 1)
    if not c.channel_mixing:
        forecast = forecast.reshape(windows, -1, horizon).transpose(0, 2, 1)
    fit = forecast.reshape(windows * horizon, -1) * series.scale + series.mean
    return np.arange(first_target, end), fit


def _draw_test_fit(axis, task, channel: int, rows: np.ndarray, fit: np.ndarray) -> None:
    """Actual against forecast over the last test windows, for one variate, window starts marked."""
    table, horizon = task.table, task.config.horizon
    axis.plot(table.timestamps[rows], table.values[rows, channel], color="0.3", lw=1, label="actual")
    axis.plot(table.timestamps[rows], fit[:, channel], color="C1", lw=1.2, label="forecast")
    for boundary in rows[::horizon][1:]:
        axis.axvline(table.timestamps[boundary], color="0.8", lw=0.8)
    axis.set_title(f"{table.columns[channel]}: test period, {len(rows) // horizon} forecasts of {horizon} steps",
                   fontsize=10)


def _save(figure, path: Path) -> None:
    for axis in figure.axes:
        axis.tick_params(labelsize=8)
        axis.legend(fontsize=8, loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        write_atomically_with(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(figure)


def plot_forecast(path: Path, task, model: torch.nn.Module, forecast: np.ndarray, device: torch.device) -> None:
    """Write a PNG: per variate (the last few), history + forecast (+ quantile band) and the test-period fit."""
    table, c = task.table, task.config
    channels = list(range(len(table.columns)))[-MAX_PANELS:]
    rows, fit = test_period_fit(task, model, device)
    future = table.future_timestamps(c.horizon)
    shown = slice(max(0, len(table) - max(3 * c.horizon, c.lookback)), len(table))
    figure, axes = plt.subplots(len(channels), 2, figsize=(13, 2.6 * len(channels)), squeeze=False)
    for row, channel in enumerate(channels):
        name = table.columns[channel]
        left, right = axes[row]
        left.plot(table.timestamps[shown], table.values[shown, channel], color="0.3", lw=1, label="history")
        left.plot(future, forecast[:, channel, task.median], color="C0", lw=1.5, label="forecast")
        if len(c.quantiles) > 1:
            left.fill_between(future, forecast[:, channel, 0], forecast[:, channel, -1], color="C0", alpha=0.25,
                              label=f"{c.quantiles[0]:g}-{c.quantiles[-1]:g} quantiles")
        left.set_title(f"{name}: the next {c.horizon} steps", fontsize=10)
        _draw_test_fit(right, task, channel, rows, fit)
    _save(figure, path)


def plot_test_period(path: Path, task, model: torch.nn.Module, device: torch.device) -> None:
    """Write a PNG: the test-period fit of the last few variates (a suite's forecast example)."""
    channels = list(range(len(task.table.columns)))[-MAX_PANELS:]
    rows, fit = test_period_fit(task, model, device)
    figure, axes = plt.subplots(len(channels), 1, figsize=(8, 2.3 * len(channels)), squeeze=False)
    for axis, channel in zip(axes[:, 0], channels):
        _draw_test_fit(axis, task, channel, rows, fit)
    _save(figure, path)
