"""Two CPU processes (gloo), with DDP or FSDP2, train like one process with the same global batch."""
import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import pytest

from titans_seq.engine.config import load_recipe
from titans_seq.engine.distributed import close_process, init_process
from titans_seq.engine.trainer import Trainer

from .test_trainer import TINY, train_losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
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
