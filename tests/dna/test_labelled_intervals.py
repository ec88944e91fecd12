"""Classification data cut from a genome: BED files, Genomic Benchmarks interval CSVs and folders; one-line errors."""
import gzip
import random
from pathlib import Path

import pytest
from Bio.Seq import Seq

from titans_seq import cli
from titans_seq.errors import UserError
from titans_seq.tasks.dna.labelled_intervals import read_labelled_intervals
from titans_seq.tasks.dna.tables import read_labelled

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def genome(tmp_path) -> tuple[Path, dict[str, str]]:
    rng = random.Random(1)
    contigs = {"chr1": "".join(rng.choice("ACGT") for _ in range(400)),
               "chr2": "".join(rng.choice("acgtN") for _ in range(90))}
    path = tmp_path / "genome.fa"
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    return path, contigs


def rc(seq: str) -> str:
    return str(Seq(seq).reverse_complement())


def test_bed_labels_come_from_the_name_column(tmp_path, genome):
    fasta, contigs = genome
    bed = tmp_path / "peaks.bed"
    bed.write_text("track name=peaks\nchr1\t10\t40\tenhancer\t0\t+\nchr1\t50\t90\tother\t0\t-\nchr2\t0\t90\tenhancer\n")
    splits = read_labelled_intervals(bed, fasta)
    assert list(splits) == ["all"]
    assert splits["all"].labels == ["enhancer", "other", "enhancer"]
    assert splits["all"].sequences == [contigs["chr1"][10:40], rc(contigs["chr1"][50:90]), contigs["chr2"]]


def test_genomic_benchmarks_interval_folder_labels_by_file_name(tmp_path, genome):
    fasta, contigs = genome
    intervals = {("train", "positive"): "0,chr1,0,30,+\n1,chr1,100,130,-\n", ("train", "negative"): "2,chr2,5,35,+\n",
                 ("test", "positive"): "3,chr1,200,230,+\n", ("test", "negative"): "4,chr1,300,330,-\n"}
    for (split, label), rows in intervals.items():
        (tmp_path / "gb" / split).mkdir(parents=True, exist_ok=True)
        with gzip.open(tmp_path / "gb" / split / f"{label}.csv.gz", "wt") as f:
            f.write("id,region,start,end,strand\n" + rows)
    (tmp_path / "gb" / "metadata.yaml").write_text("version: 0\n")
    splits = read_labelled_intervals(tmp_path / "gb", fasta)
    assert sorted(splits) == ["test", "train"]
    assert splits["train"].labels == ["negative", "positive", "positive"]
    assert splits["train"].sequences == [contigs["chr2"][5:35], contigs["chr1"][:30], rc(contigs["chr1"][100:130])]
    assert splits["test"].sequences == [rc(contigs["chr1"][300:330]), contigs["chr1"][200:230]]
    with pytest.raises(UserError, match="need data.genome"):
        read_labelled(tmp_path / "gb")


@pytest.mark.parametrize("text, name, says", [
    ("chr1\t0\t30\tpos\nchr1\t30\t60\n", "x.bed", "x.bed:2: interval chr1:30-60 (chr1:30-60.) has no label"),
    ("chr1\t0\t30\tpos\nchr2\t50\t95\tneg\t0\t-\n", "x.bed", "x.bed:2: interval neg (chr2:50-95-) runs past the end "
                                                            "of chr2 (length 90"),
    ("id,region,start,end,strand\n0,chr1,0,30,+\n", "x.csv", "x.csv:2: interval 0 (chr1:0-30+) has no label"),
])
def test_bad_interval_data_is_one_line(tmp_path, genome, text, name, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        read_labelled_intervals(path, genome[0])
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_missing_genome_and_missing_intervals(tmp_path, genome):
    bed = tmp_path / "x.bed"
    bed.write_text("chr1\t0\t30\tpos\n")
    with pytest.raises(UserError, match=r"nowhere.fa: no such FASTA file"):
        read_labelled_intervals(bed, tmp_path / "nowhere.fa")
    with pytest.raises(UserError, match=r"nontata_promoters does not exist; .*datasets/NAME/ of .*genomic_benchmarks"):
        read_labelled_intervals(tmp_path / "human_nontata_promoters", genome[0])
    with pytest.raises(UserError, match=r"x.bed: .*BED file together with data.genome"):
        read_labelled(bed)
    csv = tmp_path / "x.csv"
    csv.write_text("id,region,start,end,strand,label\n0,chr1,0,30,+,pos\n")
    with pytest.raises(UserError, match=r"x.csv: an interval file .*set data.genome"):
        read_labelled(csv)


def test_kmer_classifier_trains_on_bed_intervals_from_the_cli(tmp_path, genome, capsys):
    fasta, _ = genome
    rng = random.Random(2)
    bed = tmp_path / "peaks.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 61}\t{'ab'[i % 2]}\t0\t{'+-'[s % 2]}\n"
                           for i, s in enumerate(rng.sample(range(330), 40))))
    code = cli.main(["train", str(REPO / "recipes" / "dna_mac.yaml"), f"data.path={bed}", f"data.genome={fasta}",
                     "task.k=3", "task.rc_average=true", f"run.out_dir={tmp_path / 'runs'}", "model.d_model=16",
                     "model.n_layers=1", "model.n_heads=2", "train.max_steps=2", "train.batch_size=8",
                     "train.eval_every=2"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "dna_classification (peaks.bed, test) mac:" in out.out and "mcc" in out.out
