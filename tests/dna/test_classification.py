"""Sequence tables, the classification and pretraining tasks (characters and k-mers), end to end on a real GUE task."""
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from Bio.Seq import Seq

from titans_seq.backbones import TitansConfig
from titans_seq.errors import TrainingError, UserError
from titans_seq.tasks.dna.classification import DNAClassificationConfig, DNAClassificationData, DNAClassificationTask
from titans_seq.tasks.dna.pretraining import DNAGenomeData, DNAPretrainingConfig, DNAPretrainingTask
from titans_seq.tasks.dna.tables import read_labelled
from titans_seq.tasks.dna.tokenizer import PAD

REPO = Path(__file__).resolve().parents[2]


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


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


@pytest.mark.parametrize("length, max_length, tokens, from_strings", [
    (60, 0, 20, False),       # on the k-mer grid: the reverse complement is a token permutation
    (61, 0, 21, True),        # off it: the reverse-complemented strings are encoded up front
    (61, 30, 10, False),      # cut to 30 bases, back on the grid
])
def test_kmer_classification_reverse_complements_are_exact(tmp_path, length, max_length, tokens, from_strings):
    rng = random.Random(length + max_length)
    sequences = [random_dna(rng, length) for _ in range(30)]
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(sequences)))
    task = DNAClassificationTask(DNAClassificationConfig(k=3), DNAClassificationData(path=str(table),
                                                                                    max_length=max_length))
    cut = max_length or length
    by_ids = {tuple(task.tokenizer.encode(s[:cut]).tolist()): s[:cut] for s in sequences}
    for split in task.datasets().values():
        batch = split.tensors
        assert len(batch) == (3 if from_strings else 2) and batch[0].shape[1] == tokens
        reverse = task.reverse_complement_ids(batch)
        for ids, flipped in zip(batch[0], reverse):
            sequence = by_ids[tuple(ids.tolist())]
            assert torch.equal(flipped, task.tokenizer.encode(str(Seq(sequence).reverse_complement())))


def test_kmer_language_model_windows_and_bits_per_base(tmp_path):
    sequence = random_dna(random.Random(5), 3000)
    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\n" + sequence + "\n")
    task = DNAPretrainingTask(DNAPretrainingConfig(k=3), DNAGenomeData(path=str(genome), window=30, train_windows=4,
                                                                       val_fraction=0.1, test_fraction=0.1))
    data = task.datasets()
    inputs, targets = data["val"].tensors
    assert inputs.shape[1] == 10 and torch.equal(inputs[:, 1:], targets[:, :-1])
    first_window = torch.cat([inputs[0], targets[0, -1:]])
    assert task.tokenizer.decode(first_window) == sequence[2700:2733]       # val: the last tenth, tiled
    uniform = lambda ids: torch.zeros(*ids.shape, task.tokenizer.vocab_size)  # noqa: E731
    metrics = task.evaluate(uniform, [(inputs, targets)])
    assert metrics["bits_per_base"] == pytest.approx(math.log2(4 + 4 ** 3 + 1) / 3)
    with pytest.raises(UserError, match="data.window=32 must be a positive multiple of task.k=3"):
        DNAPretrainingTask(DNAPretrainingConfig(k=3), DNAGenomeData(path=str(genome), window=32))


def test_non_finite_outputs_stop_evaluation_with_one_line(tmp_path):
    rng = random.Random(0)
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(rng, 12)},{i % 2}\n" for i in range(20)))
    task = DNAClassificationTask(DNAClassificationConfig(), DNAClassificationData(path=str(table)))
    poly_a, poly_c = (task.tokenizer.encode(base * 12) for base in "AC")
    ids, labels = torch.stack([poly_a, poly_c, poly_c]), torch.tensor([0, 1, 1])
    model = task.build_model(TitansConfig(variant="lmm", d_model=16, n_layers=1, n_heads=2, chunk_size=4,
                                          memory_damped_momentum=True))
    with torch.no_grad():
        model.embed.weight[poly_a[0]] = float("nan")     # the poly-A sequence's outputs go non-finite
    # the advice names the memory's stability option this model leaves off, and not the one it uses
    with pytest.raises(TrainingError, match=r"not finite for 1 of 3 sequences; try a lower optim.lr, "
                                            r"or model.memory_bound_by_input_norm=true$"):
        task.evaluate(model.eval(), [(ids, labels)])


@pytest.mark.parametrize("k", [1, 3])
def test_rc_average_scores_the_mean_of_both_strands_logits(tmp_path, k):
    rng = random.Random(k)
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(rng, 13)},{i % 2}\n" for i in range(40)))
    data = DNAClassificationData(path=str(table), test_fraction=0.5)
    averaged = DNAClassificationTask(DNAClassificationConfig(k=k, rc_average=True), data)
    plain = DNAClassificationTask(DNAClassificationConfig(k=k), data)
    batch = averaged.datasets()["test"].tensors
    weights = torch.randn(averaged.tokenizer.vocab_size, 2, generator=torch.Generator().manual_seed(k))

    def first_token_model(ids):          # reads one end of the sequence only: its two strands disagree
        return weights[ids[:, 0]]

    reverse = averaged.reverse_complement_ids(batch)
    logits = (first_token_model(batch[0]) + first_token_model(reverse)) / 2
    expected = torch.nn.functional.cross_entropy(logits, batch[-1]).item()
    assert averaged.evaluate(first_token_model, [batch])["loss"] == pytest.approx(expected)
    one_strand = plain.evaluate(first_token_model, [plain.datasets()["test"].tensors])["loss"]
    assert one_strand != pytest.approx(expected)


def test_rc_conjoin_trains_on_the_mean_of_both_strands_logits(tmp_path):
    rng = random.Random(7)
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(rng, 13)},{i % 2}\n" for i in range(40)))
    task = DNAClassificationTask(DNAClassificationConfig(k=3, rc_augment=False, rc_conjoin=True),
                                 DNAClassificationData(path=str(table)))
    batch = task.datasets()["train"].tensors
    weights = torch.randn(task.tokenizer.vocab_size, 2, generator=torch.Generator().manual_seed(7))

    def first_token_model(ids):
        return weights[ids[:, 0]]

    logits = (first_token_model(batch[0]) + first_token_model(task.reverse_complement_ids(batch))) / 2
    assert task.loss(first_token_model, batch).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, batch[-1]).item())
    assert task.loss(first_token_model, batch).item() != pytest.approx(
        torch.nn.functional.cross_entropy(first_token_model(batch[0]), batch[-1]).item())
    test = task.datasets()["test"].tensors                 # and it is evaluated as it was trained
    both = (first_token_model(test[0]) + first_token_model(task.reverse_complement_ids(test))) / 2
    assert task.evaluate(first_token_model, [test])["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(both, test[-1]).item())


def test_a_bidirectional_classifier_reads_each_sequence_without_its_padding(tmp_path):
    rng = random.Random(3)
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(rng, 6 + i % 9)},{i % 2}\n" for i in range(20)))
    task = DNAClassificationTask(DNAClassificationConfig(), DNAClassificationData(path=str(table)))
    torch.manual_seed(0)
    model = task.build_model(TitansConfig(variant="lmm", d_model=16, n_layers=2, n_heads=2, chunk_size=4,
                                          bidirectional=True)).eval()
    ids = task.datasets()["train"].tensors[0][:6]
    lengths = (ids != PAD).sum(1)
    assert len(set(lengths.tolist())) > 1
    with torch.no_grad():
        batched = model(ids)
        alone = torch.cat([model(row[None, :n]) for row, n in zip(ids, lengths.tolist())])
    assert torch.allclose(batched, alone, atol=1e-5)
