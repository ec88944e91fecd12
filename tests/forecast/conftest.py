"""Small series files written by the tests."""
import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def series_csv(tmp_path):
    """A function writing an hourly CSV of daily sines plus noise; returns (path, frame)."""
    def write(name: str = "plant.csv", rows: int = 400, columns: tuple[str, ...] = ("load", "OT"), seed: int = 0):
        rng = np.random.default_rng(seed)
        t = np.arange(rows)
        frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=rows, freq="h")})
        for i, column in enumerate(columns):
            frame[column] = 10 * (i + 1) + np.sin(2 * np.pi * t / 24 + i) + 0.1 * rng.normal(size=rows)
        path = tmp_path / name
        frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
        return path, frame
    return write
