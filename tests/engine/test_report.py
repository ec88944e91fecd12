"""The suite report: tables of mean ± std, published rows and gaps, results.json, figures, the packaged references."""
import json
from pathlib import Path

import pytest

from titans_seq.data import is_dataset_key
from titans_seq.engine.report import load_references, model_order, report_from_folder, write_report
from titans_seq.engine.suite import Group, Suite
from titans_seq.engine.summaries import lower_is_better
from titans_seq.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# invented figures for the test, not published ones
TEST_REFERENCES = """
sources:
  paper_titans: {citation: "Test Titans paper", where: "Table 9", scale: 100, titans: true}
  paper_dna: {citation: "Test Titans paper", where: "Table 1", scale: 100, note: "MCC in %."}   # a second table
  paper_ts: {citation: "Test forecasting paper", where: "Table 2"}
  paper_titans_ts: {citation: "Test Titans paper", where: "Table 3", titans: true}
figures:
  gue/prom_core_notata:
    mcc:
      - {model: Titans (MAC), source: paper_titans, value: 70.0}
      - {model: Titans (LMM), source: paper_titans, value: 72.0}
      - {model: DNABERT-2, source: paper_dna, value: 68.04}
  ett/ETTm1:
    mse:
      - {model: DLinear, source: paper_ts, by: task.horizon, values: {96: 0.30, 192: 0.35}}
      - {model: PatchTST, source: paper_ts, settings: {task.horizon: 96}, value: 0.29}
      - {model: Titans (LMM), source: paper_titans_ts, settings: {task.horizon: average}, value: 0.40}
"""


def suite() -> Suite:
    return Suite(name="mini", variants=["swa", "mag"], seeds=[0, 1], groups=[
        Group(name="gue", recipes=["dna_mac"], datasets=["gue/prom_core_notata"], metrics=["mcc"]),
        Group(name="forecasting", recipes=["forecast"], datasets=["ett/ETTm1"], axes={"task.horizon": [96, 192]},
              metrics=["mse"]),
        Group(name="lm", recipes=["lm_tiny"], datasets=["text/tinyshakespeare"], metrics=["bits_per_byte"])])


def record(group: str, label: str, model: str, seed: int, metrics: dict, run_dir: Path | None,
           variant: str | None = None) -> dict:
    """As bench writes them: the trainer's record (``variant``: the task's model label, the backbone variant
    unless the task swaps the backbone out, as dlinear does) and the suite's row (``model``)."""
    extra = {"run_dir": str(run_dir)} if run_dir else {}
    return {"task": group, "dataset": label, "split": "test", "variant": variant or model,
            "parameters": 1000, "metrics": metrics, "val_metrics": {}, "seed": seed, "group": group, "recipe": label,
            "model": model, **extra}


def fake_run(root: Path, name: str, losses: list[float]) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    lines = [{"step": 10 * (i + 1), "split": "train", "loss": loss, "lr": 1e-3} for i, loss in enumerate(losses)]
    lines.append({"step": 10 * len(losses), "split": "val", "mse": 0.5})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


@pytest.fixture
def records(tmp_path) -> list[dict]:
    gue, h96, h192 = ("dna_mac@gue/prom_core_notata", "forecast@ett/ETTm1 task.horizon=96",
                      "forecast@ett/ETTm1 task.horizon=192")
    values = {("gue", gue, "mcc"): {"swa": [0.50, 0.54], "mag": [0.60, 0.64]},
              ("forecasting", h96, "mse"): {"swa": [0.40, 0.42], "mag": [0.36, 0.38], "dlinear": [0.31, 0.33]},
              ("forecasting", h192, "mse"): {"swa": [0.45, 0.47], "mag": [0.41, 0.43], "dlinear": [0.36, 0.38]},
              ("lm", "lm_tiny@text/tinyshakespeare", "bits_per_byte"): {"swa": [1.5, 1.6], "mag": [1.4, 1.5]}}
    made = []
    for (group, label, metric), by_model in values.items():
        for model, seeds in by_model.items():
            for seed, value in enumerate(seeds):
                run_dir = (fake_run(tmp_path / "runs", f"{label}/{model}/seed-{seed}", [2.0, 1.5, 1.2 - seed / 10])
                           if group != "lm" else None)   # the lm runs left no metrics.jsonl
                made.append(record(group, label, model, seed, {metric: value, "loss": 1.0}, run_dir))
    return made


@pytest.fixture
def references(tmp_path):
    path = tmp_path / "references.yaml"
    path.write_text(TEST_REFERENCES)
    return load_references(path)


def section(text: str, title: str) -> list[str]:
    """The table lines of one group's section."""
    body = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("|")]


def test_tables_hold_mean_std_published_rows_and_gaps(tmp_path, records, references):
    text = write_report(suite(), records, tmp_path / "out", references)
    assert text == (tmp_path / "out" / "report.md").read_text()
    assert section(text, "gue") == [
        "| model | dna_mac@gue/prom_core_notata mcc |",
        "| --- | --- |",
        "| swa | 0.5200 ± 0.0283 (n=2) |",
        "| mag | 0.6200 ± 0.0283 (n=2) |",
        "| Titans (MAC), published [1] | 0.7000 |",
        "| Titans (LMM), published [1] | 0.7200 |",
        "| DNABERT-2, published [2] | 0.6804 |",
        "| gap: our best Titans − published Titans | -0.1000 (mag vs Titans (LMM)) |",
        "| gap: our best Titans − best published baseline | -0.0604 (mag vs DNABERT-2) |"]
    assert "[1] Test Titans paper. From Table 9." in text
    assert "[2] Test Titans paper. From Table 1. MCC in %." in text
    assert section(text, "forecasting") == [   # the average over horizons: each seed's mean, then over seeds
        ("| model | forecast@ett/ETTm1 task.horizon=96 mse | forecast@ett/ETTm1 task.horizon=192 mse "
         "| forecast@ett/ETTm1 task.horizon=average mse |"),
        "| --- | --- | --- | --- |",
        "| swa | 0.4100 ± 0.0141 (n=2) | 0.4600 ± 0.0141 (n=2) | 0.4350 ± 0.0141 (n=2) |",
        "| dlinear | 0.3200 ± 0.0141 (n=2) | 0.3700 ± 0.0141 (n=2) | 0.3450 ± 0.0141 (n=2) |",
        "| mag | 0.3700 ± 0.0141 (n=2) | 0.4200 ± 0.0141 (n=2) | 0.3950 ± 0.0141 (n=2) |",
        "| DLinear, published [1] | 0.3000 | 0.3500 | — |",
        "| PatchTST, published [1] | 0.2900 | — | — |",
        "| Titans (LMM), published [2] | — | — | 0.4000 |",
        "| gap: our best Titans − published Titans | — | — | -0.0050 (mag vs Titans (LMM)) |",
        "| gap: our best Titans − best published baseline | +0.0800 (mag vs PatchTST) | +0.0700 (mag vs DLinear) | — |"]
    assert "[2] Test Titans paper. From Table 3." in text
    assert section(text, "lm") == [
        "| model | lm_tiny@text/tinyshakespeare bits_per_byte |",
        "| --- | --- |",
        "| swa | 1.5500 ± 0.0707 (n=2) |",
        "| mag | 1.4500 ± 0.0707 (n=2) |"]


def test_an_average_over_horizons_takes_only_seeds_run_at_every_horizon(tmp_path, records, references):
    records = [r for r in records if not (r["model"] == "dlinear" and r["seed"] == 1 and "192" in r["recipe"])]
    rows = section(write_report(suite(), records, tmp_path, references), "forecasting")
    assert rows[3] == "| dlinear | 0.3200 ± 0.0141 (n=2) | 0.3600 (n=1) | 0.3350 (n=1) |"


def test_results_json_is_machine_readable(tmp_path, records, references):
    write_report(suite(), records, tmp_path, references)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["suite"] == "mini" and list(results["groups"]) == ["gue", "forecasting", "lm"]
    column = results["groups"]["forecasting"]["columns"][1]
    assert (column["label"], column["dataset"], column["settings"]) == (
        "forecast@ett/ETTm1 task.horizon=192", "ett/ETTm1", {"task.horizon": 192})
    assert list(column["models"]) == ["swa", "dlinear", "mag"]
    mag = column["models"]["mag"]["mse"]
    assert mag["values"] == [0.41, 0.43] and mag["n"] == 2
    assert mag["mean"] == pytest.approx(0.42) and mag["std"] == pytest.approx(0.0141421, abs=1e-6)
    assert [r["value"] for r in column["references"]["mse"]] == [0.35]
    assert column["gaps"]["mse"]["baseline"]["gap"] == pytest.approx(0.07)
    gue = results["groups"]["gue"]["columns"][0]
    assert gue["references"]["mcc"][0] | {"settings": None} == {
        "dataset": "gue/prom_core_notata", "metric": "mcc", "model": "Titans (MAC)", "value": 0.7, "published": 70.0,
        "settings": None, "citation": "Test Titans paper", "where": "Table 9", "note": "", "titans": True}
    assert gue["gaps"]["mcc"]["titans"] == {"model": "Titans (LMM)", "published": 0.72, "gap": pytest.approx(-0.1)}


def test_figures_are_valid_pngs(tmp_path, records, references):
    text = write_report(suite(), records, tmp_path, references)
    figures = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert figures == ["forecasting-curves.png", "forecasting-mse.png", "gue-curves.png", "gue-mcc.png",
                       "lm-bits_per_byte.png"]   # the lm runs logged no metrics.jsonl: no curves
    for name in figures:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        assert f"(figures/{name})" in text


def test_report_rebuilds_from_a_suite_folder(tmp_path, records, references):
    with pytest.raises(UserError, match="records.jsonl not found"):
        report_from_folder(suite(), tmp_path, references)
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert report_from_folder(suite(), tmp_path, references) == write_report(suite(), records, tmp_path / "b",
                                                                             references)


PASSKEY_REFERENCES = """
sources:
  paper_niah: {citation: "Test Titans paper", where: "Table 2", scale: 100, titans: true}
figures:
  synthetic-passkey:
    accuracy:
      - {model: Titans (MAC), source: paper_niah, at: {1024: 99.0, 4096: 90.0}}
"""


def test_metrics_at_lengths_get_published_figures_a_heatmap_and_examples(tmp_path):
    path = tmp_path / "references.yaml"
    path.write_text(PASSKEY_REFERENCES)
    references = load_references(path)
    assert [(r.metric, r.value) for r in references] == [("accuracy@1024", 0.99), ("accuracy@4096", 0.9)]
    metrics = ["accuracy", "accuracy@1024", "accuracy@4096"]
    mini = Suite(name="mini", variants=["swa", "mac"], seeds=[0, 1],
                 groups=[Group(name="passkey", recipes=["lm_passkey"], metrics=metrics)])
    records = []
    for model, at_4k in (("swa", [0.0, 0.25]), ("mac", [0.5, 0.75])):
        for seed in (0, 1):
            run_dir = fake_run(tmp_path / "runs", f"{model}/seed-{seed}", [2.0, 1.0])
            (run_dir / "example.png").write_bytes(PNG_SIGNATURE + f"{model} {seed}".encode())
            made = record("passkey", "lm_passkey", model, seed,
                          {"accuracy": 1.0, "accuracy@1024": 1.0, "accuracy@4096": at_4k[seed]}, run_dir)
            records.append(made | {"dataset": "synthetic-passkey"})   # the task's own data: matched by name
    text = write_report(mini, records, tmp_path / "out", references)
    assert section(text, "passkey") == [
        "| model | lm_passkey accuracy | lm_passkey accuracy@1024 | lm_passkey accuracy@4096 |",
        "| --- | --- | --- | --- |",
        "| swa | 1.0000 ± 0.0000 (n=2) | 1.0000 ± 0.0000 (n=2) | 0.1250 ± 0.1768 (n=2) |",
        "| mac | 1.0000 ± 0.0000 (n=2) | 1.0000 ± 0.0000 (n=2) | 0.6250 ± 0.1768 (n=2) |",
        "| Titans (MAC), published [1] | — | 0.9900 | 0.9000 |",
        "| gap: our best Titans − published Titans | — | +0.0100 (mac vs Titans (MAC)) | -0.2750 (mac vs Titans (MAC)) |"]
    figures = tmp_path / "out" / "figures"
    # no bar charts for the metrics at lengths: the heatmap shows them
    assert sorted(p.name for p in figures.iterdir()) == [
        "passkey-accuracy.png", "passkey-curves.png", "passkey-example-lm_passkey.png", "passkey-lengths.png"]
    assert (figures / "passkey-lengths.png").read_bytes().startswith(PNG_SIGNATURE)
    # the example: the best Titans variant's (mac), at its lowest seed
    assert (figures / "passkey-example-lm_passkey.png").read_bytes() == PNG_SIGNATURE + b"mac 0"
    assert "![passkey example: lm_passkey: mac, seed 0](figures/passkey-example-lm_passkey.png)" in text


def test_model_order_puts_baselines_first():
    assert model_order({"mal", "cnn", "lmm", "swa", "dlinear", "transformer", "mac", "mag"}) == [
        "transformer", "swa", "cnn", "dlinear", "lmm", "mac", "mag", "mal"]


def test_packaged_references_name_registry_keys_and_convert_scales():
    references = load_references()
    # registry keys, or the name a task records for its own generated data
    assert references and all(is_dataset_key(r.dataset) or r.dataset == "synthetic-passkey" for r in references)
    assert all(r.citation and r.where for r in references)
    cnn = [r for r in references if r.dataset == "genomic_benchmarks/human_nontata_promoters" and r.model == "CNN"]
    assert [(r.metric, r.published, r.value) for r in cnn] == [("accuracy", 84.6, pytest.approx(0.846))]
    ettm1 = {(r.model, dict(r.settings)["task.horizon"]): (r.value, r.titans) for r in references
             if r.dataset == "ett/ETTm1" and r.metric == "mse"}
    assert ettm1[("Titans (neural memory)", "average")] == (0.358, True)
    assert ettm1[("DLinear", "average")] == (0.403, False)
    assert sorted(h for model, h in ettm1 if model == "DLinear") == ["192", "336", "720", "96", "average"]


def test_a_suites_own_row_that_runs_a_titans_variant_is_a_titans_row(tmp_path):
    """A suite's model row (``mag-init``: MAG with an option) competes for "our best Titans", and a
    row whose backbone is swapped out (dlinear) does not."""
    path = tmp_path / "references.yaml"
    path.write_text(PASSKEY_REFERENCES)
    mini = Suite(name="mini", variants=["dlinear", "mag", "mag-init"], seeds=[0],
                 groups=[Group(name="passkey", recipes=["lm_passkey"], metrics=["accuracy@4096"])])
    records = [record("passkey", "lm_passkey", model, 0, {"accuracy@4096": value}, None, variant) | {
        "dataset": "synthetic-passkey"} for model, variant, value in (
        ("dlinear", "dlinear", 0.95), ("mag", "mag", 0.4), ("mag-init", "mag", 0.7))]
    rows = section(write_report(mini, records, tmp_path / "out", load_references(path)), "passkey")
    assert rows[-1] == "| gap: our best Titans − published Titans | -0.2000 (mag-init vs Titans (MAC)) |"


@pytest.mark.parametrize("metric, lower", [("bits_per_byte", True), ("val_bits_per_byte", True), ("val_mse", True),
                                           ("mse@720", True), ("mcc", False), ("val_mcc", False),
                                           ("accuracy@16384", False)])
def test_a_validation_or_length_metric_keeps_its_metrics_direction(metric, lower):
    assert lower_is_better(metric) is lower


def test_the_best_titans_row_of_a_validation_loss_is_the_lowest(tmp_path):
    """A ``val_`` metric where lower is better: its gap, and so the example figure, follow the lower row."""
    mini = Suite(name="mini", variants=["mac", "mag"], seeds=[0],
                 groups=[Group(name="lm", recipes=["lm_tiny"], metrics=["val_bits_per_byte"])])
    records = [record("lm", "lm_tiny", model, 0, {}, None) | {"val_metrics": {"bits_per_byte": value}}
               for model, value in (("mac", 2.20), ("mag", 2.18))]
    write_report(mini, records, tmp_path, references=[])
    gaps = json.loads((tmp_path / "results.json").read_text())["groups"]["lm"]["columns"][0]["gaps"]
    assert gaps == {"val_bits_per_byte": {"model": "mag", "mean": 2.18}}
