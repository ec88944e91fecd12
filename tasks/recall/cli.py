"""``titans-seq demo``: the recall task's own command."""
from __future__ import annotations

import argparse

from titans_seq.engine.registry import register_commands

from .demo import run_demo


def demo_command(args: argparse.Namespace) -> None:
    run_demo(args.overrides)


@register_commands
def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="train a small Titans model on built-in data for about a minute")
    demo.add_argument("overrides", nargs="*", help="key=value overrides of the demo recipe")
    demo.set_defaults(run=demo_command)
