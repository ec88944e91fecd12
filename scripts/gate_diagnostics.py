"""Do the memory's data-dependent gates learn? Gradient norms reaching them, and their spread over tokens.

    python scripts/gate_diagnostics.py runs/paper_cpu/lm_passkey/lmm/seed-0
    python scripts/gate_diagnostics.py RUN --batches 4 --init        # beside a freshly initialised model

For a trained run (any task whose training batches the model reads), the first table gives, per
parameter group, the norm of the loss gradient over a few training batches, the weights' norm and
their ratio: gates whose gradient is orders of magnitude below the rest's do not learn at the
rest's pace. The second gives, per memory, each gate's mean over tokens, its standard deviation
over tokens (a gate that does not depend on the data has none) and its range, and the norm of the
gate projection's weights against the norm it was initialised at. The third, for MAC and MAG, gives
the two branches where they join and the gate the memory sets on the attention. ``--init`` adds the
same tables for the recipe's model at initialisation (the run's seed, so the run's initial weights),
to compare, and how far training moved each group of parameters from there.
"""
from __future__ import annotations

import argparse
import math
from itertools import islice

import torch
from torch import nn
from torch.utils.data import DataLoader

from titans_seq.engine.runs import open_run
from titans_seq.layers import Attention, NormalizedGate
from titans_seq.memory import NeuralMemory


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Each parameter's group: the memory's gate projection (weight, bias), its initial weights, its other
    parameters, the attention layers, or the rest."""
    groups = {name: "the rest of the model" for name, _ in model.named_parameters()}
    for prefix, module in model.named_modules():
        if isinstance(module, Attention):
            for name, _ in module.named_parameters():
                groups[f"{prefix}.{name}"] = "attention"
        if isinstance(module, NeuralMemory):
            for name, _ in module.named_parameters():
                group = {"to_gates.weight": "gates: to_gates.weight", "to_gates.bias": "gates: to_gates.bias"}
                groups[f"{prefix}.{name}"] = group.get(name, "memory: initial weights" if name.startswith("weights.")
                                                       else "memory: projections, conv, norm")
    return groups


def gradient_table(model: nn.Module, task, batches: list) -> str:
    model.train()
    model.zero_grad()
    for batch in batches:
        (task.loss(model, batch) / len(batches)).backward()
    grads: dict[str, list[float]] = {}
    weights: dict[str, list[float]] = {}
    groups = parameter_groups(model)
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        group = groups[name]
        grads.setdefault(group, []).append(parameter.grad.square().sum().item())
        weights.setdefault(group, []).append(parameter.detach().square().sum().item())
    lines = ["| parameters | gradient norm | weight norm | gradient / weight |", "|---|---|---|---|"]
    for group in sorted(grads):
        g, w = math.sqrt(sum(grads[group])), math.sqrt(sum(weights[group]))
        lines.append(f"| {group} | {g:.3e} | {w:.3e} | {g / max(w, 1e-30):.3e} |")
    model.zero_grad()
    return "\n".join(lines)


def gate_table(model: nn.Module, batch) -> str:
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    seen: dict[int, torch.Tensor] = {}

    def keep_gates(index: int):
        def hook(module, args, output) -> None:      # returns None: the output stays as it was
            seen.setdefault(index, torch.stack(module.gates(args[0])))
        return hook

    hooks = [memory.register_forward_hook(keep_gates(index)) for index, memory in enumerate(memories)]
    model.eval()
    with torch.no_grad():
        model(batch[0])
    for hook in hooks:
        hook.remove()
    lines = ["| memory | gate | mean | std over tokens | min | max | |W| / expected |W| at init |",
             "|---|---|---|---|---|---|---|"]
    for index, memory in enumerate(memories):
        gates = seen[index]                                   # (3, B, T, heads)
        # nn.Linear's default init has an expected norm of sqrt(out_features / 3); the memory scales it by 0.1
        init_norm = 0.1 * math.sqrt(memory.to_gates.weight.shape[0] / 3)
        ratio = memory.to_gates.weight.norm().item() / init_norm
        for gate, values in zip(("lr", "momentum", "decay"), gates):
            spread = values.std(dim=-2).mean().item()         # over tokens, then the mean over batch and heads
            lines.append(f"| {index} | {gate} | {values.mean():.4g} | {spread:.3g} | {values.min():.4g} | "
                         f"{values.max():.4g} | {ratio:.2f} |")
    return "\n".join(lines)


def movement_table(trained: nn.Module, initial: nn.Module) -> str:
    """Per parameter group, how far training moved the weights from the run's initial ones, relative to
    those: under AdamW every group has the same learning rate, and this is what each made of it."""
    groups, start = parameter_groups(trained), dict(initial.named_parameters())
    moved: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    for name, parameter in trained.named_parameters():
        moved.setdefault(groups[name], []).append((parameter.detach() - start[name].detach()).square().sum().item())
        norms.setdefault(groups[name], []).append(start[name].detach().square().sum().item())
    lines = ["| parameters | |W - W_init| | |W_init| | moved / initial |", "|---|---|---|---|"]
    for group in sorted(moved):
        d, w = math.sqrt(sum(moved[group])), math.sqrt(sum(norms[group]))
        lines.append(f"| {group} | {d:.3e} | {w:.3e} | {d / max(w, 1e-30):.3g} |")
    return "\n".join(lines)


def join_table(model: nn.Module, batch) -> str:
    """Where MAC and MAG join attention and memory, o = RMSNorm(y) * sigmoid(RMSNorm(m)): the root mean
    square of each branch as it arrives, and the gate sigmoid(RMSNorm(m)): its mean, its spread over
    tokens and over channels. A gate that does not vary is a constant scale: the memory then adds nothing."""
    joins = [(name, m) for name, m in model.named_modules() if isinstance(m, NormalizedGate)]
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def keep(name: str):
        def hook(module, args, output) -> None:      # returns None: the output stays as it was
            value, gate = args
            seen.setdefault(name, (value, gate, torch.sigmoid(module.norm_gate(gate))))
        return hook

    hooks = [module.register_forward_hook(keep(name)) for name, module in joins]
    model.eval()
    with torch.no_grad():
        model(batch[0])
    for hook in hooks:
        hook.remove()
    rms = lambda t: t.square().mean().sqrt().item()     # noqa: E731
    lines = ["| join | attention RMS | memory RMS | gate mean | gate std over tokens | gate std over channels |",
             "|---|---|---|---|---|---|"]
    for name, (value, gate, g) in seen.items():
        lines.append(f"| {name} | {rms(value):.3g} | {rms(gate):.3g} | {g.mean():.3g} | "
                     f"{g.std(dim=-2).mean():.3g} | {g.std(dim=-1).mean():.3g} |")
    return "\n".join(lines) if joins else "(no join: this variant has no gate between attention and memory)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run or checkpoint folder")
    parser.add_argument("--batches", type=int, default=4, help="training batches the gradient is taken over")
    parser.add_argument("--init", action="store_true", help="also the recipe's model at initialisation")
    args = parser.parse_args()
    run = open_run(args.run, device="cpu")
    torch.manual_seed(0)
    loader = DataLoader(run.task.datasets()["train"], batch_size=run.recipe.train.batch_size, shuffle=True)
    batches = list(islice(loader, args.batches))
    models = [("trained", run.model)]
    if args.init:
        torch.manual_seed(run.recipe.run.seed)
        models.append(("at initialisation", run.task.build_model(run.recipe.model.backbone())))
    for label, model in models:
        print(f"## {label}: {run.checkpoint}\n\n{gradient_table(model, run.task, batches)}\n\n"
              f"{gate_table(model, batches[0])}\n\n{join_table(model, batches[0])}\n")
    if args.init:
        print(f"## moved from initialisation (seed {run.recipe.run.seed})\n\n{movement_table(*(m for _, m in models))}\n")


if __name__ == "__main__":
    main()
