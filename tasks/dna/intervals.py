"""Genomic intervals (BED files, Genomic Benchmarks interval CSVs) and the sequences they cut from a genome.

Coordinates are 0-based and half-open everywhere: [start, end), as in BED.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from titans_seq.errors import UserError

from .genome import Genome

STRANDS = ("+", "-", ".")
_BED_HEADERS = ("#", "track", "browser")
_GB_COLUMNS = ("id", "region", "start", "end", "strand")
# IUPAC codes and their complements, both cases; U (RNA) pairs with A
_COMPLEMENT = str.maketrans("ACGTUNRYKMSWBDHVacgtunrykmswbdhv", "TGCAANYRMKSWVHDBtgcaanyrmkswvhdb")


@dataclass(frozen=True)
class Interval:
    """A stretch [start, end) of a contig; strand '-' reads it reverse-complemented, '.' as '+'."""

    name: str
    contig: str
    start: int
    end: int
    strand: str = "."
    label: str | None = None
    origin: str = ""          # "file:line" it was read from, for error messages

    def __str__(self) -> str:
        return f"{self.name} ({self.contig}:{self.start}-{self.end}{self.strand})"


def reverse_complement(seq: str) -> str:
    """The reverse complement, keeping case and complementing IUPAC ambiguity codes."""
    return seq.translate(_COMPLEMENT)[::-1]


def _interval(where: str, name: str, contig: str, start: str, end: str, strand: str,
              label: str | None) -> Interval:
    """An Interval from text fields, or a one-line UserError naming ``where`` (file:line)."""
    try:
        first, last = int(start), int(end)
    except ValueError:
        raise UserError(f"{where}: start and end must be integers, got {start!r} and {end!r}") from None
    if not 0 <= first < last:
        raise UserError(f"{where}: need 0 <= start < end, got start={first} end={last}")
    if not contig:
        raise UserError(f"{where}: the contig name is empty")
    if strand not in STRANDS:
        raise UserError(f"{where}: strand must be one of + - ., got {strand!r}")
    return Interval(name or f"{contig}:{first}-{last}", contig, first, last, strand, label, where)


def _read_bed(path: Path) -> list[Interval]:
    intervals = []
    with (gzip.open(path, "rt") if path.suffix.lower() == ".gz" else path.open("r")) as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(_BED_HEADERS):
                continue
            fields = line.split("\t")
            where = f"{path}:{number}"
            if len(fields) < 3:
                raise UserError(f"{where}: a BED line needs at least 3 tab-separated columns "
                                f"(chrom start end), got {len(fields)}")
            name = fields[3] if len(fields) > 3 else ""
            strand = fields[5] if len(fields) > 5 else "."
            intervals.append(_interval(where, name, fields[0], fields[1], fields[2], strand, name or None))
    return intervals


def _read_gb_csv(path: Path) -> list[Interval]:
    try:
        # everything as text, so that a bad coordinate is reported by its line rather than by polars
        table = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UserError(f"{path}: cannot read the interval CSV ({' '.join(str(exc).split())})") from None
    missing = [c for c in _GB_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"{path}: the interval CSV lacks column(s) {', '.join(missing)} "
                        f"(expected header {','.join(_GB_COLUMNS)}[,label])")
    labels = table["label"] if "label" in table.columns else pl.Series([None] * table.height)
    rows = table.select(_GB_COLUMNS).with_columns(label=labels).iter_rows()
    # line 1 is the header
    return [_interval(f"{path}:{number}", *(field or "" for field in row[:5]), row[5])
            for number, row in enumerate(rows, start=2)]


def read_intervals(path: str | os.PathLike) -> list[Interval]:
    """Intervals from a BED file or a Genomic Benchmarks interval CSV (``.csv``), either may be gzipped.

    BED: tab-separated ``chrom start end [name score strand ...]``, the name being the label too;
    ``#``, ``track`` and ``browser`` lines are skipped. CSV: header ``id,region,start,end,strand`` (``region`` is the
    contig) and an optional ``label`` column. Genomic Benchmarks coordinates are taken as 0-based
    half-open like BED (its own loader slices ``genome[region][start:end]``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such interval file")
    is_csv = path.name.lower().endswith((".csv", ".csv.gz"))
    intervals = _read_gb_csv(path) if is_csv else _read_bed(path)
    if not intervals:
        raise UserError(f"{path}: the interval file holds no interval")
    return intervals


def interval_sequences(intervals: list[Interval], genome: Genome) -> list[str]:
    """Each interval's bases from the genome, reverse-complemented on the minus strand."""
    lengths = genome.contigs
    sequences = []
    for interval in intervals:
        where = interval.origin or "interval"
        length = lengths.get(interval.contig)
        if length is None:
            raise UserError(f"{where}: interval {interval} is on contig {interval.contig!r}, "
                            f"which {genome.path} lacks")
        if interval.end > length:
            raise UserError(f"{where}: interval {interval} runs past the end of {interval.contig} "
                            f"(length {length} in {genome.path})")
        seq = genome.fetch(interval.contig, interval.start, interval.end)
        sequences.append(reverse_complement(seq) if interval.strand == "-" else seq)
    return sequences
