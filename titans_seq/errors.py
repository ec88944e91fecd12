"""Errors that reach users as one line (the CLI maps them to exit codes)."""


class UserError(ValueError):
    """Something the user asked for is wrong or impossible; the message is one line meant for them."""


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. the loss keeps being non-finite); the message says why and what was kept."""
