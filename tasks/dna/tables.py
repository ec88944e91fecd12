"""Labelled sequence tables: CSV/TSV/Parquet files, GUE-style split folders, Genomic Benchmarks class folders.

Intervals cut from a genome are read by :mod:`.labelled_intervals` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from titans_seq.errors import UserError

SEQUENCE_COLUMNS = ("sequence", "seq", "sequences")
LABEL_COLUMNS = ("label", "labels", "class", "target")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
INTERVAL_COLUMNS = {"region", "start", "end"}     # a Genomic Benchmarks interval CSV, not sequences
SPLIT_NAMES = {"train": "train", "dev": "val", "val": "val", "valid": "val", "validation": "val", "test": "test"}
GENOMIC_BENCHMARKS_HINT = ("the `genomic-benchmarks` package downloads the public Genomic Benchmarks on a machine "
                           "with network access (pip install genomic-benchmarks; then "
                           "genomic_benchmarks.loc2seq.download_dataset(NAME, dest_path=DIR))")


@dataclass
class LabelledSequences:
    sequences: list[str]
    labels: list[str]          # as written in the file; a task maps them to class indices


def _pick(columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{path}: no {what} column {wanted!r}; columns: {', '.join(columns)}")
        return wanted
    found = next((c for c in defaults if c in columns), None)
    if found is None and INTERVAL_COLUMNS <= set(columns):
        raise UserError(f"{path}: an interval file (columns {', '.join(columns)}); set data.genome to the FASTA "
                        "its regions come from")
    if found is None:
        raise UserError(f"{path}: no {what} column (looked for {', '.join(defaults)}); columns: "
                        f"{', '.join(columns)}; name it with data.{what}_column")
    return found


def read_table(path: str | Path, sequence_column: str | None = None, label_column: str | None = None) -> LabelledSequences:
    """A table with a sequence column and a label column (found by name unless given)."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise UserError(f"{path}: unsupported table type {path.suffix!r}; use {', '.join(TABLE_SUFFIXES)}, "
                        "or a BED file together with data.genome")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, separator=TABLE_SUFFIXES[path.suffix], infer_schema_length=0)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise UserError(f"{path}: cannot read the table ({str(error).splitlines()[0]})") from None
    if frame.height == 0:
        raise UserError(f"{path}: the table is empty")
    sequence = _pick(frame.columns, sequence_column, SEQUENCE_COLUMNS, "sequence", path)
    label = _pick(frame.columns, label_column, LABEL_COLUMNS, "label", path)
    frame = frame.select(pl.col(sequence).cast(pl.Utf8), pl.col(label).cast(pl.Utf8))
    missing = frame.filter(pl.col(sequence).is_null() | pl.col(label).is_null())
    if missing.height:
        row = frame.with_row_index().filter(pl.col(sequence).is_null() | pl.col(label).is_null())["index"][0]
        raise UserError(f"{path}: row {row + 2} has no sequence or no label")
    return LabelledSequences(frame[sequence].to_list(), frame[label].to_list())


def read_split_folder(folder: str | Path, sequence_column: str | None = None,
                      label_column: str | None = None) -> dict[str, LabelledSequences]:
    """train/dev/test tables in one folder (the GUE layout); ``dev`` becomes ``val``."""
    folder = Path(folder)
    splits = {}
    for path in sorted(folder.iterdir()):
        if path.stem in SPLIT_NAMES and path.suffix in TABLE_SUFFIXES:
            splits[SPLIT_NAMES[path.stem]] = read_table(path, sequence_column, label_column)
    return splits


def read_class_folders(folder: str | Path) -> dict[str, LabelledSequences]:
    """The Genomic Benchmarks layout: ``<split>/<class>/*.txt``, one sequence per file."""
    folder = Path(folder)
    splits = {}
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in SPLIT_NAMES):
        sequences, labels = [], []
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for file in sorted(class_dir.glob("*.txt")):
                sequences.append(file.read_text().strip())
                labels.append(class_dir.name)
        if sequences:
            splits[SPLIT_NAMES[split_dir.name]] = LabelledSequences(sequences, labels)
    return splits


def read_labelled(path: str | Path, sequence_column: str | None = None,
                  label_column: str | None = None) -> dict[str, LabelledSequences]:
    """Whatever ``path`` holds: a single table (all one split), a split folder or class folders."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data.path {path} does not exist; for the Genomic Benchmarks, {GENOMIC_BENCHMARKS_HINT}")
    if path.is_file():
        return {"all": read_table(path, sequence_column, label_column)}
    splits = read_split_folder(path, sequence_column, label_column) or read_class_folders(path)
    if not splits:
        raise UserError(f"{path}: found neither train/dev/test tables nor <split>/<class>/*.txt folders "
                        "(interval folders <split>/<class>.csv.gz need data.genome)")
    return splits
