"""A miniature cross-domain suite, end to end: passkey (a two-stage curriculum, asked past its training
length), DNA classification and forecasting at two horizons, two variants; the report's tables and figures."""
import json

import yaml

from titans_seq.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=4", "model.segment_len=16",
         "model.window=16", "train.log_every=1", "optim.warmup_steps=1"]


def write_suite(tmp_path) -> str:
    rows = "".join(f"2024-01-01 {h // 60:02d}:{h % 60:02d}:00,{(h % 24) / 24:.4f},{(h % 7) / 7:.4f}\n"
                   for h in range(600))
    (tmp_path / "series.csv").write_text("date,a,OT\n" + rows)
    (tmp_path / "gc.csv").write_text("sequence,label\n" + "".join(f"{('AT', 'CG')[i % 2] * 8},{i % 2}\n"
                                                                  for i in range(40)))
    suite = {"name": "mini", "variants": ["swa", "mac"], "seeds": [0], "out_dir": str(tmp_path), "overrides": SMALL,
             "groups": [
                 {"name": "passkey", "recipes": ["lm_passkey"], "metrics": ["accuracy", "accuracy@256"],
                  "overrides": ["task.n_train=16", "task.n_val=4", "task.n_test=4", "train.batch_size=4",
                                "train.eval_every=1"],
                  "stages": [["task.seq_len=128", "train.max_steps=2"],
                             ["task.seq_len=192", "train.max_steps=1", "task.test_lengths=[256]",
                              "task.test_depths=[0.5]", "task.test_samples=1"]]},
                 {"name": "dna", "recipes": ["dna_mac"], "datasets": [str(tmp_path / "gc.csv")], "metrics": ["mcc"],
                  "overrides": ["train.max_steps=2", "train.batch_size=8", "train.eval_every=1"]},
                 {"name": "forecasting", "recipes": ["forecast"], "datasets": [str(tmp_path / "series.csv")],
                  "axes": {"task.horizon": [4, 8]}, "metrics": ["mse", "mae"],
                  "overrides": ["task.lookback=32", "task.patch_len=8", "task.stride=8", "train.max_steps=2",
                                "train.batch_size=8", "train.eval_every=1"]}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


def test_a_cross_domain_suite_reports_every_family(tmp_path, capsys):
    suite = write_suite(tmp_path)
    assert main(["bench", suite]) == 0
    base = tmp_path / "mini"
    report = (base / "report.md").read_text()
    for group, header in (("passkey", "| model | lm_passkey accuracy | lm_passkey accuracy@256 |"),
                          ("dna", f"| model | dna_mac@{tmp_path / 'gc.csv'} mcc |"),
                          ("forecasting", f"| model | forecast@{tmp_path / 'series.csv'} task.horizon=4 mse |")):
        body = report.split(f"## {group}\n", 1)[1].split("\n## ", 1)[0]
        table = [line for line in body.splitlines() if line.startswith("| ")]
        assert table[0].startswith(header)
        models = [line.split(" | ")[0][2:] for line in table[2:]]
        assert models == ["swa", "mac"]                    # the baseline first, a cell per run at n=1
        assert all(cell.endswith("(n=1)") for line in table[2:] for cell in line.strip(" |").split(" | ")[1:])
    figures = sorted(path.name for path in (base / "figures").iterdir())
    examples = [name for name in figures if "-example-" in name]   # one per dataset: the first horizon's
    assert len(examples) == 1 and examples[0].startswith("forecasting-example-forecast") and "horizon_4" in examples[0]
    assert sorted(set(figures) - set(examples)) == sorted([
        "passkey-accuracy.png", "passkey-lengths.png", "passkey-curves.png", "dna-mcc.png", "dna-curves.png",
        "forecasting-mse.png", "forecasting-mae.png", "forecasting-curves.png"])
    for name in figures:
        assert (base / "figures" / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f"(figures/{name})" in report
    results = json.loads((base / "results.json").read_text())
    assert list(results["groups"]) == ["passkey", "dna", "forecasting"]
    # the curriculum: stage 2 starts from stage 1's best weights; the run's result is stage 2's test
    stage2 = base / "lm_passkey" / "mac" / "seed-0" / "stage-2"
    assert yaml.safe_load((stage2 / "config.yaml").read_text())["model"]["init_from"] == str(
        base / "lm_passkey" / "mac" / "seed-0" / "stage-1" / "best")
    passkey = results["groups"]["passkey"]["columns"][0]["models"]["mac"]
    tested = json.loads((stage2 / "test_results.json").read_text())["metrics"]
    assert passkey["accuracy@256"]["values"] == [tested["accuracy@256"]]
    assert (stage2 / "niah" / "niah.png").is_file()
    # a second call trains nothing
    capsys.readouterr()
    assert main(["bench", suite, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "8 of the suite's 8 runs finished before"
    # every stage's skipped steps count: a first stage that skipped 3 makes its run's record say 3
    assert "**Stability.** No non-finite loss in any of the 2 runs (every stage counted)." in report
    stage1 = stage2.parent / "stage-1" / "test_results.json"
    stage1.write_text(json.dumps({**json.loads(stage1.read_text()), "nonfinite_steps": 3}))
    assert main(["bench", suite]) == 0
    mac = [json.loads(line) for line in (base / "records.jsonl").read_text().splitlines()
           if '"passkey"' in line and '"mac"' in line]
    assert [record["nonfinite_steps"] for record in mac] == [3]
    assert "1 skipped steps for a non-finite loss (mac, seed 0, lm_passkey: 3)" in (base / "report.md").read_text()
