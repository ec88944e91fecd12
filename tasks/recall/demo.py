"""``titans-seq demo``: a minute of training on built-in associative-recall data, before and after."""
from __future__ import annotations

from titans_seq.engine.config import load_recipe
from titans_seq.engine.distributed import init_process
from titans_seq.engine.trainer import Trainer, evaluate

DEMO_RECIPE = "demo"


def run_demo(overrides: list[str] = ()) -> dict:
    """Train the packaged demo recipe and print what the model learned; returns the test record."""
    recipe = load_recipe(DEMO_RECIPE, list(overrides))
    env = init_process(recipe.run.device)
    trainer = Trainer(recipe, env)
    task = recipe.task
    print(f"Titans {recipe.model.variant.upper()} ({trainer.parameters:,} parameters) learns associative recall: "
          f"it reads {task.n_pairs} key->value pairs, then is asked {task.n_queries} of the keys and must "
          f"answer each value from memory. Data: generated, {task.n_train:,} training sequences. "
          f"Run folder: {trainer.run_dir}")
    before, _ = evaluate(trainer.task, trainer.model, trainer.splits["val"], recipe, env.device)
    record = trainer.fit()
    chance = 1 / task.n_values
    print(f"\nrecall accuracy on unseen test sequences: {record['metrics']['accuracy']:.1%} "
          f"(untrained: {before['accuracy']:.1%}, chance: {chance:.1%})")
    print(trainer.task.describe(trainer.model, env.device))
    return record
