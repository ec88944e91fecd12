"""GPU timing of the memory operator: the Triton kernel against the torch backend and two peers.

    python benchmarks/memory_kernel.py                  # B=8, H=8, D=64, chunk 64, T in 4096 16384
    python benchmarks/memory_kernel.py --smoke          # tiny shapes: checks the script itself
    TRITON_INTERPRET=1 python benchmarks/memory_kernel.py --smoke    # the same on a CPU, kernels interpreted

For each T and memory depth (2 with expansion 4, and 1) it times forward and forward+backward of
(a) backend="triton", (b) backend="torch", (c) titans-pytorch's NeuralMemory with batch_size =
chunk_size (a whole layer: its projections are included), and, for depth 1, (d)
flash-linear-attention's chunk_gated_delta_rule, the depth-1, no-momentum relative of this memory,
beside (e) backend="triton" with momentum 0. Peak GPU memory is reported per contender; a
contender that runs out of memory is reported as OOM. Missing peers are skipped with a note.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from titans_seq.memory import neural_memory

Step = Callable[[bool], None]   # step(backward) runs forward, then backward if asked


def operator_step(B, T, H, D, depth, expansion, chunk, dtype, device, backend, momentum=True) -> Step:
    q, k = (F.normalize(torch.randn(B, T, H, D, device=device), dim=-1).to(dtype).requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, D, device=device, dtype=dtype, requires_grad=True)
    lr = (0.05 * torch.rand(B, T, H, device=device)).requires_grad_()
    momentum = (torch.rand(B, T, H, device=device) * (1.0 if momentum else 0.0)).requires_grad_()
    decay = (0.05 * torch.rand(B, T, H, device=device)).requires_grad_()
    dims = [D] + [D * expansion] * (depth - 1) + [D]
    weights = [(torch.randn(H, a, b, device=device) / a ** 0.5).requires_grad_() for a, b in zip(dims, dims[1:])]

    def step(backward: bool) -> None:
        with torch.set_grad_enabled(backward):
            y, _ = neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=chunk, backend=backend)
            if backward:
                y.float().sum().backward()
    return step


def titans_pytorch_step(B, T, H, D, depth, expansion, chunk, dtype, device) -> Step | str:
    try:
        from titans_pytorch import MemoryMLP, NeuralMemory
    except ImportError:
        return "titans-pytorch is not installed"
    layer = NeuralMemory(dim=H * D, heads=H, dim_head=D, chunk_size=chunk, batch_size=chunk,
                         model=MemoryMLP(dim=D, depth=depth, expansion_factor=float(expansion))).to(device)
    x = torch.randn(B, T, H * D, device=device, requires_grad=True)

    def step(backward: bool) -> None:
        with torch.set_grad_enabled(backward), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            y, _ = layer(x)
        if backward:
            y.float().sum().backward()
    return step


def gated_delta_rule_step(B, T, H, D, dtype, device) -> Step | str:
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except ImportError:
        return "flash-linear-attention is not installed"
    q, k = (F.normalize(torch.randn(B, T, H, D, device=device), dim=-1).to(dtype).requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, D, device=device, dtype=dtype, requires_grad=True)
    g = F.logsigmoid(torch.randn(B, T, H, device=device)).requires_grad_()
    beta = torch.rand(B, T, H, device=device, dtype=dtype).requires_grad_()

    def step(backward: bool) -> None:
        with torch.set_grad_enabled(backward):
            y, _ = chunk_gated_delta_rule(q, k, v, g, beta)
            if backward:
                y.float().sum().backward()
    return step


def measure(step: Step, backward: bool, device: torch.device, rounds: int) -> tuple[float, float]:
    """(median milliseconds, peak memory in GiB) of one step; raises torch.cuda.OutOfMemoryError."""
    step(backward)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step(backward)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 30 if cuda else float("nan")
    return 1e3 * statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--seq", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 1 round: check that the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.heads, args.head_dim, args.chunk, args.seq, args.rounds = 1, 2, 16, 16, [48], 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    B, H, D, E, chunk = args.batch, args.heads, args.head_dim, args.expansion, args.chunk
    where = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"B={B} H={H} D={D} expansion={E} chunk={chunk} {args.dtype}; torch {torch.__version__}; {where}")
    print("| T | depth | contender | fwd ms | fwd+bwd ms | fwd+bwd tokens/s | peak GiB (fwd+bwd) |")
    print("|---|---|---|---|---|---|---|")
    notes, results = [], {}
    for T in args.seq:
        for depth in args.depths:
            contenders: dict[str, Step | str] = {
                "triton": operator_step(B, T, H, D, depth, E, chunk, dtype, device, "triton"),
                "torch": operator_step(B, T, H, D, depth, E, chunk, dtype, device, "torch"),
                "titans-pytorch layer": titans_pytorch_step(B, T, H, D, depth, E, chunk, dtype, device),
            }
            if depth == 1:
                contenders["triton, momentum 0"] = operator_step(B, T, H, D, 1, E, chunk, dtype, device,
                                                                 "triton", momentum=False)
                contenders["fla chunk_gated_delta_rule"] = gated_delta_rule_step(B, T, H, D, dtype, device)
            for name, step in contenders.items():
                if isinstance(step, str):
                    notes.append(f"{name}: skipped ({step})")
                    continue
                try:
                    fwd, _ = measure(step, False, device, args.rounds)
                    both, peak = measure(step, True, device, args.rounds)
                except torch.cuda.OutOfMemoryError:
                    print(f"| {T} | {depth} | {name} | OOM | OOM | — | — |")
                    torch.cuda.empty_cache()
                    continue
                results[T, depth, name] = both
                print(f"| {T} | {depth} | {name} | {fwd:.2f} | {both:.2f} | {B * T / both * 1e3:,.0f} | {peak:.2f} |",
                      flush=True)
    for T in args.seq:
        peer = results.get((T, 2, "titans-pytorch layer"))
        if peer and (T, 2, "triton") in results:
            print(f"T={T}: depth-2 triton fwd+bwd is {peer / results[T, 2, 'triton']:.1f}x titans-pytorch's speed")
        fla = results.get((T, 1, "fla chunk_gated_delta_rule"))
        if fla and (T, 1, "triton, momentum 0") in results:
            print(f"T={T}: depth-1 triton without momentum takes {results[T, 1, 'triton, momentum 0'] / fla:.2f}x "
                  "chunk_gated_delta_rule's time")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
