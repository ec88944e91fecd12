"""The titans-seq command: user errors are one line and exit code 2; the jobs run end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from titans_seq.cli import main
from titans_seq.engine.suite import load_suite

from .test_trainer import TINY, train_losses


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "titans_seq.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,message", [
    (["train", "no/such/recipe.yaml"], "not found"),
    (["train", "demo", "model.variant=mamba"], "unknown variant 'mamba'"),
    (["train", "demo", "train.max_stepz=3"], "unknown key 'train.max_stepz'"),
    (["train", "demo", "run.device=cuda"], "no CUDA device"),
    (["train", "demo", "model.segment_len=0"], "segment_len must be >= 1"),
    (["eval", "demo", "--checkpoint", "no/such/dir"], "not a complete checkpoint"),
    (["bench", "no/such/suite.yaml"], "not found"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, tmp_path):
    if args[0] == "train" and "cuda" in " ".join(args):
        pytest.importorskip("torch").cuda.is_available() and pytest.skip("this machine has CUDA")
    result = run_cli(*args, *(["run.out_dir=" + str(tmp_path)] if args[0] == "train" else []))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())       # nothing half-written


def test_resume_without_checkpoint_is_a_user_error(tmp_path, capsys):
    assert main(["train", "demo", "--resume", f"run.out_dir={tmp_path}"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "recall" in out and "mag" in out


def test_train_then_eval_writes_a_record(tmp_path, capsys):
    assert main(["train", "demo", *TINY, "train.max_steps=4", f"run.out_dir={tmp_path}"]) == 0
    best = tmp_path / "demo" / "best"
    assert main(["eval", "demo", *TINY, "--checkpoint", str(best), "--split", "val"]) == 0
    record = json.loads((tmp_path / "demo" / "best_val_results.json").read_text())
    assert record["split"] == "val" and record["checkpoint"] == str(best)
    assert set(record) >= {"task", "dataset", "variant", "parameters", "metrics", "tokens_per_s", "seed",
                           "git_revision"}


def test_demo_runs_and_reports(tmp_path):
    result = run_cli("demo", *TINY, "train.max_steps=3", f"run.out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "recall accuracy on unseen test sequences" in result.stdout
    assert "asked k" in result.stdout


def test_bench_writes_a_table_in_the_papers_layout(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: tiny\nrecipes: [demo]\nvariants: [mac, transformer]\nseeds: [0, 1]\n"
                     f"metrics: [accuracy]\nout_dir: {tmp_path}\n"
                     f"overrides: [{', '.join(TINY)}, train.max_steps=2]\n"
                     f"targets: [{{metric: accuracy, model: mac, against: transformer}}, "
                     f"{{metric: accuracy, against: 2.0}}]\n")
    assert main(["bench", str(suite)]) == 0
    targets = capsys.readouterr().out.split("\nTargets:\n", 1)[1].splitlines()
    assert targets[0].startswith("- mac accuracy ≥ transformer: m") and targets[0].endswith(" 1 needed)")
    assert targets[1] == "- best Titans accuracy ≥ 2.0: missed (0 of 1 columns, 1 needed)"   # accuracy is at most 1
    assert targets[2] == "" and targets[3].startswith("report: ")
    table = (tmp_path / "tiny" / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| model | demo params | demo accuracy |"
    assert rows[1].startswith("| transformer |") and rows[2].startswith("| mac |")
    assert "±" in rows[2] and rows[2].endswith("(n=2) |")
    assert len((tmp_path / "tiny" / "records.jsonl").read_text().splitlines()) == 4


def test_bench_continues_an_interrupted_run_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    from titans_seq.engine.trainer import Trainer
    from titans_seq.errors import TrainingError

    def suite(name, *more):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nrecipes: [demo]\nvariants: [mac]\nseeds: [0]\nmetrics: [accuracy]\n"
                        f"out_dir: {tmp_path}\noverrides: [{', '.join([*TINY, *more])}]\n")
        return str(path)

    settings = ("train.max_steps=6", "train.save_every=2", "train.eval_every=2")
    assert main(["bench", suite("whole", *settings)]) == 0
    whole = tmp_path / "whole" / "demo" / "mac" / "seed-0"
    original_step = Trainer._step

    def step_then_stop(self, model, batches):
        if self.state.step == 5:          # after the checkpoint at step 4, before the next
            raise TrainingError("the machine went away")
        return original_step(self, model, batches)

    monkeypatch.setattr(Trainer, "_step", step_then_stop)
    assert main(["bench", suite("cut", *settings)]) == 1
    monkeypatch.setattr(Trainer, "_step", original_step)
    capsys.readouterr()
    assert main(["bench", suite("cut", *settings)]) == 0
    assert "== demo / mac / seed 0: resumed from step-000004\n" in capsys.readouterr().out
    cut = tmp_path / "cut" / "demo" / "mac" / "seed-0"
    assert train_losses(cut) == train_losses(whole)          # exactly, as if never stopped
    results = [json.loads((run / "test_results.json").read_text())["metrics"] for run in (whole, cut)]
    assert results[0] == results[1]
    (cut / "test_results.json").unlink()                     # a checkpoint of another recipe is not continued
    assert main(["bench", suite("cut", *settings, "optim.lr=1e-4")]) == 0
    assert "resumed" not in capsys.readouterr().out
    assert train_losses(cut)[3] != train_losses(whole)[3]     # trained again from the first step


def test_bench_matches_sizes_per_variant_and_resumes_a_split_grid(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: split\nrecipes: [demo]\nvariants: [mac, transformer]\nseeds: [0]\n"
                     f"metrics: [accuracy, val_accuracy]\nout_dir: {tmp_path}\n"
                     f"overrides: [{', '.join(TINY)}, train.max_steps=2]\n"
                     f"variant_overrides: {{transformer: [model.d_model=32]}}\n")
    assert main(["bench", str(suite), "--variants", "transformer"]) == 0
    rows = [line for line in (tmp_path / "split" / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[0] == "| model | demo params | demo accuracy | demo val_accuracy |"
    assert rows[2] == "| mac | — | — | — |"                # not this call's share: not trained
    assert rows[1].endswith("(n=1) |") and "±" not in rows[1]
    transformer = json.loads((tmp_path / "split" / "records.jsonl").read_text())
    assert f"{transformer['val_metrics']['accuracy']:.4f} (n=1)" in rows[1]      # the selected checkpoint's
    widened = (tmp_path / "split" / "demo" / "transformer" / "seed-0" / "config.yaml").read_text()
    assert "d_model: 32" in widened and transformer["variant"] == "transformer"
    capsys.readouterr()
    assert main(["bench", str(suite)]) == 0                 # the rest of the grid; the transformer is reused
    out = capsys.readouterr().out
    assert "transformer / seed 0: done before, results reused" in out and "== demo / mac / seed 0\n" in out
    records = [json.loads(line) for line in (tmp_path / "split" / "records.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in records] == ["mac", "transformer"]
    assert records[1]["parameters"] == transformer["parameters"] != records[0]["parameters"]
    assert main(["bench", str(suite), "--variants", "mamba"]) == 2
    assert main(["bench", str(suite), "--name", "longer", "--variants", "mac", "train.max_steps=3"]) == 0
    longer = json.loads((tmp_path / "longer" / "records.jsonl").read_text())
    assert "max_steps: 3" in (tmp_path / "longer" / "demo" / "mac" / "seed-0" / "config.yaml").read_text()
    assert longer["variant"] == "mac"


def test_bench_trains_only_the_columns_asked_for(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: cols\nrecipes: [demo]\nvariants: [transformer]\nseeds: [0]\nmetrics: [accuracy]\n"
                     f"out_dir: {tmp_path}\noverrides: [{', '.join(TINY)}]\n"
                     f"axes: {{train.max_steps: [2, 3]}}\n")
    assert main(["bench", str(suite), "--columns", "max_steps=3"]) == 0
    runs = tmp_path / "cols" / "demo"
    assert (runs / "max_steps-3" / "transformer" / "seed-0" / "test_results.json").is_file()
    assert not (runs / "max_steps-2").exists()
    capsys.readouterr()
    assert main(["bench", str(suite), "--columns", "max_steps=5"]) == 2
    err = capsys.readouterr().err
    assert "--columns max_steps=5: no column's label contains it" in err
    assert "demo train.max_steps=2; demo train.max_steps=3" in err


def test_bench_reuses_a_run_saved_before_new_options_or_elsewhere_cached(tmp_path):
    from titans_seq.engine.bench import finished_record
    from titans_seq.engine.config import load_recipe, recipe_to_yaml

    recipe = load_recipe("lm_tiny", [f"run.out_dir={tmp_path}"])
    recipe.run_dir.mkdir(parents=True)
    (recipe.run_dir / "test_results.json").write_text('{"metrics": {"loss": 1.0}}')
    saved = recipe_to_yaml(recipe)
    older = saved.replace("  mac_query_conv: false\n", "").replace(recipe.data.cache_dir, "/elsewhere/shards")
    assert older != saved
    (recipe.run_dir / "config.yaml").write_text(older)
    assert finished_record(recipe) == {"metrics": {"loss": 1.0}}
    (recipe.run_dir / "config.yaml").write_text(older.replace("  lr: 0.002\n", "  lr: 0.001\n"))
    assert finished_record(recipe) is None                      # a setting that changes the run
    (recipe.run_dir / "config.yaml").write_text("model: [")
    assert finished_record(recipe) is None                      # unreadable: trained again


def test_bench_runs_each_recipe_on_each_dataset_of_its_axis(tmp_path, shared_data):
    shared_data("dna", "gue", "mouse_0")
    table = tmp_path / "mine.csv"
    table.write_text("sequence,label\n" + "".join(f"{'ACGT'[i % 4] * 12},{i % 2}\n" for i in range(40)))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: axis\nrecipes: [dna_mac]\ndatasets: [gue/mouse_0, {table}]\nvariants: [swa]\n"
                     f"seeds: [0]\nmetrics: [mcc]\nout_dir: {tmp_path}\noverrides: [model.d_model=16, "
                     "model.n_layers=1, model.n_heads=2, train.max_steps=1, train.batch_size=8, train.eval_every=1]\n")
    assert main(["bench", str(suite), "data.dataset=gue/tf_0"]) == 0      # the axis wins over an override
    rows = [line for line in (tmp_path / "axis" / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[0] == f"| model | dna_mac@gue/mouse_0 params | dna_mac@gue/mouse_0 mcc | dna_mac@{table} params | " \
                      f"dna_mac@{table} mcc |"
    records = [json.loads(line) for line in (tmp_path / "axis" / "records.jsonl").read_text().splitlines()]
    assert [r["dataset"] for r in records] == ["mouse_0", "mine.csv"]
    assert (tmp_path / "axis" / "dna_mac" / "gue" / "mouse_0" / "swa" / "seed-0" / "test_results.json").is_file()
    assert (tmp_path / "axis" / "dna_mac" / "mine.csv" / "swa" / "seed-0" / "test_results.json").is_file()


def test_bench_groups_an_axis_jobs_and_the_plan(tmp_path, capsys):
    rows = "".join(f"2024-01-01 {h // 60:02d}:{h % 60:02d}:00,{(h % 24) / 24:.4f}\n" for h in range(600))
    (tmp_path / "series.csv").write_text("date,OT\n" + rows)
    forecast = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "task.lookback=32", "task.patch_len=8",
                "task.stride=8", "train.max_steps=2", "train.batch_size=8", "train.eval_every=2"]
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({
        "name": "grid", "variants": ["mac"], "seeds": [0], "out_dir": str(tmp_path), "groups": [
            {"name": "recall", "recipes": ["demo"], "metrics": ["accuracy"],
             "overrides": [*TINY, "train.max_steps=2"], "minutes_per_run": 1.5},
            {"name": "forecasting", "recipes": ["forecast"], "datasets": [str(tmp_path / "series.csv")],
             "axes": {"task.horizon": [4, 8]}, "metrics": ["mse"], "overrides": forecast}]}))
    assert main(["bench", str(suite), "--dry-run", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "suite grid: 3 runs to train", "  recall: 1 runs = 1 columns x 1 variants x 1 seeds, about 2 CPU minutes",
        "  forecasting: 2 runs = 2 columns x 1 variants x 1 seeds",
        "estimated 0.0 h with --jobs 2 (2 runs have no estimate)", "0 of the suite's 3 runs finished before"]
    assert main(["bench", str(suite), "--jobs", "2"]) == 0
    table = (tmp_path / "grid" / "results.md").read_text()
    assert "## recall\n" in table and "## forecasting\n" in table
    column = f"forecast@{tmp_path / 'series.csv'} task.horizon=8"
    assert f"| {column} params | {column} mse |" in table
    records = [json.loads(line) for line in (tmp_path / "grid" / "records.jsonl").read_text().splitlines()]
    assert [(r["group"], r["column"]["settings"]) for r in records] == [
        ("recall", {}), ("forecasting", {"task.horizon": 4}), ("forecasting", {"task.horizon": 8})]
    assert (tmp_path / "grid" / "forecast" / "series.csv" / "horizon-8" / "mac" / "seed-0" / "bench.log").is_file()
    capsys.readouterr()
    assert main(["bench", str(suite), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 of the suite's 3 runs finished before"


PACKAGED_SUITES = sorted(path.stem for path in
                         (Path(__file__).resolve().parents[2] / "recipes" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("suite", PACKAGED_SUITES)
def test_a_packaged_suite_plans_every_family(suite, capsys):
    assert main(["bench", suite, "--seeds", "0", "--dry-run", "--jobs", "2"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert plan[0].startswith(f"suite {suite}: ") and plan[-2].startswith("estimated ")
    if suite.startswith("paper"):
        assert [line.split(":")[0].strip() for line in plan[1:5]] == ["language", "passkey", "dna", "forecasting"]


def test_a_failing_run_is_reported_and_the_grid_goes_on(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({"name": "partly", "variants": ["mac"], "out_dir": str(tmp_path), "groups": [
        {"name": "dna", "recipes": ["dna_mac"], "datasets": [str(tmp_path / "missing.csv")], "metrics": ["mcc"]},
        {"name": "recall", "recipes": ["demo"], "metrics": ["accuracy"], "overrides": [*TINY, "train.max_steps=2"]}]}))
    assert main(["bench", str(suite)]) == 1
    out, err = capsys.readouterr()
    assert "missing.csv / mac / seed 0 failed: " in out
    assert err.strip().splitlines()[-1].startswith("titans-seq: 1 of 2 runs failed, the rest are tabulated in ")
    assert "| mac | 0." in (tmp_path / "partly" / "results.md").read_text().split("## recall")[1]
    assert (tmp_path / "partly" / "report.md").is_file()


def test_the_report_names_each_run_that_skipped_a_step_or_stopped(tmp_path, monkeypatch, capsys):
    import titans_seq.engine.bench as bench
    from titans_seq.engine.trainer import Trainer
    from titans_seq.errors import TrainingError

    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: shaky\nrecipes: [demo]\nvariants: [transformer, mac]\nseeds: [0]\n"
                     f"metrics: [accuracy]\nout_dir: {tmp_path}\noverrides: [{', '.join(TINY)}, train.max_steps=3]\n")
    real_train, real_step, calls = bench.train, Trainer._step, {"n": 0}

    def train_or_diverge(recipe, resume=False):
        if recipe.model.variant == "transformer":
            raise TrainingError("stopped: 5 non-finite losses in a row; last good checkpoint: none written yet")
        return real_train(recipe, resume=resume)

    def step_nan_once(self, model, batches):
        calls["n"] += 1
        loss, tokens, finite = real_step(self, model, batches)
        return loss, tokens, finite and calls["n"] != 2

    monkeypatch.setattr(bench, "train", train_or_diverge)
    monkeypatch.setattr(Trainer, "_step", step_nan_once)
    assert main(["bench", str(suite)]) == 1
    base = tmp_path / "shaky"
    note = ("**Stability.** Of the 2 runs (every stage counted), 0 had no non-finite loss; 1 skipped steps for a "
            "non-finite loss (mac, seed 0, demo: 1); 1 stopped (transformer, seed 0, demo: stopped: 5 non-finite "
            "losses in a row; last good checkpoint: none written yet).")
    assert note in (base / "report.md").read_text()
    stability = json.loads((base / "results.json").read_text())["groups"]["demo"]["stability"]
    assert stability["runs"] == 2 and stability["skipped"] == [{"model": "mac", "seed": 0, "column": "demo", "steps": 1}]
    assert "| transformer | — | — |" in (base / "results.md").read_text()     # no figures from a stopped run
    failed = base / "demo" / "transformer" / "seed-0" / "failed.json"
    assert json.loads(failed.read_text())["error"].startswith("stopped: 5 non-finite")
    stopped = [json.loads(line) for line in (base / "records.jsonl").read_text().splitlines() if '"failed"' in line]
    assert [(r["model"], r["seed"], r["git_revision"]) for r in stopped] == [
        ("transformer", 0, json.loads(failed.read_text())["git_revision"])]
    assert main(["bench", str(suite), "--variants", "mac"]) == 0        # the stopped run, not asked, stays named
    assert note in (base / "report.md").read_text()
    monkeypatch.setattr(bench, "train", real_train)
    assert main(["bench", str(suite), "--variants", "transformer"]) == 0  # trained again, cleanly
    assert not failed.exists()
    assert ("Of the 2 runs (every stage counted), 1 had no non-finite loss; 1 skipped steps for a non-finite "
            "loss (mac, seed 0, demo: 1).") in (base / "report.md").read_text()


def test_bench_gives_a_model_without_a_backbone_its_own_row(tmp_path, capsys):
    table = tmp_path / "gc.csv"
    table.write_text("sequence,label\n" + "".join(f"{('AT', 'CG')[i % 2] * 8},{i % 2}\n" for i in range(40)))
    small = ("model.d_model=16, model.n_layers=1, model.n_heads=2, train.max_steps=1, train.batch_size=8, "
             "train.eval_every=1")
    cnn = "[task.architecture=cnn, 'task.cnn.channels=[4,4,4]', task.cnn.hidden=8]"
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: rows\nrecipes: [dna_mac]\ndatasets: [{table}]\nvariants: [cnn, swa]\n"
                     f"models: {{cnn: {cnn}}}\nseeds: [0]\nmetrics: [mcc]\nout_dir: {tmp_path}\n"
                     f"overrides: [{small}]\n")
    assert main(["bench", str(suite), "--variants", "cnn"]) == 0
    rows = [line for line in (tmp_path / "rows" / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[1] == "| swa | — | — |" and rows[2].startswith("| cnn |") and rows[2].endswith("(n=1) |")
    saved = tmp_path / "rows" / "dna_mac" / "gc.csv" / "cnn" / "seed-0" / "config.yaml"
    assert "architecture: cnn" in saved.read_text() and "channels:\n    - 4\n" in saved.read_text()
    capsys.readouterr()
    assert main(["bench", str(suite)]) == 0
    assert "cnn / seed 0: done before, results reused" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "rows" / "records.jsonl").read_text().splitlines()]
    assert [(r["model"], r["variant"]) for r in records] == [("cnn", "cnn"), ("swa", "swa")]
    assert records[0]["parameters"] != records[1]["parameters"]
    suite.write_text(suite.read_text().replace(f"{{cnn: {cnn}}}", "{swa: [task.architecture=cnn]}")
                     .replace("variants: [cnn, swa]", "variants: [swa]"))
    assert main(["bench", str(suite)]) == 2
    assert "models swa are backbone variants" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["gue_cpu", "gue"])
def test_the_gue_suites_have_the_cnn_row(name):
    suite = load_suite(Path(name))
    assert suite.variants == ["cnn", "transformer", "swa", "lmm", "mac", "mag", "mal"]
    assert suite.models == {"cnn": ["task.architecture=cnn"]}


@pytest.mark.parametrize("argv, message", [
    (["train"], "titans-seq train: error: the following arguments are required: recipe"),
    (["forecast", "--data", "x.csv", "--horizon", "soon"], "argument --horizon: invalid int value: 'soon'"),
    (["fly"], "invalid choice: 'fly'"),
    (["list", "--colour"], "unrecognized arguments: --colour"),
    (["list", "\r"], "unrecognized arguments: \\r"),                  # a line break, escaped (hypothesis)
])
def test_usage_errors_are_one_line_and_returned_as_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "--help" in err


def test_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
