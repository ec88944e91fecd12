"""``titans-seq forecast``: the forecasting task's own command (the task brings it; the CLI names no task)."""
from __future__ import annotations

import argparse
from pathlib import Path

from titans_seq.engine.registry import register_commands

from .command import ForecastOptions, report, run_forecast


def forecast_command(args: argparse.Namespace) -> None:
    options = ForecastOptions(args.data, args.horizon, args.lookback, args.target or [], args.time_col, args.variant,
                              args.quantiles or [], args.checkpoint, args.out, args.on_irregular, args.steps,
                              args.overrides)
    print(report(run_forecast(options), Path(args.data).stem))


@register_commands
def add_commands(commands: argparse._SubParsersAction) -> None:
    forecast = commands.add_parser("forecast", help="train on a series file (or load a checkpoint), test, forecast "
                                                    "beyond its end: CSV + plot")
    forecast.add_argument("--data", required=True, help="a CSV, TSV or Parquet file with a time column, or a "
                                                        "dataset key such as ett/ETTm1")
    forecast.add_argument("--horizon", type=int, help="steps to forecast (default 96, or the checkpoint's)")
    forecast.add_argument("--lookback", type=int, help="past steps the model sees (default 512, or the checkpoint's)")
    forecast.add_argument("--target", action="append", help="a column to model (repeatable); default: every column")
    forecast.add_argument("--time-col", help="the time column, when it is not found by type or name")
    forecast.add_argument("--variant", help="mac (default), mag, mal, lmm, transformer, swa, dlinear or rlinear")
    forecast.add_argument("--quantiles", type=float, nargs="+", help="train quantile forecasts, e.g. 0.1 0.5 0.9")
    forecast.add_argument("--checkpoint", help="a trained model folder (e.g. OUT/model/best): skip training")
    forecast.add_argument("--out", default="forecast", help="folder for forecast.csv, forecast.png and the model")
    forecast.add_argument("--on-irregular", default="stop", choices=["stop", "fill"],
                          help="duplicate or missing timestamps: stop (default), or keep the first and fill gaps")
    forecast.add_argument("--steps", type=int, default=300, help="training steps")
    forecast.add_argument("overrides", nargs="*", help="recipe overrides, e.g. model.d_model=128")
    forecast.set_defaults(run=forecast_command)
