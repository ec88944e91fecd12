"""A suite's report: tables of mean ± std over seeds, published figures beside ours, bar charts, learning curves.

It reads only result records (and each run's ``metrics.jsonl``), so a report can be rebuilt from a finished
suite folder without training (:func:`report_from_folder`). Published figures come from the packaged
``references.yaml``.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import yaml
from matplotlib.figure import Figure

from titans_seq.errors import UserError
from titans_seq.files import copy_atomically, write_atomically, write_atomically_with

from .stability import is_failed, stability, stability_note
from .suite import Column, Group, Suite, columns
from .summaries import AT_LENGTH, better, cell, summary
from .targets import evaluate_targets, targets_markdown
from .task import EXAMPLE_FIGURE

BASELINES = ("transformer", "swa")
TITANS = ("lmm", "mac", "mag", "mal")
AVERAGE = "average"   # an axis value: the figure averages over the axis's values (e.g. every horizon)
PUBLISHED_STYLES = [("black", "--"), ("dimgray", ":"), ("saddlebrown", "-."), ("purple", "--"), ("darkgreen", ":"),
                    ("darkred", "-."), ("navy", "--"), ("olive", ":")]


@dataclass(frozen=True)
class Reference:
    """One published figure, ``value`` in our units (the printed figure is ``published``)."""

    dataset: str
    metric: str
    model: str
    value: float
    published: float
    settings: tuple[tuple[str, str], ...]
    citation: str
    where: str
    note: str
    titans: bool

    def matches(self, column: Column, metric: str, dataset: str | None) -> bool:
        """Whether this figure belongs in ``column``'s cell of ``metric``; ``dataset``: the column's registry
        key, or for a column of the recipe's own data, the name its task records (e.g. synthetic-passkey)."""
        given = {key: str(value) for key, value in column.settings}
        return (self.dataset == dataset and self.metric == metric
                and all(given.get(key) == value for key, value in self.settings))


def load_references(path: Path | None = None) -> list[Reference]:
    """The published figures of a references file (default: the packaged ``references.yaml``)."""
    text = path.read_text() if path else resources.files("titans_seq.engine").joinpath("references.yaml").read_text()
    content = yaml.safe_load(text) or {}
    sources, found = content.get("sources", {}), []
    for dataset, metrics in (content.get("figures") or {}).items():
        for metric, entries in metrics.items():
            for entry in entries:
                source = sources.get(entry["source"])
                if source is None:
                    raise UserError(f"references: {dataset} {metric} {entry['model']} cites unknown source "
                                    f"{entry['source']}")
                if "at" in entry:      # one figure per length: metrics <metric>@<length>
                    points = [(f"{metric}@{length}", (), value) for length, value in entry["at"].items()]
                elif "by" in entry:
                    points = [(metric, ((entry["by"], str(key)),), value) for key, value in entry["values"].items()]
                else:
                    points = [(metric, tuple((k, str(v)) for k, v in entry.get("settings", {}).items()),
                               entry["value"])]
                found.extend(Reference(dataset, name, entry["model"], float(value) / source.get("scale", 1),
                                       float(value), settings, source["citation"], source["where"],
                                       source.get("note", ""), bool(source.get("titans", False)))
                             for name, settings, value in points)
    return found


def metric_value(record: dict, name: str) -> float | None:
    """A test metric, or with a ``val_`` prefix the selected checkpoint's validation metric."""
    if name.startswith("val_") and name not in record["metrics"]:
        return record.get("val_metrics", {}).get(name[4:])
    return record["metrics"].get(name)


def row(record: dict) -> str:
    """A record's row: the suite's model label (bench's ``model``), else the backbone variant it ran."""
    return record.get("model") or record["variant"]


def model_order(labels: set[str]) -> list[str]:
    """Baselines first (transformer, swa, then models other than backbone variants), the Titans variants last."""
    others = sorted(labels - set(BASELINES) - set(TITANS))
    return [m for m in BASELINES if m in labels] + others + [m for m in TITANS if m in labels]


def _columns_and_members(group: Group, references: list[Reference]) -> list[tuple[Column, list[Column]]]:
    """The group's columns, each its own member, then for each axis a published figure averages over
    (settings ``{axis: average}``) one column per other setting, its members the columns it averages."""
    plain = columns(group)
    averaged = {key for ref in references for key, value in ref.settings if value == AVERAGE}
    found = [(column, [column]) for column in plain]
    for key in (k for k in group.axes if k in averaged and len(group.axes[k]) > 1):
        merged: dict[Column, list[Column]] = {}
        for column in plain:
            settings = tuple((k, AVERAGE if k == key else v) for k, v in column.settings)
            merged.setdefault(Column(column.group, column.recipe, column.dataset, settings), []).append(column)
        found.extend(merged.items())
    return found


def _values(runs: list[dict], metric: str, members: int) -> list[float]:
    """Per seed (in order), the metric averaged over the member columns; seeds missing a member are left out."""
    by_seed: dict[int, dict[str, float]] = {}
    for run in runs:
        if (value := metric_value(run, metric)) is not None:
            by_seed.setdefault(run["seed"], {})[run["recipe"]] = value
    return [statistics.mean(values.values()) for _, values in sorted(by_seed.items()) if len(values) == members]


def _summarise(group: Group, records: list[dict], references: list[Reference]) -> list[dict]:
    """Per column of the group: each model's summary per metric, the matching references, and the gaps."""
    result = []
    for column, members in _columns_and_members(group, references):
        labels = {member.label for member in members}
        runs = [r for r in records if r.get("group", column.group) == column.group and r.get("recipe") in labels]
        models: dict[str, dict] = {}
        for model in model_order({row(r) for r in runs}):
            mine = [r for r in runs if row(r) == model]
            models[model] = {metric: summary(values) for metric in group.metrics
                             if (values := _values(mine, metric, len(members)))}
        titans = sorted({row(r) for r in runs if r["variant"] in TITANS})   # a suite's own rows (lmm-budget) too
        dataset = column.dataset or next((r["dataset"] for r in runs), None)
        chosen = {metric: [ref for ref in references if ref.matches(column, metric, dataset)]
                  for metric in group.metrics}
        gaps = {}
        for metric in group.metrics:
            best = better(metric, [(models[m][metric]["mean"], m) for m in titans if metric in models.get(m, {})])
            if best is None:
                continue
            gaps[metric] = {"model": best[1], "mean": best[0]}
            for kind, pool in (("titans", [r for r in chosen[metric] if r.titans]),
                               ("baseline", [r for r in chosen[metric] if not r.titans])):
                target = better(metric, [(r.value, r.model) for r in pool])
                if target is not None:
                    gaps[metric][kind] = {"model": target[1], "published": target[0], "gap": best[0] - target[0]}
        result.append({"label": column.label, "recipe": column.recipe, "dataset": column.dataset,
                       "settings": dict(column.settings), "models": models,
                       "references": {m: [asdict(r) for r in refs] for m, refs in chosen.items() if refs},
                       "titans": titans, "gaps": gaps, "runs": runs if len(members) == 1 else []})
    return result


def _source(ref: dict) -> tuple[str, str, str]:
    return ref["citation"], ref["where"], ref["note"]


def _table(group: Group, summary: list[dict]) -> str:
    cells = [(column, metric) for column in summary for metric in group.metrics]
    header = ["model", *(f"{column['label']} {metric}" for column, metric in cells)]
    rows = [header, ["---"] * len(header)]
    models = model_order({m for column in summary for m in column["models"]})
    rows += [[model, *(cell(column["models"].get(model, {}).get(metric)) for column, metric in cells)]
             for model in models]
    published = {(ref["model"], _source(ref)): None for column in summary
                 for refs in column["references"].values() for ref in refs}
    sources = list(dict.fromkeys(where for _, where in published))
    for model, where in published:
        row = [f"{model}, published [{sources.index(where) + 1}]"]
        for column, metric in cells:
            values = [r["value"] for r in column["references"].get(metric, [])
                      if r["model"] == model and _source(r) == where]
            row.append(f"{values[0]:.4f}" if values else "—")
        rows.append(row)
    for kind, title in (("titans", "gap: our best Titans − published Titans"),
                        ("baseline", "gap: our best Titans − best published baseline")):
        row = [title] + [f"{gap[kind]['gap']:+.4f} ({gap['model']} vs {gap[kind]['model']})"
                         if kind in (gap := column["gaps"].get(metric, {})) else "—" for column, metric in cells]
        if any(cell != "—" for cell in row[1:]):
            rows.append(row)
    notes = [f"[{number}] {citation}. From {where}." + (f" {note}" if note else "")
             for number, (citation, where, note) in enumerate(sources, 1)]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return table + "\n\n" + "".join(f"{note}\n\n" for note in notes)


def _file_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)) + ".png"


def _save(figure: Figure, path: Path) -> None:
    write_atomically_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def _bar_chart(group: Group, summary: list[dict], metric: str, path: Path) -> None:
    """Each model's mean ± std per column, the published figures as horizontal marks across their column."""
    models = model_order({m for column in summary for m in column["models"] if metric in column["models"][m]})
    words = [column["label"].split(" ") for column in summary]
    shared = [word for word in words[0] if all(word in other for other in words)]
    ticks = [("\n".join(w for w in label if w not in shared) or " ".join(label)).replace("@", "@\n") for label in words]
    widest = max(len(line) for tick in ticks for line in tick.splitlines())
    figure = Figure(figsize=(max(4.0, max(0.5 + 0.3 * len(models), 0.065 * widest) * len(summary)), 3.6))
    axes = figure.subplots()
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        stats = [column["models"].get(model, {}).get(metric) for column in summary]   # None: not run, no bar
        axes.bar([x - 0.4 + width * (index + 0.5) for x in range(len(summary))],
                 [st["mean"] if st else math.nan for st in stats], width,
                 yerr=[(st["std"] or 0.0) if st else math.nan for st in stats], capsize=2, label=model)
    styles: dict[str, tuple[str, str]] = {}   # a colour and a dash per published model, labelled once
    for x, column in enumerate(summary):
        for ref in column["references"].get(metric, []):
            name = f"{ref['model']} (published)"
            label = None if name in styles else name
            colour, dash = styles.setdefault(name, PUBLISHED_STYLES[len(styles) % len(PUBLISHED_STYLES)])
            axes.hlines(ref["value"], x - 0.45, x + 0.45, colors=colour, linestyles="-" if ref["titans"] else dash,
                        linewidth=2.0 if ref["titans"] else 1.5, label=label)
    axes.set_xticks(range(len(summary)), ticks, fontsize=7)
    axes.set_ylabel(metric)
    axes.set_title(f"{group.name}: {metric}" + (f" ({' '.join(shared)})" if shared else ""), fontsize=9)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def _learning_curves(group: Group, summary: list[dict], path: Path) -> bool:
    """Train loss against step, a panel per column, a line per model (its first seed); False if no run logged any."""
    summary = [column for column in summary if column["runs"]]
    if not summary:
        return False
    figure = Figure(figsize=(4.0 * min(len(summary), 3), 3.0 * ((len(summary) + 2) // 3)))
    panels = figure.subplots((len(summary) + 2) // 3, min(len(summary), 3), squeeze=False).flatten()
    drawn = False
    for axes, column in zip(panels, summary):
        for model in model_order({row(r) for r in column["runs"]}):
            run = min((r for r in column["runs"] if row(r) == model), key=lambda r: r["seed"])
            log = Path(run.get("run_dir", "")) / "metrics.jsonl"
            if not run.get("run_dir") or not log.is_file():
                continue
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            points = [(line["step"], line["loss"]) for line in lines if line.get("split") == "train" and "loss" in line]
            if points:
                axes.plot(*zip(*points), label=f"{model} (seed {run['seed']})", linewidth=1)
                drawn = True
        axes.set_title(column["label"], fontsize=8)
        axes.set_xlabel("step")
        axes.set_ylabel("train loss")
        if axes.lines:
            axes.legend(fontsize=7)
    for axes in panels[len(summary):]:
        axes.set_visible(False)
    if drawn:
        _save(figure, path)
    return drawn


def _length_heatmap(group: Group, summary: list[dict], path: Path) -> bool:
    """The S-NIAH table as a heatmap: a row per model (ours: the mean over seeds; then the published ones),
    a column per context length, a panel per column of the group and metric; False if no metric has lengths."""
    by_metric: dict[str, list[tuple[int, str]]] = {}
    for name in group.metrics:
        if match := AT_LENGTH.match(name):
            by_metric.setdefault(match["metric"], []).append((int(match["length"]), name))
    panels = [(column, metric, sorted(names)) for column in summary for metric, names in by_metric.items()
              if any(name in m for m in column["models"].values() for _, name in names)]
    if not panels:
        return False
    most_rows = max(len(column["models"]) + len({r["model"] for refs in column["references"].values() for r in refs})
                    for column, *_ in panels)
    most_lengths = max(len(names) for *_, names in panels)
    figure = Figure(figsize=((2.6 + 0.8 * most_lengths) * len(panels), 1.0 + 0.3 * most_rows))
    for axes, (column, metric, names) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        rows = [(model, [stats[name]["mean"] if name in (stats := column["models"][model]) else math.nan
                         for _, name in names]) for model in column["models"]]
        published = dict.fromkeys(r["model"] for _, name in names for r in column["references"].get(name, []))
        rows += [(f"{model} (published)", [next((r["value"] for r in column["references"].get(name, [])
                                                 if r["model"] == model), math.nan) for _, name in names])
                 for model in published]
        image = axes.imshow([values for _, values in rows], vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        axes.set_xticks(range(len(names)), [f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)
                                            for n, _ in names])
        axes.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
        for y, (_, values) in enumerate(rows):
            for x, value in enumerate(values):
                if not math.isnan(value):
                    axes.text(x, y, f"{value:.2f}", ha="center", va="center", fontsize=7)
        axes.set(xlabel="context length (tokens)")
        axes.set_title(f"{column['label']}: {metric}", fontsize=8)
    figure.colorbar(image, ax=list(figure.axes), label="accuracy")
    _save(figure, path)
    return True


def _copy_examples(group: Group, summary: list[dict], folder: Path) -> list[tuple[str, str]]:
    """Per dataset of the group, one run's example figure (the best Titans variant's, else the best model's, at
    its lowest seed, in the dataset's first column that has one) copied into ``folder``; (caption, file name)."""
    copied, done = [], set()
    for column in summary:
        if column["dataset"] in done or not column["runs"]:
            continue
        metric = group.metrics[0]
        ranked = [(stats[metric]["mean"], model) for model, stats in column["models"].items() if metric in stats]
        best = better(metric, [pair for pair in ranked if pair[1] in column["titans"]]) or better(metric, ranked)
        runs = sorted((r for r in column["runs"] if best and row(r) == best[1]), key=lambda r: r["seed"])
        source = Path(runs[0].get("run_dir", "")) / EXAMPLE_FIGURE if runs else None
        if source is None or not source.is_file():
            continue
        name = _file_name(group.name, "example", column["label"])
        copy_atomically(source, folder / name)
        copied.append((f"{column['label']}: {best[1]}, seed {runs[0]['seed']}", name))
        done.add(column["dataset"])
    return copied


def write_report(suite: Suite, records: list[dict], folder: Path,
                 references: list[Reference] | None = None) -> str:
    """Write ``report.md``, ``results.json`` and ``figures/*.png`` for the suite's records into ``folder``.

    ``references`` default to the packaged published figures. Returns the report's markdown.
    """
    references = load_references() if references is None else references
    parts, results = [f"# {suite.name}\n"], {"suite": suite.name, "groups": {}}
    for group in suite.groups:
        summary = _summarise(group, [r for r in records if not is_failed(r)], references)
        runs = stability([r for r in records if r.get("group", group.name) == group.name])
        parts += [f"## {group.name}\n", _table(group, summary).rstrip() + "\n",
                  ("Test metrics (`val_` ones: the selected checkpoint's validation metrics), mean ± sample "
                   "standard deviation over the n seeds run; published figures in our units. A gap is the mean of "
                   "our best Titans row (any model that runs lmm, mac, mag or mal) less the published figure.\n"),
                  stability_note(runs)]
        checked = evaluate_targets(group.targets, summary, len(suite.seeds))
        if checked:
            parts.append(targets_markdown(checked))
        for metric in group.metrics:
            if not AT_LENGTH.match(metric) and any(metric in models for column in summary
                                                   for models in column["models"].values()):
                name = _file_name(group.name, metric)
                _bar_chart(group, summary, metric, folder / "figures" / name)
                parts.append(f"![{group.name}: {metric}](figures/{name})\n")
        name = _file_name(group.name, "lengths")
        if _length_heatmap(group, summary, folder / "figures" / name):
            parts.append(f"![{group.name}: accuracy by context length](figures/{name})\n")
        for caption, name in _copy_examples(group, summary, folder / "figures"):
            parts.append(f"![{group.name} example: {caption}](figures/{name})\n")
        name = _file_name(group.name, "curves")
        if _learning_curves(group, summary, folder / "figures" / name):
            parts.append(f"![{group.name}: learning curves](figures/{name})\n")
        results["groups"][group.name] = {"metrics": group.metrics, "stability": runs, "targets": checked, "columns": [
            {key: value for key, value in column.items() if key != "runs"} for column in summary]}
    text = "\n".join(parts)
    write_atomically(folder / "report.md", text)
    write_atomically(folder / "results.json", json.dumps(results, indent=2) + "\n")
    return text


def report_from_folder(suite: Suite, folder: Path, references: list[Reference] | None = None) -> str:
    """Rebuild the report of a finished suite from ``folder/records.jsonl`` (no training)."""
    path = folder / "records.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: run the suite first (titans-seq bench)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return write_report(suite, records, folder, references)
