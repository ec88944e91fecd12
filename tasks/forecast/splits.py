"""The long-horizon protocol: split borders, a scaler fitted on the training rows, sliding windows.

Borders follow the benchmark code every published table uses (Informer / Autoformer):
ETTh files 12/4/4 months of 30 days, ETTm the same in 15-minute steps, any other file 70/10/20
in time order. The validation and test regions start ``lookback`` rows early so that their first
window's target is the region's first row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch.utils.data import Dataset

from titans_seq.errors import UserError

from .data import SeriesTable

SPLITS = ("train", "val", "test")
HOURS_PER_MONTH = 30 * 24


def ett_steps_per_hour(name: str) -> int | None:
    """1 for ETTh files, 4 for ETTm files, None for any other dataset name."""
    lowered = name.lower()
    if lowered.startswith("etth"):
        return 1
    if lowered.startswith("ettm"):
        return 4
    return None


def split_borders(n_rows: int, lookback: int, name: str = "") -> dict[str, tuple[int, int]]:
    """``{split: (start, end)}`` row ranges, including the lookback rows before val and test."""
    per_hour = ett_steps_per_hour(name)
    if per_hour is not None:
        month = HOURS_PER_MONTH * per_hour
        train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
        if n_rows < test_end:
            raise UserError(f"{name}: the ETT protocol needs {test_end} rows; the file has {n_rows}")
    else:
        train_end = int(n_rows * 0.7)
        test_end = n_rows
        val_end = n_rows - int(n_rows * 0.2)
    return {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}


@dataclass
class ScaledSeries:
    """A series standardised with a scaler fitted on its training rows only, and its split borders."""

    values: np.ndarray               # (N, C) float32, scaled
    observed: np.ndarray             # (N, C) bool
    mean: np.ndarray                 # (C,) the scaler's, for going back to original units
    scale: np.ndarray                # (C,)
    borders: dict[str, tuple[int, int]]

    def to_original(self, scaled: np.ndarray, channels: np.ndarray | slice = slice(None)) -> np.ndarray:
        return scaled * self.scale[channels] + self.mean[channels]


def scale_series(table: SeriesTable, lookback: int, horizon: int) -> ScaledSeries:
    """Split borders for ``table`` and a StandardScaler fitted on the training rows (observed values only)."""
    borders = split_borders(len(table), lookback, table.name)
    for split, (start, end) in borders.items():
        if end - start < lookback + horizon:
            raise UserError(f"{table.name}: the {split} split has {end - start} rows, fewer than lookback + "
                            f"horizon = {lookback + horizon}; use a shorter lookback or horizon")
    train_end = borders["train"][1]
    train = np.where(table.observed[:train_end], table.values[:train_end], np.nan)
    scaler = StandardScaler().fit(train)                     # NaNs are ignored in fit
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    values = ((table.values - scaler.mean_) / scale).astype(np.float32)
    return ScaledSeries(values, table.observed.copy(), scaler.mean_.astype(np.float32), scale.astype(np.float32),
                        borders)


class WindowDataset(Dataset):
    """Every (lookback, horizon) window of a (N, C) array.

    Channel-independent (the default), an item is one variate of one window: ``(past (L, 1),
    future (H, 1), future_observed (H, 1), channel_id)``; with ``channel_mixing`` an item holds every
    variate: ``(past (L, C), future (H, C), future_observed (H, C), -1)``. ``channel_ids`` name the
    variates for per-variate metrics (default 0..C-1).
    """

    def __init__(self, values: np.ndarray, observed: np.ndarray, lookback: int, horizon: int,
                 channel_mixing: bool = False, channel_ids: list[int] | None = None):
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.observed = torch.as_tensor(observed, dtype=torch.bool)
        self.lookback, self.horizon, self.channel_mixing = lookback, horizon, channel_mixing
        self.n_windows = max(0, len(values) - lookback - horizon + 1)
        self.n_channels = values.shape[1]
        self.channel_ids = list(channel_ids) if channel_ids is not None else list(range(self.n_channels))

    @classmethod
    def split(cls, series: ScaledSeries, split: str, lookback: int, horizon: int,
              channel_mixing: bool = False) -> WindowDataset:
        """The windows of one split of a scaled series."""
        start, end = series.borders[split]
        return cls(series.values[start:end], series.observed[start:end], lookback, horizon, channel_mixing)

    def __len__(self) -> int:
        return self.n_windows * (1 if self.channel_mixing else self.n_channels)

    def __getitem__(self, index: int):
        window, channel = (index, None) if self.channel_mixing else divmod(index, self.n_channels)
        columns = slice(None) if channel is None else slice(channel, channel + 1)
        middle = window + self.lookback
        channel_id = -1 if channel is None else self.channel_ids[channel]
        return (self.values[window:middle, columns], self.values[middle:middle + self.horizon, columns],
                self.observed[middle:middle + self.horizon, columns], channel_id)
