"""DNA tokenisation, sequence tables, and the classification task end to end on a real GUE task."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from Bio.Seq import Seq

from titans_seq.engine.errors import UserError
from titans_seq.tasks.dna.tables import read_labelled
from titans_seq.tasks.dna.tokenizer import PAD, DNATokenizer, reverse_complement_tokens

REPO = Path(__file__).resolve().parents[2]


def test_character_tokens_soft_masking_and_ambiguity_codes():
    tok = DNATokenizer()
    assert tok.decode(tok.encode("ACGTN")) == "ACGTN"
    assert torch.equal(tok.encode("acgtRY"), tok.encode("ACGTNN"))
    assert tok.vocab_size == 9 and PAD == 0


def test_invalid_base_names_where_it_is():
    with pytest.raises(UserError, match=r"seqs.fa record 3: invalid base 'X' at position 5"):
        DNATokenizer().encode("ACGTXA", where="seqs.fa record 3")


def test_kmer_tokens():
    tok = DNATokenizer(k=3)
    ids = tok.encode("ACGTA")
    assert len(ids) == 3 and tok.decode(ids) == "ACG CGT GTA"
    assert tok.vocab_size == 4 + 125


def test_reverse_complement_tokens_match_biopython_and_keep_padding_last():
    tok = DNATokenizer()
    rows = ["ACCGTTAN", "GATTACA"]
    ids = torch.full((2, 10), PAD)
    for i, s in enumerate(rows):
        ids[i, :len(s)] = tok.encode(s)
    flipped = reverse_complement_tokens(ids)
    for i, s in enumerate(rows):
        assert tok.decode(flipped[i]) == str(Seq(s).reverse_complement())
        assert (flipped[i, len(s):] == PAD).all()


def test_tables_and_folders(tmp_path):
    (tmp_path / "gue").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "gue" / f"{split}.csv").write_text("sequence,label\nACGT,0\nTTGA,1\n")
    splits = read_labelled(tmp_path / "gue")
    assert sorted(splits) == ["test", "train", "val"] and splits["val"].labels == ["0", "1"]
    for split, cls, seq in (("train", "positive", "ACGT"), ("train", "negative", "GGCC"), ("test", "positive", "AAAA")):
        folder = tmp_path / "gb" / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{len(list(folder.iterdir()))}.txt").write_text(seq + "\n")
    gb = read_labelled(tmp_path / "gb")
    assert gb["train"].labels == ["negative", "positive"] and gb["test"].sequences == ["AAAA"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("seq\tclass\nACGT\ta\n")
    assert read_labelled(tsv)["all"].labels == ["a"]


@pytest.mark.parametrize("content,message", [
    ("", "empty"),
    ("sequence,label\n", "empty"),
    ("dna,y\nACGT,1\n", "no sequence column"),
])
def test_bad_tables(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_labelled(path)


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "titans_seq.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


@pytest.mark.parametrize("content,message", [
    ("sequence,label\nACGT,0\nACGG,0\nACGA,0\nACGC,0\n", "one class"),
    ("sequence,label\nACGT,0\nACQT,1\nACGA,0\nACGC,1\nAAAA,0\nCCCC,1\n", "invalid base 'Q' at position 3"),
])
def test_bad_data_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    result = run_cli("train", "recipes/dna_mac.yaml", f"data.path={path}", f"run.out_dir={tmp_path / 'runs'}")
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_data_path_says_where_it_looked(tmp_path):
    result = run_cli("train", "recipes/dna_mac.yaml", f"data.path={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "nowhere does not exist" in result.stderr


def test_dna_mac_recipe_trains_on_a_real_gue_task(tmp_path, shared_data):
    gue = shared_data("dna", "gue", "prom_core_notata")
    result = run_cli("train", "recipes/dna_mac.yaml", f"data.path={gue}", f"run.out_dir={tmp_path}",
                     "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "train.max_steps=4",
                     "train.batch_size=8", "train.eval_batches=2", "train.eval_every=2")
    assert result.returncode == 0, result.stderr
    assert "dna_classification (prom_core_notata, test) mac:" in result.stdout
    assert "mcc" in result.stdout and "auroc" in result.stdout


def test_pretrain_on_a_genome_then_fine_tune_from_it(tmp_path):
    genome = tmp_path / "genome.fa"
    rng = __import__("random").Random(0)
    genome.write_text(">chr1\n" + "".join(rng.choice("ACGT") for _ in range(6000)) + "\n>chr2\n"
                      + "".join(rng.choice("acgtN") for _ in range(3000)) + "\n")
    small = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "train.batch_size=4", "train.max_steps=3",
             "train.eval_every=3", f"run.out_dir={tmp_path / 'runs'}"]
    pre = run_cli("train", "recipes/dna_pretrain.yaml", f"data.path={genome}", "data.window=64",
                  "data.train_windows=32", "data.val_fraction=0.05", "data.test_fraction=0.05", *small)
    assert pre.returncode == 0, pre.stderr
    assert "bits_per_base" in pre.stdout
    table = tmp_path / "labels.csv"
    table.write_text("sequence,label\n" + "".join(f"{rng.choice(['ACGTACGT', 'TTTTGGGG'])},{i % 2}\n"
                                                  for i in range(40)))
    checkpoint = tmp_path / "runs" / "dna-pretrain-mac" / "best"
    tuned = run_cli("train", "recipes/dna_mac.yaml", f"data.path={table}", f"model.init_from={checkpoint}",
                    "run.name=tuned", *small)
    assert tuned.returncode == 0, tuned.stderr
    assert "initialised" in tuned.stdout
    wrong = run_cli("train", "recipes/dna_mac.yaml", f"data.path={table}", f"model.init_from={checkpoint}",
                    "run.name=wrong", *small, "model.d_model=32")
    assert wrong.returncode == 2 and "were the model settings the same" in wrong.stderr
