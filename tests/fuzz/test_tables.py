"""Random malformed CSV files at the series reader (forecasting) and the labelled-sequence reader (DNA)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from titans_seq.tasks.dna.tables import read_table
from titans_seq.tasks.forecast.data import read_series

from .common import FUZZ, NASTY, TOKEN, one_line_or_success

CELLS = st.one_of(TOKEN, st.sampled_from(["2020-01-01", "2020-01-01 01:00", "2020-13-45", "1.5", "", "ACGT"]))
HEADERS = st.one_of(NASTY, st.sampled_from(["date", "time", "OT", "sequence", "label", "x"]))


@st.composite
def csv_text(draw) -> bytes:
    width = draw(st.integers(1, 4))
    rows = [draw(st.lists(HEADERS, min_size=width, max_size=width))]
    rows += draw(st.lists(st.lists(CELLS, min_size=0, max_size=width + 1), max_size=8))
    text = "\n".join(",".join(row) for row in rows)
    if draw(st.booleans()):
        return text.encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=60)) + text.encode()     # a stray binary prefix


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tables")


@FUZZ
@given(data=csv_text(), time_column=st.one_of(st.none(), HEADERS), targets=st.one_of(st.none(), st.lists(HEADERS, max_size=2)))
def test_series_reader(folder, data, time_column, targets):
    path = folder / "series.csv"
    path.write_bytes(data)
    one_line_or_success(lambda: read_series(path, time_column, targets or None))


@FUZZ
@given(data=csv_text(), suffix=st.sampled_from([".csv", ".tsv"]))
def test_labelled_sequence_reader(folder, data, suffix):
    path = folder / f"table{suffix}"
    path.write_bytes(data)
    one_line_or_success(lambda: read_table(path))
