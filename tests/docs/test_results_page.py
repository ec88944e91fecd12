"""scripts/results_page.py: docs/results.md is written from suites' reports, figures copied beside it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from titans_seq.engine.report import write_report
from titans_seq.engine.suite import Group, Suite, load_suite

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results_page.py"


def _finished_suite(root: Path, name: str, mac: list[float], revision: str = "abc123") -> Path:
    suite = Suite(name=name, variants=["swa", "mac"], seeds=[0, 1], groups=[
        Group(name="dna", recipes=["dna_mac"], datasets=["gue/prom_core_notata"], metrics=["mcc"])])
    folder = root / "runs" / name
    records = [{"variant": model, "model": model, "seed": seed, "group": "dna", "recipe": "dna_mac@gue/prom_core_notata",
                "metrics": {"mcc": value}, "git_revision": revision}
               for model, values in (("swa", [0.5, 0.52]), ("mac", mac)) for seed, value in enumerate(values)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_report(suite, records, folder)
    return folder


def _publish(tmp_path: Path, *folders: Path) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, folders), "--docs", str(tmp_path / "docs")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "docs" / "results.md").read_text()


def test_the_page_is_the_reports_with_their_figures(tmp_path):
    folder = _finished_suite(tmp_path, "mini", [0.6, 0.62])
    _publish(tmp_path, folder)
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


def test_publishing_one_suite_keeps_the_others_sections(tmp_path):
    first, second = _finished_suite(tmp_path, "first", [0.6, 0.62]), _finished_suite(tmp_path, "second", [0.7, 0.7])
    _publish(tmp_path, first, second)
    shutil.rmtree(first)                                   # its runs are gone; its section stays
    _finished_suite(tmp_path, "second", [0.8, 0.8], revision="def456")
    page = _publish(tmp_path, second)
    assert page.index("\n## first\n") < page.index("\n## second\n")
    assert "| mac | 0.6100 ± 0.0141 (n=2) |" in page and "| mac | 0.8000 ± 0.0000 (n=2) |" in page
    assert "0.7000" not in page and "`def456`" in page and "`abc123`" in page
    assert "results_page.py runs/first runs/second`" in page
    third = _finished_suite(tmp_path, "third", [0.5, 0.5])
    assert _publish(tmp_path, third).rstrip().endswith("[results.json](results/third/results.json) holds every value.")


def test_drop_removes_a_superseded_suites_section_and_files(tmp_path):
    first, second = _finished_suite(tmp_path, "first", [0.6, 0.62]), _finished_suite(tmp_path, "second", [0.7, 0.7])
    _publish(tmp_path, first, second)
    page = _publish(tmp_path, "--drop", "first")
    assert "\n## first\n" not in page and "\n## second\n" in page and "runs/first" not in page
    assert not (tmp_path / "docs" / "results" / "first").exists() and (tmp_path / "docs" / "results" / "second").is_dir()
    for args, message in ((["--drop", "first"], "--drop first: no such section on "),
                          ([], "give suite folders to publish, or --drop SUITE")):
        result = subprocess.run([sys.executable, str(SCRIPT), *args, "--docs", str(tmp_path / "docs")],
                                capture_output=True, text=True)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert (tmp_path / "docs" / "results.md").read_text() == page       # a refused call leaves the page as it was


def test_the_page_opens_with_the_packaged_suites_targets_checked(tmp_path):
    """A section named after a packaged suite (lm_tiny_512) is checked against that suite file's targets."""
    folder = tmp_path / "runs" / "lm_tiny_512"
    folder.mkdir(parents=True)
    records = [{"variant": model, "model": model, "seed": 0, "group": "lm_tiny", "recipe": "lm_tiny", "metrics": {},
                "dataset": "text/tinyshakespeare",
                "val_metrics": {"bits_per_byte": value}, "git_revision": "abc123", "nonfinite_steps": skipped}
               for model, value, skipped in (("transformer", 2.19, 0), ("mac", 2.20, 2), ("mag", 2.17, 0))]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_report(load_suite(Path("lm_tiny_512")), records, folder)
    other = _finished_suite(tmp_path, "mini", [0.6, 0.62])        # not a packaged suite: no targets
    page = _publish(tmp_path, other, folder)
    targets = page.split("\n## Targets\n", 1)[1].split("\n## ", 1)[0]
    assert page.index("\n## Targets\n") < page.index("\n## mini\n")
    tried = "[experiment log](experiments.md#sequences-of-512-bytes-10000-steps-issue-18)"   # the suite file's log
    assert [line for line in targets.splitlines() if line.startswith("| [")] == [
        "| [lm_tiny_512](#lm_tiny_512), lm_tiny | mac val_bits_per_byte ≤ transformer | missed (0 of 1 columns, "
        "1 needed; n=1 of the suite's 3 seeds) | lm_tiny: -0.0100 (missed) | " + tried + " |",
        "| [lm_tiny_512](#lm_tiny_512), lm_tiny | mag val_bits_per_byte ≤ transformer | met (1 of 1 columns, "
        "1 needed; n=1 of the suite's 3 seeds) | lm_tiny: +0.0200 (met) | " + tried + " |",
        "| [lm_tiny_512](#lm_tiny_512), lm_tiny | mac-s64 val_bits_per_byte ≤ transformer | not run: no seed of the "
        "row has finished | lm_tiny: not run | [experiment log](experiments.md#mac-with-segments-of-64-issue-18) |"]
    assert "| mac val_bits_per_byte ≤ transformer | lm_tiny | 2.2000 (n=1), mac | 2.1900 (n=1) | -0.0100 (missed) |" \
        in page                                                    # the suite's own report states them too
    stability = [line for line in targets.splitlines() if line.startswith("**Stability.**")]
    assert stability == [     # mini's invented records carry no count; a skipped step is named with its suite
        "**Stability.** Of the 7 runs (every stage counted), 2 had no non-finite loss; 1 skipped steps for a "
        "non-finite loss (mac, seed 0, lm_tiny_512: lm_tiny: 2); 4 ran before the trainer counted skipped steps."]
    again = _publish(tmp_path, other)                              # republishing one suite rebuilds the section
    assert again.count("\n## Targets\n") == 1 and "results_page.py runs/mini runs/lm_tiny_512`" in again
    results = json.loads((other / "results.json").read_text())
    del results["groups"]["dna"]["stability"]                       # as reports written before the count
    (other / "results.json").write_text(json.dumps(results))
    targets = _publish(tmp_path, other).split("\n## Targets\n", 1)[1].split("\n## ", 1)[0]
    assert ("**Stability.** Of the 3 runs (every stage counted), 2 had no non-finite loss; 1 skipped steps for a "
            "non-finite loss (mac, seed 0, lm_tiny_512: lm_tiny: 2). Not counted (published before runs counted "
            "skipped steps): mini.\n") in targets
