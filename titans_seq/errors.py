"""Errors that reach users as one line (the CLI maps them to exit codes)."""

# every character str.splitlines() breaks at, written as an escape instead
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped, so that it prints as one line."""
    return str(text).translate(_LINE_BREAKS)


class UserError(ValueError):
    """Something the user asked for is wrong or impossible; the message is one line meant for them.

    Line breaks inside it (a column name or a line quoted from the user's file) are escaped.
    """

    def __init__(self, message: str):
        super().__init__(one_line(message))


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. the loss keeps being non-finite); the message says why and what was kept."""
