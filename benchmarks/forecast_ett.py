"""The long-horizon forecasting protocol: a dataset, the four horizons, models side by side.

    python benchmarks/forecast_ett.py --data ett/ETTm1 --lookback 96 \
        --models dlinear patchtst mac --seeds 0 --out runs/forecast-ettm1-96

Each (model, horizon, seed) is a `titans-seq train recipes/forecast.yaml` run: selection on the
validation split, one test evaluation of the selected checkpoint. The table gives test MSE / MAE
on the scaled data (as published), per horizon and averaged over the horizons, mean over seeds.
Extra ``key=value`` arguments override the recipe for every run (e.g. ``train.max_steps=500``).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from titans_seq.data import resolve_path
from titans_seq.engine.config import load_recipe
from titans_seq.engine.records import write_atomically
from titans_seq.engine.trainer import train

HORIZONS = (96, 192, 336, 720)
MODELS = {  # name -> recipe overrides
    "dlinear": ["task.architecture=dlinear"],
    "patchtst": ["model.variant=transformer"],
    **{variant: [f"model.variant={variant}"] for variant in ("swa", "lmm", "mac", "mag", "mal")},
}


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for model in args.models:
        for horizon in args.horizons:
            for seed in args.seeds:
                name = f"{model}/h{horizon}/seed-{seed}"
                print(f"== {Path(args.data).stem} L={args.lookback} {name}", flush=True)
                recipe = load_recipe(args.recipe, [f"data.path={resolve_path(args.data)}",
                                                   f"task.lookback={args.lookback}",
                                                   f"task.horizon={horizon}", f"run.seed={seed}",
                                                   f"run.out_dir={args.out}", f"run.name={name}",
                                                   *MODELS[model], *args.overrides])
                record = train(recipe)
                records.append({"model": model, "horizon": horizon, "seed": seed, **record})
    return records


def table(records: list[dict], models: list[str], horizons: list[int]) -> str:
    def mean(model: str, horizon: int, metric: str) -> float:
        return statistics.mean(r["metrics"][metric] for r in records if r["model"] == model and r["horizon"] == horizon)

    header = ["model"] + [f"{h} MSE / MAE" for h in horizons] + ["average MSE / MAE"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        mse = [mean(model, h, "mse") for h in horizons]
        mae = [mean(model, h, "mae") for h in horizons]
        cells = [f"{a:.3f} / {b:.3f}" for a, b in zip(mse, mae)]
        cells.append(f"{statistics.mean(mse):.3f} / {statistics.mean(mae):.3f}")
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a dataset key (ett/ETTm1) or a series file")
    parser.add_argument("--lookback", type=int, default=96)
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    parser.add_argument("--models", nargs="+", default=["dlinear", "patchtst", "mac"], choices=sorted(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipe", default="recipes/forecast.yaml")
    parser.add_argument("--out", default="runs/forecast-bench")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every run, e.g. train.max_steps=500")
    args = parser.parse_args()
    records = run(args)
    out = Path(args.out)
    write_atomically(out / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    text = table(records, args.models, args.horizons)
    seeds = ", ".join(map(str, args.seeds))
    write_atomically(out / "results.md", f"# {Path(args.data).stem}, lookback {args.lookback}\n\n{text}\n\n"
                     f"Test MSE / MAE on standardised data, mean over seeds {seeds}.\n")
    print(text)


if __name__ == "__main__":
    main()
