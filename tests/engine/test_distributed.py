"""Two CPU processes (gloo), with DDP or FSDP2, train like one process with the same global batch."""
import json
import os
import shutil
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import pytest

from titans_seq.engine.config import load_recipe
from titans_seq.engine.distributed import close_process, first_process_only, init_process
from titans_seq.engine.trainer import Trainer
from titans_seq.errors import UserError

from .test_trainer import TINY, train_losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    _join(rank, world, port)
    try:
        trainer = Trainer(load_recipe("demo", overrides), init_process("cpu"))
        trainer.fit()
        if "run.strategy=fsdp" in overrides:   # each process holds a different shard, by design
            for module in trainer.model.modules():
                if hasattr(module, "reshard"):       # FSDP2 leaves the root unsharded after an eval forward
                    module.reshard()
            report = {"sharded": all(p.to_local().numel() < p.numel() for p in trainer.model.parameters()
                                     if p.dim() >= 2)}
        else:                                   # each process holds a whole replica: they must agree
            flat = torch.cat([p.detach().flatten() for p in trainer.model.module.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            report = {"spread": max((g - gathered[0]).abs().max().item() for g in gathered)}
        if rank == 0:
            with open(out, "w") as file:
                json.dump(report, file)
        del trainer
    finally:
        close_process()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, strategy):
    common = [*TINY, "train.max_steps=6", "train.eval_every=3", "train.save_every=3", f"run.out_dir={tmp_path}"]
    two = [*common, "run.name=two", "train.batch_size=8", f"run.strategy={strategy}"]
    mp.spawn(_worker, args=(2, _free_port(), two, str(tmp_path / "two.json")), nprocs=2, join=True)
    report = json.loads((tmp_path / "two.json").read_text())
    assert report == ({"sharded": True} if strategy == "fsdp" else {"spread": 0.0})

    one = load_recipe("demo", [*common, "run.name=one", "train.batch_size=16"])
    Trainer(one, init_process("cpu")).fit()
    losses_two, losses_one = train_losses(tmp_path / "two"), train_losses(tmp_path / "one")
    assert sorted(losses_two) == list(range(1, 7))
    for step in losses_one:
        assert abs(losses_two[step] - losses_one[step]) < 1e-5, step
    # the checkpoint of the two-process run holds the whole model: one process can evaluate it
    test_two = json.loads((tmp_path / "two" / "test_results.json").read_text())
    test_one = json.loads((tmp_path / "one" / "test_results.json").read_text())
    assert abs(test_two["metrics"]["loss"] - test_one["metrics"]["loss"]) < 1e-4


def _train_worker(rank: int, world: int, port: int, overrides: list[str], resume: bool) -> None:
    _join(rank, world, port)
    try:
        trainer = Trainer(load_recipe("demo", overrides), init_process("cpu"))
        if resume:
            trainer.resume()
        trainer.fit()
        del trainer
    finally:
        close_process()


def test_a_sharded_run_resumes_exactly(tmp_path):
    common = [*TINY, "train.max_steps=6", "train.eval_every=3", "train.save_every=3", "train.keep_checkpoints=2",
              "train.batch_size=8", "run.strategy=fsdp", f"run.out_dir={tmp_path}"]
    mp.spawn(_train_worker, args=(2, _free_port(), [*common, "run.name=whole"], False), nprocs=2, join=True)
    # the run as a kill after step 4 leaves it: the step-3 checkpoint, and nothing after
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "step-000003",
                    tmp_path / "resumed" / "checkpoints" / "step-000003")
    mp.spawn(_train_worker, args=(2, _free_port(), [*common, "run.name=resumed"], True), nprocs=2, join=True)
    whole, resumed = train_losses(tmp_path / "whole"), train_losses(tmp_path / "resumed")
    assert sorted(resumed) == [4, 5, 6] and resumed == {step: whole[step] for step in (4, 5, 6)}
    val = [[line for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines() if '"val"' in line][-1]
           for name in ("whole", "resumed")]
    assert val[0] == val[1]


def _prepare_worker(rank: int, world: int, port: int, out: str, fail: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    marker = f"{out}.prepared"

    def work() -> None:
        if fail:
            raise UserError("corpus.txt: the corpus is empty")
        with open(marker, "w") as file:
            file.write("shards")

    try:
        first_process_only(work)
        outcome = {"error": None, "sees_work": os.path.exists(marker)}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    with open(f"{out}.{rank}", "w") as file:
        json.dump(outcome, file)
    dist.destroy_process_group()


@pytest.mark.parametrize("fail", [False, True])
def test_work_of_process_0_is_seen_by_all_and_its_failure_stops_all(tmp_path, fail):
    out = str(tmp_path / "outcome")
    context = mp.spawn(_prepare_worker, args=(2, _free_port(), out, fail), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        assert time.monotonic() < deadline, "a process is still waiting for process 0"
    outcomes = [json.loads(open(f"{out}.{rank}").read()) for rank in range(2)]
    if fail:   # every process stops with process 0's one line, none waits forever
        assert outcomes == [{"error": "UserError: corpus.txt: the corpus is empty"}] * 2
    else:      # the others waited until process 0 had finished
        assert outcomes == [{"error": None, "sees_work": True}] * 2
