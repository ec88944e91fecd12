"""Reading a user's time series: a CSV or Parquet table in, a regular, gap-free, numeric series out.

polars reads the file; the time column is found by type or name (or given); every other column,
or those named as targets, must be numeric. Irregular timestamps (gaps, duplicates) are reported
with their line numbers and either stop the run or are repaired (``on_irregular="fill"``); missing
values are filled forward and remembered in ``observed`` so that losses and metrics skip them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from titans_seq.errors import UserError

TIME_NAMES = ("date", "datetime", "timestamp", "time", "ds")
IRREGULAR_CHOICES = ("stop", "fill")


@dataclass
class SeriesTable:
    """A regular multivariate series: ``values`` (N, C) float64, already filled forward where missing."""

    timestamps: pd.DatetimeIndex
    values: np.ndarray
    observed: np.ndarray             # (N, C) bool: False where a value was missing and filled
    columns: list[str]
    freq: pd.DateOffset
    name: str = "series"

    def __len__(self) -> int:
        return len(self.timestamps)

    def future_timestamps(self, horizon: int) -> pd.DatetimeIndex:
        """The ``horizon`` timestamps after the last one, at the series' frequency."""
        return pd.date_range(self.timestamps[-1], periods=horizon + 1, freq=self.freq)[1:]


def _line(row: int) -> int:
    """The file line of a 0-based data row (line 1 is the header)."""
    return row + 2


def _read_frame(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pl.read_parquet(path)
        separator = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        return pl.read_csv(path, separator=separator, try_parse_dates=True, encoding="utf8-lossy",
                           infer_schema_length=None)
    except pl.exceptions.NoDataError:
        raise UserError(f"{path}: the file is empty") from None
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, OSError) as error:
        raise UserError(f"{path}: cannot read it as a table: {str(error).splitlines()[0]}") from None


def _time_column(frame: pl.DataFrame, path: Path, name: str | None) -> str:
    if name is not None:
        if name not in frame.columns:
            raise UserError(f"{path}: no column {name!r} (columns: {', '.join(frame.columns)})")
        return name
    typed = [c for c, dtype in frame.schema.items() if dtype.is_temporal()]
    named = [c for c in frame.columns if c.strip().lower() in TIME_NAMES]
    found = typed or named
    if not found:
        raise UserError(f"{path}: no time column found; name it with --time-col "
                        f"(columns: {', '.join(frame.columns)})")
    return found[0]


def _parse_times(column: pl.Series, path: Path) -> pd.DatetimeIndex:
    if not column.dtype.is_temporal():
        try:
            parsed = column.cast(pl.String).str.to_datetime(strict=False)
        except pl.exceptions.ComputeError:    # no date format fits the values at all
            parsed = pl.Series(column.name, [None] * len(column), dtype=pl.Datetime)
        bad = (parsed.is_null() & column.is_not_null()).arg_true()
        if len(bad):
            raise UserError(f"{path} line {_line(bad[0])}: {column[bad[0]]!r} in column {column.name!r} "
                            "is not a date or time")
        column = parsed
    if column.null_count():
        raise UserError(f"{path} line {_line(column.is_null().arg_true()[0])}: the time column "
                        f"{column.name!r} is empty")
    return pd.DatetimeIndex(column.cast(pl.Datetime("ns")).to_numpy())


def _numeric(frame: pl.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """The columns as float64 (missing values as NaN); a value that is not a number stops with its place."""
    arrays = []
    for name in columns:
        column = frame[name]
        if not column.dtype.is_numeric():
            text = column.cast(pl.String)
            parsed = text.str.strip_chars().cast(pl.Float64, strict=False)
            bad = (parsed.is_null() & text.str.strip_chars().ne("").fill_null(False)).arg_true()
            if len(bad):
                raise UserError(f"{path} line {_line(bad[0])}, column {name!r}: {text[bad[0]]!r} is not a number "
                                "(choose the numeric columns with --target)")
            column = parsed
        arrays.append(column.cast(pl.Float64).to_numpy())
    return np.stack(arrays, axis=1)


def infer_frequency(timestamps: pd.DatetimeIndex) -> pd.DateOffset:
    """pandas' frequency of a regular index, else the most common step between timestamps."""
    regular = pd.infer_freq(timestamps) if len(timestamps) >= 3 else None
    if regular is not None:
        return pd.tseries.frequencies.to_offset(regular)
    steps = np.diff(timestamps.asi8)
    steps = steps[steps > 0]
    if not len(steps):
        raise UserError("every timestamp is the same: cannot infer a frequency")
    values, counts = np.unique(steps, return_counts=True)
    return pd.tseries.frequencies.to_offset(pd.Timedelta(int(values[counts.argmax()]), "ns"))


def _regularise(timestamps: pd.DatetimeIndex, values: np.ndarray, freq: pd.DateOffset, path: Path,
                on_irregular: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Report duplicates, gaps and off-grid or unordered rows; with "fill", drop duplicates and insert gaps."""
    order_breaks = np.flatnonzero(np.diff(timestamps.asi8) < 0)
    if len(order_breaks):
        raise UserError(f"{path} line {_line(order_breaks[0] + 1)}: timestamps go back in time "
                        f"({timestamps[order_breaks[0] + 1]} after {timestamps[order_breaks[0]]}); sort the file")
    duplicates = np.flatnonzero(timestamps.duplicated())
    grid = pd.date_range(timestamps[0], timestamps[-1], freq=freq)
    off_grid = np.flatnonzero(~timestamps.isin(grid))
    missing = grid.difference(timestamps)
    if len(off_grid):
        raise UserError(f"{path} line {_line(off_grid[0])}: {timestamps[off_grid[0]]} is off the inferred "
                        f"frequency {freq.freqstr} ({len(off_grid)} such rows)")
    if not len(duplicates) and not len(missing):
        return timestamps, values
    problems = []
    if len(duplicates):
        lines = ", ".join(str(_line(i)) for i in duplicates[:5])
        more = ", ..." if len(duplicates) > 5 else ""
        problems.append(f"{len(duplicates)} duplicate timestamp(s) (lines {lines}{more})")
    if len(missing):
        after = timestamps.searchsorted(missing[0]) - 1
        problems.append(f"{len(missing)} missing timestamp(s) at frequency {freq.freqstr} "
                        f"(first after line {_line(after)}: {missing[0]})")
    if on_irregular == "stop":
        raise UserError(f"{path}: {' and '.join(problems)}; pass --on-irregular fill to keep the first of "
                        "duplicates and fill gaps forward (masked out of the loss)")
    keep = ~timestamps.duplicated()
    frame = pd.DataFrame(values[keep], index=timestamps[keep]).reindex(grid)
    return grid, frame.to_numpy()


def from_arrays(timestamps: pd.DatetimeIndex, values: np.ndarray, columns: list[str] | None = None,
                freq: pd.DateOffset | str | None = None, name: str = "series") -> SeriesTable:
    """A SeriesTable from a regular index and (N, C) values with NaN where missing (filled forward)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(timestamps), -1)
    observed = np.isfinite(values)
    if not observed.any(axis=0).all():
        empty = int(np.flatnonzero(~observed.any(axis=0))[0])
        raise UserError(f"{name}: column {(columns or [str(empty)])[empty]!r} holds no values")
    filled = pd.DataFrame(values).ffill().bfill().to_numpy()   # leading gaps take the first value
    freq = pd.tseries.frequencies.to_offset(freq) if freq is not None else infer_frequency(timestamps)
    return SeriesTable(pd.DatetimeIndex(timestamps), filled, observed,
                       columns or [str(i) for i in range(values.shape[1])], freq, name)


def read_series(path: str | Path, time_column: str | None = None, targets: list[str] | None = None,
                on_irregular: str = "stop") -> SeriesTable:
    """Read a CSV/TSV/Parquet file into a regular :class:`SeriesTable` (see the module docstring)."""
    path = Path(path)
    if on_irregular not in IRREGULAR_CHOICES:
        raise UserError(f"on_irregular={on_irregular!r}: choose one of {', '.join(IRREGULAR_CHOICES)}")
    frame = _read_frame(path)
    if frame.height == 0:
        raise UserError(f"{path}: the table has a header but no rows")
    if frame.height < 2:
        raise UserError(f"{path}: one row is not a series; a forecast needs at least lookback + horizon rows")
    time_name = _time_column(frame, path, time_column)
    columns = list(targets) if targets else [c for c in frame.columns if c != time_name]
    unknown = [c for c in columns if c not in frame.columns or c == time_name]
    if unknown:
        raise UserError(f"{path}: no value column {unknown[0]!r} (columns: "
                        f"{', '.join(c for c in frame.columns if c != time_name)})")
    if not columns:
        raise UserError(f"{path}: no value columns besides the time column {time_name!r}")
    timestamps = _parse_times(frame[time_name], path)
    values = _numeric(frame, columns, path)
    freq = infer_frequency(timestamps)
    timestamps, values = _regularise(timestamps, values, freq, path, on_irregular)
    return from_arrays(timestamps, values, columns, freq, name=path.stem)
