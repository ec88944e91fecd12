"""What a suite's runs say about training stability: the steps skipped for a non-finite loss, and the
runs that stopped; and what to try when a run goes non-finite.

The trainer counts the steps it skips (``nonfinite_steps`` in a test record); the bench sums them over
a curriculum's stages and records a run that failed with its error (``failed``). A report states, per
group, how many runs were clean, which were not, and how many ran before the count existed.
"""
from __future__ import annotations

from torch import nn

from titans_seq.memory import NeuralMemory

# the memory's stability options, NeuralMemory attributes that a recipe sets as model.memory_<option>,
# in the order to try them (docs/concepts/memory.md, "Stability of the inner loop")
MEMORY_STABILITY_OPTIONS = ("damped_momentum", "bound_by_input_norm")


def stability_advice(model: nn.Module) -> str:
    """What to try when a model's loss or outputs go non-finite: a lower learning rate and, for a model
    with a neural memory, the memory's stability options that some of its memory layers leave off."""
    memories = [module for module in model.modules() if isinstance(module, NeuralMemory)]
    unused = [f"model.memory_{option}=true" for option in MEMORY_STABILITY_OPTIONS
              if any(not getattr(memory, option) for memory in memories)]
    return "try a lower optim.lr" + (", or " + " and ".join(unused) if unused else "")


def is_failed(record: dict) -> bool:
    """Whether a suite record stands for a run that stopped without a test result."""
    return "failed" in record


def stability(records: list[dict]) -> dict:
    """A group's runs: how many, those with skipped steps, those that failed, and how many are uncounted."""
    def who(record: dict) -> dict:
        return {"model": record.get("model") or record["variant"], "seed": record["seed"],
                "column": record.get("recipe") or record["task"]}

    skipped = [{**who(r), "steps": r["nonfinite_steps"]} for r in records
               if not is_failed(r) and (r.get("nonfinite_steps") or 0) > 0]
    stopped = [{**who(r), "error": r["failed"]} for r in records if is_failed(r)]
    uncounted = sum(1 for r in records if not is_failed(r) and r.get("nonfinite_steps") is None)
    return {"runs": len(records), "skipped": skipped, "failed": stopped, "uncounted": uncounted}


def stability_note(summary: dict) -> str:
    """One paragraph of markdown: the stability of a group's runs (from :func:`stability`)."""
    runs, skipped, stopped, uncounted = (summary[key] for key in ("runs", "skipped", "failed", "uncounted"))
    clean = runs - uncounted - len(stopped) - len(skipped)
    if clean == runs:
        return f"**Stability.** No non-finite loss in any of the {runs} runs (every stage counted).\n"
    name = lambda item: f"{item['model']}, seed {item['seed']}, {item['column']}"  # noqa: E731
    parts = [f"{clean} had no non-finite loss"]
    if skipped:
        parts.append(f"{len(skipped)} skipped steps for a non-finite loss ("
                     + "; ".join(f"{name(item)}: {item['steps']}" for item in skipped) + ")")
    if stopped:
        parts.append(f"{len(stopped)} stopped (" + "; ".join(f"{name(item)}: {item['error']}" for item in stopped) + ")")
    if uncounted:
        parts.append(f"{uncounted} ran before the trainer counted skipped steps")
    return f"**Stability.** Of the {runs} runs (every stage counted), " + "; ".join(parts) + ".\n"
