"""The forecasting task: a series file in, the long-horizon protocol, MSE / MAE as published."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from gluonts.evaluation.metrics import calculate_seasonal_error
from gluonts.time_feature import get_seasonality
from torch import Tensor, nn
from torch.utils.data import Dataset

from titans_seq.backbones import TitansConfig
from titans_seq.data import DataSource
from titans_seq.engine.registry import register_task
from titans_seq.engine.task import EXAMPLE_FIGURE, Task
from titans_seq.errors import UserError

from .data import IRREGULAR_CHOICES, read_series
from .model import DLinear, PatchForecaster, RLinear
from .plot import plot_test_period
from .splits import SPLITS, ScaledSeries, WindowDataset, scale_series

LINEAR_BASELINES = {"dlinear": DLinear, "rlinear": RLinear}   # architectures without a backbone
ARCHITECTURES = ("patch", *LINEAR_BASELINES)


def model_overrides(model: str) -> list[str]:
    """The recipe overrides that train ``model``: a linear baseline's name or a backbone variant."""
    if model in LINEAR_BASELINES:
        return [f"task.architecture={model}"]
    return ["task.architecture=patch", f"model.variant={model}"]


@dataclass
class ForecastConfig:
    name: str = "forecast"
    architecture: str = "patch"      # patch: a backbone over patches (transformer: PatchTST-style) | dlinear | rlinear
    lookback: int = 96               # L: past steps the model sees
    horizon: int = 96                # H: future steps it forecasts
    patch_len: int = 16
    stride: int = 8
    channel_mixing: bool = False     # False: each variate is its own series (weights shared)
    quantiles: list[float] = field(default_factory=list)   # empty: point forecast (MSE); else pinball loss
    dropout: float = 0.0


@dataclass
class ForecastData(DataSource):
    dataset: str | None = "ett/ETTm1"
    path: str | None = None          # CSV, TSV or Parquet with a time column (wins over dataset)
    time_column: str | None = None   # found by type or name (date, time, timestamp, ...) when not given
    targets: list[str] = field(default_factory=list)    # the variates; empty: every other column
    on_irregular: str = "stop"       # stop | fill: what duplicate or missing timestamps do


def pinball_loss(forecast: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Quantile loss per element: ``forecast`` (..., Q), ``target`` (...)."""
    error = target.unsqueeze(-1) - forecast
    return torch.maximum(quantiles * error, (quantiles - 1) * error)


@register_task
class ForecastTask(Task):
    name = "forecast"
    config_class = ForecastConfig
    data_class = ForecastData
    reads_whole_sequences = True

    def __init__(self, config: ForecastConfig, data: ForecastData | None = None):
        super().__init__(config, data)
        if config.architecture not in ARCHITECTURES:
            raise UserError(f"task.architecture={config.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
        quantiles = list(config.quantiles)
        if quantiles and (quantiles != sorted(quantiles) or not 0 < quantiles[0] <= quantiles[-1] < 1
                          or 0.5 not in quantiles):
            raise UserError(f"task.quantiles={quantiles}: give increasing levels in (0, 1) that include 0.5")
        if data is not None and data.on_irregular not in IRREGULAR_CHOICES:
            raise UserError(f"data.on_irregular={data.on_irregular!r}: choose one of {', '.join(IRREGULAR_CHOICES)}")
        self.quantile_levels = torch.tensor(quantiles or [0.5])
        self.median = quantiles.index(0.5) if quantiles else 0

    @property
    def dataset_name(self) -> str:
        return self.table.name

    @cached_property
    def table(self):
        d = self.data
        return read_series(d.path, d.time_column, list(d.targets) or None, d.on_irregular)

    @cached_property
    def series(self) -> ScaledSeries:
        return scale_series(self.table, self.config.lookback, self.config.horizon)

    @property
    def n_channels(self) -> int:
        return self.series.values.shape[1]

    def model_label(self, variant: str) -> str:
        return self.config.architecture if self.config.architecture in LINEAR_BASELINES else variant

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        c = self.config
        channels = self.n_channels if c.channel_mixing else 1
        outputs = len(c.quantiles) or 1
        if c.architecture in LINEAR_BASELINES:
            return LINEAR_BASELINES[c.architecture](c.lookback, c.horizon, channels, outputs)
        try:
            return PatchForecaster(model_config, c.lookback, c.horizon, channels, c.patch_len, c.stride, outputs,
                                   c.dropout)
        except ValueError as error:
            raise UserError(f"task: {error}") from None

    def datasets(self) -> dict[str, Dataset]:
        c = self.config
        return {split: WindowDataset.split(self.series, split, c.lookback, c.horizon, c.channel_mixing)
                for split in SPLITS}

    @property
    def channel_scale(self) -> np.ndarray:
        """Per variate, the scaler's standard deviation (scaled units back to original units)."""
        return self.series.scale

    @property
    def channel_mean(self) -> np.ndarray:
        return self.series.mean

    @cached_property
    def seasonal_errors(self) -> np.ndarray:
        """Per variate, the in-sample seasonal-naive error on the training rows (original units), for MASE."""
        rows = self.table.values[:self.series.borders["train"][1]]
        seasonality = get_seasonality(self.table.freq.freqstr)
        return np.array([max(calculate_seasonal_error(rows[:, c], seasonality=seasonality), 1e-12)
                         for c in range(rows.shape[1])], dtype=np.float32)

    def _per_channel(self, values: np.ndarray, channel: Tensor) -> Tensor:
        """A per-variate constant broadcastable to (B, H, C) for the batch's channels."""
        values = torch.as_tensor(values, device=channel.device)
        return values.view(1, 1, -1) if self.config.channel_mixing else values[channel].view(-1, 1, 1)

    def predict(self, model: nn.Module, past: Tensor) -> Tensor:
        """Forecasts (B, H, C, Q) in scaled units."""
        return model(past).float()

    def loss(self, model: nn.Module, batch) -> Tensor:
        past, future, observed, _ = batch
        forecast = self.predict(model, past)
        if self.config.quantiles:
            per_element = pinball_loss(forecast, future, self.quantile_levels.to(future.device)).mean(-1)
        else:
            per_element = (forecast[..., 0] - future) ** 2
        return (per_element * observed).sum() / observed.sum().clamp(min=1)

    def final_metrics(self, model: nn.Module, run_dir: Path) -> dict[str, float]:
        """No further metrics; the example figure: the fit over the last test windows."""
        plot_test_period(run_dir / EXAMPLE_FIGURE, self, model, next(model.parameters()).device)
        return {}

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        """MSE and MAE on the scaled data (as published) and in original units, MASE and sMAPE
        (GluonTS's definitions, in original units), and the quantile loss when there are quantiles."""
        names = ["mse", "mae", "mse_original", "mae_original", "mase", "smape"]
        names += ["quantile_loss"] if self.config.quantiles else []
        sums, count = dict.fromkeys(names, 0.0), 0
        for past, future, observed, channel in batches:
            forecast = self.predict(model, past)
            point = forecast[..., self.median]
            error = (point - future) * observed
            scale, mean = self._per_channel(self.channel_scale, channel), self._per_channel(self.channel_mean, channel)
            original_error = error * scale
            truth, guess = future * scale + mean, point * scale + mean
            denominator = truth.abs() + guess.abs()
            sums["mse"] += error.square().sum().item()
            sums["mae"] += error.abs().sum().item()
            sums["mse_original"] += original_error.square().sum().item()
            sums["mae_original"] += original_error.abs().sum().item()
            sums["mase"] += (original_error.abs() / self._per_channel(self.seasonal_errors, channel)).sum().item()
            sums["smape"] += (2 * original_error.abs() / denominator.where(denominator > 0, 1.0)).sum().item()
            if self.config.quantiles:
                levels = self.quantile_levels.to(future.device)
                sums["quantile_loss"] += (pinball_loss(forecast, future, levels).mean(-1) * observed).sum().item()
            count += observed.sum().item()
        return {name: total / max(count, 1) for name, total in sums.items()}
