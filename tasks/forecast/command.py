"""``titans-seq forecast``: train on (or load a checkpoint for) a user's series, test it, forecast beyond its end.

Everything goes through the engine (the ``forecast`` recipe with the options as overrides); this
module adds what a user wants at the end: the test figures in both scales, the forecast past the
last timestamp as a CSV, and a plot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from titans_seq.backbones import VARIANTS
from titans_seq.data import data_overrides
from titans_seq.engine.config import Recipe, load_recipe
from titans_seq.engine.distributed import close_process, init_process
from titans_seq.engine.records import write_record
from titans_seq.engine.runs import find_checkpoint, saved_recipe
from titans_seq.engine.trainer import Trainer
from titans_seq.errors import UserError
from titans_seq.files import write_atomically_with

from .plot import plot_forecast
from .task import LINEAR_BASELINES, ForecastTask, model_overrides

MODELS = (*VARIANTS, *LINEAR_BASELINES)


@dataclass
class ForecastOptions:
    data: str
    horizon: int | None = None          # None: 96, or the checkpoint's
    lookback: int | None = None         # None: 512, or the checkpoint's
    targets: list[str] = field(default_factory=list)
    time_column: str | None = None
    variant: str | None = None          # a backbone variant, "dlinear" or "rlinear"; None: mac, or the checkpoint's
    quantiles: list[float] = field(default_factory=list)
    checkpoint: str | None = None
    out: str = "forecast"
    on_irregular: str = "stop"
    steps: int = 300
    overrides: list[str] = field(default_factory=list)


@dataclass
class ForecastResult:
    metrics: dict[str, float]
    forecast_csv: Path
    plot_png: Path
    checkpoint: Path


def _data_overrides(options: ForecastOptions) -> list[str]:
    source = data_overrides(options.data)
    overrides = [*source, f"data.on_irregular={options.on_irregular}",
                 f"data.targets={json.dumps(list(options.targets))}"]
    if options.time_column:
        overrides.append(f"data.time_column={options.time_column}")
    return overrides


def _model_overrides(variant: str) -> list[str]:
    if variant not in MODELS:
        raise UserError(f"--variant {variant}: choose one of {', '.join(MODELS)}")
    return model_overrides(variant)


def training_recipe(options: ForecastOptions) -> Recipe:
    """The packaged ``forecast`` recipe with the command's options (and the user's overrides) applied."""
    out = Path(options.out)
    return load_recipe("forecast", [
        *_data_overrides(options), f"task.horizon={options.horizon or 96}", f"task.lookback={options.lookback or 512}",
        f"task.quantiles={json.dumps(list(options.quantiles))}", *_model_overrides(options.variant or "mac"),
        "task.stride=16",     # non-overlapping patches: half the tokens of the recipe's, as the lookback-512 runs
        f"train.max_steps={options.steps}", "train.batch_size=64", f"train.eval_every={max(options.steps // 3, 1)}",
        "train.eval_batches=20", "train.patience=0", "optim.warmup_steps=30",
        f"run.out_dir={out}", "run.name=model", *options.overrides])


def checkpoint_recipe(options: ForecastOptions, checkpoint: Path) -> Recipe:
    """The recipe a checkpoint (or run folder) was trained with, pointed at the command's data file."""
    recipe = saved_recipe(checkpoint, [*_data_overrides(options), f"run.out_dir={options.out}", "run.name=model",
                                       *options.overrides])
    if recipe.task.name != ForecastTask.name:
        raise UserError(f"--checkpoint {checkpoint}: trained for task {recipe.task.name!r}, not forecasting")
    asked = {"horizon": options.horizon, "lookback": options.lookback, "quantiles": options.quantiles or None}
    for key, value in asked.items():
        kept = getattr(recipe.task, key)
        if value is not None and value != kept:
            raise UserError(f"--checkpoint {checkpoint} was trained with {key}={kept}; got {value}")
    if options.variant is not None:
        kept = recipe.task.architecture if recipe.task.architecture in LINEAR_BASELINES else recipe.model.variant
        if options.variant != kept:
            raise UserError(f"--checkpoint {checkpoint} holds a {kept} model; got --variant {options.variant}")
    return recipe


def future_forecast(task: ForecastTask, model: torch.nn.Module, device: torch.device) -> np.ndarray:
    """(H, C, Q) forecasts in original units from the last ``lookback`` rows of the series."""
    series, lookback = task.series, task.config.lookback
    past = torch.from_numpy(series.values[-lookback:]).to(device)
    past = past.unsqueeze(0) if task.config.channel_mixing else past.T.unsqueeze(-1)
    with torch.no_grad():
        forecast = task.predict(model, past).cpu().numpy()        # (1, H, C, Q) or (C, H, 1, Q)
    forecast = forecast[0] if task.config.channel_mixing else forecast[:, :, 0].transpose(1, 0, 2)
    return forecast * series.scale[None, :, None] + series.mean[None, :, None]


def write_forecast_csv(path: Path, task: ForecastTask, forecast: np.ndarray) -> None:
    """Timestamps after the last row, one column per variate (the median), and one per quantile level."""
    columns = {"timestamp": task.table.future_timestamps(task.config.horizon).to_numpy()}
    for c, name in enumerate(task.table.columns):
        columns[name] = forecast[:, c, task.median]
        for q, level in enumerate(task.config.quantiles):
            if q != task.median:
                columns[f"{name}_q{level:g}"] = forecast[:, c, q]
    frame = pl.DataFrame(columns)
    write_atomically_with(path, lambda tmp: frame.write_csv(tmp, datetime_format="%Y-%m-%d %H:%M:%S"))


def run_forecast(options: ForecastOptions) -> ForecastResult:
    """Train (or load ``options.checkpoint``), test on the held-out split, forecast, plot."""
    checkpoint = find_checkpoint(options.checkpoint) if options.checkpoint else None
    recipe = checkpoint_recipe(options, checkpoint) if checkpoint else training_recipe(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    env = init_process(recipe.run.device)
    try:
        trainer = Trainer(recipe, env)
        if checkpoint:
            record = trainer.evaluate_checkpoint(checkpoint)
            write_record(out / "test_results.json", record)
        else:
            record = trainer.fit()
            checkpoint = find_checkpoint(trainer.run_dir)
        metrics = record["metrics"]
        task, model = trainer.task, trainer.model.eval()
        forecast = future_forecast(task, model, env.device)
        csv_path, png_path = out / "forecast.csv", out / "forecast.png"
        write_forecast_csv(csv_path, task, forecast)
        plot_forecast(png_path, task, model, forecast, env.device)
    finally:
        close_process()
    return ForecastResult(metrics, csv_path, png_path, checkpoint)


def report(result: ForecastResult, task_name: str) -> str:
    """The lines the command prints."""
    m = result.metrics
    return "\n".join([
        f"test {task_name}: MSE {m['mse']:.4f}  MAE {m['mae']:.4f} (standardised, as published) | "
        f"MSE {m['mse_original']:.4g}  MAE {m['mae_original']:.4g} (original units) | "
        f"MASE {m['mase']:.3f}  sMAPE {m['smape']:.3f}",
        f"forecast: {result.forecast_csv}",
        f"plot:     {result.plot_png}",
        f"model:    {result.checkpoint}  (reuse it with --checkpoint)"])
