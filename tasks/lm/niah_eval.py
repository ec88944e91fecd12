"""Running S-NIAH through a trained language model: greedy answers, read through the state; table and heatmap."""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn
from tqdm import tqdm

from titans_seq.memory import NeuralMemory

from titans_seq.engine.records import write_atomically

from .generation import LoadedModel, check_fits, generate
from .niah import ESSAYS, Haystack, make_sample, string_match_all

ANSWER_SLACK = 4             # tokens written beyond the answer's own length


@dataclass
class NeedleResult:
    kind: str
    length: int
    depth: float
    score: float
    answer: str
    prediction: str


def evaluate_niah(loaded: LoadedModel, kinds: list[str], lengths: list[int], depths: list[float], samples: int = 4,
                  seed: int = 0, essays: str | Path = ESSAYS) -> list[NeedleResult]:
    """Every (kind, length, depth) cell, ``samples`` prompts each, answered greedily and scored."""
    tokenizer, results = loaded.tokenizer, []
    cells = [(kind, length, depth) for kind in kinds for length in lengths for depth in depths]
    haystacks = {kind: Haystack.for_kind(kind, tokenizer, essays) for kind in kinds}
    for kind, length, depth in tqdm(cells, desc="needles", unit="cell", disable=None):
        for i in range(samples):
            rng = random.Random(f"{seed}-{kind}-{length}-{depth}-{i}")
            sample = make_sample(kind, length, depth, tokenizer, haystacks[kind], rng)
            ids = [tokenizer.eos_id, *sample.ids]
            new_tokens = len(tokenizer.encode(" " + sample.needle.answer)) + ANSWER_SLACK
            check_fits(loaded, len(ids), new_tokens)
            written = tokenizer.decode(generate(loaded.model, ids, new_tokens, temperature=0,
                                                stop_id=tokenizer.eos_id))
            results.append(NeedleResult(kind, length, depth, string_match_all(written, [sample.needle.answer]),
                                        sample.needle.answer, written))
    return results


def scale_forgetting(model: nn.Module, scale: float) -> None:
    """Multiply every memory's forgetting gate decay by ``scale`` (0: the memory never forgets)."""
    for memory in model.modules():
        if isinstance(memory, NeuralMemory):
            def scaled(x, gates=memory.gates):
                lr, momentum, decay = gates(x)
                return lr, momentum, decay * scale
            memory.gates = scaled


def _accuracy(results: list[NeedleResult]) -> dict[tuple[str, int, float], float]:
    cells: dict[tuple[str, int, float], list[float]] = {}
    for r in results:
        cells.setdefault((r.kind, r.length, r.depth), []).append(r.score)
    return {cell: sum(scores) / len(scores) for cell, scores in cells.items()}


def length_accuracy(results: list[NeedleResult]) -> dict[int, float]:
    """The mean score at each context length, over every kind, depth and sample."""
    scores: dict[int, list[float]] = {}
    for r in results:
        scores.setdefault(r.length, []).append(r.score)
    return {length: sum(values) / len(values) for length, values in sorted(scores.items())}


def _axes(results: list[NeedleResult]) -> tuple[list[str], list[int], list[float]]:
    return (list(dict.fromkeys(r.kind for r in results)), sorted({r.length for r in results}),
            sorted({r.depth for r in results}))


def accuracy_table(results: list[NeedleResult]) -> str:
    """Markdown: per kind, a row per length, a column per needle depth, and the row's mean."""
    accuracy = _accuracy(results)
    kinds, lengths, depths = _axes(results)
    lines = []
    for kind in kinds:
        lines += [f"**{kind}**", "", "| length | " + " | ".join(f"depth {d:.0%}" for d in depths) + " | mean |",
                  "|---" * (len(depths) + 2) + "|"]
        for length in lengths:
            row = [accuracy[(kind, length, d)] for d in depths]
            lines.append(f"| {length:,} | " + " | ".join(f"{a:.2f}" for a in row) + f" | {sum(row) / len(row):.2f} |")
        lines.append("")
    return "\n".join(lines)


def save_heatmap(results: list[NeedleResult], path: str | Path) -> None:
    """A PNG: per kind, accuracy by context length (x) and needle depth (y)."""
    import matplotlib
    matplotlib.use("Agg")             # files only, never a window
    import matplotlib.pyplot as plt

    accuracy = _accuracy(results)
    kinds, lengths, depths = _axes(results)
    figure, axes = plt.subplots(1, len(kinds), figsize=(1.2 + 0.9 * len(lengths) * len(kinds), 0.5 * len(depths) + 1.6),
                                squeeze=False)
    for axis, kind in zip(axes[0], kinds):
        grid = [[accuracy[(kind, length, depth)] for length in lengths] for depth in depths]
        image = axis.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        axis.set_xticks(range(len(lengths)), [f"{n // 1024}K" if n >= 1024 else str(n) for n in lengths])
        axis.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
        axis.set(xlabel="context length (tokens)", ylabel="needle depth", title=f"S-NIAH {kind}")
        for y, row in enumerate(grid):
            for x, value in enumerate(row):
                axis.text(x, y, f"{value:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes[0].tolist(), label="accuracy")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_report(results: list[NeedleResult], out_dir: str | Path) -> str:
    """results.jsonl, niah.md and niah.png in ``out_dir``; returns the table."""
    out_dir = Path(out_dir)
    table = accuracy_table(results)
    write_atomically(out_dir / "results.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in results))
    write_atomically(out_dir / "niah.md", f"# S-NIAH accuracy\n\n{table}")
    save_heatmap(results, out_dir / "niah.png")
    return table
