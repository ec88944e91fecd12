"""The ``titans-seq`` command: parse, load the recipe, hand over to the engine.

    titans-seq demo                                   # a minute of training on built-in data
    titans-seq train recipes/dna_mac.yaml model.variant=mag train.max_steps=200
    titans-seq train RECIPE --resume
    titans-seq eval RECIPE --checkpoint runs/x/best
    titans-seq bench recipes/suites/recall.yaml
    titans-seq list
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

USER_ERROR = 2


def _train(args: argparse.Namespace) -> None:
    from titans_seq.engine.config import load_recipe
    from titans_seq.engine.trainer import train

    record = train(load_recipe(args.recipe, args.overrides), resume=args.resume)
    _print_record(record)


def _eval(args: argparse.Namespace) -> None:
    from titans_seq.engine.config import load_recipe
    from titans_seq.engine.evaluation import evaluate_checkpoint

    record = evaluate_checkpoint(load_recipe(args.recipe, args.overrides), Path(args.checkpoint), args.split,
                                 Path(args.out) if args.out else None)
    _print_record(record)


def _bench(args: argparse.Namespace) -> None:
    from titans_seq.engine.bench import run_suite

    table = run_suite(Path(args.suite), Path(args.out) if args.out else None)
    print(table)


def _demo(args: argparse.Namespace) -> None:
    from titans_seq.engine.demo import run_demo

    run_demo(args.overrides)


def _list(args: argparse.Namespace) -> None:
    from titans_seq.backbones import VARIANTS
    from titans_seq.engine.config import packaged_recipes
    from titans_seq.engine.registry import task_names

    print("recipes: " + ", ".join(sorted(packaged_recipes())))
    print("tasks:   " + ", ".join(task_names()))
    print("variants: " + ", ".join(VARIANTS))


def _print_record(record: dict) -> None:
    if int(os.environ.get("RANK", 0)) != 0:   # under torchrun, one line from rank 0
        return
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in record["metrics"].items())
    print(f"{record['task']} ({record['dataset']}, {record['split']}) {record['variant']}: {metrics}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titans-seq", description="Titans neural long-term memory toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the run a recipe describes")
    train.add_argument("recipe", help="a recipe file, or the name of a packaged recipe (see `titans-seq list`)")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=200")
    train.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint and write a result record")
    evaluate.add_argument("recipe")
    evaluate.add_argument("overrides", nargs="*")
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoint directory, e.g. runs/NAME/best")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--out", help="where to write the JSON record (default: beside the checkpoint)")
    evaluate.set_defaults(run=_eval)

    bench = commands.add_parser("bench", help="run a grid of variants x recipes x seeds and tabulate it")
    bench.add_argument("suite", help="a suite file, e.g. recipes/suites/recall.yaml")
    bench.add_argument("--out", help="where to write the markdown table (default: beside the runs)")
    bench.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="train a small Titans model on built-in data for about a minute")
    demo.add_argument("overrides", nargs="*", help="key=value overrides of the demo recipe")
    demo.set_defaults(run=_demo)

    listing = commands.add_parser("list", help="show packaged recipes, tasks and model variants")
    listing.set_defaults(run=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)   # overrides may come after options too
    if extra and (not hasattr(args, "overrides") or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from titans_seq.engine.errors import TrainingError, UserError

    try:
        args.run(args)
    except (UserError, FileNotFoundError, NotADirectoryError) as error:
        print(f"titans-seq: error: {error}", file=sys.stderr)
        return USER_ERROR
    except TrainingError as error:
        print(f"titans-seq: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("titans-seq: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
