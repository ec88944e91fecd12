"""`titans-seq forecast` end to end: training, the forecast CSV's timestamps, the plot, reuse, bad input."""
import pandas as pd
import pytest

from titans_seq.cli import main

TINY = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=4", "model.segment_len=8",
        "model.window=8", "task.patch_len=8", "task.stride=4", "train.batch_size=16"]


def _forecast(*args):
    return main(["forecast", *map(str, args), *TINY])


def test_trains_tests_and_writes_a_forecast_with_the_right_timestamps(series_csv, tmp_path, capsys):
    path, frame = series_csv(rows=300)
    out = tmp_path / "out"
    assert _forecast("--data", path, "--lookback", 24, "--horizon", 6, "--steps", 3, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "MASE" in printed and "sMAPE" in printed and str(out / "forecast.csv") in printed
    forecast = pd.read_csv(out / "forecast.csv", parse_dates=["timestamp"])
    expected = pd.date_range(frame["date"].iloc[-1], periods=7, freq="h")[1:]
    assert list(forecast["timestamp"]) == list(expected)
    assert list(forecast.columns) == ["timestamp", "load", "OT"] and forecast.notna().all().all()
    assert (out / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]          # no temporary files left

    # the saved model forecasts again without training, with quantile columns absent as trained
    again = tmp_path / "again"
    assert _forecast("--data", path, "--checkpoint", out / "model" / "best", "--out", again) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again / "forecast.csv"), pd.read_csv(out / "forecast.csv"))
    assert _forecast("--data", path, "--checkpoint", out / "model" / "best", "--horizon", 12, "--out", again) == 2
    assert "was trained with horizon=6; got 12" in capsys.readouterr().err


@pytest.mark.parametrize("baseline", ["dlinear", "rlinear"])
def test_quantile_forecasts_get_quantile_columns(series_csv, tmp_path, capsys, baseline):
    path, _ = series_csv(rows=300)
    out = tmp_path / "q"
    assert _forecast("--data", path, "--target", "OT", "--lookback", 24, "--horizon", 6, "--steps", 2,
                     "--quantiles", 0.1, 0.5, 0.9, "--variant", baseline, "--out", out) == 0
    forecast = pd.read_csv(out / "forecast.csv")
    assert list(forecast.columns) == ["timestamp", "OT", "OT_q0.1", "OT_q0.9"]

    # the saved baseline is recognised as what it is when another model is asked of it
    assert _forecast("--data", path, "--target", "OT", "--checkpoint", out / "model" / "best", "--variant", "mac",
                     "--out", tmp_path / "again") == 2
    assert f"holds a {baseline} model; got --variant mac" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("date,load\n2024-01-01 00:00:00,1.0\n", "one row is not a series"),
    ("date,load,city\n2024-01-01 00:00:00,1.0,Paris\n2024-01-01 01:00:00,2.0,Lyon\n", "'Paris' is not a number"),
    ("date,load\n2024-01-01 00:00:00,1\n2024-01-01 00:00:00,2\n2024-01-01 01:00:00,3\n", "duplicate timestamp"),
])
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert _forecast("--data", path, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_horizon_longer_than_the_data_exits_2(series_csv, tmp_path, capsys):
    path, _ = series_csv(rows=300)
    assert _forecast("--data", path, "--lookback", 24, "--horizon", 500, "--out", tmp_path / "out") == 2
    assert "fewer than lookback + horizon" in capsys.readouterr().err


def test_forecast_recipe_runs_on_real_ett_data(shared_data, tmp_path):
    data = shared_data("timeseries", "ETTh1.csv")
    assert main(["train", "recipes/forecast.yaml", f"data.path={data}", "task.lookback=96", "task.horizon=24",
                 "train.max_steps=2", "train.eval_batches=2", f"run.out_dir={tmp_path}", *TINY,
                 "train.batch_size=1024"]) == 0
