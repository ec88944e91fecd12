"""Quality targets: what a suite claims of its rows, checked on its report and stated with the margin.

A suite file's group (or a one-group suite's top level) may list targets::

    targets:
      - {metric: val_bits_per_byte, model: mac, against: transformer}     # MAC at or below the transformer
      - {metric: mcc, against: cnn}                                       # the best Titans row above the CNN
      - {metric: mcc, against: "published:DNABERT-2", needed: 2}         # at DNABERT-2's figure on two columns
      - {metric: accuracy@16384, against: 0.95, log: what-limits-the-reach}
      - {metric: accuracy@16384, model: swa, against: 0.2, no_better: true}   # a control stays near chance

Each is checked in every column of the group where its ``against`` has a figure: another row's mean
in that column, a published figure of that column (``published:<model>``, from the references), or
a number. The row held to it (``model``; ``titans``, the default, is the best Titans row of the
column) meets it when its mean is at least as good, in the metric's direction; with ``no_better``,
when it is at most as good (a control, such as a baseline that must stay near chance). A target is
met when ``needed`` columns meet it (0: every column). ``log`` names the section of the experiment
log (its anchor in ``docs/experiments.md``) that says what was tried on the way to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from titans_seq.errors import UserError

from .summaries import better, cell, lower_is_better

BEST_TITANS = "titans"
PUBLISHED = "published:"
EXPERIMENT_LOG = "experiments.md"     # under docs/


@dataclass
class Target:
    metric: str                 # one of the group's metrics
    against: str                # a row of the suite, published:<model> (that figure in each column), or a number
    model: str = BEST_TITANS    # the row held to it; titans: the best Titans row of each column
    columns: str = ""           # only the columns whose label contains this; "": every column
    needed: int = 0             # columns that must meet it; 0: every column where it applies
    log: str = ""               # the experiment log's section on it: an anchor of docs/experiments.md
    no_better: bool = False     # a control: the row must be no better than against

    def at_most(self) -> bool:
        """Whether the row is held at or below ``against`` (≤) rather than at or above it."""
        return lower_is_better(self.metric) != self.no_better

    def describe(self) -> str:
        """``mac val_bits_per_byte ≤ transformer``, ``best Titans mcc ≥ DNABERT-2 (published)``."""
        model = "best Titans" if self.model == BEST_TITANS else self.model
        against = (f"{self.against.removeprefix(PUBLISHED)} (published)" if self.against.startswith(PUBLISHED)
                   else self.against)
        where = f" in columns with {self.columns}" if self.columns else ""
        return f"{model} {self.metric} {'≤' if self.at_most() else '≥'} {against}{where}"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def check_targets(targets: list[Target], metrics: list[str], rows: set[str], where: str) -> None:
    """Raise a UserError naming the first target that names a metric or row the group does not have."""
    for target in targets:
        against_known = (target.against in rows or target.against.startswith(PUBLISHED)
                         or _number(target.against) is not None)
        problems = [(target.metric not in metrics,
                     f"metric {target.metric} is not among the group's ({', '.join(metrics)})"),
                    (target.model != BEST_TITANS and target.model not in rows,
                     f"model {target.model} is not a row ({', '.join(sorted(rows))}) or {BEST_TITANS}"),
                    (not against_known, f"against {target.against} is not a row, published:<model> or a number"),
                    (target.needed < 0, f"needed={target.needed} is negative")]
        problem = next((message for found, message in problems if found), None)
        if problem:
            raise UserError(f"{where}: target {target.describe()}: {problem}")


def _threshold(target: Target, column: dict) -> tuple[float, int | None] | None:
    """What the column's row is held to, and over how many seeds (None: a published figure or a number)."""
    if target.against.startswith(PUBLISHED):
        name = target.against.removeprefix(PUBLISHED)
        figures = [ref["value"] for ref in column["references"].get(target.metric, []) if ref["model"] == name]
        return (figures[0], None) if figures else None
    if (number := _number(target.against)) is not None:
        return number, None
    stats = column["models"].get(target.against, {}).get(target.metric)
    return (stats["mean"], stats["n"]) if stats else None


def _ours(target: Target, column: dict) -> tuple[str, dict] | None:
    """The row held to the target in this column, and its summary of the metric (None: not run)."""
    models = column["models"]
    if target.model != BEST_TITANS:
        stats = models.get(target.model, {}).get(target.metric)
        return (target.model, stats) if stats else None
    best = better(target.metric, [(models[m][target.metric]["mean"], m) for m in column["titans"]
                                  if target.metric in models.get(m, {})])
    return (best[1], models[best[1]][target.metric]) if best else None


def evaluate_targets(targets: list[Target], columns: list[dict], seeds: int) -> list[dict]:
    """Each target checked on a group's summary (``results.json``'s columns): per column where it applies, the
    row's summary, the figure it is held to, the margin (positive: better than it) and whether it is met."""
    results = []
    for target in targets:
        checked = []
        for column in columns:
            if target.columns not in column["label"] or (threshold := _threshold(target, column)) is None:
                continue
            value, against_n = threshold
            ours = _ours(target, column)
            margin = None if ours is None else (value - ours[1]["mean"]) * (1 if target.at_most() else -1)
            checked.append({"column": column["label"], "model": ours[0] if ours else None,
                            "ours": ours[1] if ours else None, "against": value, "against_n": against_n,
                            "margin": margin, "met": margin is not None and margin >= 0})
        needed = target.needed or len(checked)
        fewest = min([c["ours"]["n"] for c in checked if c["ours"]] + [c["against_n"] for c in checked
                                                                        if c["against_n"]], default=0)
        results.append({"target": target.describe(), "metric": target.metric, "needed": needed, "log": target.log,
                        "met": bool(checked) and sum(c["met"] for c in checked) >= needed,
                        "seeds": fewest, "suite_seeds": seeds, "columns": checked})
    return results


def margin(check: dict[str, Any]) -> str:
    """``+0.0236 (met)``, ``-0.0076 (missed)``, or ``not run``."""
    if check["margin"] is None:
        return "not run"
    return f"{check['margin']:+.4f} ({'met' if check['met'] else 'missed'})"


def verdict(result: dict) -> str:
    """``met (1 of 4 columns, 2 needed)``, with how many seeds where fewer than the suite's, or why it is open."""
    if not result["columns"]:
        return "no column has its figure yet"
    if all(check["ours"] is None for check in result["columns"]):
        return "not run: no seed of the row has finished"
    met = sum(check["met"] for check in result["columns"])
    provisional = (f"; n={result['seeds']} of the suite's {result['suite_seeds']} seeds"
                   if result["seeds"] < result["suite_seeds"] else "")
    return (f"{'met' if result['met'] else 'missed'} ({met} of {len(result['columns'])} columns, "
            f"{result['needed']} needed{provisional})")


def _tried(result: dict) -> str:
    """Where the experiment log says what was tried on the way to the target, or ""."""
    return f" What was tried: `docs/{EXPERIMENT_LOG}#{result['log']}`." if result["log"] else ""


def targets_markdown(results: list[dict]) -> str:
    """A table of every (target, column), then one verdict line per target."""
    if not results:
        return ""
    rows = ["| target | column | ours | against | margin |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        for check in result["columns"]:
            ours = f"{cell(check['ours'])}, {check['model']}" if check["ours"] else "—"
            against = (f"{check['against']:.4f}" if check["against_n"] is None
                       else f"{check['against']:.4f} (n={check['against_n']})")
            rows.append(f"| {result['target']} | {check['column']} | {ours} | {against} | {margin(check)} |")
    lines = [f"- {result['target']}: {verdict(result)}.{_tried(result)}" for result in results]
    return ("**Targets.** A margin is how far the row clears the figure it is held to, in the direction the "
            "target states (≥ or ≤); negative: how far it falls short.\n\n" + "\n".join(rows) + "\n\n"
            + "\n".join(lines) + "\n")
