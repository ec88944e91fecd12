"""Where does the memory's inner loop diverge? Train as ``titans-seq`` does, logging every step's inner loop.

    python scripts/inner_loop_probe.py probe.jsonl train lm_passkey model.variant=lmm task.carry_state=4
    python scripts/inner_loop_probe.py probe.jsonl --summary     # the steps around each non-finite loss

The first form runs the ``titans-seq`` command after the output file, in this process, with the
memory operator and the trainer's step wrapped, and writes one JSON line per optimizer step: its
loss, whether it was finite, and per call of the memory operator (one per memory layer and
micro-batch):

- ``lr``, ``momentum``: the largest step θ and momentum η over the tokens;
- ``counted``: the largest θ / (1 − η), a step with what momentum re-applies;
- ``along_key``: the largest summed counted step of a chunk along one key, Σ_{s≤t} θ_s / (1 − η_s)
  (k_s · k_t)², the quantity the write budget bounds (``titans_seq/memory/write_budget.py``);
- ``weights``: each memory layer's weight norm after the sequence, the largest over batch and heads;
- ``hidden``: the largest squared norm of the memory's first hidden activation for the keys, at
  those weights: a step on the last layer moves the output by about this times the step.

Evaluation calls (sequences shorter than a chunk included) are not logged.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import titans_seq.engine.trainer as trainer
import titans_seq.memory.module as memory_module
from titans_seq.cli import main as titans_seq_main
from titans_seq.memory.activations import get_activation
from titans_seq.memory.write_budget import counted_steps, spent_along_keys


def inner_loop_record(k, lr, momentum, state, chunk_size: int, activation: str) -> dict:
    """The figures above for one operator call: k (B, T, H, D), gates (B, T, H), the state it left."""
    counted = counted_steps(lr, momentum)
    weights = state.weights
    hidden = get_activation(activation).fn(torch.einsum("bthd,bhde->bthe", k.to(weights[0].dtype), weights[0]))
    finite = all(bool(torch.isfinite(W).all()) for W in weights)
    return {"lr": lr.max().item(), "momentum": momentum.max().item(), "counted": counted.max().item(),
            "along_key": spent_along_keys(counted, k, chunk_size).max().item(),
            "weights": [W.flatten(-2).norm(dim=-1).max().item() for W in weights] if finite else None,
            "hidden": hidden.square().sum(-1).max().item() if finite else None}


def probe(out: Path, argv: list[str]) -> int:
    """Run ``titans-seq argv`` with the operator and the training step wrapped; one JSON line per step."""
    calls: list[dict] = []
    operator, step = memory_module.neural_memory, trainer.Trainer._step

    def recorded_operator(q, k, v, lr, momentum, decay, weights, **options):
        y, state = operator(q, k, v, lr, momentum, decay, weights, **options)
        if torch.is_grad_enabled() and k.shape[1] >= options["chunk_size"]:
            with torch.no_grad():
                calls.append(inner_loop_record(k, lr, momentum, state, options["chunk_size"],
                                               options.get("activation", "silu")))
        return y, state

    with out.open("w") as log:
        def recorded_step(self, model, batches):
            loss, tokens, finite = step(self, model, batches)
            log.write(json.dumps({"step": self.state.step, "loss": loss if finite else None, "finite": finite,
                                  "memories": calls}) + "\n")
            log.flush()
            calls.clear()
            return loss, tokens, finite

        memory_module.neural_memory, trainer.Trainer._step = recorded_operator, recorded_step
        try:
            return titans_seq_main(argv)
        finally:
            memory_module.neural_memory, trainer.Trainer._step = operator, step


def summary(out: Path, around: int = 1) -> str:
    """A table of the logged steps next to each non-finite one (``around`` either side); an attempt is
    one optimizer step tried (a skipped one keeps its step number), θ to along a key are the largest."""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    bad = {i for i, row in enumerate(rows) if not row["finite"]}
    near = sorted({j for i in bad for j in range(i - around, i + around + 1) if 0 <= j < len(rows)})
    lines = [f"{len(bad)} non-finite of {len(rows)} attempts",
             "| attempt | step | finite | memory | θ | η | θ/(1−η) | along a key | weight norms | hidden |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for j in near:
        row = rows[j]
        for m, call in enumerate(row["memories"]):
            norms = "non-finite" if call["weights"] is None else " / ".join(f"{w:.3g}" for w in call["weights"])
            hidden = "non-finite" if call["hidden"] is None else f"{call['hidden']:.3g}"
            lines.append(f"| {j} | {row['step']} | {row['finite']} | {m} | {call['lr']:.3f} | {call['momentum']:.3f} | "
                         f"{call['counted']:.3f} | {call['along_key']:.3f} | {norms} | {hidden} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[2] == "--summary":
        print(summary(Path(sys.argv[1])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the JSON-lines file to write")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a titans-seq command line, e.g. train RECIPE ...")
    args = parser.parse_args()
    sys.exit(probe(args.out, args.command))
