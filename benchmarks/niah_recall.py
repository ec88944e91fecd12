"""Passkey recall far past the training length: train at <= 2K tokens, ask at up to 64K and beyond.

    python benchmarks/niah_recall.py                                    # train lm_passkey (mac), then sweep
    python benchmarks/niah_recall.py --variants mac,mag,mal,swa --lengths 1K,4K,16K,64K,256K
    python benchmarks/niah_recall.py --checkpoint runs/niah_recall/passkey-mac/best    # sweep only
    python benchmarks/niah_recall.py --curriculum 256:1500:16,1024:1500:4    # short prompts first, then 1K
    python benchmarks/niah_recall.py --smoke                            # tiny sizes, to check the script
    python benchmarks/niah_recall.py --checkpoint CKPT --forget-scale 0 # the same sweep without forgetting

With --curriculum, each stage (seq_len:steps:batch_size, and optionally :carry_state, the training
batches in a row that start from the previous batch's final state) trains from the previous stage's
best checkpoint (model.init_from), with the recipe's other settings; the sweep reads the last stage's.

Every prompt is read through the model's state in pieces, so memory stays flat with the length.
A transformer baseline is asked only at lengths up to the one it was trained on (its cache grows).
Per variant, niah.md (accuracy by length and depth), niah.png and results.jsonl go under --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from titans_seq.engine.config import load_recipe
from titans_seq.engine.trainer import train
from titans_seq.memory import NeuralMemory
from titans_seq.tasks.lm.commands import parse_list
from titans_seq.tasks.lm.generation import load_language_model
from titans_seq.tasks.lm.niah_eval import evaluate_niah, write_report

ANSWER_ROOM = 64
SMOKE = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=8", "model.segment_len=32",
         "model.window=32", "task.seq_len=192", "task.n_train=64", "task.n_val=8", "task.n_test=8",
         "train.max_steps=4", "train.batch_size=4", "train.eval_every=0", "optim.warmup_steps=2"]


def scale_forgetting(model: nn.Module, scale: float) -> None:
    """Multiplies every memory's forgetting gate alpha by ``scale`` (0: the memory never forgets)."""
    for memory in model.modules():
        if isinstance(memory, NeuralMemory):
            def scaled(x, gates=memory.gates):
                lr, eta, alpha = gates(x)
                return lr, eta, alpha * scale
            memory.gates = scaled


def sweep(checkpoint: Path, args, out: Path) -> str:
    loaded = load_language_model(checkpoint, args.device)
    if args.forget_scale != 1:
        scale_forgetting(loaded.model, args.forget_scale)
    # room for the start token and the written answer within a fixed-length model's context
    lengths = [n for n in args.lengths if loaded.context is None or n + ANSWER_ROOM <= loaded.context]
    if not lengths:
        return f"{checkpoint}: a fixed-length model of {loaded.context} tokens; no length to ask at"
    results = evaluate_niah(loaded, args.kinds, lengths, args.depths, args.samples, args.seed, args.haystack)
    return write_report(results, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lm_passkey")
    parser.add_argument("--variants", default="mac")
    parser.add_argument("--checkpoint", help="skip training: sweep this checkpoint")
    parser.add_argument("--kinds", default="pk")
    parser.add_argument("--lengths", default="1K,2K,4K,8K,16K,32K,64K")
    parser.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--haystack", default="niah/paul_graham_essays", help="a text file or a dataset key")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/niah_recall")
    parser.add_argument("--curriculum", help="stages seq_len:steps:batch_size[:carry_state], comma-separated "
                                             "(default: the recipe's)")
    parser.add_argument("--forget-scale", type=float, default=1.0,
                        help="multiply the memory's forgetting gate by this in the sweep (0: no forgetting), "
                             "to test whether forgetting is what limits the reach")
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps, short lengths")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.max_steps=5000")
    args = parser.parse_args()
    args.kinds, args.depths = parse_list(args.kinds, str, "--kinds"), parse_list(args.depths, float, "--depths")
    args.lengths = parse_list("128,256,512" if args.smoke else args.lengths, int, "--lengths")
    if args.smoke:
        args.overrides, args.samples, args.depths = [*SMOKE, *args.overrides], 1, [0.0, 1.0]
    out = Path(args.out)
    if args.checkpoint:
        print(sweep(Path(args.checkpoint), args, out))
        return
    stages = parse_stages(args.curriculum) if args.curriculum else [[]]
    for variant in parse_list(args.variants, str, "--variants"):
        init_from = []
        for i, stage in enumerate(stages):
            name = f"run.name=passkey-{variant}" + (f"-stage{i + 1}" if len(stages) > 1 else "")
            recipe = load_recipe(args.recipe, [*args.overrides, *stage, *init_from, f"model.variant={variant}",
                                               f"run.out_dir={out}", name])
            record = train(recipe)
            init_from = [f"model.init_from={recipe.run_dir / 'best'}"]
            print(f"== {variant}: trained at {recipe.task.seq_len} tokens, test accuracy "
                  f"{record['metrics']['accuracy']:.3f}")
        print(sweep(recipe.run_dir / "best", args, out / recipe.run.name / "niah"))


def parse_stages(text: str) -> list[list[str]]:
    """``256:1500:16,1024:1000:4:15`` -> the overrides of each stage (seq_len:steps:batch_size[:carry_state])."""
    stages = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) not in (3, 4) or not all(part.strip().isdigit() for part in parts):
            raise SystemExit(f"--curriculum {text!r}: give stages as seq_len:steps:batch_size[:carry_state]")
        seq_len, steps, batch, carry = [*parts, "0"][:4]
        stages.append([f"task.seq_len={seq_len}", f"train.max_steps={steps}", f"train.batch_size={batch}",
                       f"task.carry_state={carry}"])
    return stages


if __name__ == "__main__":
    main()
