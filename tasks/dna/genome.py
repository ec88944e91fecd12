"""Reference genomes (FASTA): contig lengths, 0-based slices, windows and held-out contigs.

Plain and bgzip-compressed FASTA are read through a pyfaidx index, so a slice costs one seek;
a plain-gzip FASTA cannot be indexed and is read whole into memory with Biopython. Case is kept:
soft-masked (lowercase) runs stay lowercase.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pyfaidx
from Bio import SeqIO

from titans_seq.errors import UserError

Window = tuple[str, int, int]

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 1 << 16


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _sniff(path: Path) -> Literal["plain", "bgzip", "gzip"]:
    """The file's compression, after checking it exists and starts like a FASTA file."""
    if not path.exists():
        raise UserError(f"{path}: no such FASTA file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the FASTA file is empty")
    with path.open("rb") as f:
        header = f.read(18)
    if header[:2] == _GZIP_MAGIC:
        # BGZF is gzip whose first member carries a 'BC' extra subfield (SAM spec, section 4.1)
        kind = "bgzip" if len(header) >= 14 and header[3] & 4 and header[12:14] == b"BC" else "gzip"
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(_SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: not a readable gzip file ({_one_line(exc)})") from None
    else:
        kind = "plain"
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    first = head.lstrip()[:1]
    if first == b"":
        raise UserError(f"{path}: the FASTA file holds no sequence")
    if first != b">":
        raise UserError(f"{path}: not a FASTA file (its first line does not start with '>')")
    return kind


def default_index_dir() -> Path:
    """Where FASTA indexes go: ``$XDG_CACHE_HOME/titans_seq/fai`` (default ``~/.cache/titans_seq/fai``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "titans_seq" / "fai"


def _fresh(index: Path, fasta: Path) -> bool:
    return index.exists() and index.stat().st_mtime >= fasta.stat().st_mtime


def _index_paths(path: Path, bgzip: bool, index_dir: Path | None) -> tuple[Path, Path | None]:
    """(.fai, .gzi or None): a fresh index beside the FASTA (samtools faidx's), else one in index_dir.

    Nothing is ever written beside the FASTA: a reference folder may be shared, read-only in
    spirit if not in its mode bits (root writes anywhere), or watched by other tools.
    """
    beside = (path.with_name(path.name + ".fai"), path.with_name(path.name + ".gzi") if bgzip else None)
    if all(p is None or _fresh(p, path) for p in beside):
        return beside
    st = path.stat()
    # keyed by path, size and mtime: a changed FASTA gets a new index, never a stale one
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    folder = index_dir if index_dir is not None else default_index_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: the index folder {folder} cannot be made ({_one_line(exc)}); "
                        f"choose another index_dir or XDG_CACHE_HOME") from None
    return folder / f"{key}.fai", folder / f"{key}.gzi" if bgzip else None


def _build_index(path: Path, fai: Path, gzi: Path | None) -> None:
    """Build the index under temporary names and move it into place, so that processes opening
    the same genome at once (data-parallel ranks) never read a half-written index."""
    suffix = f".{os.getpid()}.tmp"
    tmp_fai = fai.with_name(fai.name + suffix)
    tmp_gzi = gzi.with_name(gzi.name + suffix) if gzi is not None else None
    try:
        pyfaidx.Faidx(str(path), indexname=str(tmp_fai), gzi_indexname=str(tmp_gzi) if tmp_gzi else None).close()
        if tmp_gzi is not None:
            os.replace(tmp_gzi, gzi)
        os.replace(tmp_fai, fai)
    # pyfaidx reports some malformed files (a record with no sequence at the end) as a bare RuntimeError
    except (pyfaidx.FastaIndexingError, ValueError, OSError, RuntimeError) as exc:
        raise UserError(f"{path}: cannot index the FASTA file ({_one_line(exc)})") from None
    finally:
        for tmp in (tmp_fai, tmp_gzi):
            if tmp is not None:
                tmp.unlink(missing_ok=True)


class _IndexedFasta:
    """Random access through pyfaidx; reopened in a forked process (a DataLoader worker), whose
    inherited file offset it would otherwise share with its parent."""

    def __init__(self, path: Path, fai: Path, gzi: Path | None):
        self.path, self.fai, self.gzi = path, fai, gzi
        self._fasta = self._open()
        self.lengths = {name: len(record) for name, record in self._fasta.records.items()}

    def _open(self) -> pyfaidx.Fasta:
        self._pid = os.getpid()
        try:
            return pyfaidx.Fasta(str(self.path), indexname=str(self.fai),
                                 gzi_indexname=str(self.gzi) if self.gzi else None,
                                 as_raw=True, sequence_always_upper=False, rebuild=False)
        except (pyfaidx.FastaIndexingError, ValueError, OSError) as exc:
            raise UserError(f"{self.path}: cannot read the FASTA file ({_one_line(exc)})") from None

    def fetch(self, contig: str, start: int, end: int) -> str:
        if self._fasta is None or self._pid != os.getpid():
            self._fasta = self._open()
        return self._fasta.faidx.fetch(contig, start + 1, end)

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()
            self._fasta = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fasta": None}


class _InMemoryFasta:
    """Whole sequences in memory, for compressed files pyfaidx cannot index (plain gzip)."""

    def __init__(self, path: Path, compressed: bool):
        self.path = path
        try:
            with (gzip.open(path, "rt") if compressed else path.open("r")) as handle:
                records = [(record.id, str(record.seq)) for record in SeqIO.parse(handle, "fasta")]
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: cannot read the FASTA file ({_one_line(exc)})") from None
        self.sequences: dict[str, str] = {}
        for name, seq in records:
            if not name:
                raise UserError(f"{path}: a FASTA record has no name")
            if name in self.sequences:
                raise UserError(f"{path}: contig {name} appears twice")
            self.sequences[name] = seq
        self.lengths = {name: len(seq) for name, seq in self.sequences.items()}

    def fetch(self, contig: str, start: int, end: int) -> str:
        return self.sequences[contig][start:end]

    def close(self) -> None:
        pass


def _indexable(path: Path, kind: str) -> bool:
    # pyfaidx picks its reader by the file name, so only names that agree with the content go to it
    compressed_name = path.suffix.lower() in (".gz", ".bgz")
    return (kind == "plain" and not compressed_name and path.suffix.lower() not in (".bz2", ".zip")) or \
        (kind == "bgzip" and compressed_name)


class Genome:
    """A reference genome read from a FASTA file (plain, bgzip or gzip); contigs keep file order.

    A fresh pyfaidx index (.fai, plus .gzi for bgzip) beside the file is used; otherwise one is
    built in ``index_dir`` (default ``default_index_dir()``), never beside the file.
    """

    def __init__(self, path: str | os.PathLike, *, index_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        kind = _sniff(self.path)
        if _indexable(self.path, kind):
            fai, gzi = _index_paths(self.path, kind == "bgzip", Path(index_dir) if index_dir is not None else None)
            if not (_fresh(fai, self.path) and (gzi is None or _fresh(gzi, self.path))):
                _build_index(self.path, fai, gzi)
            self._reader: _IndexedFasta | _InMemoryFasta = _IndexedFasta(self.path, fai, gzi)
        else:
            self._reader = _InMemoryFasta(self.path, compressed=kind != "plain")
        if not self._reader.lengths:
            raise UserError(f"{self.path}: the FASTA file holds no sequence")

    @classmethod
    def open(cls, path: str | os.PathLike, *, index_dir: str | os.PathLike | None = None) -> Genome:
        return cls(path, index_dir=index_dir)

    @property
    def contigs(self) -> dict[str, int]:
        """Contig name -> length, in file order."""
        return dict(self._reader.lengths)

    @property
    def index_path(self) -> Path | None:
        """The .fai index in use, or None for a genome held in memory."""
        return getattr(self._reader, "fai", None)

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases [start, end) of a contig (0-based, end-exclusive), case as in the file."""
        length = self._reader.lengths.get(contig)
        if length is None:
            raise UserError(f"{self.path}: no contig {contig!r} (contigs: {_names(self._reader.lengths)})")
        if not 0 <= start < end <= length:
            raise UserError(f"{self.path}: range {contig}:{start}-{end} is empty or outside the contig "
                            f"(length {length})")
        return self._reader.fetch(contig, start, end)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, contigs={len(self._reader.lengths)})"


def _names(names, limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_known(genome: Genome, names: list[str], what: str) -> None:
    known = genome.contigs
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"{genome.path}: unknown {what} contig(s) {_names(unknown)} "
                        f"(contigs: {_names(genome.contigs)})")


def split_contigs(genome: Genome, held_out: list[str]) -> tuple[list[str], list[str]]:
    """(training contigs, held-out contigs), each in file order; every contig is in one of them."""
    _check_known(genome, list(held_out), "held-out")
    held = set(held_out)
    train = [c for c in genome.contigs if c not in held]
    if not train:
        raise UserError(f"{genome.path}: holding out {_names(held_out)} leaves no contig to train on")
    return train, [c for c in genome.contigs if c in held]


def windows(genome: Genome, length: int, *, contigs: list[str] | None = None, exclude: list[str] | None = None,
            mode: str = "tiled", count: int | None = None, stride: int | None = None,
            seed: int = 0) -> list[Window]:
    """(contig, start, end) windows of ``length`` bases, never crossing a contig end.

    ``mode="tiled"``: every ``stride`` bases (default ``length``) from each contig's start, the
    tail shorter than a window dropped. ``mode="random"``: ``count`` windows, start positions
    uniform over every valid one (so contigs weigh by size), reproducible from ``seed``.
    ``contigs`` selects (default all), ``exclude`` then removes (held-out contigs).
    """
    if length < 1:
        raise UserError(f"window length must be positive, got {length}")
    if mode not in ("tiled", "random"):
        raise UserError(f"window mode must be 'tiled' or 'random', got {mode!r}")
    lengths = genome.contigs
    selected = list(lengths) if contigs is None else list(contigs)
    _check_known(genome, selected, "selected")
    _check_known(genome, list(exclude or []), "excluded")
    dropped = set(exclude or [])
    sizes = {c: lengths[c] for c in selected if c not in dropped}
    if not sizes:
        raise UserError(f"{genome.path}: no contig left to cut windows from")
    starts = {c: n - length + 1 for c, n in sizes.items() if n >= length}   # valid start positions
    if not starts:
        raise UserError(f"{genome.path}: no selected contig is at least {length} bases long")

    if mode == "tiled":
        if count is not None:
            raise UserError("count is for random windows; tiled windows cover the contigs")
        step = length if stride is None else stride
        if step < 1:
            raise UserError(f"window stride must be positive, got {step}")
        return [(c, s, s + length) for c, n in starts.items() for s in range(0, n, step)]

    if stride is not None:
        raise UserError("stride is for tiled windows")
    if count is None or count < 1:
        raise UserError(f"random windows need a positive count, got {count}")
    names = list(starts)
    valid = np.array([starts[c] for c in names], dtype=np.int64)
    ends = np.cumsum(valid)                               # every valid start, laid end to end
    positions = np.random.default_rng(seed).integers(0, ends[-1], size=count)
    picks = np.searchsorted(ends, positions, side="right")
    offsets = positions - (ends - valid)[picks]
    return [(names[i], int(s), int(s) + length) for i, s in zip(picks, offsets)]
