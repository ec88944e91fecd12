"""Why the memory's products are slow on a CPU: batched small matrices against the same work folded into large ones.

    python benchmarks/small_products.py            # one thread

Every sequence and head has its own memory weights, so the memory multiplies B*H*N small
matrices (``bmm``). While the weights are still shared by the batch (a call's first chunk without
state), the batch can be folded into the rows of one product per head instead.
"""
from __future__ import annotations

import argparse
import time

import torch

# (batch of products, rows, inner, columns): dna_mac's key path and reads, the demo's, lm_tiny's
BATCHED = [(512, 16, 32, 128), (512, 16, 128, 32), (128, 8, 32, 128), (256, 16, 16, 64)]
# (B, H, rows per sequence, D, hidden): the demo's, lm_tiny's and forecast's first chunk
SHARED = [(64, 2, 8, 32, 128), (16, 4, 16, 16, 64), (128, 4, 12, 16, 64)]


def milliseconds(step, repeats: int) -> float:
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), float32, mean of {args.repeats} calls\n")
    print("| batched product | ms | GFLOP/s | as 2 large products, ms | GFLOP/s |")
    print("|---|---|---|---|---|")
    for b, m, k, n in BATCHED:
        x, y = torch.randn(b, m, k), torch.randn(b, k, n)
        big_x, big_y = torch.randn(2, b * m // 2, k), torch.randn(2, k, n)
        small, large = (milliseconds(lambda: torch.bmm(x, y), args.repeats),
                        milliseconds(lambda: torch.bmm(big_x, big_y), args.repeats))
        flops = 2 * b * m * k * n / 1e6
        print(f"| {b} × ({m}×{k} @ {k}×{n}) | {small:.3f} | {flops / small:.0f} | {large:.3f} | {flops / large:.0f} |")
    print("\n| shared weights, (B, H, n, D) @ (H, D, hidden) | broadcast bmm, ms | batch folded into rows, ms | ratio |")
    print("|---|---|---|---|")
    for B, H, n, D, hidden in SHARED:
        h, W = torch.randn(B, H, n, D), torch.randn(1, H, D, hidden)
        broadcast = milliseconds(lambda: h @ W, args.repeats)
        folded = milliseconds(lambda: (h.transpose(0, 1).reshape(H, B * n, D) @ W[0]).view(H, B, n, hidden), args.repeats)
        print(f"| B={B}, H={H}, n={n}, D={D}, hidden={hidden} | {broadcast:.3f} | {folded:.3f} | {broadcast / folded:.2f} |")


if __name__ == "__main__":
    main()
