"""Peak memory while streaming a long input through the model's state: flat for the Titans variants.

    python benchmarks/stream_memory.py                                  # lm_170m sizes, mac, up to 1M tokens
    python benchmarks/stream_memory.py --variants mac,mag,mal,swa --marks 64K,256K,1M --device cuda
    python benchmarks/stream_memory.py --smoke                          # tiny model, tiny lengths

Random token ids are generated piece by piece (the input is never held whole) and read through
Backbone state under no_grad; at each mark the table gives the process's peak resident memory
(and on CUDA the peak allocated GPU memory). Untrained weights use as much memory as trained ones.
The transformer baseline keeps every key and value, so its memory grows: it is left out unless asked for.
"""
from __future__ import annotations

import argparse
import resource
import time
from typing import Iterator

import torch

from titans_seq.tasks.language_model import LanguageModel
from titans_seq.engine.config import load_recipe
from titans_seq.tasks.lm.commands import parse_list

SMOKE = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.chunk_size=8", "model.segment_len=32",
         "model.window=32"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # KiB on Linux


@torch.no_grad()
def stream(variant: str, args, device: torch.device) -> Iterator[dict]:
    recipe = load_recipe(args.recipe, [*args.overrides, f"model.variant={variant}", "task.tokenizer=byte"])
    torch.manual_seed(0)
    model = LanguageModel(args.vocab, recipe.model.backbone()).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    marks, state, read = sorted(args.marks), None, 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    while marks:
        ids = torch.randint(0, args.vocab, (1, args.piece), generator=generator).to(device)
        _, state = model(ids, state=state, return_state=True)
        read += args.piece
        if read >= marks[0]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            yield {"variant": variant, "tokens": marks.pop(0), "peak_rss_mb": peak_rss_mb(),
                   "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
                   else float("nan"),
                   "tokens_per_s": read / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lm_170m", help="the model sizes to use (weights are random)")
    parser.add_argument("--variants", default="mac,mag,mal,lmm,swa")
    parser.add_argument("--marks", default="64K,256K,1M", help="token counts at which memory is read")
    parser.add_argument("--piece", type=int, default=512, help="tokens per forward call")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="a tiny model and lengths, to check the script")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. model.d_model=512")
    args = parser.parse_args()
    args.marks = parse_list(args.marks, int, "--marks")
    if args.smoke:
        args.recipe, args.overrides, args.vocab, args.piece = "lm_tiny", [*SMOKE, *args.overrides], 257, 256
        args.marks = [m // 64 for m in args.marks]
    device = torch.device(args.device)
    print("| variant | tokens | peak RSS (MB) | peak GPU (MB) | tokens/s |\n|---|---|---|---|---|")
    for variant in parse_list(args.variants, str, "--variants"):
        for row in stream(variant, args, device):
            print(f"| {row['variant']} | {row['tokens']:,} | {row['peak_rss_mb']:,.0f} | {row['peak_gpu_mb']:,.0f} | "
                  f"{row['tokens_per_s']:,.0f} |", flush=True)
    print(f"\n{args.recipe} sizes {' '.join(args.overrides)}, pieces of {args.piece} tokens, on {device}. "
          "Peak RSS is the whole process's high-water mark since it started.")


if __name__ == "__main__":
    main()
