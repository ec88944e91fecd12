"""Checkpoints: exact round trip, exact resume, atomic writes, no pickle, latest/prune."""
from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from titans_seq.engine import checkpoint as ckpt
from titans_seq.engine.checkpoint import (checkpoint_dir, latest_checkpoint, load_checkpoint,
                                          prune_checkpoints, save_checkpoint)

CONFIG = {"model": {"d_model": 8}, "optim": {"lr": 1e-2}}


@pytest.fixture(autouse=True)
def _keep_global_rngs():
    """These tests seed and scramble the global RNGs; put them back for the tests that follow."""
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    yield
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))
    return factor


def _build(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Dropout(0.2), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(3, 10))
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps: int) -> list[torch.Tensor]:
    """Every step draws from torch (data, dropout), python's random and numpy's global RNG."""
    losses = []
    for _ in range(steps):
        x = torch.randn(4, 8)
        target = random.random() + float(np.random.rand())
        loss = ((model(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.detach())
    return losses


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _scramble_rngs() -> None:
    torch.rand(7)
    random.random()
    np.random.rand(5)


def _assert_same(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def _save(directory: Path, model, optimizer, scheduler, step: int) -> Path:
    return save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                           config=CONFIG, state={"step": step, "best": float("inf")})


def test_round_trip_restores_model_optimizer_and_scheduler(tmp_path):
    model, optimizer, scheduler = _build(0)
    _train(model, optimizer, scheduler, 4)
    directory = _save(checkpoint_dir(tmp_path, 4), model, optimizer, scheduler, 4)

    fresh_model, fresh_optimizer, fresh_scheduler = _build(1)
    state = load_checkpoint(directory, model=fresh_model, optimizer=fresh_optimizer, scheduler=fresh_scheduler)

    assert state == {"step": 4, "best": float("inf")}
    assert json.loads((directory / "config.json").read_text()) == CONFIG
    _assert_same(model.state_dict(), fresh_model.state_dict())
    _assert_same(optimizer.state_dict(), fresh_optimizer.state_dict())  # state tensors, steps, param_groups
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 4
    _assert_same(scheduler.state_dict(), fresh_scheduler.state_dict())
    assert fresh_scheduler.last_epoch == 4 and fresh_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    _seed_all(0)
    model, optimizer, scheduler = _build(0)
    continuous = _train(model, optimizer, scheduler, 10)

    _seed_all(0)
    model, optimizer, scheduler = _build(0)
    first = _train(model, optimizer, scheduler, 5)
    directory = _save(checkpoint_dir(tmp_path, 5), model, optimizer, scheduler, 5)
    _scramble_rngs()
    model, optimizer, scheduler = _build(123)
    assert load_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler)["step"] == 5
    resumed = first + _train(model, optimizer, scheduler, 5)

    assert all(torch.equal(a, b) for a, b in zip(continuous, resumed, strict=True))


def test_tied_weights_are_saved_and_restored(tmp_path):
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    directory = save_checkpoint(tmp_path / "c", model=model, optimizer=optimizer, scheduler=None,
                                config={}, state={})
    fresh = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    fresh[1].weight = fresh[0].weight
    load_checkpoint(directory, model=fresh)
    assert torch.equal(fresh[0].weight, model[0].weight) and fresh[1].weight is fresh[0].weight


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _build(0)
    _train(model, optimizer, scheduler, 2)
    first = _save(checkpoint_dir(tmp_path, 2), model, optimizer, scheduler, 2)
    _train(model, optimizer, scheduler, 2)

    real_save_file = ckpt.save_file
    def save_file_then_fail(tensors, path):  # the model file is written, then the disk "fills up"
        if Path(path).name != "model.safetensors":
            raise OSError("no space left on device")
        real_save_file(tensors, path)
    monkeypatch.setattr(ckpt, "save_file", save_file_then_fail)
    with pytest.raises(OSError, match="no space"):
        _save(checkpoint_dir(tmp_path, 4), model, optimizer, scheduler, 4)
    monkeypatch.undo()

    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # the temporary is gone
    assert load_checkpoint(first, model=_build(1)[0])["step"] == 2


def test_a_failed_resave_of_the_same_step_keeps_the_old_one(tmp_path, monkeypatch):
    model, optimizer, scheduler = _build(0)
    directory = _save(checkpoint_dir(tmp_path, 3), model, optimizer, scheduler, 3)
    saved_weight = model[0].weight.detach().clone()
    _train(model, optimizer, scheduler, 1)

    real_replace = os.replace
    failures = []
    def replace_failing_once_onto_target(src, dst):
        if Path(dst) == directory and not failures:
            failures.append(src)
            raise OSError("interrupted")
        real_replace(src, dst)
    monkeypatch.setattr(ckpt.os, "replace", replace_failing_once_onto_target)
    with pytest.raises(OSError, match="interrupted"):
        _save(directory, model, optimizer, scheduler, 3)
    monkeypatch.undo()

    fresh = _build(1)[0]
    assert failures and latest_checkpoint(tmp_path) == directory
    load_checkpoint(directory, model=fresh)
    assert torch.equal(fresh[0].weight, saved_weight)
    assert sorted(p.name for p in directory.parent.iterdir()) == [directory.name]

    _save(directory, model, optimizer, scheduler, 3)  # and a re-save that succeeds replaces it
    load_checkpoint(directory, model=fresh)
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_a_temporary_left_by_a_killed_save_is_never_a_checkpoint(tmp_path):
    model, optimizer, scheduler = _build(0)
    first = _save(checkpoint_dir(tmp_path, 1), model, optimizer, scheduler, 1)
    shutil.copytree(first, first.parent / ".tmp-step-000009-abc123")  # complete inside, never renamed
    assert latest_checkpoint(tmp_path) == first


def test_checkpoint_holds_only_safetensors_and_json(tmp_path):
    model, optimizer, scheduler = _build(0)
    _train(model, optimizer, scheduler, 2)
    directory = _save(checkpoint_dir(tmp_path, 2), model, optimizer, scheduler, 2)
    names = {path.name for path in directory.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json", "rng.json",
            "rng.safetensors", "config.json", "state.json", "COMPLETE"} <= names
    for path in directory.iterdir():
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt") as file:  # parses only as safetensors, not a pickle
                assert list(file.keys())
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:   # the marker: a digest of every other file
            assert path.name == "COMPLETE"
            assert set(json.loads(path.read_text())["sha256"]) == names - {"COMPLETE"}


def test_unserialisable_state_is_a_type_error_and_writes_nothing(tmp_path):
    model, optimizer, _ = _build(0)
    directory = checkpoint_dir(tmp_path, 1)
    with pytest.raises(TypeError, match="state must be JSON-serialisable"):
        save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=None, config={},
                        state={"sampler": object()})
    assert not directory.parent.exists() or not any(directory.parent.iterdir())


def test_missing_or_incomplete_checkpoint_is_file_not_found(tmp_path):
    model, optimizer, scheduler = _build(0)
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "nowhere", model=model)
    directory = _save(checkpoint_dir(tmp_path, 1), model, optimizer, None, 1)
    with pytest.raises(FileNotFoundError, match="no scheduler state"):
        load_checkpoint(directory, model=model, scheduler=scheduler)
    (directory / "COMPLETE").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(directory, model=model)


def test_latest_checkpoint_orders_by_step_and_skips_incomplete(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    model, optimizer, scheduler = _build(0)
    for step in (200, 10):
        _save(checkpoint_dir(tmp_path, step), model, optimizer, scheduler, step)
    _save(tmp_path / "checkpoints" / "step-99", model, optimizer, scheduler, 99)  # later by name, not by step
    incomplete = checkpoint_dir(tmp_path, 300)
    shutil.copytree(checkpoint_dir(tmp_path, 200), incomplete)
    (incomplete / "COMPLETE").unlink()
    shutil.copytree(checkpoint_dir(tmp_path, 200), tmp_path / "checkpoints" / "best")
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 200)


def test_prune_keeps_the_newest_and_the_protected(tmp_path):
    model, optimizer, scheduler = _build(0)
    for step in (10, 20, 30, 40, 50):
        _save(checkpoint_dir(tmp_path, step), model, optimizer, scheduler, step)
    (tmp_path / "checkpoints" / ".tmp-step-000060-dead").mkdir()  # left by a killed save
    deleted = prune_checkpoints(tmp_path, keep=2, protect=checkpoint_dir(tmp_path, 20))
    assert deleted == [checkpoint_dir(tmp_path, step) for step in (10, 30)]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-000020", "step-000040", "step-000050"]
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 50)
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, keep=0)
