import json

import pytest
import torch

from titans_seq.engine.bench import finished_record
from titans_seq.engine.checkpoint import BEST, read_model_state
from titans_seq.engine.config import RecipeError, TrainConfig, load_recipe
from titans_seq.engine.distributed import init_process
from titans_seq.backbones import Backbone, TitansConfig
from titans_seq.engine.config import OptimConfig
from titans_seq.engine.trainer import COMPILE_MIN_STEPS, Trainer, build_optimizer, compiles, train
from titans_seq.errors import TrainingError, UserError

TINY = ["task.n_train=320", "task.n_val=32", "task.n_test=32", "model.d_model=16", "model.n_layers=1",
        "model.n_heads=2", "model.chunk_size=4", "model.segment_len=8", "train.batch_size=16",
        "train.log_every=1", "optim.warmup_steps=3"]


def tiny_recipe(tmp_path, *more):
    return load_recipe("demo", [*TINY, f"run.out_dir={tmp_path}", *more])


def train_losses(run_dir):
    """step -> loss from metrics.jsonl; a resumed run's later lines replace the earlier ones."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "train":
            losses[record["step"]] = record["loss"]
    return losses


def test_a_run_writes_config_metrics_checkpoints_and_a_test_record(tmp_path):
    recipe = tiny_recipe(tmp_path, "train.max_steps=12", "train.eval_every=4", "train.save_every=4",
                         "train.keep_checkpoints=2")
    record = train(recipe)
    run = recipe.run_dir
    assert (run / "config.yaml").read_text().count("variant: mac") == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000008", "step-000012"]
    assert (run / "best" / "COMPLETE").exists()
    assert sorted(train_losses(run)) == list(range(1, 13))
    saved = json.loads((run / "test_results.json").read_text())
    assert saved == record
    assert record["split"] == "test" and record["variant"] == "mac" and record["parameters"] > 0
    assert set(record["metrics"]) == {"loss", "accuracy"} and record["tokens_per_s"] > 0
    assert record["git_revision"]


def test_a_run_trained_again_from_scratch_logs_only_its_own_steps(tmp_path):
    train(tiny_recipe(tmp_path, "train.max_steps=12", "train.eval_every=4", "train.save_every=4"))
    again = tiny_recipe(tmp_path, "train.max_steps=5", "train.eval_every=5")
    (again.run_dir / "tensorboard").mkdir(exist_ok=True)
    (again.run_dir / "tensorboard" / "events.out.tfevents.earlier").write_bytes(b"earlier run")
    with pytest.warns(UserWarning, match="training from scratch over them"):
        train(again)
    lines = [json.loads(line) for line in (again.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["split"] == "train"] == [1, 2, 3, 4, 5]
    assert [line["step"] for line in lines if line["split"] == "val"] == [5]
    assert not (again.run_dir / "tensorboard" / "events.out.tfevents.earlier").exists()


def test_a_run_started_again_from_scratch_drops_the_earlier_runs_results(tmp_path, monkeypatch):
    train(tiny_recipe(tmp_path, "train.max_steps=4", "train.eval_every=2"))
    again = tiny_recipe(tmp_path, "train.max_steps=4", "train.eval_every=2", "optim.lr=1e-4")
    assert (again.run_dir / "test_results.json").is_file() and (again.run_dir / BEST).is_dir()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_step", killed)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="training from scratch over them"):
        train(again)
    assert not (again.run_dir / "test_results.json").exists()      # else bench would take it for this recipe's
    assert not (again.run_dir / BEST).exists()
    assert finished_record(again) is None


def test_no_decay_exempts_the_named_parameters_from_weight_decay_only():
    model = Backbone(TitansConfig(variant="mac", d_model=16, n_layers=2, n_heads=2))
    memory_weights = {id(p) for name, p in model.named_parameters() if "memory.weights" in name}
    assert len(memory_weights) == 4                                     # two layers of two blocks
    default, exempt = (build_optimizer(model, OptimConfig(no_decay=names)) for names in ([], ["memory.weights"]))
    for optimizer in (default, exempt):
        assert {g["weight_decay"] for g in optimizer.param_groups} == {0.1, 0.0}
    decayed = lambda optimizer: {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}  # noqa: E731
    assert memory_weights <= decayed(default)
    assert decayed(exempt) == decayed(default) - memory_weights           # those, and nothing else
    with pytest.raises(UserError, match="optim.no_decay: no parameter's name contains memroy.weights"):
        build_optimizer(model, OptimConfig(no_decay=["memroy.weights"]))


def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
    whole = tiny_recipe(tmp_path, "run.name=whole", "train.max_steps=14", "train.save_every=6",
                        "train.eval_every=5")
    train(whole)
    expected = train_losses(whole.run_dir)

    killed = tiny_recipe(tmp_path, "run.name=killed", "train.max_steps=14", "train.save_every=6",
                         "train.eval_every=5")
    original_step = Trainer._step

    def step_then_die(self, model, batches):
        if self.state.step == 9:        # after the checkpoint at step 6, mid-way to the next
            raise KeyboardInterrupt
        return original_step(self, model, batches)

    monkeypatch.setattr(Trainer, "_step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(killed)
    monkeypatch.setattr(Trainer, "_step", original_step)
    train(killed, resume=True)
    resumed = train_losses(killed.run_dir)
    assert resumed == expected      # exactly, every step, the re-done steps 7-9 included


def test_early_stopping_and_best_checkpoint_selection(tmp_path):
    recipe = tiny_recipe(tmp_path, "train.max_steps=40", "train.eval_every=2", "train.patience=1",
                         "optim.lr=0.0", "optim.warmup_steps=1")   # nothing improves after the first evaluation
    train(recipe)
    history = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["split"] == "val"]
    assert [h["step"] for h in history] == [2, 4]
    best_state = json.loads((recipe.run_dir / "best" / "state.json").read_text())
    assert best_state["best_step"] == 2


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch, capsys):
    recipe = tiny_recipe(tmp_path, "train.max_steps=10", "train.max_nonfinite=3", "train.save_every=2")
    trainer = Trainer(recipe, init_process("cpu"))
    real_loss = trainer.task.loss
    calls = {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        value = real_loss(model, batch)
        return value * float("nan") if calls["n"] > 4 else value

    trainer.task.loss = loss
    with pytest.raises(TrainingError, match=r"3 non-finite losses in a row; last good checkpoint: .*step-000004; "
                                            r"try a lower optim.lr"):
        trainer.fit()
    assert "non-finite loss, step skipped (1/3 in a row)" in capsys.readouterr().out
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_skipped_steps_are_counted_in_the_test_record_and_the_checkpoints(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, "train.max_steps=6", "train.max_nonfinite=2", "train.save_every=3")
    original_step, calls = Trainer._step, {"n": 0}

    def step_nan_twice(self, model, batches):
        calls["n"] += 1
        loss, tokens, finite = original_step(self, model, batches)
        return loss, tokens, finite and calls["n"] not in (2, 5)      # never two in a row: the run goes on

    monkeypatch.setattr(Trainer, "_step", step_nan_twice)
    record = train(recipe)
    assert calls["n"] == 8 and record["nonfinite_steps"] == 2
    assert json.loads((recipe.run_dir / "test_results.json").read_text())["nonfinite_steps"] == 2
    states = [json.loads((recipe.run_dir / "checkpoints" / f"step-{step:06d}" / "state.json").read_text())
              for step in (3, 6)]
    assert [state["nonfinite_steps"] for state in states] == [1, 2]     # a resumed run keeps counting


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    big = Trainer(tiny_recipe(tmp_path, "run.name=big", "train.batch_size=16", "train.max_steps=1"), init_process("cpu"))
    small = Trainer(tiny_recipe(tmp_path, "run.name=small", "train.batch_size=8", "optim.grad_accum=2",
                                "train.max_steps=1"), init_process("cpu"))
    for trainer in (big, small):
        trainer.recipe.optim.grad_clip = 0.0
    # the same 16 sequences, in one batch or two halves
    batch = next(iter(torch.utils.data.DataLoader(big.splits["train"], batch_size=16)))
    halves = iter([(batch[0][:8], batch[1][:8]), (batch[0][8:], batch[1][8:])])
    big._step(big.model, iter([batch]))
    small._step(small.model, halves)
    for a, b in zip(big.model.parameters(), small.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_compile_steps_a_compiled_model_and_gives_the_eager_losses(tmp_path, monkeypatch):
    """train.compile: the backbone's blocks run through torch.compile (here Dynamo with the eager
    backend, so that the test traces every layer of a block without Inductor's minutes of
    compilation); the losses and the checkpoint's names are those of an eager run."""
    compiled = []
    real_compile = torch.compile

    def eager_backend_compile(model, **kwargs):
        compiled.append((model, kwargs))
        return real_compile(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_backend_compile)
    eager = tiny_recipe(tmp_path, "run.name=eager", "train.max_steps=6", "train.eval_every=3")
    fast = tiny_recipe(tmp_path, "run.name=compiled", "train.max_steps=6", "train.eval_every=3", "train.compile=true")
    train(eager)
    assert not compiled
    train(fast)
    assert len(compiled) == 1 and compiled[0][1] == {"dynamic": False}    # the demo's one block
    eager_losses, compiled_losses = train_losses(eager.run_dir), train_losses(fast.run_dir)
    assert sorted(compiled_losses) == list(range(1, 7))
    for step, loss in eager_losses.items():
        assert compiled_losses[step] == pytest.approx(loss, rel=1e-5)
    weights = read_model_state(fast.run_dir / "best")
    assert weights.keys() == read_model_state(eager.run_dir / "best").keys()   # no _orig_mod. prefixes


def test_train_compile_auto_compiles_long_cpu_runs_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compiles(TrainConfig(max_steps=COMPILE_MIN_STEPS), cpu)
    assert not compiles(TrainConfig(max_steps=COMPILE_MIN_STEPS - 1), cpu)
    assert not compiles(TrainConfig(max_steps=10 * COMPILE_MIN_STEPS), cuda)     # not measured with the Triton kernel
    assert compiles(TrainConfig(max_steps=5, compile=True), cpu)                 # YAML's true
    assert not compiles(TrainConfig(max_steps=10 * COMPILE_MIN_STEPS, compile="false"), cpu)
    assert load_recipe("dna_mac").train.compile == "auto"
    with pytest.raises(RecipeError, match="train.compile='sometimes' is not one of auto, true, false"):
        load_recipe("demo", ["train.compile=sometimes"])
