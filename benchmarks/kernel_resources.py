"""Compile the memory kernels for a GPU architecture on a machine without one; report their resources.

Each kernel is compiled as the Triton backend launches it (its constants and warps come from
``kernel_options``) into a CUDA binary for the target (default sm_90, the H100/H200). Where it
needs more shared memory than a block may use (227 KB on sm_90) it is compiled again with tiles
half as wide, as ``launch_fitting`` does on a GPU, down to 16; a kernel that fits no tile runs on
the torch backend there. The table gives the tile that fits, its shared memory, registers per
thread and stack bytes (spills included), read from the binary with the cuobjdump that ships with
Triton. Compiling proves that the kernels build for the target and launch; it says nothing of speed.

    python benchmarks/kernel_resources.py                                   # the benchmark's shapes
    python benchmarks/kernel_resources.py --head-dim 128 --expansion 4 --chunk 128 --dtype fp32
    python benchmarks/kernel_resources.py --bound              # with steps bounded by input norm
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from titans_seq.memory.triton_backend import MIN_BLOCK, kernel_options
from titans_seq.memory.triton_backward_kernels import memory_bwd_depth1_kernel, memory_bwd_depth2_kernel
from titans_seq.memory.triton_kernels import memory_fwd_depth1_kernel, memory_fwd_depth2_kernel

KERNELS = {(1, False): memory_fwd_depth1_kernel, (1, True): memory_bwd_depth1_kernel,
           (2, False): memory_fwd_depth2_kernel, (2, True): memory_bwd_depth2_kernel}
TOKEN_TENSORS = {"q", "k", "v", "lr", "momentum", "decay", "y", "dy"}   # in the input dtype; states and grads: fp32
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SHARED_LIMIT = {90: 232448, 80: 166912}                            # bytes a block may use (H100, A100)


def signature(kernel, dtype: str, constants: dict) -> dict[str, str]:
    types = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = f"*{dtype}" if name[:-4] in TOKEN_TENSORS else "*fp32"
        else:
            types[name] = "i32"
    return types


def resource_usage(cubin: bytes) -> tuple[int, int]:
    """(registers per thread, spilled bytes) of a CUDA binary, from ``cuobjdump -res-usage``."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run([tool, "-res-usage", file.name], capture_output=True, text=True, check=True).stdout
    registers = int(re.search(r"REG:(\d+)", report).group(1))
    stack = int(re.search(r"STACK:(\d+)", report).group(1))
    return registers, stack


def compile_kernel(depth: int, backward: bool, dtype: str, head_dim: int, expansion: int, chunk: int,
                   arch: int, shared_limit: int | None, bound: bool = False) -> dict:
    """Compile one kernel, narrowing BLOCK_H while it exceeds ``shared_limit``; its resources."""
    options = kernel_options(depth, backward, DTYPES[dtype], chunk, head_dim, head_dim * expansion, head_dim,
                             bound=bound)
    num_warps = options.pop("num_warps", 4)
    kernel = KERNELS[depth, backward]
    while True:
        source = ASTSource(fn=kernel, signature=signature(kernel, dtype, options),
                           constexprs={(kernel.arg_names.index(name),): value for name, value in options.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
        fits = shared_limit is None or compiled.metadata.shared <= shared_limit
        if fits or options["BLOCK_H"] <= MIN_BLOCK:
            break
        options["BLOCK_H"] //= 2
    registers, stack = resource_usage(compiled.asm["cubin"])
    return {"kernel": f"{'backward' if backward else 'forward'}, depth {depth}", "block": options["BLOCK_H"],
            "shared": compiled.metadata.shared, "fits": fits, "registers": registers, "stack": stack,
            "warps": num_warps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--expansion", type=int, default=4, help="hidden width of the depth-2 memory / head dim")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--depths", default="1,2")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    parser.add_argument("--bound", action="store_true", help="the kernels with steps bounded by input norm")
    args = parser.parse_args()
    limit = SHARED_LIMIT.get(args.arch)
    print(f"sm_{args.arch} ({'' if limit is None else f'{limit // 1024} KB of shared memory, '}triton "
          f"{triton.__version__}): head dim {args.head_dim}, expansion {args.expansion}, chunk {args.chunk}, {args.dtype}"
          f"{', steps bounded by input norm' if args.bound else ''}")
    print("| kernel | BLOCK_H | shared memory | registers / thread | stack bytes | warps |")
    print("|---|---|---|---|---|---|")
    for depth in (int(d) for d in args.depths.split(",")):
        for backward in (False, True):
            row = compile_kernel(depth, backward, args.dtype, args.head_dim, args.expansion, args.chunk, args.arch,
                                 limit, args.bound)
            verdict = "" if limit is None else (" (fits)" if row["fits"] else " (fits no tile: runs on torch)")
            print(f"| {row['kernel']} | {row['block']} | {row['shared'] / 1024:.0f} KB{verdict} | {row['registers']} "
                  f"| {row['stack']} | {row['warps']} |", flush=True)


if __name__ == "__main__":
    main()
