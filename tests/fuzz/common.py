"""What every malformed input must give: success, or one UserError line; never another exception."""
from __future__ import annotations

from typing import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from titans_seq.errors import UserError

# The same examples on every run (a CI failure reproduces on any machine), few enough for 2 cores.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Text that tends to break parsers: separators, quotes, line ends, odd Unicode, lone bytes as U+FFFD.
NASTY = st.text(st.sampled_from(list(",;\t\n\r \"'#>=.:-+0123456789eEnaNTAGCx[]{}\\/é\u2028\x00\ufffd")), max_size=40)
TOKEN = st.one_of(NASTY, st.sampled_from(["", "0", "-1", "1e9", "nan", "inf", "null", "true", "[]", "{}", "a=b"]))


def one_line_or_success(call: Callable[[], object]) -> None:
    try:
        call()
    except UserError as error:
        message = str(error)
        assert len(message.splitlines()) == 1 and message.strip(), repr(message)
