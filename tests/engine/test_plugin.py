"""A task from outside the package registers as the built-in ones do: its task and its own command."""
import os
import subprocess
import sys

PLUGIN = '''
from titans_seq.engine.registry import register_commands, register_task
from titans_seq.engine.task import Task


@register_task
class ToyTask(Task):
    name = "toy"
    config_class = dict

    def build_model(self, model_config): ...
    def datasets(self): ...
    def loss(self, model, batch): ...
    def evaluate(self, model, batches): ...


@register_commands
def add_commands(commands):
    hello = commands.add_parser("hello", help="the toy task's own command")
    hello.add_argument("--name", default="world")
    hello.set_defaults(run=lambda args: print(f"hello, {args.name}") or 3)
'''


def test_a_plugin_brings_its_task_and_its_command(tmp_path):
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[titans_seq.tasks]\ntoy = toy_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "titans_seq.cli", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    hello = cli("hello", "--name", "plugin")
    assert (hello.returncode, hello.stdout) == (3, "hello, plugin\n"), hello.stderr
    listing = cli("list").stdout
    assert "toy" in listing.split("tasks:")[1].splitlines()[0]
    assert "hello" in cli("--help").stdout
