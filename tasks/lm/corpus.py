"""Corpora: text files, folders of them, and JSONL files with a text field, read one document at a time.

A plain text file is one document; each line of a ``.jsonl`` file is one (its ``text_field``);
a folder holds any of both, read in sorted order. Nothing is loaded whole, so a corpus larger
than memory is read as a stream.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from titans_seq.errors import UserError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Corpus:
    """The files of a corpus given as a file or folder path; ``text_field`` names the JSONL text."""

    path: str
    text_field: str = "text"

    def files(self) -> list[Path]:
        """The corpus's files, in a fixed order; a UserError when there are none."""
        root = Path(self.path)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise UserError(f"corpus {self.path}: no such file or folder")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES)
        if not files:
            kinds = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES)
            raise UserError(f"corpus {self.path}: the folder holds no {kinds} files")
        return files

    def documents(self) -> Iterator[str]:
        """Every non-empty document, file after file."""
        for path in self.files():
            if path.suffix in JSONL_SUFFIXES:
                yield from self._jsonl_documents(path)
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
                if text.strip():
                    yield text

    def _jsonl_documents(self, path: Path) -> Iterator[str]:
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise UserError(f"{path} line {number}: not UTF-8 text (byte {raw[error.start]:#04x} "
                                    f"at column {error.start + 1})") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UserError(f"{path} line {number}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict) or self.text_field not in record:
                    raise UserError(f"{path} line {number}: no {self.text_field!r} field "
                                    "(set data.text_field to the field holding the text)")
                if str(record[self.text_field]).strip():
                    yield str(record[self.text_field])

    def fingerprint(self) -> str:
        """Changes when any file is added, removed, resized or rewritten."""
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files()]
        return json.dumps([self.text_field, stats])

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())
