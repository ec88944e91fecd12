"""The training engine: optimisation, evaluation, checkpoints, exact resume, one loop for every task."""
from __future__ import annotations

import contextlib
import math
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from titans_seq.backbones import Block
from titans_seq.errors import TrainingError, UserError

from .checkpoint import (BEST, COMPLETE, checkpoint_dir, latest_checkpoint, prune_checkpoints, read_model_state,
                         read_optimizer_state, restore_training_state, save_checkpoint)
from .config import OptimConfig, Recipe, RecipeError, TrainConfig, recipe_to_yaml
from .distributed import (ProcessEnv, all_agree, close_process, full_state_dicts, init_process, load_full_state_dicts,
                          mean_over_processes, wrap_model)
from .progress import MetricsLog, Progress
from .records import result_record, write_atomically, write_record
from .registry import get_task
from .runs import find_checkpoint
from .stability import stability_advice
from .task import Task



@dataclass
class LoopState:
    """What, besides weights and optimizer, a resumed run needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0                      # next batch of the epoch
    best: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    nonfinite_in_a_row: int = 0
    nonfinite_steps: int = 0            # steps skipped for a non-finite loss, in all
    history: list[dict] = field(default_factory=list)   # validation results


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (not on norms, biases, gates' biases), nor on
    the parameters whose name contains one of ``cfg.no_decay`` (e.g. ``memory.weights``, the memory's
    initial weights).

    On the CPU it runs fused (one kernel over all parameters instead of a loop of small ops);
    elsewhere torch's default (foreach on CUDA) is kept, so that checkpoints resume as before.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    unmatched = [text for text in cfg.no_decay if not any(text in name for name, _ in named)]
    if unmatched:
        raise UserError(f"optim.no_decay: no parameter's name contains {', '.join(unmatched)} "
                        "(names read like blocks.0.mixer.memory.weights.0)")
    params = [p for _, p in named]
    exempt = {id(p) for name, p in named if any(text in name for text in cfg.no_decay)}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in exempt]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in exempt]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    on_cpu = all(type(p.data) is torch.Tensor and p.device.type == "cpu" for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=on_cpu or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """Linear warm-up to the peak, then cosine decay to ``min_lr_ratio`` of it at ``max_steps``."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_context(recipe: Recipe, device: torch.device):
    precision = recipe.run.precision
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(x, device) for x in batch)
    if isinstance(batch, dict):
        return {key: _to_device(x, device) for key, x in batch.items()}
    return batch


def training_batches(dataset: Dataset, recipe: Recipe, env: ProcessEnv, state: LoopState) -> Iterator[Any]:
    """Batches from (state.epoch, state.batch) on, epoch after epoch; updates ``state`` as it goes.

    The order depends only on the seed and the epoch (DistributedSampler.set_epoch), so a resumed
    run skips exactly the batches already seen, by index, without loading them.
    """
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=recipe.run.seed, drop_last=True)
    while True:
        sampler.set_epoch(state.epoch)
        batches = list(BatchSampler(sampler, recipe.train.batch_size, drop_last=True))
        if not batches:
            raise RecipeError(f"the training split has {len(dataset)} items, fewer than one batch of "
                              f"{recipe.train.batch_size} per process")
        loader = DataLoader(dataset, batch_sampler=batches[state.batch:], num_workers=recipe.train.num_workers)
        for batch in loader:
            state.batch += 1
            yield batch
        state.epoch, state.batch = state.epoch + 1, 0


def evaluation_batches(dataset: Dataset, recipe: Recipe, device: torch.device, limit: int = 0) -> Iterator[Any]:
    """The split in order (every process evaluates all of it, so FSDP's collectives stay in step)."""
    loader = DataLoader(dataset, batch_size=recipe.train.batch_size, shuffle=False, drop_last=False,
                        num_workers=recipe.train.num_workers)
    for batch in islice(loader, limit or None):
        yield _to_device(batch, device)


def evaluate(task: Task, model: nn.Module, dataset: Dataset, recipe: Recipe, device: torch.device,
             limit: int = 0, label: str = "evaluating") -> tuple[dict[str, float], int]:
    """The task's metrics over (the first ``limit`` batches of) a split, and the tokens it read.

    On a terminal a progress bar (``label``) shows how far it is.
    """
    tokens = 0
    total = math.ceil(len(dataset) / recipe.train.batch_size)

    def counted(batches):
        nonlocal tokens
        bar = tqdm(batches, total=min(total, limit or total), desc=label, unit="batch", leave=False,
                   disable=not sys.stderr.isatty() or dist.is_initialized() and dist.get_rank() > 0)
        for batch in bar:
            tokens += task.tokens(batch)
            yield batch

    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast_context(recipe, device), eager_evaluation():
        metrics = task.evaluate(model, counted(evaluation_batches(dataset, recipe, device, limit)))
    model.train(was_training)
    return metrics, tokens


def load_matching_weights(model: nn.Module, directory: Path) -> int:
    """Copy a checkpoint's tensors whose names and shapes match (a new head is left as built).

    Every backbone tensor must be found: a pretrained model of other sizes is a user error.
    """
    try:
        saved = read_model_state(directory)
    except FileNotFoundError:
        raise UserError(f"model.init_from={directory}: not a complete checkpoint folder") from None
    own = model.state_dict()
    matching = {name: t for name, t in saved.items() if name in own and own[name].shape == t.shape}
    missing = [name for name in own if name.startswith("backbone.") and name not in matching]
    if missing:
        raise UserError(f"model.init_from={directory}: no matching weights for {missing[0]} "
                        f"({len(missing)} backbone tensors in all); were the model settings the same?")
    model.load_state_dict(matching, strict=False)
    return len(matching)


def initial_checkpoint(init_from: str) -> Path:
    """The checkpoint ``model.init_from`` names: a checkpoint folder, or a run folder's best (else latest)."""
    try:
        return find_checkpoint(init_from)
    except UserError as error:
        raise UserError(f"model.init_from={init_from}: {error}") from None


COMPILE_MIN_STEPS = 2000   # train.compile=auto: the run length from which compiling pays on a CPU (docs/benchmarks.md)


def compiles(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a run compiles its blocks: ``train.compile`` true, or auto for a CPU run of at least
    COMPILE_MIN_STEPS steps (its compilation, 1-5 minutes on 2 cores, is repaid within about 1,800 steps)."""
    if cfg.compile == "auto":
        return device.type == "cpu" and cfg.max_steps >= COMPILE_MIN_STEPS
    return cfg.compile == "true"


def compile_blocks(model: nn.Module) -> None:
    """``train.compile``: ``torch.compile`` every backbone block in place, for the fixed training
    shapes. Identical blocks share one graph, so the compilation costs one block, not the model;
    parameter names, checkpoints and the optimizer are unchanged. Evaluation runs eagerly
    (``eager_evaluation``), so its other shapes and grad mode compile nothing."""
    for module in model.modules():
        if isinstance(module, Block):
            module.compile(dynamic=False)


def eager_evaluation():
    """A context in which compiled blocks run eagerly (evaluation and test metrics)."""
    return torch.compiler.set_stance("force_eager")


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


class Trainer:
    """Builds a run from a recipe; ``fit`` trains, selects the best checkpoint and tests it.

    ``task`` replaces the one the recipe names, for data that lives in memory rather than in files
    (e.g. the GluonTS estimator's datasets).
    """

    def __init__(self, recipe: Recipe, env: ProcessEnv, task: Task | None = None):
        self.recipe, self.env = recipe, env
        self.run_dir = recipe.run_dir
        seed_everything(recipe.run.seed)          # the same initial weights on every process
        self.task = task or get_task(recipe.task.name)(recipe.task, recipe.data)
        model = self.task.build_model(recipe.model.backbone()).to(env.device)
        if recipe.model.init_from:
            loaded = load_matching_weights(model, initial_checkpoint(recipe.model.init_from))
            if env.is_main:
                print(f"initialised {loaded} tensors from {recipe.model.init_from}")
        self.parameters = sum(p.numel() for p in model.parameters())
        self.model = wrap_model(model, env, recipe.run.strategy, Block)   # DDP / FSDP2 under torchrun
        self.splits = self.task.datasets()
        missing = {"train", "val", "test"} - set(self.splits)
        if missing:
            raise RecipeError(f"task {self.task.name!r} provides no {', '.join(sorted(missing))} split")
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.scheduler = build_scheduler(self.optimizer, recipe.optim, recipe.train.max_steps)
        self.state = LoopState()

    def resume(self) -> None:
        latest = latest_checkpoint(self.run_dir)
        if latest is None:
            raise RecipeError(f"--resume: no complete checkpoint under {self.run_dir / 'checkpoints'}")
        self.load_weights(latest, with_optimizer=True)
        self.state = LoopState(**restore_training_state(latest, self.scheduler))

    def load_weights(self, directory: Path, with_optimizer: bool = False) -> None:
        load_full_state_dicts(self.model, self.optimizer if with_optimizer else None,
                              read_model_state(directory, self.env.device),
                              read_optimizer_state(directory) if with_optimizer else None)

    def save(self, directory: Path) -> None:
        model_state, optimizer_state = full_state_dicts(self.model, self.optimizer)   # every process: FSDP gathers
        if self.env.is_main:
            save_checkpoint(directory, model=None, optimizer=None, scheduler=self.scheduler,
                            config=self.recipe.to_dict(), state=self.state.__dict__,
                            model_state=model_state, optimizer_state=optimizer_state)

    def _step(self, model: nn.Module, batches: Iterator[Any]) -> tuple[float, int, bool]:
        """One optimizer step over grad_accum micro-batches: (mean loss, tokens, whether it was finite)."""
        accum = self.recipe.optim.grad_accum
        total, tokens, finite = 0.0, 0, True
        for micro in range(accum):
            batch = _to_device(next(batches), self.env.device)
            tokens += self.task.tokens(batch)
            # gradients are all-reduced once, on the last micro-batch
            last = micro == accum - 1 or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if last else model.no_sync():
                with autocast_context(self.recipe, self.env.device):
                    loss = self.task.loss(model, batch)
                finite = finite and bool(torch.isfinite(loss.detach()))
                if finite:
                    (loss / accum).backward()
            total += loss.item() / accum
        finite = all_agree(finite, self.env)
        if finite:
            if self.recipe.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), self.recipe.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_over_processes(total, self.env), tokens * self.env.world_size, finite

    def _validate(self, model: nn.Module, log: MetricsLog, progress: Progress) -> bool:
        """Evaluate, keep the best checkpoint, count evaluations without improvement; True to stop early."""
        cfg, state = self.recipe, self.state
        metrics, _ = evaluate(self.task, model, self.splits["val"], cfg, self.env.device, cfg.train.eval_batches,
                              label="validating")
        if cfg.eval.metric not in metrics:
            raise RecipeError(f"eval.metric={cfg.eval.metric!r}: task {self.task.name!r} reports "
                              f"{', '.join(sorted(metrics))}")
        log.write(state.step, "val", metrics)
        progress.say(f"step {state.step}: val " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        state.history.append({"step": state.step, **metrics})
        value = metrics[cfg.eval.metric]
        if _improved(value, state.best, cfg.eval.mode):
            state.best, state.best_step, state.evals_without_improvement = value, state.step, 0
            self.save(self.run_dir / BEST)
        else:
            state.evals_without_improvement += 1
        return 0 < cfg.train.patience <= state.evals_without_improvement

    def fit(self) -> dict:
        cfg, env, state = self.recipe, self.env, self.state
        if env.is_main:
            if state.step == 0:             # an earlier run's results must not stand for this one if it stops short
                (self.run_dir / "test_results.json").unlink(missing_ok=True)
                shutil.rmtree(self.run_dir / BEST, ignore_errors=True)
            write_atomically(self.run_dir / "config.yaml", recipe_to_yaml(cfg))
        model = self.model
        model.train()
        if compiles(cfg.train, env.device):
            compile_blocks(model)
        log = MetricsLog(self.run_dir, enabled=env.is_main, fresh=state.step == 0)
        progress = Progress(cfg.train.max_steps, state.step, cfg.train.log_every, enabled=env.is_main)
        batches = training_batches(self.splits["train"], cfg, env, state)
        train_seconds, tokens_seen, stop = 0.0, 0, False
        try:
            while state.step < cfg.train.max_steps and not stop:
                started = time.perf_counter()
                loss, tokens, finite = self._step(model, batches)
                train_seconds += time.perf_counter() - started
                if not finite:
                    state.nonfinite_in_a_row += 1
                    state.nonfinite_steps += 1
                    progress.say(f"step {state.step}: non-finite loss, step skipped "
                                 f"({state.nonfinite_in_a_row}/{cfg.train.max_nonfinite} in a row)")
                    if state.nonfinite_in_a_row >= cfg.train.max_nonfinite:
                        kept = latest_checkpoint(self.run_dir)
                        raise TrainingError(f"stopped: {state.nonfinite_in_a_row} non-finite losses in a row; "
                                            f"last good checkpoint: {kept or 'none written yet'}; "
                                            f"{stability_advice(model)}")
                    continue
                state.nonfinite_in_a_row = 0
                state.step += 1
                tokens_seen += tokens
                rate = tokens_seen / max(train_seconds, 1e-9)
                lr = self.scheduler.get_last_lr()[0]
                progress.update(state.step, loss, lr, rate)
                if state.step % cfg.train.log_every == 0:
                    log.write(state.step, "train", {"loss": loss, "lr": lr, "tokens_per_s": rate})
                at_end = state.step == cfg.train.max_steps
                if (cfg.train.eval_every and state.step % cfg.train.eval_every == 0) or at_end:
                    stop = self._validate(model, log, progress)
                if (cfg.train.save_every and state.step % cfg.train.save_every == 0) or at_end or stop:
                    self.save(checkpoint_dir(self.run_dir, state.step))
                    if env.is_main:
                        prune_checkpoints(self.run_dir, cfg.train.keep_checkpoints)
        finally:
            progress.close()
        if stop:
            progress.say(f"early stopping at step {state.step}: no better {cfg.eval.metric} in "
                         f"{cfg.train.patience} evaluations")
        record = self.test(model, tokens_seen / max(train_seconds, 1e-9))
        log.close()
        return record

    def test(self, model: nn.Module, tokens_per_s: float) -> dict:
        """Test metrics, once, with the best checkpoint's weights; written to test_results.json."""
        best = self.run_dir / BEST
        if (best / COMPLETE).exists():
            self.load_weights(best)
        metrics, _ = evaluate(self.task, model, self.splits["test"], self.recipe, self.env.device, label="testing")
        model.eval()   # every process takes part (a sharded model's forward is collective); writes are atomic
        with torch.no_grad(), autocast_context(self.recipe, self.env.device), eager_evaluation():
            metrics.update(self.task.final_metrics(model, self.run_dir))
        model.train()
        best_val = next(({k: v for k, v in h.items() if k != "step"} for h in self.state.history
                         if h["step"] == self.state.best_step), {})
        record = self.record("test", metrics, tokens_per_s, best_step=self.state.best_step, val_metrics=best_val,
                             nonfinite_steps=self.state.nonfinite_steps)
        if self.env.is_main:
            write_record(self.run_dir / "test_results.json", record)
        return record

    def evaluate_checkpoint(self, checkpoint: Path, split: str = "test") -> dict:
        """The result record of ``split`` with a checkpoint's weights (the seam for commands that
        evaluate a trained model without training it)."""
        self.load_weights(checkpoint)
        started = time.perf_counter()
        metrics, tokens = evaluate(self.task, self.model, self.splits[split], self.recipe, self.env.device)
        return self.record(split, metrics, tokens / max(time.perf_counter() - started, 1e-9),
                           checkpoint=str(checkpoint))

    def record(self, split: str, metrics: dict[str, float], tokens_per_s: float, **extra) -> dict:
        cfg = self.recipe
        return result_record(task=self.task.name, dataset=self.task.dataset_name or self.task.name, split=split,
                             variant=self.task.model_label(cfg.model.variant), parameters=self.parameters,
                             metrics=metrics, tokens_per_s=tokens_per_s, seed=cfg.run.seed, **extra)


def train(recipe: Recipe, resume: bool = False, task: Task | None = None) -> dict:
    """Train (or resume) the run a recipe describes; returns the test result record."""
    env = init_process(recipe.run.device)
    try:
        trainer = Trainer(recipe, env, task)
        if resume:
            trainer.resume()
        elif (trainer.run_dir / "checkpoints").exists() and any((trainer.run_dir / "checkpoints").iterdir()):
            warnings.warn(f"{trainer.run_dir} already holds checkpoints; training from scratch over them "
                          "(pass --resume to continue instead)", stacklevel=2)
        return trainer.fit()
    finally:
        trainer = None
        close_process()
