"""Reading series files: time column, numeric variates, frequency, gaps, duplicates, missing values."""
import numpy as np
import pandas as pd
import polars as pl
import pytest

from titans_seq.errors import UserError
from titans_seq.tasks.forecast.data import read_series


def test_reads_time_column_variates_and_frequency(series_csv):
    path, frame = series_csv()
    table = read_series(path)
    assert table.columns == ["load", "OT"]
    assert table.freq == pd.tseries.frequencies.to_offset("h")
    np.testing.assert_allclose(table.values, frame[["load", "OT"]].to_numpy())
    assert table.observed.all()
    assert (table.timestamps == pd.DatetimeIndex(frame["date"])).all()
    assert list(table.future_timestamps(2)) == [pd.Timestamp("2024-01-17 16:00"), pd.Timestamp("2024-01-17 17:00")]


def test_targets_and_named_time_column_and_parquet(series_csv, tmp_path):
    path, frame = series_csv()
    renamed = tmp_path / "renamed.parquet"
    pl.from_pandas(frame.rename(columns={"date": "when"})).write_parquet(renamed)
    table = read_series(renamed, time_column="when", targets=["OT"])
    assert table.columns == ["OT"]
    np.testing.assert_allclose(table.values[:, 0], frame["OT"].to_numpy())


def test_missing_values_are_filled_forward_and_masked(series_csv, tmp_path):
    _, frame = series_csv()
    frame.loc[[0, 5, 6], "load"] = np.nan
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    table = read_series(path)
    assert not table.observed[[0, 5, 6], 0].any() and table.observed[:, 1].all()
    assert table.values[5, 0] == table.values[6, 0] == frame["load"][4]
    assert table.values[0, 0] == frame["load"][1]          # nothing before the first value: the first value


def test_gaps_stop_with_line_numbers_or_are_filled(series_csv, tmp_path):
    _, frame = series_csv()
    path = tmp_path / "gap.csv"
    frame.drop(index=[10, 11]).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"2 missing timestamp\(s\) at frequency h \(first after line 11"):
        read_series(path)
    table = read_series(path, on_irregular="fill")
    assert len(table) == len(frame) and not table.observed[[10, 11]].any()
    assert table.values[11, 0] == frame["load"][9]


def test_duplicates_stop_with_line_numbers_or_keep_the_first(series_csv, tmp_path):
    _, frame = series_csv()
    path = tmp_path / "dup.csv"
    doubled = pd.concat([frame.iloc[:8], frame.iloc[7:8].assign(load=-1.0), frame.iloc[8:]])
    doubled.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"1 duplicate timestamp\(s\) \(lines 10\)"):
        read_series(path)
    table = read_series(path, on_irregular="fill")
    np.testing.assert_allclose(table.values[:, 0], frame["load"].to_numpy())


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("date,load\n", "no rows"),
    ("date,load\n2024-01-01 00:00:00,1.0\n", "one row is not a series"),
    ("date,load,city\n2024-01-01 00:00:00,1.0,Paris\n2024-01-01 01:00:00,2.0,Lyon\n",
     "line 2, column 'city': 'Paris' is not a number"),
    ("date,load\n2024-01-01 00:00:00,1.0\n2024-01-01 01:00:00,abc\n2024-01-01 02:00:00,3\n",
     "line 3, column 'load': 'abc' is not a number"),
    ("when,load\n1,1.0\n2,2.0\n", "no time column found; name it with --time-col"),
    ("date,load\n2024-01-01 00:00:00,1\nyesterday,2\n", "line 3: 'yesterday' in column 'date' is not a date"),
    ("x,date\n1,0\n2,1\n", "line 2: 0 in column 'date' is not a date"),   # no date format fits any value
    ("date,load\n2024-01-01 02:00:00,1\n2024-01-01 01:00:00,2\n2024-01-01 03:00:00,2\n", "go back in time"),
])
def test_bad_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_series(path)


def test_real_ett_file_reads_whole(shared_data):
    table = read_series(shared_data("timeseries", "ETTh1.csv"))
    assert table.values.shape == (17420, 7) and table.observed.all()
    assert table.freq.freqstr == "h" and table.columns[-1] == "OT"


def test_a_line_break_in_a_column_name_stays_on_the_error_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('"when\r\nwhere",load\n1,2\n3,4\n')
    with pytest.raises(UserError, match="no time column found") as error:
        read_series(path)
    assert len(str(error.value).splitlines()) == 1 and "when\\r\\nwhere" in str(error.value)
