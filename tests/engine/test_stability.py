"""The stability paragraph of a report: clean runs, skipped steps, stopped runs, and runs never counted;
and the advice a run that goes non-finite stops with."""
from torch import nn

from titans_seq.engine.stability import stability, stability_advice, stability_note
from titans_seq.memory import NeuralMemory


def run(model, seed, **extra):
    return {"model": model, "seed": seed, "recipe": "forecast@ETTh1 task.horizon=720", "metrics": {}, **extra}


def test_clean_runs_are_one_sentence():
    note = stability_note(stability([run("mac", 0, nonfinite_steps=0), run("mac", 1, nonfinite_steps=0)]))
    assert note == "**Stability.** No non-finite loss in any of the 2 runs (every stage counted).\n"


def test_every_kind_of_run_is_counted_and_named():
    summary = stability([run("mac", 0, nonfinite_steps=0), run("mac", 1, nonfinite_steps=4),
                         run("lmm", 0, failed="stopped: 5 non-finite losses in a row"), run("dlinear", 0)])
    assert summary == {"runs": 4, "uncounted": 1,
                       "skipped": [{"model": "mac", "seed": 1, "column": "forecast@ETTh1 task.horizon=720", "steps": 4}],
                       "failed": [{"model": "lmm", "seed": 0, "column": "forecast@ETTh1 task.horizon=720",
                                   "error": "stopped: 5 non-finite losses in a row"}]}
    assert stability_note(summary) == (
        "**Stability.** Of the 4 runs (every stage counted), 1 had no non-finite loss; 1 skipped steps for a "
        "non-finite loss (mac, seed 1, forecast@ETTh1 task.horizon=720: 4); 1 stopped (lmm, seed 0, "
        "forecast@ETTh1 task.horizon=720: stopped: 5 non-finite losses in a row); 1 ran before the trainer "
        "counted skipped steps.\n")


def test_a_record_without_a_suite_row_is_named_by_its_variant_and_task():
    summary = stability([{"variant": "mag", "task": "lm", "seed": 2, "nonfinite_steps": 1, "metrics": {}}])
    assert summary["skipped"] == [{"model": "mag", "seed": 2, "column": "lm", "steps": 1}]


def test_advice_names_the_memory_options_some_memory_layer_leaves_off():
    def memory(**options):
        return NeuralMemory(d_model=8, n_heads=2, chunk_size=4, **options)

    both = "model.memory_damped_momentum=true and model.memory_bound_by_input_norm=true"
    assert stability_advice(nn.Linear(2, 2)) == "try a lower optim.lr"
    assert stability_advice(memory()) == f"try a lower optim.lr, or {both}"
    bound = "try a lower optim.lr, or model.memory_bound_by_input_norm=true"
    assert stability_advice(memory(damped_momentum=True)) == bound
    assert stability_advice(memory(damped_momentum=True, bound_by_input_norm=True)) == "try a lower optim.lr"
    mixed = nn.Sequential(memory(damped_momentum=True, bound_by_input_norm=True), memory(damped_momentum=True))
    assert stability_advice(mixed) == bound
