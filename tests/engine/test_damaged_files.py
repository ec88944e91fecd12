"""Damaged files: a truncated or altered checkpoint file, config.json or state is one line (exit 2), never a traceback."""
import json
import shutil

import pytest

from titans_seq.cli import main
from titans_seq.engine.config import load_recipe
from titans_seq.engine.trainer import train

from .test_trainer import TINY

RUN = [*TINY, "train.max_steps=4", "train.save_every=2", "train.eval_every=2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    train(load_recipe("demo", [*RUN, f"run.out_dir={root}"]))
    return root / "demo"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10                    # inside the last tensor's bytes: still a valid safetensors file
    path.write_bytes(bytes(data))


def _garble(path):
    path.write_bytes(b"\x00\xff{not json")


# (file, damage, the commands that read it)
DAMAGES = [("model.safetensors", _truncate, "resume eval"),
           ("model.safetensors", _flip_a_byte, "resume eval"),
           ("config.json", _garble, "generate"), ("config.json", _truncate, "generate"),
           ("state.json", _truncate, "resume"), ("optimizer.safetensors", _truncate, "resume"),
           ("optimizer.json", _flip_a_byte, "resume"), ("rng.json", _garble, "resume"),
           ("COMPLETE", _garble, "resume eval")]


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("name, damage, commands", DAMAGES, ids=[f"{n}-{d.__name__[1:]}" for n, d, _ in DAMAGES])
def test_a_damaged_checkpoint_file_is_one_line(tmp_path, capsys, finished_run, name, damage, commands):
    run = tmp_path / "demo"
    shutil.copytree(finished_run, run)
    damage(run / "checkpoints" / "step-000004" / name)
    damage(run / "best" / name)
    argvs = {"resume": ["train", "demo", *RUN, "train.max_steps=6", f"run.out_dir={tmp_path}", "--resume"],
             "eval": ["eval", "demo", *RUN, "--checkpoint", str(run / "best")],
             "generate": ["generate", "--checkpoint", str(run / "best")]}
    for command in commands.split():
        assert main(argvs[command]) == 2, command
        _one_line_error(capsys, name, "damaged")  # the file, or the marker, is named
    assert not (run / "best_test_results.json").exists() and not (run / "checkpoints" / "step-000006").exists()


def test_a_checkpoint_without_digests_still_loads_and_its_damage_is_one_line(tmp_path, capsys, finished_run):
    best = tmp_path / "best"
    shutil.copytree(finished_run / "best", best)
    (best / "COMPLETE").write_text("")               # as written before the marker listed digests
    assert main(["eval", "demo", *RUN, "--checkpoint", str(best), "--out", str(tmp_path / "r.json")]) == 0
    capsys.readouterr()
    _truncate(best / "model.safetensors")
    assert main(["eval", "demo", *RUN, "--checkpoint", str(best), "--out", str(tmp_path / "r.json")]) == 2
    _one_line_error(capsys, "model.safetensors", "not a readable safetensors file")


def test_an_intact_copy_resumes(tmp_path, capsys, finished_run):
    shutil.copytree(finished_run, tmp_path / "demo")
    assert main(["train", "demo", *RUN, "train.max_steps=6", f"run.out_dir={tmp_path}", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "demo" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6
