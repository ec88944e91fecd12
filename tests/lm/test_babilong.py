"""BABILong: the Hugging Face file layout is read, answers are scored as BABILong does, missing files are one line."""
import polars as pl
import pytest

from titans_seq.cli import main
from titans_seq.errors import UserError
from titans_seq.tasks.lm.babilong import TASK_LABELS, babilong_correct, load_babilong

ROWS = {"input": ["Mary moved to the bathroom. John went to the hallway."] * 2,
        "question": ["Where is Mary?", "Where is John?"], "target": ["bathroom", "hallway"]}


@pytest.fixture
def babilong_dir(tmp_path):
    (tmp_path / "0k").mkdir()
    pl.DataFrame(ROWS).write_parquet(tmp_path / "0k" / "qa1-00000-of-00001.parquet")
    return tmp_path


def test_reads_the_hugging_face_layout(babilong_dir):
    samples = load_babilong(babilong_dir, "qa1", "0k")
    assert [s.target for s in samples] == ["bathroom", "hallway"] and samples[0].question == "Where is Mary?"


@pytest.mark.parametrize("target,output,question,task,correct", [
    ("bathroom", " bathroom.", "Where is Mary?", "qa1", True),
    ("bathroom", " The Bathroom", "Where is Mary?", "qa1", True),               # case does not matter
    ("bathroom", " kitchen or bathroom", "Where is Mary?", "qa1", False),       # two labels: not an answer
    ("bathroom", " hallway. Then the bathroom.", "Where is Mary?", "qa1", False),   # only the first sentence counts
    ("milk", " Fred gave the milk", "What did Fred give?", "qa5", True),        # Fred is in the question
    ("Fred", " bathroom", "Who gave the milk?", "qa5", False),
])
def test_scoring_matches_babilong(target, output, question, task, correct):
    assert babilong_correct(target, output, question, TASK_LABELS[task]) is correct


def test_missing_files_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(UserError, match="qa2 at 4k not found"):
        load_babilong(tmp_path, "qa2", "4k")
    assert main(["babilong", "--checkpoint", str(tmp_path), "--data", str(tmp_path), "--tasks", "qa1",
                 "--lengths", "0k"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "RMT-team/babilong" in err and len(err.strip().splitlines()) == 1


def test_babilong_command_tabulates_accuracy(trained_lm, babilong_dir, capsys):
    trained_lm("mac")
    capsys.readouterr()
    assert main(["babilong", "--checkpoint", str(trained_lm("mac")), "--data", str(babilong_dir), "--tasks", "qa1",
                 "--lengths", "0k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| task | 0k |" and lines[2].startswith("| qa1 | ")
