"""How a trained model's memory changes while it reads a long haystack: weight norms and gates per piece.

    python scripts/memory_drift.py --checkpoint runs/passkey/lm_passkey/lmm/seed-0/stage-2/best --length 8K

A pass-key prompt (key at --depth, 0 by default, so the rest is noise) is read through the model's
state in pieces; after each piece the table gives, for every NeuralMemory in the model, the
Frobenius norm of each memory layer's weights and the piece's mean gates: lr (the inner step), momentum
and decay (forgetting). With decay per token, the weights shrink by about (1 - decay)^T
over T tokens. A second table compares the gates on the needle's tokens with those on the
haystack's: a memory that keeps the key over a long haystack must write the needle and barely
write the noise.
"""
from __future__ import annotations

import argparse
import random

import torch
from torch import nn

from titans_seq.memory import NeuralMemory, NeuralMemoryState
from titans_seq.tasks.lm.commands import parse_list
from titans_seq.tasks.lm.generation import load_language_model
from titans_seq.tasks.lm.niah import Haystack, make_sample


def memory_states(state) -> list[NeuralMemoryState]:
    """Every NeuralMemoryState inside a backbone state, in block order."""
    if isinstance(state, NeuralMemoryState):
        return [state]
    if isinstance(state, (list, tuple)):
        return [found for part in state for found in memory_states(part)]
    if hasattr(state, "__dataclass_fields__"):
        return [found for name in state.__dataclass_fields__ for found in memory_states(getattr(state, name))]
    return []


def record_gates(model: nn.Module) -> list[list[torch.Tensor]]:
    """Hooks every NeuralMemory; each call appends its (3, T) per-token gates, lr, momentum and decay
    averaged over heads, to that memory's list."""
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    gates: list[list[torch.Tensor]] = [[] for _ in memories]

    def hook(index: int):
        def save(module: NeuralMemory, inputs, output) -> None:
            gates[index].append(torch.stack([g[0].mean(-1) for g in module.gates(inputs[0])]))
        return save

    for i, memory in enumerate(memories):
        memory.register_forward_hook(hook(i))
    return gates


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a language-model checkpoint, e.g. runs/NAME/best")
    parser.add_argument("--length", default="8K", help="prompt tokens")
    parser.add_argument("--depth", type=float, default=0.0, help="where the key sits, 0 (start) to 1 (end)")
    parser.add_argument("--piece", type=int, default=512, help="tokens per forward call")
    args = parser.parse_args()
    length = parse_list(args.length, int, "--length")[0]
    loaded = load_language_model(args.checkpoint, "cpu")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    sample = make_sample("pk", length, args.depth, tokenizer, Haystack.for_kind("pk", tokenizer), random.Random(0))
    ids = torch.tensor([[tokenizer.eos_id, *sample.ids]])
    gates = record_gates(model)
    print("| tokens | memory | weight norms | lr | momentum | decay |\n|---|---|---|---|---|---|")
    state = None
    for start in range(0, ids.shape[1], args.piece):
        _, state = model(ids[:, start:start + args.piece], state=state, return_state=True)
        read = min(start + args.piece, ids.shape[1])
        for i, memory in enumerate(memory_states(state)):
            norms = ", ".join(f"{w.norm().item():.2f}" for w in memory.memory.weights)
            lr, momentum, decay = gates[i][-1].mean(-1).tolist()
            print(f"| {read:,} | {i} | {norms} | {lr:.4f} | {momentum:.3f} | {decay:.1e} |")
    # the prompt starts with the start token, so the needle's tokens sit one place further on
    needle = torch.zeros(ids.shape[1], dtype=torch.bool)
    needle[1 + sample.needle_start:1 + sample.needle_start + sample.needle_tokens] = True
    haystack = ~needle
    haystack[0] = False                                  # the start token
    haystack[-len(tokenizer.encode(" " + sample.needle.question)):] = False
    print("\nMean gates on the needle's tokens and on the haystack's (the question left out):\n")
    print("| memory | lr, needle | lr, haystack | momentum, needle | momentum, haystack | decay, needle | decay, haystack |")
    print("|---|---|---|---|---|---|---|")
    for i, calls in enumerate(gates):
        lr, momentum, decay = torch.cat(calls, dim=-1)
        print(f"| {i} | {lr[needle].mean():.4f} | {lr[haystack].mean():.4f} | {momentum[needle].mean():.3f} | "
              f"{momentum[haystack].mean():.3f} | {decay[needle].mean():.1e} | {decay[haystack].mean():.1e} |")


if __name__ == "__main__":
    main()
