"""Recipes: structured configs merged from a YAML file, the base recipes it extends, and overrides.

A recipe has seven sections: ``model`` (:class:`~titans_seq.TitansConfig`), ``task`` (the task's
own config dataclass, chosen by ``task.name``), ``data`` (the task's data options, when it has
any), ``optim``, ``train``, ``eval`` and ``run``. A
recipe may name a ``base`` recipe (a path relative to it, or a packaged recipe's name) whose
values it overrides. Every mistake becomes one :class:`RecipeError` line that names the key, the
file and, where there are any, the valid choices.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from titans_seq.backbones import TitansConfig
from titans_seq.errors import UserError

from .registry import get_task

RECIPE_SUFFIX = ".yaml"


class RecipeError(UserError):
    """A recipe, an override or a recipe's value is wrong."""


@dataclass
class ModelConfig(TitansConfig):
    """The backbone's config, plus where to take pretrained weights from."""

    init_from: str | None = None         # a checkpoint folder: its backbone (and embedding) weights start this run

    def backbone(self) -> TitansConfig:
        values = dataclasses.asdict(self)
        values.pop("init_from")
        return TitansConfig(**values)


@dataclass
class OptimConfig:
    lr: float = 3e-4                     # peak learning rate
    weight_decay: float = 0.1            # AdamW's decoupled weight decay (matrices only)
    no_decay: list[str] = field(default_factory=list)   # parameters whose name holds one of these: no weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 100              # linear warm-up, then cosine decay
    min_lr_ratio: float = 0.1            # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0               # global gradient-norm clip; 0 disables it
    grad_accum: int = 1                  # micro-batches per optimizer step


@dataclass
class TrainConfig:
    max_steps: int = 1000                # optimizer steps
    batch_size: int = 16                 # sequences per micro-batch (per process)
    log_every: int = 10                  # steps between log lines / metric records
    eval_every: int = 200                # steps between validation runs; 0: only at the end
    eval_batches: int = 0                # validation batches per run; 0: the whole split
    save_every: int = 200                # steps between checkpoints; 0: only best and last
    keep_checkpoints: int = 2            # periodic checkpoints kept (the best is always kept)
    patience: int = 0                    # early stopping after this many evaluations without improvement; 0: never
    max_nonfinite: int = 5               # consecutive non-finite losses (steps skipped) before the run stops
    num_workers: int = 0                 # DataLoader worker processes
    compile: str = "auto"                # auto | true | false: torch.compile the blocks for training (auto: long CPU runs)

    def __post_init__(self):
        self.compile = str(self.compile).lower()      # YAML's true / false arrive as "True" / "False"
        if self.compile not in ("auto", "true", "false"):
            raise ValueError(f"train.compile={self.compile!r} is not one of auto, true, false")


@dataclass
class EvalConfig:
    metric: str = "loss"                 # validation metric that selects the best checkpoint
    mode: str = "min"                    # min | max: whether a smaller or a larger metric is better


@dataclass
class RunConfig:
    name: str = "${task.name}-${model.variant}"  # the run's folder under out_dir
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda
    precision: str = "auto"              # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    strategy: str = "ddp"                # under torchrun: ddp, or fsdp (FSDP2: fully_shard per block, then the root)


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: Any = None
    data: Any = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {"eval.mode": ("min", "max"), "run.device": ("auto", "cpu", "cuda"),
           "run.precision": ("auto", "fp32", "bf16"), "run.strategy": ("ddp", "fsdp")}


def packaged_recipes() -> dict[str, Path]:
    """The recipes shipped with the package, by name."""
    folder = resources.files("titans_seq.recipes")
    return {Path(item.name).stem: Path(str(item)) for item in folder.iterdir()
            if item.name.endswith(RECIPE_SUFFIX)}


def resolve_recipe_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A recipe file from a path (absolute, or relative to ``relative_to`` or the cwd) or a packaged name."""
    candidates = [Path(name_or_path)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name_or_path)
    for path in candidates:
        if path.is_file():
            return path
    packaged = packaged_recipes()
    stem = Path(name_or_path).stem
    if stem in packaged and not Path(name_or_path).parent.parts:
        return packaged[stem]
    raise RecipeError(f"recipe {name_or_path!r} not found: no such file, and no packaged recipe of that "
                      f"name (packaged: {', '.join(sorted(packaged)) or 'none'})")


def _read_yaml(path: Path) -> DictConfig:
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"cannot read recipe {path}: {error.strerror}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe {path}{where} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections (model, task, optim, ...)")
    return OmegaConf.create(values)


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    """The recipe at ``path`` merged over the chain of base recipes it extends."""
    if path.resolve() in seen:
        raise RecipeError(f"recipe {path} extends itself through its base recipes")
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _load_chain(resolve_recipe_path(str(base), path.parent), (*seen, path.resolve()))
    return OmegaConf.merge(parent, raw)


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise RecipeError(f"override {item!r} must look like key=value, e.g. train.max_steps=200")
    for item in overrides:    # each value is read as YAML, one by one, so that a bad one is named
        try:
            OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError) as error:
            reason = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise RecipeError(f"override {item!r}: the value is not valid YAML ({reason})") from None
    return OmegaConf.from_dotlist(overrides)


def _valid_keys(schema: DictConfig, key: str) -> str:
    parent = schema
    for part in key.split(".")[:-1]:
        if not isinstance(parent, DictConfig) or part not in parent:
            break
        parent = parent[part]
    if isinstance(parent, DictConfig):
        return f"; valid keys here: {', '.join(sorted(parent.keys()))}"
    return ""


@contextlib.contextmanager
def _omegaconf_errors(source: str) -> Iterator[None]:
    """OmegaConf's remaining complaints (a section that is a list, an interpolation of nothing) as one line."""
    try:
        yield
    except (OmegaConfBaseException, TypeError) as error:   # merging a list into a section: a TypeError
        lines = str(error).splitlines()
        raise RecipeError(f"{source}: {lines[0] if lines else type(error).__name__}") from None


def build_recipe(raw: DictConfig, source: str) -> Recipe:
    """Validate merged recipe values against the schema and return the typed :class:`Recipe`."""
    with _omegaconf_errors(source):
        return _build_recipe(raw, source)


def _build_recipe(raw: DictConfig, source: str) -> Recipe:
    task_name = OmegaConf.select(raw, "task.name")
    if task_name is None:
        raise RecipeError(f"{source}: task.name is missing; set it to one of the registered tasks")
    try:
        task_class = get_task(str(task_name))
    except KeyError as error:
        raise RecipeError(f"{source}: task.name: {error.args[0]}") from None
    schema = OmegaConf.structured(Recipe)
    schema.task = OmegaConf.structured(task_class.config_class)
    data_class = getattr(task_class, "data_class", None)
    schema.data = OmegaConf.structured(data_class) if data_class else None
    if data_class is None and OmegaConf.select(raw, "data") is not None:
        raise RecipeError(f"{source}: task {task_name!r} takes no data section")
    try:
        merged = OmegaConf.merge(schema, raw)
        recipe = OmegaConf.to_object(merged)
    except ConfigKeyError as error:
        key = error.full_key or error.key
        raise RecipeError(f"{source}: unknown key {key!r}{_valid_keys(schema, str(key))}") from None
    except MissingMandatoryValue as error:
        raise RecipeError(f"{source}: {error.full_key} is required but has no value") from None
    except ValidationError as error:
        message = str(error).splitlines()[0]
        raise RecipeError(f"{source}: {error.full_key}: {message}") from None
    except ValueError as error:   # a config dataclass refused a value in its own validation
        raise RecipeError(f"{source}: {error}") from None
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(OmegaConf.structured(recipe), key)
        if value not in allowed:
            raise RecipeError(f"{source}: {key}={value!r} is not one of {', '.join(allowed)}")
    if recipe.model.bidirectional and not task_class.reads_whole_sequences:
        raise RecipeError(f"{source}: model.bidirectional=true reads each sequence backwards too, so the "
                          f"model would see what task {task_name!r} predicts next; leave it false")
    return recipe


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> Recipe:
    """Load a recipe file (or packaged recipe), apply ``key=value`` overrides, validate."""
    path = resolve_recipe_path(name_or_path)
    with _omegaconf_errors(str(path)):
        raw = OmegaConf.merge(_load_chain(path), _parse_overrides(list(overrides)))
    return build_recipe(raw, str(path))


def recipe_to_yaml(recipe: Recipe) -> str:
    """The fully resolved recipe, as saved beside every run."""
    return OmegaConf.to_yaml(OmegaConf.structured(recipe), resolve=True)
