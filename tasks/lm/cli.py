"""The language-model tasks' own commands: generate, niah, babilong, tokenizer, lm-eval."""
from __future__ import annotations

import argparse

from titans_seq.engine.registry import register_commands

from .commands import babilong_command, generate_command, niah_command, parse_list, tokenizer_command
from .harness import evaluate_harness


def _generate(args: argparse.Namespace) -> None:
    print(generate_command(args.checkpoint, args.prompt, args.input_file, args.max_new_tokens, args.temperature,
                           args.top_k, args.top_p, args.seed, args.device))


def _niah(args: argparse.Namespace) -> None:
    kinds, lengths = parse_list(args.kinds, str, "--kinds"), parse_list(args.lengths, int, "--lengths")
    print(niah_command(args.checkpoint, kinds, lengths, parse_list(args.depths, float, "--depths"), args.samples,
                       args.seed, args.haystack, args.out, args.device, args.forget_scale))


def _babilong(args: argparse.Namespace) -> None:
    print(babilong_command(args.checkpoint, args.data, parse_list(args.tasks, str, "--tasks"),
                           parse_list(args.lengths, str, "--lengths"), args.samples, args.device))


def _tokenizer(args: argparse.Namespace) -> None:
    print(tokenizer_command(args.corpus, args.vocab_size, args.out, args.text_field))


def _lm_eval(args: argparse.Namespace) -> None:
    print(evaluate_harness(args.checkpoint, parse_list(args.tasks, str, "--tasks"), args.num_fewshot, args.limit,
                           args.include_path, args.out, args.device))


@register_commands
def add_commands(commands: argparse._SubParsersAction) -> None:
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
    niah.add_argument("--haystack", default="niah/paul_graham_essays",
                      help="the essays the n and w needles hide in: a text file or a dataset key")
    niah.add_argument("--out", help="where to write niah.md, niah.png, results.jsonl (default: beside the checkpoint)")
    niah.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    niah.add_argument("--forget-scale", type=float, default=1.0,
                      help="multiply the memory's forgetting gate by this (0: no forgetting), to test whether "
                           "forgetting is what limits the reach")
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
