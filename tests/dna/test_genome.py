"""Genomes and intervals: FASTA reading (plain, bgzip, gzip), slices, windows, strands, one-line errors."""
import gzip
import os
import pickle
import random
from pathlib import Path

import pytest
from Bio import bgzf
from Bio.Seq import Seq

from titans_seq.errors import UserError
from titans_seq.tasks.dna.genome import Genome, split_contigs, windows
from titans_seq.tasks.dna.intervals import Interval, interval_sequences, read_intervals, reverse_complement

ECOLI = "NC_000913.3"


def _contig(rng: random.Random, length: int) -> str:
    """Random bases with a soft-masked (lowercase) run and an N run."""
    bases = [rng.choice("ACGT") for _ in range(length)]
    mask = rng.randrange(length // 2)
    bases[mask:mask + length // 5] = [b.lower() for b in bases[mask:mask + length // 5]]
    gap = rng.randrange(length // 2, length - 10)
    bases[gap:gap + 7] = "N" * 7
    return "".join(bases)


@pytest.fixture(scope="module")
def contigs() -> dict[str, str]:
    rng = random.Random(7)
    return {"chr1": _contig(rng, 1003), "chr2": _contig(rng, 480), "chrM": _contig(rng, 61), "scaf": _contig(rng, 250)}


def _fasta_text(records: dict[str, str], width: int = 60) -> str:
    return "".join(f">{name} some description\n" + "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in records.items())


def write_fasta(path: Path, records: dict[str, str], compression: str = "plain") -> Path:
    text = _fasta_text(records)
    if compression == "bgzip":
        with bgzf.BgzfWriter(str(path), "wb") as f:
            f.write(text.encode())
    elif compression == "gzip":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def assert_one_line(exc: pytest.ExceptionInfo, *names: object) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, (name, message)


SLICES = [(0, 1), (0, 60), (55, 125), (100, 400), (17, 18)]


def test_contigs_and_slices_match_the_raw_sequences(tmp_path, contigs):
    genome = Genome.open(write_fasta(tmp_path / "g.fa", contigs))
    assert genome.contigs == {name: len(seq) for name, seq in contigs.items()}
    assert list(genome.contigs) == list(contigs)              # file order
    for name, seq in contigs.items():
        assert genome.fetch(name, 0, len(seq)) == seq
        for start, end in SLICES:
            if end <= len(seq):
                assert genome.fetch(name, start, end) == seq[start:end]
    assert any(c.islower() for c in genome.fetch("chr1", 0, 1003))   # soft-masking kept
    assert "NNNNNNN" in genome.fetch("chr2", 0, 480)


@pytest.mark.parametrize("compression, indexed", [("bgzip", True), ("gzip", False)])
def test_compressed_fasta_reads_like_plain(tmp_path, contigs, compression, indexed):
    plain = Genome(write_fasta(tmp_path / "g.fa", contigs))
    packed = Genome(write_fasta(tmp_path / "g.fa.gz", contigs, compression))
    assert (packed.index_path is not None) == indexed
    assert packed.contigs == plain.contigs
    for name, length in plain.contigs.items():
        for start, end in [*SLICES, (0, length), (length - 5, length)]:
            if end <= length:
                assert packed.fetch(name, start, end) == plain.fetch(name, start, end)


def test_the_index_goes_to_index_dir_never_beside_the_fasta(tmp_path, contigs):
    # a folder open to writing (as root finds every folder) still gets nothing written into it
    for name, compression in [("g.fa", "plain"), ("g.fa.gz", "bgzip")]:
        folder = tmp_path / compression
        folder.mkdir()
        path = write_fasta(folder / name, contigs, compression)
        genome = Genome(path, index_dir=tmp_path / "cache")
        assert genome.index_path.parent == tmp_path / "cache"
        assert [p.name for p in folder.iterdir()] == [name]
        assert genome.fetch("chr2", 3, 90) == contigs["chr2"][3:90]
        assert Genome(path, index_dir=tmp_path / "cache").index_path == genome.index_path   # reused


def test_a_fresh_index_beside_the_fasta_is_used(tmp_path, contigs):
    path = write_fasta(tmp_path / "g.fa", contigs)
    cached = Genome(path, index_dir=tmp_path / "cache").index_path
    beside = tmp_path / "g.fa.fai"
    beside.write_bytes(cached.read_bytes())                        # as `samtools faidx g.fa` would
    assert Genome(path, index_dir=tmp_path / "cache").index_path == beside


def test_the_default_index_dir_follows_xdg_cache_home(tmp_path, monkeypatch, contigs):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write_fasta(tmp_path / "g.fa", contigs)
    assert Genome(path).index_path.parent == tmp_path / "xdg" / "titans_seq" / "fai"


def test_a_changed_fasta_gets_a_fresh_index(tmp_path, contigs):
    path = write_fasta(tmp_path / "g.fa", contigs)
    Genome(path, index_dir=tmp_path / "cache").close()
    (tmp_path / "g.fa.fai").write_text("chr1\t1003\t22\t60\t61\n")   # an index beside, older than its FASTA
    changed = {"other": contigs["chr1"][::-1]}
    write_fasta(path, changed)
    earlier = path.stat().st_mtime - 10
    os.utime(tmp_path / "g.fa.fai", (earlier, earlier))
    genome = Genome(path, index_dir=tmp_path / "cache")
    assert genome.contigs == {"other": 1003}
    assert genome.fetch("other", 10, 200) == changed["other"][10:200]


def test_genome_survives_pickling(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    copy = pickle.loads(pickle.dumps(genome))
    assert copy.fetch("chr1", 500, 700) == contigs["chr1"][500:700]


def test_reverse_complement_agrees_with_biopython():
    iupac = "ACGTNRYKMSWBDHVacgtnrykmswbdhv"
    assert reverse_complement(iupac) == str(Seq(iupac).reverse_complement())
    assert reverse_complement("AAcgN") == "NcgTT"
    rng = random.Random(3)
    for _ in range(20):
        seq = "".join(rng.choice(iupac) for _ in range(rng.randrange(1, 50)))
        assert reverse_complement(reverse_complement(seq)) == seq


def test_bed_intervals_on_both_strands(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    bed = tmp_path / "peaks.bed"
    bed.write_text("track name=peaks\nbrowser position chr1:1-100\n# a comment\n"
                   "chr1\t10\t70\tp1\t0\t+\n"
                   "chr1\t100\t355\tp2\t0\t-\n"
                   "chr2\t0\t480\tp3\t5\t.\n"
                   "\n"
                   "scaf\t200\t250\n")
    intervals = read_intervals(bed)
    assert [(i.name, i.contig, i.start, i.end, i.strand) for i in intervals] == [
        ("p1", "chr1", 10, 70, "+"), ("p2", "chr1", 100, 355, "-"), ("p3", "chr2", 0, 480, "."),
        ("scaf:200-250", "scaf", 200, 250, ".")]
    assert intervals[1].origin == f"{bed}:5"
    raw = [contigs[i.contig][i.start:i.end] for i in intervals]
    expected = [raw[0], str(Seq(raw[1]).reverse_complement()), raw[2], raw[3]]
    assert interval_sequences(intervals, genome) == expected


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_genomic_benchmarks_interval_csv(tmp_path, contigs, suffix):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    text = "id,region,start,end,strand\n0,chr1,0,200,+\n1,chr2,30,230,-\n2,chrM,0,61,+\n"
    path = tmp_path / f"positive{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    intervals = read_intervals(path)
    assert [(i.name, i.contig, i.start, i.end, i.strand, i.label) for i in intervals] == [
        ("0", "chr1", 0, 200, "+", None), ("1", "chr2", 30, 230, "-", None), ("2", "chrM", 0, 61, "+", None)]
    assert interval_sequences(intervals, genome) == [
        contigs["chr1"][:200], str(Seq(contigs["chr2"][30:230]).reverse_complement()), contigs["chrM"]]


def test_interval_csv_label_column(tmp_path):
    path = tmp_path / "all.csv"
    path.write_text("id,region,start,end,strand,label\na,chr1,5,9,+,enhancer\nb,chr2,1,3,-,\n")
    assert [i.label for i in read_intervals(path)] == ["enhancer", None]


def test_tiled_windows(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    tiles = windows(genome, 100)
    assert all(end - start == 100 and 0 <= start and end <= genome.contigs[c] for c, start, end in tiles)
    assert "chrM" not in {c for c, _, _ in tiles}                      # 61 bases: no whole window
    assert [s for c, s, _ in tiles if c == "chr1"] == list(range(0, 901, 100))
    overlapping = windows(genome, 100, stride=30, contigs=["chr2"])
    assert [s for _, s, _ in overlapping] == list(range(0, 381, 30))
    every = windows(genome, 100, stride=1, contigs=["chr2"])
    assert [s for _, s, _ in every] == list(range(381)) and every[-1][2] == 480    # the last window ends the contig


def test_random_windows_are_seeded_and_stay_inside_contigs(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    drawn = windows(genome, 64, mode="random", count=500, seed=11)
    assert drawn == windows(genome, 64, mode="random", count=500, seed=11)
    assert drawn != windows(genome, 64, mode="random", count=500, seed=12)
    assert len(drawn) == 500
    assert all(end - start == 64 and 0 <= start and end <= genome.contigs[c] for c, start, end in drawn)
    assert {c for c, _, _ in drawn} == set(contigs) - {"chrM"}
    near_whole = windows(genome, 470, mode="random", count=200, contigs=["chr2"])
    assert {start for _, start, _ in near_whole} == set(range(11))           # every valid start, no other


def test_held_out_contigs_never_appear(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    train, held = split_contigs(genome, ["scaf", "chr2"])
    assert (train, held) == (["chr1", "chrM"], ["chr2", "scaf"])
    for mode, count in [("tiled", None), ("random", 300)]:
        cut = windows(genome, 50, mode=mode, count=count, exclude=held)
        assert {c for c, _, _ in cut} == {"chr1", "chrM"}
        assert {c for c, _, _ in windows(genome, 50, mode=mode, count=count, contigs=held)} == set(held)


@pytest.mark.parametrize("content, says", [
    (None, "no such"),
    (b"", "empty"),
    (b"chrom\tstart\tend\nchr1\t1\t2\n", "not a FASTA"),
    (b"@read1\nACGT\n+\nIIII\n", "not a FASTA"),
    (b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip"),
    (b">a\nACGTACGT\nAC\nACGTACGT\n", "index"),            # ragged lines: pyfaidx cannot index it
    (b">a\nACGT\n>a\nACGT\n", "a"),                          # the same contig twice
    (b">chr1\n\n\n>", "index"),                                 # a last record with no name (pyfaidx: RuntimeError)
])
def test_invalid_fasta_is_a_one_line_user_error(tmp_path, content, says):
    path = tmp_path / "bad.fa"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as exc:
        Genome(path)
    assert_one_line(exc, path, says)


def test_duplicate_contig_in_gzip_fasta(tmp_path):
    path = tmp_path / "dup.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">a\nACGT\n>a\nACGT\n")
    with pytest.raises(UserError) as exc:
        Genome(path)
    assert_one_line(exc, path, "twice")


@pytest.mark.parametrize("contig, start, end, says", [
    ("chrX", 0, 10, "chrX"), ("chr2", 400, 481, "480"), ("chr2", -1, 10, "chr2"), ("chr2", 10, 10, "chr2")])
def test_fetch_outside_the_genome(tmp_path, contigs, contig, start, end, says):
    path = write_fasta(tmp_path / "g.fa", contigs)
    with pytest.raises(UserError) as exc:
        Genome(path).fetch(contig, start, end)
    assert_one_line(exc, path, says)


def test_interval_past_the_contig_end(tmp_path, contigs):
    genome = Genome(write_fasta(tmp_path / "g.fa", contigs))
    bed = tmp_path / "x.bed"
    bed.write_text("chr1\t0\t10\tok\nchrM\t50\t70\ttoo_long\t0\t-\n")
    with pytest.raises(UserError) as exc:
        interval_sequences(read_intervals(bed), genome)
    assert_one_line(exc, f"{bed}:2", "too_long", "61")
    with pytest.raises(UserError) as exc:
        interval_sequences([Interval("n", "chr9", 0, 5, origin=f"{bed}:7")], genome)
    assert_one_line(exc, f"{bed}:7", "chr9", tmp_path / "g.fa")


@pytest.mark.parametrize("line, says", [
    ("chr1\t10\tx20\n", "integer"),
    ("chr1\t20\t20\n", "start < end"),
    ("chr1\t-5\t20\n", "start < end"),
    ("chr1\t0\t20\tname\t0\t*\n", "strand"),
    ("chr1 0 20\n", "3 tab-separated"),
])
def test_bad_bed_line_names_file_and_line(tmp_path, line, says):
    bed = tmp_path / "bad.bed"
    bed.write_text("# header\nchr1\t0\t10\n" + line)
    with pytest.raises(UserError) as exc:
        read_intervals(bed)
    assert_one_line(exc, f"{bed}:3", says)


@pytest.mark.parametrize("text, says", [
    ("id,chrom,start,end,strand\n0,chr1,0,5,+\n", "region"),
    ("id,region,start,end,strand\n0,chr1,0,5,+\n1,chr1,9,x,+\n", "bad.csv:3"),
    ("id,region,start,end,strand\n", "no interval"),
])
def test_bad_interval_csv(tmp_path, text, says):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        read_intervals(path)
    assert_one_line(exc, path, says)


def test_unknown_contig_names_in_selections(tmp_path, contigs):
    path = write_fasta(tmp_path / "g.fa", contigs)
    genome = Genome(path)
    for call in (lambda: split_contigs(genome, ["chr1", "chr7"]),
                 lambda: windows(genome, 10, exclude=["chr7"]),
                 lambda: windows(genome, 10, mode="random", count=3, contigs=["chr7"])):
        with pytest.raises(UserError) as exc:
            call()
        assert_one_line(exc, path, "chr7")
    with pytest.raises(UserError) as exc:
        split_contigs(genome, list(contigs))
    assert_one_line(exc, path, "no contig")


def test_real_ecoli_genome_plain_and_gzip(tmp_path, shared_data):
    plain_path = shared_data("dna", "fasta", "ecoli_k12_mg1655_GCF_000005845.2.fna")
    gzip_path = shared_data("dna", "fasta", "GCF_000005845.2_ASM584v2_genomic.fna.gz")
    real_fasta = plain_path.parent
    before = sorted(p.name for p in real_fasta.iterdir())
    plain = Genome(plain_path, index_dir=tmp_path)
    packed = Genome(gzip_path, index_dir=tmp_path)
    assert gzip_path.read_bytes()[:4] == b"\x1f\x8b\x08\x08"     # plain gzip (no BGZF extra field) ...
    assert packed.index_path is None                            # ... so it is read into memory
    assert plain.contigs == packed.contigs == {ECOLI: 4_641_652}
    assert plain.fetch(ECOLI, 0, 20) == "AGCTTTTCATTCTGACTGCA"
    for start in (0, 1_234_567, 4_641_552):
        assert plain.fetch(ECOLI, start, start + 100) == packed.fetch(ECOLI, start, start + 100)
    assert sorted(p.name for p in real_fasta.iterdir()) == before   # the shared data stays untouched
