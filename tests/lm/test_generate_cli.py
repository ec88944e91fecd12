"""``titans-seq generate``: text from a checkpoint, a file scored through the state, one-line user errors."""
import pytest

from titans_seq.cli import main

from .conftest import TEXT


def test_greedy_generation_is_deterministic(trained_lm, capsys):
    trained_lm("mac")
    capsys.readouterr()                                       # the training run's lines
    args = ["generate", "--checkpoint", str(trained_lm("mac")), "--prompt", "Line 3:", "--max-new-tokens", "12",
            "--temperature", "0"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main([*args, "--seed", "5"]) == 0                  # greedy ignores the seed
    assert first.startswith("Line 3:") and capsys.readouterr().out == first


def test_sampling_with_a_seed_repeats(trained_lm, capsys):
    trained_lm("mac")
    capsys.readouterr()
    args = ["generate", "--checkpoint", str(trained_lm("mac")), "--max-new-tokens", "20", "--top-k", "5",
            "--top-p", "0.9", "--seed", "3"]
    assert main(args) == 0 and main(args) == 0
    first, second = capsys.readouterr().out.split("\n", 1)
    assert second.startswith(first)


def test_an_input_file_is_scored_in_bits_per_byte(trained_lm, tmp_path, capsys):
    (tmp_path / "long.txt").write_text(TEXT * 3)
    assert main(["generate", "--checkpoint", str(trained_lm("mac")), "--input-file", str(tmp_path / "long.txt")]) == 0
    out = capsys.readouterr().out
    assert f"{len(TEXT) * 3:,} tokens" in out and "bits/byte" in out


@pytest.mark.parametrize("extra,message", [
    (["--prompt", "x" * 40, "--max-new-tokens", "1"], "exceeds the 32 tokens this transformer was trained on"),
    (["--temperature", "-1"], "--temperature"),
    (["--input-file", "no/such.txt"], "no such file"),
])
def test_bad_generation_requests_are_one_line_and_exit_2(trained_lm, capsys, extra, message):
    trained_lm("transformer")
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(trained_lm("transformer")), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_folder_that_is_no_checkpoint_is_a_user_error(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path)]) == 2
    assert "not a complete checkpoint" in capsys.readouterr().err


def test_train_a_tokenizer_in_one_command(tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(TEXT)
    assert main(["tokenizer", str(tmp_path / "corpus.txt"), "--vocab-size", "300", "--out",
                 str(tmp_path / "tok.json")]) == 0
    assert (tmp_path / "tok.json").is_file() and "task.tokenizer=" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_text("")
    assert main(["tokenizer", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "t2.json")]) == 2
