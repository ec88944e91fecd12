"""Quality targets: declared in a suite file, checked on the report's summary, stated with their margins."""
import json
from pathlib import Path

import pytest

from titans_seq.engine.report import Reference, write_report
from titans_seq.engine.suite import Group, Suite, load_suite
from titans_seq.engine.summaries import summary
from titans_seq.engine.targets import Target, evaluate_targets, verdict
from titans_seq.errors import UserError


def column(label: str, models: dict[str, list[float]], references: dict[str, float] | None = None,
           metric: str = "mcc", titans: tuple[str, ...] = ("lmm", "mac")) -> dict:
    """A column of ``results.json``: each model's summary of ``metric``, its published figures, its Titans rows."""
    return {"label": label, "models": {model: {metric: summary(values)} for model, values in models.items()},
            "references": {metric: [{"model": name, "value": value} for name, value in (references or {}).items()]},
            "titans": [model for model in models if model in titans]}


GUE = [column("dna_mac@gue/a", {"cnn": [0.60, 0.62], "lmm": [0.63, 0.65], "mac": [0.58, 0.60]}, {"DNABERT-2": 0.70}),
       column("dna_mac@gue/b", {"cnn": [0.55, 0.57], "lmm": [0.50, 0.52], "mac": [0.53, 0.53]}, {"DNABERT-2": 0.50}),
       column("dna_mac@gue/c", {"cnn": [0.40, 0.40]}, {"DNABERT-2": 0.45})]     # no Titans row has run here


def test_the_best_titans_row_against_another_row_in_every_column():
    [result] = evaluate_targets([Target(metric="mcc", against="cnn")], GUE, seeds=3)
    assert result["target"] == "best Titans mcc ≥ cnn"
    assert [(c["column"], c["model"], c["met"]) for c in result["columns"]] == [
        ("dna_mac@gue/a", "lmm", True), ("dna_mac@gue/b", "mac", False), ("dna_mac@gue/c", None, False)]
    assert result["columns"][0]["margin"] == pytest.approx(0.03)      # 0.64 - 0.61
    assert result["columns"][1]["margin"] == pytest.approx(-0.03)     # 0.53 - 0.56
    assert result["columns"][2]["margin"] is None                     # not run: not met
    assert (result["needed"], result["met"], result["seeds"], result["suite_seeds"]) == (3, False, 2, 3)


def test_a_published_figure_on_enough_columns():
    [result] = evaluate_targets([Target(metric="mcc", against="published:DNABERT-2", needed=1)], GUE, seeds=2)
    assert result["target"] == "best Titans mcc ≥ DNABERT-2 (published)"
    assert [(c["against"], c["against_n"], c["met"]) for c in result["columns"]] == [
        (0.70, None, False), (0.50, None, True), (0.45, None, False)]
    assert result["met"] and result["needed"] == 1
    [unknown] = evaluate_targets([Target(metric="mcc", against="published:HyenaDNA")], GUE, seeds=2)
    assert unknown["columns"] == [] and not unknown["met"]     # no column has that figure
    [unrun] = evaluate_targets([Target(metric="mcc", against="published:DNABERT-2")], GUE[2:], seeds=2)
    assert not unrun["met"] and verdict(unrun) == "not run: no seed of the row has finished"   # not "missed"


def test_a_named_row_at_or_below_another_where_lower_is_better():
    lm = [column("lm_tiny", {"transformer": [2.19, 2.21], "mac": [2.20, 2.22], "mag": [2.17, 2.19]},
                 metric="val_bits_per_byte", titans=("mac", "mag"))]
    mac, mag = evaluate_targets([Target(metric="val_bits_per_byte", model=m, against="transformer")
                                 for m in ("mac", "mag")], lm, seeds=2)
    assert mac["target"] == "mac val_bits_per_byte ≤ transformer"
    assert (mac["met"], mac["columns"][0]["margin"], mac["columns"][0]["against_n"]) == (
        False, pytest.approx(-0.01), 2)
    assert (mag["met"], mag["columns"][0]["margin"]) == (True, pytest.approx(0.02))


def test_a_number_and_a_column_filter():
    passkey = [column(f"lm_passkey@{n}", {"mac": [v, v]}, metric="accuracy@16384") for n, v in ((1, 0.96), (2, 0.5))]
    [result] = evaluate_targets([Target(metric="accuracy@16384", against="0.95", columns="@1")], passkey, seeds=2)
    assert [(c["column"], c["against"], c["met"]) for c in result["columns"]] == [("lm_passkey@1", 0.95, True)]
    assert result["target"] == "best Titans accuracy@16384 ≥ 0.95 in columns with @1" and result["met"]


def test_a_control_is_held_at_or_below_its_figure():
    """``no_better`` turns the comparison round: a baseline that must stay near chance, whatever the direction."""
    passkey = [column("lm_passkey", {"swa": [0.1, 0.2], "mag": [0.9, 1.0]}, metric="accuracy@16384", titans=("mag",))]
    swa, mag = evaluate_targets([Target(metric="accuracy@16384", model=m, against="0.2", no_better=True)
                                 for m in ("swa", "mag")], passkey, seeds=2)
    assert swa["target"] == "swa accuracy@16384 ≤ 0.2"
    assert (swa["met"], swa["columns"][0]["margin"]) == (True, pytest.approx(0.05))      # 0.2 - 0.15
    assert (mag["met"], mag["columns"][0]["margin"]) == (False, pytest.approx(-0.75))    # 0.2 - 0.95
    lm = [column("lm_tiny", {"transformer": [2.19, 2.21], "swa": [2.15, 2.15]}, metric="val_bits_per_byte")]
    [control] = evaluate_targets([Target(metric="val_bits_per_byte", model="swa", against="transformer",
                                         no_better=True)], lm, seeds=2)
    assert control["target"] == "swa val_bits_per_byte ≥ transformer"          # lower is better: turned round
    assert (control["met"], control["columns"][0]["margin"]) == (False, pytest.approx(-0.05))


def test_the_report_states_each_target_and_results_json_holds_it(tmp_path):
    suite = Suite(name="mini", variants=["cnn", "lmm"], seeds=[0, 1], groups=[Group(
        name="gue", recipes=["dna_mac"], datasets=["gue/prom_core_notata"], metrics=["mcc"],
        targets=[Target(metric="mcc", against="cnn", log="the-cnn-baseline"),
                 Target(metric="mcc", against="published:DNABERT-2")])])
    records = [{"task": "gue", "dataset": "gue/prom_core_notata", "split": "test", "variant": model, "model": model,
                "parameters": 1000, "metrics": {"mcc": value}, "val_metrics": {}, "seed": 0, "group": "gue",
                "recipe": "dna_mac@gue/prom_core_notata"} for model, value in (("cnn", 0.6), ("lmm", 0.65))]
    dnabert = Reference("gue/prom_core_notata", "mcc", "DNABERT-2", 0.6804, 68.04, (), "A paper", "Table 1", "",
                        False)
    text = write_report(suite, records, tmp_path, [dnabert])
    assert ("| best Titans mcc ≥ cnn | dna_mac@gue/prom_core_notata | 0.6500 (n=1), lmm | 0.6000 (n=1) "
            "| +0.0500 (met) |") in text
    assert ("| best Titans mcc ≥ DNABERT-2 (published) | dna_mac@gue/prom_core_notata | 0.6500 (n=1), lmm "
            "| 0.6804 | -0.0304 (missed) |") in text
    assert ("- best Titans mcc ≥ cnn: met (1 of 1 columns, 1 needed; n=1 of the suite's 2 seeds). What was tried: "
            "`docs/experiments.md#the-cnn-baseline`.\n") in text
    assert "- best Titans mcc ≥ DNABERT-2 (published): missed (0 of 1 columns, 1 needed; n=1 of the suite's 2 " \
        "seeds).\n" in text                                            # no log: no pointer
    targets = json.loads((tmp_path / "results.json").read_text())["groups"]["gue"]["targets"]
    assert [(t["target"], t["met"], t["log"]) for t in targets] == [
        ("best Titans mcc ≥ cnn", True, "the-cnn-baseline"), ("best Titans mcc ≥ DNABERT-2 (published)", False, "")]


SUITE = """
name: mini
variants: [cnn, lmm]
models: {cnn: [task.architecture=cnn]}
recipes: [dna_mac]
datasets: [gue/prom_core_notata]
metrics: [mcc]
targets:
  - {metric: mcc, against: cnn}
  - {metric: mcc, against: "published:DNABERT-2", needed: 2}
  - {metric: mcc, against: 0.5, log: the-cnn-baseline}
"""


def test_a_suite_file_declares_targets(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(SUITE)
    targets = load_suite(path).groups[0].targets
    assert [(t.model, t.against, t.needed, t.log) for t in targets] == [
        ("titans", "cnn", 0, ""), ("titans", "published:DNABERT-2", 2, ""), ("titans", "0.5", 0, "the-cnn-baseline")]


@pytest.mark.parametrize("target, message", [
    ("{metric: mse, against: cnn}", "metric mse is not among the group's (mcc)"),
    ("{metric: mcc, model: mag, against: cnn}", "model mag is not a row (cnn, lmm) or titans"),
    ("{metric: mcc, against: transformer}", "against transformer is not a row, published:<model> or a number"),
    ("{metric: mcc, against: cnn, needed: -1}", "needed=-1 is negative")])
def test_a_target_the_group_cannot_check_is_one_clear_error(tmp_path, target, message):
    path = tmp_path / "mini.yaml"
    path.write_text(SUITE.split("targets:")[0] + f"targets:\n  - {target}\n")
    with pytest.raises(UserError, match="group dna_mac: target .*: " + message.replace("(", r"\(").replace(")", r"\)")):
        load_suite(path)


def test_every_packaged_suites_targets_check():
    """The targets the project holds itself to (issue 18's) load with the suites that state them."""
    for name in ("lm_tiny_512", "gue_pretrained", "ett_512", "passkey_decay", "passkey_cpu", "passkey_carry",
                 "passkey_answer", "passkey_mac"):
        targets = [target for group in load_suite(Path(name)).groups for target in group.targets]
        assert targets and all(target.log for target in targets), name     # each says where its story is
