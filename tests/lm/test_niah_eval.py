"""S-NIAH through a model: every cell answered and scored, the table and heatmap written; the passkey task trains."""
import json

import pytest
import torch

from titans_seq.cli import main
from titans_seq.engine.config import load_recipe
from titans_seq.errors import UserError
from titans_seq.engine.trainer import train
from titans_seq.tasks.lm.commands import parse_list
from titans_seq.backbones import TitansConfig
from titans_seq.tasks.language_model import LanguageModel
from titans_seq.memory import NeuralMemory
from titans_seq.tasks.lm.niah_eval import NeedleResult, accuracy_table, scale_forgetting
from titans_seq.tasks.lm.passkey import IGNORE, PasskeyConfig, PasskeySequences, PasskeyTask
from titans_seq.tasks.lm.tokenizers import ByteTokenizer

from .conftest import TINY_MODEL


def test_accuracy_table_averages_samples_per_cell():
    results = [NeedleResult("pk", 1024, d, s, "1", "") for d, s in [(0.0, 1), (0.0, 0), (1.0, 1), (1.0, 1)]]
    rows = [line for line in accuracy_table(results).splitlines() if line.startswith("| 1,024")]
    assert rows == ["| 1,024 | 0.50 | 1.00 | 0.75 |"]


def test_niah_command_writes_table_heatmap_and_records(trained_lm, tmp_path, capsys):
    out = tmp_path / "niah"
    assert main(["niah", "--checkpoint", str(trained_lm("mac")), "--kinds", "pk", "--lengths", "160,200",
                 "--depths", "0,1", "--samples", "2", "--out", str(out)]) == 0
    assert "| 200 |" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 * 2 and {r["length"] for r in records} == {160, 200}
    assert all(r["score"] in (0.0, 1.0) for r in records)
    assert (out / "niah.png").read_bytes()[:4] == b"\x89PNG"


def test_scale_forgetting_scales_every_memorys_forgetting_gate():
    model = LanguageModel(32, TitansConfig(variant="mag", d_model=16, n_layers=2, n_heads=2, chunk_size=4, window=8))
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    x = torch.randn(1, 8, 16)
    before = [memory.gates(x)[2] for memory in memories]
    scale_forgetting(model, 0.5)
    assert len(memories) == 2
    for memory, decay in zip(memories, before):
        lr, momentum, scaled = memory.gates(x)
        torch.testing.assert_close(scaled, decay * 0.5)


def test_niah_command_can_switch_forgetting_off(trained_lm, tmp_path, capsys):
    assert main(["niah", "--checkpoint", str(trained_lm("mac")), "--kinds", "pk", "--lengths", "160",
                 "--depths", "0", "--samples", "1", "--forget-scale", "0", "--out", str(tmp_path)]) == 0
    assert "| 160 |" in capsys.readouterr().out


def test_niah_past_a_fixed_length_model_is_a_user_error(trained_lm, capsys):
    assert main(["niah", "--checkpoint", str(trained_lm("transformer")), "--kinds", "pk", "--lengths", "200"]) == 2
    assert "exceeds the 32 tokens" in capsys.readouterr().err


@pytest.mark.parametrize("text,kind,values", [("2K,4096, 1M", int, [2048, 4096, 1 << 20]),
                                              ("0,0.5,1", float, [0.0, 0.5, 1.0])])
def test_parse_list(text, kind, values):
    assert parse_list(text, kind, "--x") == values


def test_passkey_sequences_train_only_on_the_answer():
    inputs, targets = PasskeySequences(2, 256, "s")[1]
    assert inputs.shape == targets.shape == (256,)
    answer = bytes(targets[targets != IGNORE].tolist()).decode()
    assert answer[0] == " " and answer[1:].isdigit() and len(answer) == 6
    assert f"The pass key is {answer[1:]}." in bytes(inputs.tolist()[1:]).decode()


def test_passkey_sequences_can_train_on_every_token():
    every = PasskeySequences(2, 256, "s", loss_on="all")[1]
    answer_only = PasskeySequences(2, 256, "s")[1]
    assert torch.equal(every[0], answer_only[0]) and torch.equal(every[1][:-1], every[0][1:])
    asked = answer_only[1] != IGNORE
    assert torch.equal(every[1][asked], answer_only[1][asked])


@pytest.mark.parametrize("loss_on", ["answer", "all"])
def test_passkey_prompts_of_varied_length_end_their_answer_at_varied_places(loss_on):
    sequences = PasskeySequences(64, 256, "s", loss_on=loss_on, min_length=128)
    ends = set()
    for inputs, targets in (sequences[i] for i in range(len(sequences))):
        assert inputs.shape == targets.shape == (256,)
        answer_end = int((targets != IGNORE).nonzero().max()) + 1     # padding after the answer is never a target
        assert 128 <= answer_end <= 256 and (inputs[answer_end:] == ByteTokenizer().eos_id).all()
        key = bytes(targets[answer_end - 5:answer_end].tolist()).decode()
        assert key.isdigit() and f"The pass key is {key}." in bytes(inputs[1:answer_end].tolist()).decode()
        ends.add(answer_end % 64)
    assert len(ends) > 16                   # the answer's place in a segment of 64 varies
    first = sequences[3]
    assert all(torch.equal(a, b) for a, b in zip(first, sequences[3]))      # the same prompt every time it is read


def test_only_the_training_prompts_vary_and_a_bad_minimum_is_one_line():
    splits = PasskeyTask(PasskeyConfig(seq_len=256, min_seq_len=128, n_train=32, n_val=8, n_test=8)).datasets()
    answer_ends = {split: [int((splits[split][i][1] != IGNORE).nonzero().max()) for i in range(8)]
                   for split in ("train", "test")}
    assert answer_ends["test"] == [255] * 8 and min(answer_ends["train"]) < 255
    with pytest.raises(UserError, match=r"task.min_seq_len=300: give 0 .* from 128 to task.seq_len=256"):
        PasskeyTask(PasskeyConfig(seq_len=256, min_seq_len=300))


def test_passkey_keys_can_hide_in_a_text_file(tmp_path):
    (tmp_path / "essay.txt").write_text("Startups grow fast. Most of them die young. " * 40)
    task = PasskeyTask(PasskeyConfig(seq_len=256, n_train=4, n_val=1, n_test=1, haystack=str(tmp_path / "essay.txt")))
    inputs, targets = task.datasets()["train"][0]
    text, key = bytes(inputs.tolist()[1:]).decode(), bytes(targets[targets != IGNORE].tolist()).decode()[1:]
    assert "Startups grow fast." in text and "grass is green" not in text
    assert text.count(f"The pass key is {key}.") == 1 and "What is the pass key? The pass key is" in text


def test_a_missing_haystack_file_is_one_clear_line(tmp_path):
    task = PasskeyTask(PasskeyConfig(seq_len=256, haystack=str(tmp_path / "missing.txt")))
    with pytest.raises(UserError, match="task.haystack=.*missing.txt: no such file"):
        task.datasets()


@pytest.mark.parametrize("carry_state", [0, 2])
def test_passkey_recipe_trains(tmp_path, carry_state):
    recipe = load_recipe("lm_passkey", [*TINY_MODEL, "task.seq_len=128", "task.n_train=16", "task.n_val=4",
                                        "task.n_test=4", "train.max_steps=3", f"task.carry_state={carry_state}",
                                        f"run.out_dir={tmp_path}"])
    record = train(recipe)
    assert set(record["metrics"]) == {"loss", "accuracy"} and 0 <= record["metrics"]["accuracy"] <= 1


@pytest.mark.parametrize("variant, asked", [("mac", [128, 384]), ("transformer", [128])])
def test_passkey_test_lengths_ask_the_best_model_far_past_training(tmp_path, variant, asked):
    """accuracy@<length> per length (a transformer only within its training length), each the mean of the
    prompts niah/results.jsonl records there."""
    recipe = load_recipe("lm_passkey", [*TINY_MODEL, "task.seq_len=192", "task.n_train=16", "task.n_val=4",
                                        "task.n_test=4", "train.max_steps=2", f"model.variant={variant}",
                                        "task.test_lengths=[128,384]", "task.test_depths=[0,1]",
                                        "task.test_samples=2", f"run.out_dir={tmp_path}"])
    record = train(recipe)
    assert sorted(k for k in record["metrics"] if "@" in k) == sorted(f"accuracy@{n}" for n in asked)
    rows = [json.loads(line) for line in (recipe.run_dir / "niah" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(asked) * 2 * 2
    for length in asked:
        scores = [row["score"] for row in rows if row["length"] == length]
        assert record["metrics"][f"accuracy@{length}"] == pytest.approx(sum(scores) / len(scores))
    assert (recipe.run_dir / "niah" / "niah.png").is_file()
    saved = json.loads((recipe.run_dir / "test_results.json").read_text())
    assert saved["metrics"] == record["metrics"]
