"""Training checkpoints: safetensors and JSON only (no pickle), written atomically, resumed exactly.

A checkpoint is a directory ``run/checkpoints/step-NNNNNN`` holding the model, the optimizer and
scheduler states, every RNG the training loop draws from, the run's config and the caller's loop
``state``. It is assembled in a hidden temporary sibling and renamed into place with a ``COMPLETE``
marker inside, so a run killed at any moment leaves either the previous checkpoints or a complete
new one, never a half-written one that looks whole. The marker lists every file's SHA-256, so a
file damaged later is reported (one line, a ``UserError``) rather than read as wrong weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from titans_seq.backbones.backbone import CONFIG_FILE as CONFIG
from titans_seq.backbones.backbone import WEIGHTS_FILE as MODEL
from titans_seq.errors import UserError

CHECKPOINTS, COMPLETE, TMP_PREFIX = "checkpoints", "COMPLETE", ".tmp-"
BEST = "best"   # a run folder's checkpoint of the best validation metric, beside CHECKPOINTS
STATE, RNG = "state.json", "rng"
# the weights and config files have the names Backbone.save_pretrained gives them (a checkpoint's config
# is the whole recipe, a pretrained backbone's only the backbone's)
_STEP_NAME = re.compile(r"step-(\d+)")
# Markers that let JSON carry what it cannot spell: a tensor stored in the sibling safetensors file,
# a tuple (optimizer betas), a dict with non-string keys (optimizer state is keyed by param index).
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def save_checkpoint(directory: str | Path, *, model: torch.nn.Module | None, optimizer: torch.optim.Optimizer | None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None, config: dict, state: dict,
                    model_state: dict[str, Tensor] | None = None, optimizer_state: dict | None = None) -> Path:
    """Write a complete checkpoint to ``directory`` atomically (replacing an older one of that name).

    ``config`` and ``state`` (step, data position, best metric...) must be JSON-serialisable.
    ``model_state`` / ``optimizer_state`` replace ``model.state_dict()`` / ``optimizer.state_dict()``
    where those are gathered otherwise (the full state dicts of a sharded model).
    """
    directory = Path(directory)
    texts = {CONFIG: _json_text(config, "config"), STATE: _json_text(state, "state")}
    trees = {"optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(),
             RNG: _rng_state()}
    if scheduler is not None:
        trees["scheduler"] = scheduler.state_dict()
    # Everything is encoded before the disk is touched, so an unstorable value fails cleanly.
    tensor_files = {MODEL: _cpu_tensors(model_state if model_state is not None else model.state_dict())}
    for name, tree in trees.items():
        tensors: dict[str, Tensor] = {}
        texts[f"{name}.json"] = json.dumps(_flatten(tree, "", tensors), indent=1)
        if tensors:
            tensor_files[f"{name}.safetensors"] = _cpu_tensors(tensors)

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{directory.name}-", dir=directory.parent))
    try:
        for name, tensors in tensor_files.items():
            _write_tensors(tensors, tmp / name)
        for name, text in texts.items():
            (tmp / name).write_text(text)
        for path in tmp.iterdir():
            _fsync(path)
        # The marker goes last: a directory without it was never finished.
        digests = {path.name: _sha256(path) for path in sorted(tmp.iterdir())}
        (tmp / COMPLETE).write_text(json.dumps({"sha256": digests}, indent=1))
        _fsync(tmp / COMPLETE)
        _fsync(tmp)
        _move_into_place(tmp, directory)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno is None:
            raise
        # named after the checkpoint, not the temporary that is gone
        raise type(error)(error.errno, error.strerror, str(directory)) from error
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_checkpoint(directory: str | Path, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Restore the model (strictly), optimizer, scheduler and every RNG; return the saved ``state``."""
    directory = Path(directory)
    model.load_state_dict(read_model_state(directory, map_location))
    if optimizer is not None:
        # Loaded on the CPU: load_state_dict moves each tensor to its parameter's device and keeps
        # `step` on the CPU (unless fused/capturable), exactly as in the uninterrupted run.
        optimizer.load_state_dict(read_optimizer_state(directory))
    return restore_training_state(directory, scheduler)


def read_model_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """The model's state dict stored in a complete checkpoint."""
    directory = Path(directory)
    if not (directory / COMPLETE).is_file():
        raise FileNotFoundError(f"{directory} is not a complete checkpoint (no {COMPLETE} marker)")
    return _read_tensors(directory, MODEL, map_location)


def read_checkpoint_config(directory: str | Path) -> dict:
    """The run's config stored in a checkpoint."""
    return _read_json(Path(directory), CONFIG)


def read_optimizer_state(directory: str | Path) -> dict:
    """The optimizer's state dict stored in a checkpoint, its tensors on the CPU."""
    return _read_tree(Path(directory), "optimizer")


def restore_training_state(directory: str | Path, scheduler: torch.optim.lr_scheduler.LRScheduler | None) -> dict:
    """The scheduler and every RNG as saved; returns the saved loop ``state``."""
    directory = Path(directory)
    if scheduler is not None:
        if not (directory / "scheduler.json").is_file():
            raise FileNotFoundError(f"{directory} holds no scheduler state (it was saved without one)")
        scheduler.load_state_dict(_read_tree(directory, "scheduler"))
    _set_rng_state(_read_tree(directory, RNG))
    return _read_json(directory, STATE)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``run_dir/checkpoints``, or None."""
    checkpoints = _complete_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(run_dir: str | Path, keep: int, protect: str | Path | None = None) -> list[Path]:
    """Delete complete checkpoints older than the newest ``keep`` (never ``protect``); return them.

    Also removes temporaries left by interrupted saves, so call it only from the process that saves.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the checkpoint to resume from); got {keep}")
    protected = Path(protect).resolve() if protect is not None else None
    doomed = [path for path in _complete_checkpoints(run_dir)[:-keep] if path.resolve() != protected]
    for path in doomed:
        # Renamed out of sight first: a kill mid-deletion must not leave a partial `step-*` behind.
        _remove_dir(path)
    root = Path(run_dir) / CHECKPOINTS
    for path in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _complete_checkpoints(run_dir: str | Path) -> list[Path]:
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir()
             if (match := _STEP_NAME.fullmatch(path.name)) and (path / COMPLETE).is_file()]
    return [path for _, path in sorted(found)]


def _move_into_place(tmp: Path, directory: Path) -> None:
    if directory.exists():
        if not (directory / COMPLETE).is_file():
            raise FileExistsError(f"{directory} exists and is not a checkpoint; refusing to replace it")
        # A directory cannot be renamed over a non-empty one: move the old checkpoint aside first.
        aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{directory.name}-old-", dir=directory.parent))
        os.replace(directory, aside)
        try:
            os.replace(tmp, directory)
        except BaseException:
            os.replace(aside, directory)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    _fsync(directory.parent)  # makes the rename itself durable


def _remove_dir(path: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}-deleted-", dir=path.parent))
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=1)
    except TypeError as error:
        raise TypeError(f"the checkpoint's {what} must be JSON-serialisable: {error}") from None


def _cpu_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached contiguous CPU tensors; those sharing storage (tied weights) are cloned apart,
    since safetensors refuses shared storage."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[name] = tensor
    return out


def _flatten(value: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """A JSON-able copy of ``value`` whose tensors move into ``tensors`` under dotted keys."""
    if isinstance(value, Tensor):
        assert key not in tensors, key
        tensors[key] = value
        return {_TENSOR: key}
    if isinstance(value, (list, tuple)):
        items = [_flatten(item, _join(key, i), tensors) for i, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if all(isinstance(name, str) for name in value) and not value.keys() & {_TENSOR, _TUPLE, _ITEMS}:
            return {name: _flatten(item, _join(key, name), tensors) for name, item in value.items()}
        if not all(isinstance(name, (str, int)) for name in value):
            raise TypeError(f"cannot store a dict keyed by other than str or int (at '{key}') in a checkpoint")
        return {_ITEMS: [[name, _flatten(item, _join(key, name), tensors)] for name, item in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} (at '{key}') in a checkpoint without pickle")


def _unflatten(value: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, list):
        return [_unflatten(item, tensors) for item in value]
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_unflatten(item, tensors) for item in value[_TUPLE])
        if _ITEMS in value:
            return {name: _unflatten(item, tensors) for name, item in value[_ITEMS]}
        return {name: _unflatten(item, tensors) for name, item in value.items()}
    return value


def _join(key: str, name: Any) -> str:
    return f"{key}.{name}" if key else str(name)


def _read_tree(directory: Path, name: str) -> Any:
    tensor_file = f"{name}.safetensors"
    tensors = _read_tensors(directory, tensor_file) if (directory / tensor_file).is_file() else {}
    return _unflatten(_read_json(directory, f"{name}.json"), tensors)


def _write_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    try:
        save_file(tensors, path)
    except SafetensorError as error:
        # safetensors reports a failed write (a full disk) as its own error, the OS's number in the text
        number = re.search(r"os error (\d+)", str(error))
        if number is None:
            raise
        raise OSError(int(number.group(1)), os.strerror(int(number.group(1))), str(path)) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"{path}: the checkpoint is damaged ({why}); resume from or evaluate another one")


def _verify(directory: Path, name: str) -> Path:
    """``directory / name``, after checking it against the digest its ``COMPLETE`` marker lists.

    Checkpoints from before the digests were kept have an empty marker and are read unchecked.
    """
    path, marker = directory / name, directory / COMPLETE
    if not path.is_file():
        raise _damaged(path, "the file is missing")
    listed = marker.read_bytes() if marker.is_file() else b""
    if listed.strip():
        try:
            expected = json.loads(listed)["sha256"][name]
        except (ValueError, KeyError, TypeError):
            raise _damaged(marker, f"it lists no digest for {name}") from None
        if _sha256(path) != expected:
            raise _damaged(path, "its SHA-256 differs from the one saved with it")
    return path


def _read_json(directory: Path, name: str) -> Any:
    path = _verify(directory, name)
    try:
        return json.loads(path.read_text())
    except ValueError as error:      # JSONDecodeError, UnicodeDecodeError
        raise _damaged(path, f"not valid JSON: {' '.join(str(error).split())}") from None


def _read_tensors(directory: Path, name: str, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    path = _verify(directory, name)
    try:
        return load_file(path, device=str(device))
    except SafetensorError as error:
        raise _damaged(path, f"not a readable safetensors file: {' '.join(str(error).split())}") from None


def _rng_state() -> dict[str, Any]:
    version, python_state, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        # uint32 words widened to int64: lossless, and a dtype every safetensors version reads.
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
    }
    # An uninitialised CUDA has drawn nothing; initialising it only to save its seed would cost a context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        # Resuming on fewer GPUs than were saved restores those that exist.
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
