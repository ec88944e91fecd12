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
    from titans_seq.engine.errors import UserError

    variants = args.variants.split(",") if args.variants else None
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: give whole numbers separated by commas") from None
    table = run_suite(Path(args.suite), Path(args.out) if args.out else None, variants, seeds, args.overrides,
                      args.name)
    print(table)


def _demo(args: argparse.Namespace) -> None:
    from titans_seq.engine.demo import run_demo

    run_demo(args.overrides)


def _forecast(args: argparse.Namespace) -> None:
    from titans_seq.tasks.forecast.command import ForecastOptions, report, run_forecast

    options = ForecastOptions(args.data, args.horizon, args.lookback, args.target or [], args.time_col, args.variant,
                              args.quantiles or [], args.checkpoint, args.out, args.on_irregular, args.steps,
                              args.overrides)
    print(report(run_forecast(options), Path(args.data).stem))


def _list(args: argparse.Namespace) -> None:
    from titans_seq.backbones import VARIANTS
    from titans_seq.engine.config import packaged_recipes
    from titans_seq.engine.registry import task_names

    print("recipes: " + ", ".join(sorted(packaged_recipes())))
    print("tasks:   " + ", ".join(task_names()))
    print("variants: " + ", ".join(VARIANTS))


def _generate(args: argparse.Namespace) -> None:
    from titans_seq.tasks.lm.commands import generate_command

    print(generate_command(args.checkpoint, args.prompt, args.input_file, args.max_new_tokens, args.temperature,
                           args.top_k, args.top_p, args.seed, args.device))


def _niah(args: argparse.Namespace) -> None:
    from titans_seq.tasks.lm.commands import niah_command, parse_list

    kinds, lengths = parse_list(args.kinds, str, "--kinds"), parse_list(args.lengths, int, "--lengths")
    print(niah_command(args.checkpoint, kinds, lengths, parse_list(args.depths, float, "--depths"), args.samples,
                       args.seed, args.haystack, args.out, args.device))


def _babilong(args: argparse.Namespace) -> None:
    from titans_seq.tasks.lm.commands import babilong_command, parse_list

    print(babilong_command(args.checkpoint, args.data, parse_list(args.tasks, str, "--tasks"),
                           parse_list(args.lengths, str, "--lengths"), args.samples, args.device))


def _tokenizer(args: argparse.Namespace) -> None:
    from titans_seq.tasks.lm.commands import tokenizer_command

    print(tokenizer_command(args.corpus, args.vocab_size, args.out, args.text_field))


def _lm_eval(args: argparse.Namespace) -> None:
    from titans_seq.tasks.lm.commands import parse_list
    from titans_seq.tasks.lm.harness import evaluate_harness

    print(evaluate_harness(args.checkpoint, parse_list(args.tasks, str, "--tasks"), args.num_fewshot, args.limit,
                           args.include_path, args.out, args.device))


def _print_record(record: dict) -> None:
    if int(os.environ.get("RANK", 0)) != 0:   # under torchrun, one line from rank 0
        return
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in record["metrics"].items())
    print(f"{record['task']} ({record['dataset']}, {record['split']}) {record['variant']}: {metrics}")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (the usage itself is one --help away)."""

    def error(self, message: str):
        from titans_seq.engine.errors import one_line

        self.exit(USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="titans-seq", description="Titans neural long-term memory toolkit.")
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
    bench.add_argument("--variants", help="train only these variants' runs (comma-separated); finished runs "
                                          "of the others are still tabulated")
    bench.add_argument("--seeds", help="train only these seeds' runs (comma-separated)")
    bench.add_argument("--name", help="the suite's name, and so its folder under out_dir (default: the file's)")
    bench.add_argument("overrides", nargs="*", help="recipe overrides for every run, e.g. train.max_steps=3000")
    bench.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="train a small Titans model on built-in data for about a minute")
    demo.add_argument("overrides", nargs="*", help="key=value overrides of the demo recipe")
    demo.set_defaults(run=_demo)

    forecast = commands.add_parser("forecast", help="train on a series file (or load a checkpoint), test, forecast "
                                                    "beyond its end: CSV + plot")
    forecast.add_argument("--data", required=True, help="a CSV, TSV or Parquet file with a time column")
    forecast.add_argument("--horizon", type=int, help="steps to forecast (default 96, or the checkpoint's)")
    forecast.add_argument("--lookback", type=int, help="past steps the model sees (default 512, or the checkpoint's)")
    forecast.add_argument("--target", action="append", help="a column to model (repeatable); default: every column")
    forecast.add_argument("--time-col", help="the time column, when it is not found by type or name")
    forecast.add_argument("--variant", help="mac (default), mag, mal, lmm, transformer, swa or dlinear")
    forecast.add_argument("--quantiles", type=float, nargs="+", help="train quantile forecasts, e.g. 0.1 0.5 0.9")
    forecast.add_argument("--checkpoint", help="a trained model folder (e.g. OUT/model/best): skip training")
    forecast.add_argument("--out", default="forecast", help="folder for forecast.csv, forecast.png and the model")
    forecast.add_argument("--on-irregular", default="stop", choices=["stop", "fill"],
                          help="duplicate or missing timestamps: stop (default), or keep the first and fill gaps")
    forecast.add_argument("--steps", type=int, default=300, help="training steps")
    forecast.add_argument("overrides", nargs="*", help="recipe overrides, e.g. model.d_model=128")
    forecast.set_defaults(run=_forecast)

    listing = commands.add_parser("list", help="show packaged recipes, tasks and model variants")
    listing.set_defaults(run=_list)

    generate = commands.add_parser("generate", help="write text with a trained language model, or score a file")
    generate.add_argument("--checkpoint", required=True, help="a checkpoint directory, e.g. runs/NAME/best")
    generate.add_argument("--prompt", default="", help="the text to continue")
    generate.add_argument("--input-file", help="instead: stream this text file through the model, report bits/byte")
    generate.add_argument("--max-new-tokens", type=int, default=200)
    generate.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    generate.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens; 0: all")
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass; 1: all")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    generate.set_defaults(run=_generate)

    niah = commands.add_parser("niah", help="single-needle-in-a-haystack accuracy of a language model")
    niah.add_argument("--checkpoint", required=True, help="a checkpoint directory, e.g. runs/NAME/best")
    niah.add_argument("--kinds", default="pk,n,w", help="pk (pass key in noise), n (number), w (UUID) in essays")
    niah.add_argument("--lengths", default="2K,4K,8K,16K", help="prompt lengths in tokens, e.g. 2K,4K,65536")
    niah.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="needle depths, fractions of the haystack")
    niah.add_argument("--samples", type=int, default=4, help="prompts per length and depth")
    niah.add_argument("--seed", type=int, default=0)
    niah.add_argument("--haystack", default="../shared/data/niah/paul_graham_essays_concat.txt",
                      help="the essays the n and w needles hide in")
    niah.add_argument("--out", help="where to write niah.md, niah.png, results.jsonl (default: beside the checkpoint)")
    niah.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    niah.set_defaults(run=_niah)

    babilong = commands.add_parser("babilong", help="BABILong accuracy of a language model (your BABILong files)")
    babilong.add_argument("--checkpoint", required=True, help="a checkpoint directory, e.g. runs/NAME/best")
    babilong.add_argument("--data", required=True, help="the folder of RMT-team/babilong: DATA/4k/qa1-*.parquet ...")
    babilong.add_argument("--tasks", default="qa1,qa2,qa3,qa4,qa5")
    babilong.add_argument("--lengths", default="0k,1k,2k,4k", help="the length folders to read")
    babilong.add_argument("--samples", type=int, default=0, help="samples per task and length; 0: all")
    babilong.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    babilong.set_defaults(run=_babilong)

    tokenizer = commands.add_parser("tokenizer", help="train a byte-level BPE tokenizer on a corpus")
    tokenizer.add_argument("corpus", help="a text file, a folder of them, or a .jsonl file")
    tokenizer.add_argument("--vocab-size", type=int, default=8192)
    tokenizer.add_argument("--out", required=True, help="the tokenizers .json file to write")
    tokenizer.add_argument("--text-field", default="text", help="the JSONL field holding the text")
    tokenizer.set_defaults(run=_tokenizer)

    harness = commands.add_parser("lm-eval", help="score a language model on lm-evaluation-harness tasks "
                                                  "(needs: pip install 'titans-seq[harness]')")
    harness.add_argument("--checkpoint", required=True, help="a checkpoint directory, e.g. runs/NAME/best")
    harness.add_argument("--tasks", required=True, help="harness task names, e.g. piqa,hellaswag,arc_easy")
    harness.add_argument("--num-fewshot", type=int, help="examples in each prompt (default: the task's)")
    harness.add_argument("--limit", type=float, help="documents per task (a fraction if < 1); for a quick look")
    harness.add_argument("--include-path", help="a folder of your own task YAMLs")
    harness.add_argument("--out", help="where to write the results as JSON")
    harness.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    harness.set_defaults(run=_lm_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)   # overrides may come after options too
        if extra and (not hasattr(args, "overrides") or any(e.startswith("-") for e in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as stop:                        # a usage error (2), or --help (0)
        return stop.code
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
    except OSError as error:        # the machine, not the request: a full disk, a read-only folder
        print(f"titans-seq: cannot go on: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("titans-seq: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
