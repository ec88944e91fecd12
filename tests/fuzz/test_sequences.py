"""Random malformed FASTA and BED files at the genome and interval readers."""
import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titans_seq.tasks.dna.genome import Genome, windows
from titans_seq.tasks.dna.intervals import interval_sequences, read_intervals

from .common import FUZZ, NASTY, TOKEN, one_line_or_success

BASES = st.text(st.sampled_from(list("ACGTNacgtn-*> \t\r")), max_size=70)
FASTA_LINES = st.one_of(BASES, NASTY, st.builds(lambda name: ">" + name, NASTY), st.just(">"), st.just(""))


@st.composite
def fasta_bytes(draw) -> bytes:
    text = "\n".join(draw(st.lists(FASTA_LINES, max_size=10))).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        text = b">chr1\n" + text
    return gzip.compress(text) if draw(st.integers(0, 4)) == 0 else text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("sequences")


def _read_everything(path, index_dir):
    genome = Genome(path, index_dir=index_dir)
    for contig, length in genome.contigs.items():
        genome.fetch(contig, 0, length)
    windows(genome, 5)


@FUZZ
@given(data=fasta_bytes(), suffix=st.sampled_from([".fa", ".fa.gz"]))
def test_genome_reader(folder, data, suffix):
    path = folder / f"g{suffix}"
    path.write_bytes(data)
    one_line_or_success(lambda: _read_everything(path, folder / "index"))


BED_FIELDS = st.one_of(TOKEN, st.sampled_from(["chr1", "chr2", "+", "-", ".", "5", "12", "track", "#"]))


@FUZZ
@given(rows=st.lists(st.lists(BED_FIELDS, max_size=7), max_size=6), suffix=st.sampled_from([".bed", ".csv"]),
       separator=st.sampled_from(["\t", ",", " "]))
def test_interval_reader(folder, rows, suffix, separator):
    genome_path = folder / "small.fa"
    genome_path.write_text(">chr1\nACGTACGTACGTACGTACGT\n")
    path = folder / f"intervals{suffix}"
    header = "id,region,start,end,strand,label\n" if suffix == ".csv" else ""
    path.write_bytes((header + "\n".join(separator.join(row) for row in rows)).encode("utf-8", "surrogatepass"))
    genome = Genome(genome_path, index_dir=folder / "index")
    one_line_or_success(lambda: interval_sequences(read_intervals(path), genome))
