"""open_run: the one loader for a run or checkpoint folder (recipe, task, model with the saved weights)."""
import shutil

import pytest
import torch

from titans_seq.engine.checkpoint import BEST, read_model_state
from titans_seq.engine.config import load_recipe
from titans_seq.engine.runs import find_checkpoint, open_run, saved_recipe
from titans_seq.engine.trainer import train
from titans_seq.errors import UserError

from .test_trainer import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    recipe = load_recipe("demo", [*TINY, "train.max_steps=4", "train.eval_every=2", "train.save_every=2",
                                  f"run.out_dir={out}"])
    train(recipe)
    return recipe.run_dir


def test_a_run_folder_opens_at_its_best_checkpoint(trained):
    run = open_run(trained, device="cpu")
    assert run.checkpoint == trained / BEST and run.task.name == run.recipe.task.name == "recall"
    assert not run.model.training
    saved = read_model_state(trained / BEST)
    for name, tensor in run.model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert open_run(trained / BEST, device="cpu").checkpoint == trained / BEST


def test_a_step_checkpoint_opens_too_and_a_run_without_best_falls_back_to_its_latest(trained, tmp_path):
    step = sorted((trained / "checkpoints").iterdir())[-1]
    assert open_run(step, device="cpu").checkpoint == step
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    shutil.rmtree(copy / BEST)
    assert find_checkpoint(copy) == copy / "checkpoints" / step.name


def test_the_saved_recipe_drops_init_from_and_takes_overrides(trained):
    recipe = saved_recipe(trained, ["train.max_steps=9"])
    assert recipe.model.init_from is None and recipe.train.max_steps == 9
    assert recipe.model.d_model == 16                         # as trained (TINY), not the recipe file's


def test_wrong_folders_and_wrong_tasks_are_one_line(trained, tmp_path):
    with pytest.raises(UserError, match="not a complete checkpoint folder, nor a run folder holding one"):
        open_run(tmp_path)
    with pytest.raises(UserError, match="trained for task 'recall', not forecast"):
        open_run(trained, task="forecast")


def test_init_from_takes_a_run_folder_and_starts_from_its_best(trained, tmp_path):
    from titans_seq.engine.distributed import init_process
    from titans_seq.engine.trainer import Trainer

    recipe = load_recipe("demo", [*TINY, f"model.init_from={trained}", f"run.out_dir={tmp_path}"])
    started = Trainer(recipe, init_process("cpu")).model.state_dict()
    saved = read_model_state(trained / BEST)
    for name, tensor in started.items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    with pytest.raises(UserError, match=f"model.init_from={tmp_path}: .*not a complete checkpoint folder"):
        Trainer(load_recipe("demo", [*TINY, f"model.init_from={tmp_path}"]), init_process("cpu"))


def test_a_trainer_evaluates_a_checkpoint_as_its_training_tested_it(trained):
    import json

    from titans_seq.engine.distributed import init_process
    from titans_seq.engine.trainer import Trainer

    trainer = Trainer(saved_recipe(trained), init_process("cpu"))
    record = trainer.evaluate_checkpoint(trained / BEST)
    assert record["split"] == "test" and record["checkpoint"] == str(trained / BEST) and trainer.state.step == 0
    tested = json.loads((trained / "test_results.json").read_text())
    assert record["metrics"] == pytest.approx(tested["metrics"], abs=1e-6)
