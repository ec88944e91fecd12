"""BABILong (Kuratov et al., 2024): bAbI questions whose facts hide in long book text, read from the user's files.

The files are those of the Hugging Face datasets RMT-team/babilong (or babilong-1k-samples):
``ROOT/<length>/<task>-*.parquet`` (or ``<task>.jsonl``) with columns ``input``, ``question`` and
``target``, e.g. ``babilong/4k/qa1-00000-of-00001.parquet``. Scoring follows BABILong's own:
the first sentence of the output must name the target and no other label of the task (labels
that the question itself mentions are ignored).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from titans_seq.errors import UserError

from .generation import LoadedModel, check_fits, generate

TASK_LABELS = {
    "qa1": {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"},
    "qa2": {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"},
    "qa3": {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"},
    "qa4": {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"},
    "qa5": {"Bill", "Fred", "Jeff", "Mary", "apple", "football", "milk"},
}
ANSWER_TOKENS = 16           # BABILong answers are one word; room for a short sentence around it


@dataclass(frozen=True)
class BabilongSample:
    input: str
    question: str
    target: str


def babilong_files(root: str | Path, task: str, length: str) -> list[Path]:
    """The files of one task (``qa1``..``qa5``) at one length (``0k``, ``4k``, ``128k``...); a UserError if none."""
    if task not in TASK_LABELS:
        raise UserError(f"BABILong task {task!r}: scoring is defined for {', '.join(TASK_LABELS)}")
    folder = Path(root) / length
    files = sorted(folder.glob(f"{task}-*.parquet")) or sorted(folder.glob(f"{task}.parquet")) \
        or sorted(folder.glob(f"{task}.jsonl"))
    if not files:
        raise UserError(f"BABILong {task} at {length} not found: expected {folder}/{task}-*.parquet or "
                        f"{task}.jsonl (from huggingface.co/datasets/RMT-team/babilong)")
    return files


def load_babilong(root: str | Path, task: str, length: str) -> list[BabilongSample]:
    """The samples of one task at one length."""
    files = babilong_files(root, task, length)
    frame = pl.concat([pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_ndjson(f) for f in files])
    missing = {"input", "question", "target"} - set(frame.columns)
    if missing:
        raise UserError(f"{files[0]}: no {', '.join(sorted(missing))} column (BABILong has input, question, target)")
    return [BabilongSample(row["input"], row["question"], row["target"]) for row in frame.iter_rows(named=True)]


def first_sentence(output: str) -> str:
    """What BABILong scores of an output: lowercased, up to the first full stop or a new example."""
    output = output.lower().split(".")[0]
    for marker in ("<context>", "<example>", "question"):
        output = output.split(marker)[0]
    return output


def babilong_correct(target: str, output: str, question: str, labels: set[str]) -> bool:
    """True when the target is the only label of the task in the output (labels in the question aside)."""
    output, labels = first_sentence(output), {label.lower() for label in labels}
    named = {label for label in labels if label in output} - {label for label in labels if label in question.lower()}
    return named == {target.lower()}


def prompt_text(sample: BabilongSample) -> str:
    """The context, then the question, then an answer cue (models here are not instruction-tuned)."""
    return f"{sample.input.strip()}\nQuestion: {sample.question.strip()}\nAnswer:"


def evaluate_babilong(loaded: LoadedModel, root: str | Path, tasks: list[str], lengths: list[str],
                      samples: int = 0) -> dict[tuple[str, str], float]:
    """Accuracy per (task, length), over the first ``samples`` samples of each (0: all)."""
    tokenizer, accuracy = loaded.tokenizer, {}
    for task in tasks:
        for length in lengths:
            rows = load_babilong(root, task, length)[:samples or None]
            correct = 0
            for sample in tqdm(rows, desc=f"{task} {length}", disable=None):
                ids = [tokenizer.eos_id, *tokenizer.encode(prompt_text(sample))]
                check_fits(loaded, len(ids), ANSWER_TOKENS)
                output = tokenizer.decode(generate(loaded.model, ids, ANSWER_TOKENS, temperature=0,
                                                   stop_id=tokenizer.eos_id))
                correct += babilong_correct(sample.target, output, sample.question, TASK_LABELS[task])
            accuracy[(task, length)] = correct / max(len(rows), 1)
    return accuracy


def babilong_table(accuracy: dict[tuple[str, str], float]) -> str:
    """Markdown: a row per task, a column per length."""
    tasks = list(dict.fromkeys(task for task, _ in accuracy))
    lengths = list(dict.fromkeys(length for _, length in accuracy))
    lines = ["| task | " + " | ".join(lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    lines += [f"| {task} | " + " | ".join(f"{accuracy[(task, n)]:.2f}" for n in lengths) + " |" for task in tasks]
    return "\n".join(lines)
