"""The long-horizon protocol: exact borders, a scaler that never sees val/test rows, windows inside their split."""
import numpy as np
import pandas as pd
import pytest

from titans_seq.errors import UserError
from titans_seq.tasks.forecast.data import from_arrays
from titans_seq.tasks.forecast.splits import WindowDataset, scale_series, split_borders


def test_ett_borders_follow_the_published_protocol():
    assert split_borders(17420, 96, "ETTh1") == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert split_borders(69680, 512, "ETTm1") == {"train": (0, 34560), "val": (34048, 46080),
                                                   "test": (45568, 57600)}
    with pytest.raises(UserError, match="needs 14400 rows"):
        split_borders(10000, 96, "ETTh2")


def test_other_files_split_70_10_20_in_time_order():
    # Autoformer's borders: train int(0.7 n), test int(0.2 n), validation the rest
    assert split_borders(7588, 96, "exchange_rate") == {"train": (0, 5311), "val": (5215, 6071),
                                                        "test": (5975, 7588)}


def _table(rows: int, name: str = "series", columns: int = 2):
    values = np.arange(rows * columns, dtype=float).reshape(rows, columns)
    return from_arrays(pd.date_range("2020-01-01", periods=rows, freq="h"), values, name=name)


def test_scaler_is_fitted_on_training_rows_only():
    table = _table(1000)
    scaled = scale_series(table, lookback=24, horizon=12)
    train_end = scaled.borders["train"][1]
    np.testing.assert_allclose(scaled.mean, table.values[:train_end].mean(0), rtol=1e-6)
    np.testing.assert_allclose(scaled.scale, table.values[:train_end].std(0), rtol=1e-6)
    changed = _table(1000)
    changed.values[train_end:] *= 100                  # validation and test rows must not move the scaler
    np.testing.assert_allclose(scale_series(changed, 24, 12).mean, scaled.mean)


def test_no_test_window_reads_past_its_horizon():
    table = _table(500, columns=3)
    scaled = scale_series(table, lookback=24, horizon=12)
    start, end = scaled.borders["test"]
    windows = WindowDataset.split(scaled, "test", 24, 12)
    assert len(windows) == (end - start - 24 - 12 + 1) * 3
    def row_of(x, channel):                              # the values are row * 3 + channel
        return np.rint((scaled.to_original(x.numpy(), channel) - channel) / 3).astype(int)
    for index in [0, 1, len(windows) - 1, len(windows) // 2]:
        past, future, observed, channel = windows[index]
        past_rows, future_rows = row_of(past[:, 0], channel), row_of(future[:, 0], channel)
        assert past_rows[-1] + 1 == future_rows[0]                       # the target follows the lookback
        assert future_rows[-1] < end and past_rows[0] >= start          # inside the test region
        assert observed.all() and past.shape == (24, 1) and future.shape == (12, 1)
    assert row_of(windows[len(windows) - 1][1][:, 0], 2)[-1] == end - 1     # the last window ends at the border


def test_channel_mixing_windows_hold_every_variate():
    scaled = scale_series(_table(500, columns=3), 24, 12)
    mixed = WindowDataset.split(scaled, "train", 24, 12, channel_mixing=True)
    independent = WindowDataset.split(scaled, "train", 24, 12)
    assert len(independent) == 3 * len(mixed)
    past, future, _, channel = mixed[5]
    assert past.shape == (24, 3) and future.shape == (12, 3) and channel == -1
    assert np.array_equal(independent[5 * 3 + 2][0][:, 0], past[:, 2])


def test_a_horizon_longer_than_the_data_is_a_user_error():
    with pytest.raises(UserError, match="fewer than lookback \\+ horizon"):
        scale_series(_table(200), lookback=96, horizon=96)
