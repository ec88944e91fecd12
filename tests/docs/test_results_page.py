"""scripts/results_page.py: docs/results.md is written from suites' reports, figures copied beside it."""
import json
import subprocess
import sys
from pathlib import Path

from titans_seq.engine.report import write_report
from titans_seq.engine.suite import Group, Suite

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results_page.py"


def test_the_page_is_the_reports_with_their_figures(tmp_path):
    suite = Suite(name="mini", variants=["swa", "mac"], seeds=[0, 1], groups=[
        Group(name="dna", recipes=["dna_mac"], datasets=["gue/prom_core_notata"], metrics=["mcc"])])
    folder = tmp_path / "runs" / "mini"
    records = [{"variant": model, "model": model, "seed": seed, "group": "dna", "recipe": "dna_mac@gue/prom_core_notata",
                "metrics": {"mcc": value}, "git_revision": "abc123"}
               for model, values in (("swa", [0.5, 0.52]), ("mac", [0.6, 0.62])) for seed, value in enumerate(values)]
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_report(suite, records, folder)
    result = subprocess.run([sys.executable, str(SCRIPT), str(folder), "--docs", str(tmp_path / "docs")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "docs" / "results.md").read_text()
    assert page.startswith("# Results\n") and page.count("\n# ") == 0      # the reports' headings one level down
    assert "\n## mini\n" in page and "\n### dna\n" in page
    assert "| mac | 0.6100 ± 0.0141 (n=2) |" in page
    assert "](results/mini/figures/dna-mcc.png)" in page and "git revision `abc123`" in page
    assert (tmp_path / "docs" / "results" / "mini" / "figures" / "dna-mcc.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "docs" / "results" / "mini" / "results.json").read_text())["suite"] == "mini"
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().endswith("report.md not found: run the suite first "
                                                                      "(titans-seq bench)")
