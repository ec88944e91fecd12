"""The GluonTS route: a ``Predictor`` around a trained forecaster, and an ``Estimator`` that trains one
through our engine, so that ``gluonts.model.evaluate_model`` and ``make_evaluation_predictions``
work on ``ListDataset`` / ``PandasDataset`` data. No ``lightning`` is imported.

Series are univariate (GluonTS's default layout); each is its own channel-independent series and
is scaled by the model's reversible instance normalisation, so no dataset-wide scaler is needed.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from gluonts.dataset import Dataset as GluonDataset
from gluonts.evaluation.metrics import calculate_seasonal_error
from gluonts.model.estimator import Estimator
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import Predictor
from gluonts.time_feature import get_seasonality
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from titans_seq.backbones import TitansConfig
from titans_seq.engine.checkpoint import BEST, COMPLETE, CONFIG, MODEL
from titans_seq.engine.config import load_recipe
from titans_seq.engine.runs import open_run
from titans_seq.engine.trainer import train
from titans_seq.errors import UserError
from titans_seq.files import write_atomically, write_atomically_with

from .task import ForecastConfig, ForecastTask, model_overrides
from .splits import WindowDataset


def _univariate(entry: dict) -> np.ndarray:
    target = np.asarray(entry["target"], dtype=np.float32)
    if target.ndim != 1:
        raise UserError(f"series {entry.get('item_id', '')!r} is multivariate (shape {target.shape}); the GluonTS "
                        "route takes univariate series: give each variate as its own series")
    return target


def _padded(target: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``target`` filled forward, with at least ``length`` values (front-padded with its first value); and
    which values are real observations."""
    observed = np.isfinite(target)
    if not observed.any():
        return np.zeros(max(length, len(target)), np.float32), np.zeros(max(length, len(target)), bool)
    filled = pd.Series(target).ffill().bfill().to_numpy(np.float32)
    missing = max(0, length - len(target))
    return (np.concatenate([np.full(missing, filled[0], np.float32), filled]),
            np.concatenate([np.zeros(missing, bool), observed]))


class SeriesListTask(ForecastTask):
    """Forecasting over univariate series held in memory: training windows from each series' history
    (its last ``horizon`` steps held out for validation unless validation series are given)."""

    def __init__(self, config: ForecastConfig, train_series: list[np.ndarray], freq: str,
                 val_series: list[np.ndarray] | None = None, name: str = "gluonts"):
        super().__init__(config, None)
        if config.channel_mixing:
            raise UserError("the GluonTS route is channel-independent: task.channel_mixing must be false")
        self.train_series, self.val_series, self.freq, self.name_ = train_series, val_series, freq, name

    @property
    def dataset_name(self) -> str:
        return self.name_

    @property
    def n_channels(self) -> int:
        return 1

    def final_metrics(self, model: nn.Module, run_dir: Path) -> dict[str, float]:
        """Nothing: the series are held in memory, with no test period of one file to draw."""
        return {}

    @property
    def n_series(self) -> int:
        return max(len(self.train_series), len(self.val_series or []))

    @property
    def channel_scale(self) -> np.ndarray:
        return np.ones(self.n_series, np.float32)

    @property
    def channel_mean(self) -> np.ndarray:
        return np.zeros(self.n_series, np.float32)

    @property
    def seasonal_errors(self) -> np.ndarray:
        """Per series, the seasonal-naive error of its training values (1 where it cannot be computed)."""
        seasonality = get_seasonality(self.freq)
        errors = np.ones(self.n_series, np.float32)
        for index, series in enumerate(self.train_series):
            real = series[np.isfinite(series)]
            if len(real) > 1:
                errors[index] = calculate_seasonal_error(real, seasonality=seasonality)
        return np.maximum(np.nan_to_num(errors, nan=1.0), 1e-12)

    def _windows(self, series: Iterable[np.ndarray], last_only: bool) -> Dataset:
        c, parts = self.config, []
        for index, target in enumerate(series):
            values, observed = _padded(target, c.lookback + c.horizon)
            if last_only:
                values, observed = values[-(c.lookback + c.horizon):], observed[-(c.lookback + c.horizon):]
            parts.append(WindowDataset(values[:, None], observed[:, None], c.lookback, c.horizon, channel_ids=[index]))
        return ConcatDataset(parts)

    def datasets(self) -> dict[str, Dataset]:
        horizon = self.config.horizon
        if self.val_series is None:
            training = self._windows((s[:-horizon] for s in self.train_series), last_only=False)
            validation = self._windows(self.train_series, last_only=True)
        else:
            training = self._windows(self.train_series, last_only=False)
            validation = self._windows(self.val_series, last_only=True)
        return {"train": training, "val": validation, "test": validation}


class TitansPredictor(Predictor):
    """Forecasts GluonTS series with a trained forecaster: quantile forecasts (or a point forecast as
    the median and mean) over ``prediction_length`` steps from each series' last ``lookback`` values."""

    def __init__(self, model: torch.nn.Module, task_config: ForecastConfig, model_config: TitansConfig,
                 batch_size: int = 256, device: str = "cpu"):
        super().__init__(prediction_length=task_config.horizon)
        self.model, self.task_config, self.model_config = model.to(device).eval(), task_config, model_config
        self.batch_size, self.device = batch_size, device
        self.levels = list(task_config.quantiles) or [0.5]

    def _forecasts(self, entries: list[dict]) -> Iterator[QuantileForecast]:
        lookback = self.task_config.lookback
        pasts = np.stack([_padded(_univariate(e), lookback)[0][-lookback:] for e in entries])
        with torch.no_grad():
            output = self.model(torch.from_numpy(pasts)[:, :, None].to(self.device)).float()   # (B, H, 1, Q)
        arrays = output[:, :, 0].permute(0, 2, 1).cpu().numpy()                                  # (B, Q, H)
        median = self.levels.index(0.5)
        for entry, quantiles in zip(entries, arrays):
            start = entry["start"] + len(entry["target"])
            yield QuantileForecast(np.concatenate([quantiles, quantiles[median:median + 1]]), start_date=start,
                                   forecast_keys=[f"{q:g}" for q in self.levels] + ["mean"],
                                   item_id=entry.get("item_id"))

    def predict(self, dataset: GluonDataset, **kwargs) -> Iterator[QuantileForecast]:
        batch: list[dict] = []
        for entry in dataset:
            batch.append(entry)
            if len(batch) == self.batch_size:
                yield from self._forecasts(batch)
                batch = []
        if batch:
            yield from self._forecasts(batch)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str = "cpu") -> TitansPredictor:
        """A predictor from a forecasting run or checkpoint (``titans-seq train/forecast``), or from a folder
        :meth:`serialize` wrote (GluonTS's own layout: its files, our ``config.json`` and ``model.safetensors``)."""
        directory = Path(directory)
        if (directory / COMPLETE).is_file() or (directory / BEST / COMPLETE).is_file():
            run = open_run(directory, device=device, task=ForecastTask.name, with_data=False)
            return cls(run.model, run.recipe.task, run.recipe.model.backbone(), device=device)
        config_file = directory / CONFIG
        if not config_file.is_file():
            raise UserError(f"{directory}: no {CONFIG}; not a forecasting checkpoint")
        saved = json.loads(config_file.read_text())
        if saved.get("task", {}).get("name") != ForecastTask.name:
            raise UserError(f"{directory}: trained for task {saved.get('task', {}).get('name')!r}, not forecasting")
        task_config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ForecastConfig), saved["task"]))
        model_values = {k: v for k, v in saved["model"].items() if k != "init_from"}
        model_config = TitansConfig(**model_values)
        model = ForecastTask(task_config).build_model(model_config)
        model.load_state_dict(load_file(directory / MODEL))
        return cls(model, task_config, model_config, device=device)

    def serialize(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        super().serialize(path)
        config = {"task": dataclasses.asdict(self.task_config), "model": self.model_config.to_dict()}
        write_atomically(path / CONFIG, json.dumps(config, indent=1))
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        write_atomically_with(path / MODEL, lambda tmp: save_file(tensors, tmp))

    @classmethod
    def deserialize(cls, path: Path, device: str = "cpu", **kwargs) -> TitansPredictor:
        return cls.from_checkpoint(path, device=device)


class TitansEstimator(Estimator):
    """Trains a forecaster on GluonTS training data through the engine (the ``forecast`` recipe, with
    ``overrides`` applied) and returns a :class:`TitansPredictor` holding its best weights."""

    def __init__(self, prediction_length: int, freq: str, lookback: int = 96, variant: str = "mac",
                 quantiles: Iterable[float] = (), out_dir: str = "runs/gluonts", overrides: Iterable[str] = (),
                 device: str = "cpu"):
        super().__init__()
        self.prediction_length, self.freq, self.lookback = prediction_length, freq, lookback
        self.variant, self.quantiles, self.out_dir = variant, list(quantiles), out_dir
        self.overrides, self.device = list(overrides), device

    def train(self, training_data: GluonDataset, validation_data: GluonDataset | None = None,
              **kwargs) -> TitansPredictor:
        model_choice = model_overrides(self.variant)
        recipe = load_recipe("forecast", [
            f"task.horizon={self.prediction_length}", f"task.lookback={self.lookback}",
            f"task.quantiles={json.dumps(self.quantiles)}", *model_choice, f"run.out_dir={self.out_dir}",
            "run.name=model", f"run.device={self.device}", *self.overrides])
        train_series = [_univariate(entry) for entry in training_data]
        val_series = [_univariate(entry) for entry in validation_data] if validation_data is not None else None
        if not train_series:
            raise UserError("the training dataset holds no series")
        task = SeriesListTask(recipe.task, train_series, self.freq, val_series)
        train(recipe, task=task)
        return TitansPredictor.from_checkpoint(Path(self.out_dir) / "model" / BEST, device=self.device)
