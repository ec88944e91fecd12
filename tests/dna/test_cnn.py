"""The CNN baseline of the DNA classification task: trains through its recipe, padding-blind, labelled ``cnn``."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from titans_seq.backbones import TitansConfig
from titans_seq.engine.config import load_recipe
from titans_seq.engine.trainer import train
from titans_seq.errors import UserError
from titans_seq.tasks.dna.classification import DNAClassificationConfig, DNAClassificationData, DNAClassificationTask
from titans_seq.tasks.dna.cnn import CNNConfig, MaskedBatchNorm1d
from titans_seq.tasks.dna.tokenizer import PAD

REPO = Path(__file__).resolve().parents[2]
SMALL_CNN = CNNConfig(embedding_dim=8, channels=[8, 8, 8], kernel_size=5, hidden=16)


def write_gc_table(path: Path, rows: int = 200, seed: int = 0) -> Path:
    """A table a CNN separates at once: label 1 is made of C and G, label 0 of A and T (either strand alike)."""
    rng = random.Random(seed)
    lines = ["sequence,label"]
    for i in range(rows):
        letters = "CG" if i % 2 else "AT"
        lines.append(f"{''.join(rng.choice(letters) for _ in range(rng.randint(20, 40)))},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cnn_recipe_trains_learns_and_is_its_own_row(tmp_path):
    table = write_gc_table(tmp_path / "gc.csv")
    recipe = load_recipe("dna_cnn", [
        f"data.path={table}", f"run.out_dir={tmp_path}", "task.rc_average=true", "task.cnn.embedding_dim=16",
        "task.cnn.channels=[16,16,16]", "task.cnn.kernel_size=5", "task.cnn.hidden=32", "train.max_steps=40",
        "train.batch_size=16", "train.log_every=1", "train.eval_every=20", "optim.warmup_steps=5", "optim.lr=1e-2"])
    record = train(recipe)
    assert record["variant"] == "cnn" and record["parameters"] < 10000
    losses = [r["loss"] for r in map(json.loads, (recipe.run_dir / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "train"]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert record["metrics"]["mcc"] == 1.0 and {"accuracy", "macro_f1", "auroc"} <= set(record["metrics"])


@pytest.mark.parametrize("k, pooling", [(1, "mean"), (1, "max"), (3, "last")])
def test_padding_does_not_change_a_prediction(tmp_path, k, pooling):
    task = DNAClassificationTask(DNAClassificationConfig(architecture="cnn", k=k, pooling=pooling, cnn=SMALL_CNN),
                                 DNAClassificationData(path=str(write_gc_table(tmp_path / "gc.csv"))))
    torch.manual_seed(0)
    model = task.build_model(TitansConfig())
    ids = task.datasets()["train"].tensors[0]
    model(ids[:64])                              # training mode: running statistics move off their start
    model.eval()
    lengths = (ids != PAD).sum(1)
    short = int(lengths.argmin())
    assert lengths[short] < ids.shape[1]         # the batch pads it
    with torch.no_grad():
        alone = model(ids[short:short + 1, :lengths[short]])
        in_batch = model(ids)[short]
    torch.testing.assert_close(alone[0], in_batch, atol=1e-5, rtol=1e-5)


def test_masked_batch_norm_uses_the_real_positions_only():
    torch.manual_seed(0)
    x, real = torch.randn(3, 4, 6), torch.tensor([[True] * 6, [True] * 2 + [False] * 4, [True] * 5 + [False]])
    masked, plain = MaskedBatchNorm1d(4), nn.BatchNorm1d(4)
    values = x.transpose(1, 2)[real]                                           # (positions, channels)
    torch.testing.assert_close(masked(x, real).transpose(1, 2)[real], plain(values))
    torch.testing.assert_close(masked.running_var, plain.running_var)
    assert (masked(x, real).transpose(1, 2)[~real] == 0).all()


def test_model_label_names_the_cnn(tmp_path):
    data = DNAClassificationData(path=str(write_gc_table(tmp_path / "gc.csv", rows=20)))
    assert DNAClassificationTask(DNAClassificationConfig(architecture="cnn"), data).model_label("mac") == "cnn"
    assert DNAClassificationTask(DNAClassificationConfig(), data).model_label("mac") == "mac"
    with pytest.raises(UserError, match=r"task.cnn.channels=\[\]: give positive sizes"):
        DNAClassificationTask(DNAClassificationConfig(architecture="cnn", cnn=CNNConfig(channels=[])), data)


def test_an_unknown_architecture_is_one_line(tmp_path):
    table = write_gc_table(tmp_path / "gc.csv", rows=20)
    result = subprocess.run([sys.executable, "-m", "titans_seq.cli", "train", "recipes/dna_cnn.yaml",
                             f"data.path={table}", "task.architecture=rnn", f"run.out_dir={tmp_path / 'runs'}"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "titans-seq: error: task.architecture='rnn': choose one of backbone, cnn"]
