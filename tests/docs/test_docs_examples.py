"""The guides' and tutorials' ```python blocks run, page by page, so the docs cannot rot.

A page's blocks share one namespace, in order, and run in a temporary directory. Illustrative
fragments that are not meant to run are fenced as ```py instead. The tutorials' blocks carry
markdown-exec options (``exec="on"``...): the docs build runs them too and renders their output.
"""
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted([*DOCS.glob("guide/*.md"), *DOCS.glob("tutorials/*.md")])
BLOCK = re.compile(r"^```python(?: [^\n]*)?\n(.*?)^```", re.S | re.M)   # exec="on" ...: markdown-exec options


def test_there_are_pages_with_examples():
    assert any(BLOCK.search(page.read_text()) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    if not blocks:
        pytest.skip("no python examples on this page")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page.name}, block {number}", "exec"), namespace)
