"""Labelled sequences cut from a reference genome by intervals, for classification.

``path`` is one interval file, a BED file labelled by its name (4th) column or a Genomic
Benchmarks interval CSV with a ``label`` column, or a Genomic Benchmarks interval folder,
``<split>/<class>.csv.gz`` (or ``.csv``, ``.bed``, ``.bed.gz``), labelled by the file name.
"""
from __future__ import annotations

import os
from pathlib import Path

from titans_seq.errors import UserError

from .genome import Genome
from .intervals import interval_sequences, read_intervals
from .tables import SPLIT_NAMES, LabelledSequences

INTERVAL_SUFFIXES = (".csv.gz", ".bed.gz", ".csv", ".bed")
GENOMIC_BENCHMARKS_INTERVALS_HINT = (
    "the Genomic Benchmarks interval folders are datasets/NAME/ of github.com/ML-Bioinfo-CEITEC/genomic_benchmarks "
    "(train/<class>.csv.gz, test/<class>.csv.gz; its metadata.yaml names the reference FASTA), to fetch on a machine "
    "with network access")


def _class_name(file: Path) -> str | None:
    """The class an interval file holds, from its name (``positive.csv.gz`` -> ``positive``); None for other files."""
    return next((file.name[:-len(s)] for s in INTERVAL_SUFFIXES if file.name.lower().endswith(s)), None)


def _labelled_file(path: Path, genome: Genome) -> LabelledSequences:
    intervals = read_intervals(path)
    unlabelled = next((i for i in intervals if not i.label), None)
    if unlabelled is not None:
        raise UserError(f"{unlabelled.origin}: interval {unlabelled} has no label; label a BED file in its "
                        "4th (name) column, an interval CSV in a 'label' column, or use <split>/<class>.csv.gz folders")
    return LabelledSequences(interval_sequences(intervals, genome), [i.label for i in intervals])


def _class_folders(folder: Path, genome: Genome) -> dict[str, LabelledSequences]:
    splits = {}
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in SPLIT_NAMES):
        sequences, labels = [], []
        for file in sorted(split_dir.iterdir()):
            label = _class_name(file)
            if label is not None and file.is_file():
                cut = interval_sequences(read_intervals(file), genome)
                sequences += cut
                labels += [label] * len(cut)
        if sequences:
            splits[SPLIT_NAMES[split_dir.name]] = LabelledSequences(sequences, labels)
    if not splits:
        raise UserError(f"{folder}: found no interval files <split>/<class>.csv.gz (or .csv, .bed, .bed.gz)")
    return splits


def read_labelled_intervals(path: str | os.PathLike, genome_path: str | os.PathLike) -> dict[str, LabelledSequences]:
    """The labelled sequences of an interval file (all one split, ``all``) or of a split folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data.path {path} does not exist; {GENOMIC_BENCHMARKS_INTERVALS_HINT}")
    with Genome.open(genome_path) as genome:
        return _class_folders(path, genome) if path.is_dir() else {"all": _labelled_file(path, genome)}
