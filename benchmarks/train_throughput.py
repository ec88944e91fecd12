"""Training tokens/s and peak memory of the recipes: this working tree against a git ref, side by side.

    python benchmarks/train_throughput.py                       # against 7d06614, 3 rounds
    python benchmarks/train_throughput.py --ref HEAD~3 --rounds 5 --steps 30
    python benchmarks/train_throughput.py --tree-overrides train.compile=true --warmup 2   # compiled tree
    python benchmarks/train_throughput.py --worker --recipe lm_tiny --overrides model.variant=mag --profile

Each contender is staged into a temporary folder (the ref by ``git archive``, the working tree by
copying it) with ``tasks/`` and ``recipes/`` inside the package, as a wheel installs them, and
each measurement runs in its own subprocess with that folder first on its path and a fixed
thread count. A measurement builds the recipe's trainer, takes a few warm-up steps, then times
``--steps`` optimizer steps. The contenders run interleaved, round after round and in alternating
order, so that load from other processes on the machine slows them alike; the table reports the
median over rounds of the per-round ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "demo": ("demo", []),
    "lm_tiny mac": ("lm_tiny", ["model.variant=mac"]),
    "lm_tiny mag": ("lm_tiny", ["model.variant=mag"]),
    "lm_tiny lmm": ("lm_tiny", ["model.variant=lmm"]),
    "dna_mac": ("dna_mac", []),
    "forecast mac": ("forecast", []),
}


def stage(source: Path, into: Path) -> Path:
    """A folder holding the package as installed: titans_seq with tasks/ and recipes/ inside."""
    shutil.copytree(source / "titans_seq", into / "titans_seq")
    for name in ("tasks", "recipes"):
        shutil.copytree(source / name, into / "titans_seq" / name)
    return into


def stage_ref(ref: str, into: Path) -> Path:
    tree = into / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return stage(tree, into / "staged")


def measure(staged: Path, recipe: str, overrides: list[str], args) -> dict:
    """Run one worker subprocess on a staged tree; its JSON line."""
    command = [sys.executable, __file__, "--worker", "--recipe", recipe, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads), "--overrides", *overrides]
    env = {**os.environ, "PYTHONPATH": str(staged), "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker failed ({recipe} {overrides}, {staged}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(args) -> None:
    """Build the recipe's trainer in this process, time its steps, print one JSON line."""
    import torch

    import titans_seq
    import titans_seq.tasks
    from titans_seq.engine.config import load_recipe
    from titans_seq.engine.distributed import init_process
    from titans_seq.engine.trainer import Trainer, training_batches

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        recipe = load_recipe(args.recipe, [*args.overrides, f"run.out_dir={out}", "run.device=cpu"])
        trainer = Trainer(recipe, init_process("cpu"))
        trainer.model.train()
        batches = training_batches(trainer.splits["train"], recipe, trainer.env, trainer.state)
        model = step_model(trainer, recipe)
        if args.losses:
            print(json.dumps({"losses": [trainer._step(model, batches)[0] for _ in range(args.losses)]}))
            return
        start = time.perf_counter()
        for _ in range(args.warmup):
            trainer._step(model, batches)
        warmup_seconds = time.perf_counter() - start
        if args.profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    trainer._step(model, batches)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)
            return
        start, cpu_start, tokens = time.perf_counter(), time.process_time(), 0
        for _ in range(args.steps):
            tokens += trainer._step(model, batches)[1]
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
                      "tokens_per_step": tokens / args.steps, "warmup_s": warmup_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "package": str(Path(titans_seq.__file__).parent), "tasks": titans_seq.tasks.__file__}))


def step_model(trainer, recipe):
    """The model as ``Trainer.fit`` steps it: its blocks compiled with ``train.compile`` (a ref
    older than that option has no ``compile_blocks`` and no such key)."""
    if getattr(recipe.train, "compile", "false") != "false":
        from titans_seq.engine.trainer import compile_blocks, compiles
        if compiles(recipe.train, trainer.env.device):
            compile_blocks(trainer.model)
    return trainer.model


def compare(args) -> None:
    cases = {name: CASES[name] for name in args.cases}
    with tempfile.TemporaryDirectory() as tmp:
        contenders = {"ref": stage_ref(args.ref, Path(tmp) / "ref"),
                      "tree": stage(REPO, Path(tmp) / "tree")}
        results = {name: {"ref": [], "tree": []} for name in cases}
        for round_ in range(args.rounds):
            order = ["ref", "tree"] if round_ % 2 == 0 else ["tree", "ref"]
            for name, (recipe, overrides) in cases.items():
                for who in order:
                    extra = args.tree_overrides if who == "tree" else []
                    result = measure(contenders[who], recipe, [*overrides, *extra], args)
                    assert result["package"].startswith(str(contenders[who])), result
                    results[name][who].append(result)
                    print(f"round {round_ + 1} {name} {who}: {result['tokens_per_s']:,.0f} tokens/s, "
                          f"{result['peak_rss_mb']:,.0f} MB", file=sys.stderr, flush=True)

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s) "
          f"per run; {args.rounds} rounds of {args.steps} steps after {args.warmup} warm-up; ref {args.ref}; "
          f"tree overrides: {' '.join(args.tree_overrides) or 'none'}\n")
    print("| recipe | ref tokens/s | tree tokens/s | speed-up (median ratio) | ref peak RSS MB | tree peak RSS MB "
          "| ref warm-up s | tree warm-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rate = {who: [r["tokens_per_s"] for r in runs[who]] for who in runs}
        rss = {who: statistics.median(r["peak_rss_mb"] for r in runs[who]) for who in runs}
        warmup = {who: statistics.median(r.get("warmup_s", float("nan")) for r in runs[who]) for who in runs}
        ratio = statistics.median(t / r for t, r in zip(rate["tree"], rate["ref"]))
        print(f"| {name} | {statistics.median(rate['ref']):,.0f} | {statistics.median(rate['tree']):,.0f} | "
              f"{ratio:.2f}x | {rss['ref']:,.0f} | {rss['tree']:,.0f} | {warmup['ref']:.1f} | {warmup['tree']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="7d06614", help="the git ref to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every run")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--worker", action="store_true", help="measure one recipe in this process")
    parser.add_argument("--recipe", help="with --worker")
    parser.add_argument("--overrides", nargs="*", default=[], help="with --worker")
    parser.add_argument("--tree-overrides", nargs="*", default=[],
                        help="recipe overrides for the working tree only, e.g. train.compile=true")
    parser.add_argument("--profile", action="store_true", help="with --worker: the top 15 ops over --steps steps, to stderr (no timing)")
    parser.add_argument("--losses", type=int, default=0, help="with --worker: print the losses of this many steps")
    args = parser.parse_args()
    worker(args) if args.worker else compare(args)


if __name__ == "__main__":
    main()
