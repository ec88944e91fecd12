"""The ``titans-seq`` command: parse, load the recipe, hand over to the engine.

    titans-seq demo                                   # a minute of training on built-in data
    titans-seq train recipes/dna_mac.yaml model.variant=mag train.max_steps=200
    titans-seq train RECIPE --resume
    titans-seq eval RECIPE --checkpoint runs/x/best
    titans-seq bench recipes/suites/recall.yaml
    titans-seq forecast --data ettm1.csv --horizon 96 --target OT
    titans-seq generate --checkpoint runs/lm-tiny-mac/best --prompt "ROMEO:" --temperature 0.8
    titans-seq niah --checkpoint runs/passkey-mac/best --kinds pk --lengths 1K,4K,16K
    titans-seq tokenizer corpus/ --vocab-size 8192 --out tokenizer.json
    titans-seq lm-eval --checkpoint runs/lm-170m-mac/best --tasks piqa,hellaswag    # needs lm-eval
    titans-seq data list | fetch ett/ETTm1 gue/tf_0 | verify | path text/tinyshakespeare
    titans-seq --data-dir /mnt/datasets train dna_mac         # a local mirror of the datasets, used first
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
    from titans_seq.errors import UserError

    variants = args.variants.split(",") if args.variants else None
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: give whole numbers separated by commas") from None
    columns = args.columns.split(",") if args.columns else None
    print(run_suite(Path(args.suite), Path(args.out) if args.out else None, variants, seeds, args.overrides,
                    args.name, args.jobs, args.dry_run, columns))


def _list(args: argparse.Namespace) -> None:
    from titans_seq.backbones import VARIANTS
    from titans_seq.engine.config import packaged_recipes
    from titans_seq.engine.registry import task_names

    print("recipes: " + ", ".join(sorted(packaged_recipes())))
    print("tasks:   " + ", ".join(task_names()))
    print("variants: " + ", ".join(VARIANTS))


def _data(args: argparse.Namespace) -> int | None:
    from titans_seq.data import commands

    if args.action == "list":
        print(commands.list_table())
    elif args.action == "fetch":
        print(commands.fetch(args.keys))
    elif args.action == "path":
        print(commands.path(args.keys[0]))
    else:
        report, all_match = commands.verify_table(args.keys)
        print(report)
        if not all_match:
            print("titans-seq: error: some files differ from the registry's sha256; delete them and fetch again",
                  file=sys.stderr)
            return USER_ERROR
    return None


def _print_record(record: dict) -> None:
    if int(os.environ.get("RANK", 0)) != 0:   # under torchrun, one line from rank 0
        return
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in record["metrics"].items())
    print(f"{record['task']} ({record['dataset']}, {record['split']}) {record['variant']}: {metrics}")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (the usage itself is one --help away)."""

    def error(self, message: str):
        from titans_seq.errors import one_line

        self.exit(USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="titans-seq", description="Titans neural long-term memory toolkit.")
    parser.add_argument("--data-dir", help="a local mirror of the datasets in the registry's layout, used before the "
                                           "cache and any download (default: $TITANS_SEQ_DATA)")
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

    bench = commands.add_parser("bench", help="run a grid of recipes x datasets x axes x variants x seeds, "
                                              "and tabulate it")
    bench.add_argument("suite", help="a suite file, or a packaged suite's name, e.g. gue_cpu")
    bench.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process pinned to "
                                                          "its share of the cores")
    bench.add_argument("--dry-run", action="store_true", help="print the plan (runs, estimated time) and stop")
    bench.add_argument("--out", help="where to write the markdown table (default: beside the runs)")
    bench.add_argument("--variants", help="train only these rows' runs (variants or the suite's models, "
                                          "comma-separated); finished runs of the others are still tabulated")
    bench.add_argument("--seeds", help="train only these seeds' runs (comma-separated)")
    bench.add_argument("--columns", help="train only the runs of the columns whose label contains one of these "
                                         "(comma-separated), e.g. prom_core or task.horizon=720")
    bench.add_argument("--name", help="the suite's name, and so its folder under out_dir (default: the file's)")
    bench.add_argument("overrides", nargs="*", help="recipe overrides for every run, e.g. train.max_steps=3000")
    bench.set_defaults(run=_bench)

    data = commands.add_parser("data", help="the registered datasets: list, fetch, verify, or print a local path")
    data.add_argument("action", choices=["list", "fetch", "verify", "path"])
    data.add_argument("keys", nargs="*", help="dataset keys, e.g. ett/ETTm1 gue/prom_core_notata (verify: default all)")
    data.set_defaults(run=_data)

    from titans_seq.engine.registry import task_commands

    for add_commands in task_commands():       # the tasks' own: demo, forecast, generate, niah, ...
        add_commands(commands)

    listing = commands.add_parser("list", help="show packaged recipes, tasks and model variants")
    listing.set_defaults(run=_list)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)   # overrides may come after options too
        if extra and (not hasattr(args, "overrides") or any(e.startswith("-") for e in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "data" and args.action == "path" and len(args.keys) != 1:
            parser.error("data path: give one dataset key")
        if args.command == "data" and args.action == "fetch" and not args.keys:
            parser.error("data fetch: give one or more dataset keys")
    except SystemExit as stop:                        # a usage error (2), or --help (0)
        return stop.code
    if extra:
        args.overrides = [*args.overrides, *extra]
    from titans_seq.data import MIRROR_ENV
    from titans_seq.errors import TrainingError, UserError

    if args.data_dir:
        os.environ[MIRROR_ENV] = args.data_dir   # read by the data registry here and in bench's child processes
    try:
        code = args.run(args)
    except (UserError, FileNotFoundError, NotADirectoryError) as error:
        print(f"titans-seq: error: {error}", file=sys.stderr)
        return USER_ERROR
    except TrainingError as error:
        print(f"titans-seq: {error}", file=sys.stderr)
        return 1
    except OSError as error:        # the machine, not the request: a full disk, a read-only folder
        print(f"titans-seq: cannot go on: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("titans-seq: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
