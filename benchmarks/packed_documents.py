"""What restarting at packed documents costs: a training step with and without document boundaries.

    python benchmarks/packed_documents.py                         # lm_tiny's mac, 8 x 512 tokens
    python benchmarks/packed_documents.py --variants mac,lmm,transformer --lengths 32,128,512

Each row packs documents of random length (uniform in [L/2, 3L/2], L the mean) into the same batch
of token ids; the step (forward, backward) runs once reading the rows as one sequence each and once
with ``documents`` (each document alone, batched by length). Median of --repeats steps after one
warm-up, one thread unless --threads says otherwise; the ratio is what the exact reset costs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from titans_seq import Documents
from titans_seq.engine.config import load_recipe
from titans_seq.tasks.language_model import LanguageModel
from titans_seq.tasks.lm.commands import parse_list


def packed_starts(batch: int, seq_len: int, mean: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.zeros(batch, seq_len, dtype=torch.bool)
    for row in range(batch):
        position = 0
        while True:
            position += int(torch.randint(max(1, mean // 2), mean + mean // 2 + 1, (1,), generator=generator))
            if position >= seq_len:
                break
            starts[row, position] = True
    return starts


def step_seconds(model: LanguageModel, ids: torch.Tensor, documents: Documents | None, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        hidden = model.backbone(model.embed(ids), documents=documents)
        (hidden @ model.embed.weight.T).float().logsumexp(-1).mean().backward()
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lm_tiny")
    parser.add_argument("--variants", default="mac")
    parser.add_argument("--lengths", default="64,128,256", help="mean document lengths, tokens")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (args.batch, args.seq_len), generator=generator)
    print(f"{args.batch} x {args.seq_len} tokens, {args.threads} thread(s), median of {args.repeats} steps\n")
    print("| variant | mean document | documents | step, one sequence per row | step, each document alone | ratio |")
    print("|---|---|---|---|---|---|")
    for variant in parse_list(args.variants, str, "--variants"):
        recipe = load_recipe(args.recipe, [f"model.variant={variant}", "task.tokenizer=byte"])
        torch.manual_seed(0)
        model = LanguageModel(257, recipe.model.backbone())
        plain = step_seconds(model, ids, None, args.repeats)
        for mean in parse_list(args.lengths, int, "--lengths"):
            documents = Documents(packed_starts(args.batch, args.seq_len, mean, generator))
            packed = step_seconds(model, ids, documents, args.repeats)
            count = len(documents.spans())
            print(f"| {variant} | {mean} | {count} | {plain * 1e3:.0f} ms | {packed * 1e3:.0f} ms | {packed / plain:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
