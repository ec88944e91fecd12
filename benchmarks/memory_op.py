"""Forward+backward throughput of the memory operator and the NeuralMemory layer against titans-pytorch.

    python benchmarks/memory_op.py            # B=2, T=2048, depth 2, expansion 4, chunk 64
    python benchmarks/memory_op.py --device cuda --batch 8 --seq 4096

The three contenders run interleaved, round after round, so that a noisy machine slows them
alike; the table gives the median and best round. The peer is titans-pytorch's NeuralMemory with
batch_size = chunk_size, which takes every gradient at chunk-start weights as the paper does.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from titans_seq.memory import NeuralMemory, neural_memory
from titans_seq.memory.chunked import chunked_neural_memory


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def operator_step(args, device, autograd: bool = False) -> Callable[[], None]:
    """The operator's step; ``autograd`` differentiates chunked.py by autograd instead of its hand-written backward."""
    B, T, H, D = args.batch, args.seq, args.heads, args.dim // args.heads
    q, k = (F.normalize(torch.randn(B, T, H, D, device=device), dim=-1).requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, D, device=device, requires_grad=True)
    lr, momentum, decay = (g.requires_grad_() for g in (0.05 * torch.rand(B, T, H, device=device),
                                                   torch.rand(B, T, H, device=device),
                                                   0.05 * torch.rand(B, T, H, device=device)))
    dims = [D] + [D * args.expansion] * (args.depth - 1) + [D]
    weights = [(torch.randn(H, a, b, device=device) / a ** 0.5).requires_grad_() for a, b in zip(dims, dims[1:])]

    def step():
        if autograd:
            y, _ = chunked_neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=args.chunk, autograd=True)
        else:
            y, _ = neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=args.chunk, backend=args.backend)
        y.sum().backward()
    return step


def layer_step(layer: torch.nn.Module, args, device) -> Callable[[], None]:
    x = torch.randn(args.batch, args.seq, args.dim, device=device, requires_grad=True)

    def step():
        y, _ = layer(x)
        y.sum().backward()
    return step


def peer_layer(args, device) -> torch.nn.Module | None:
    try:
        from titans_pytorch import MemoryMLP
        from titans_pytorch import NeuralMemory as PeerNeuralMemory
    except ImportError:
        return None
    D = args.dim // args.heads
    return PeerNeuralMemory(dim=args.dim, heads=args.heads, dim_head=D, chunk_size=args.chunk,
                            batch_size=args.chunk,
                            model=MemoryMLP(dim=D, depth=args.depth, expansion_factor=float(args.expansion))).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    ours = NeuralMemory(args.dim, args.heads, args.dim // args.heads, args.depth, args.expansion,
                        args.chunk, backend=args.backend).to(device)
    contenders = {"titans_seq operator": operator_step(args, device),
                  "titans_seq NeuralMemory layer": layer_step(ours, args, device)}
    if args.backend == "torch":
        contenders["titans_seq operator, autograd reference"] = operator_step(args, device, autograd=True)
    peer = peer_layer(args, device)
    if peer is not None:
        contenders["titans-pytorch NeuralMemory"] = layer_step(peer, args, device)

    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for step in contenders.values():
        step()   # warm-up
    for _ in range(args.rounds):
        for name, step in contenders.items():
            seconds[name].append(timed(step, device))

    tokens = args.batch * args.seq
    rate = {name: tokens / statistics.median(ts) for name, ts in seconds.items()}
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"forward+backward, B={args.batch} T={args.seq} dim={args.dim} heads={args.heads} "
          f"depth={args.depth} expansion={args.expansion} chunk={args.chunk}; torch {torch.__version__}; {where}")
    print("| contender | median s/step | best s/step | tokens/s (median) |")
    print("|---|---|---|---|")
    for name, ts in seconds.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f} | {rate[name]:,.0f} |")
    if peer is None:
        print("titans-pytorch is not installed (pip install -e '.[bench]'): no peer to compare with")
    else:
        ratio = rate["titans_seq NeuralMemory layer"] / rate["titans-pytorch NeuralMemory"]
        print(f"layer speed-up over titans-pytorch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
