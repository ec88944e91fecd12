"""The forecasting task's loss and metrics, checked by hand and against GluonTS's metric functions."""
import numpy as np
import pytest
import torch
from gluonts.evaluation.metrics import calculate_seasonal_error, mase, smape

from titans_seq.backbones import TitansConfig
from titans_seq.errors import UserError
from titans_seq.tasks.forecast.task import ForecastConfig, ForecastData, ForecastTask, pinball_loss


class Fixed(torch.nn.Module):
    """Forecasts a given array, whatever the input."""

    def __init__(self, forecast):
        super().__init__()
        self.forecast = forecast

    def forward(self, past):
        return self.forecast[: len(past)]


def _task(series_csv, **config):
    path, _ = series_csv(rows=400)
    return ForecastTask(ForecastConfig(lookback=24, horizon=6, **config), ForecastData(path=str(path)))


def test_metrics_match_hand_computation_and_gluonts(series_csv):
    task = _task(series_csv)
    test = task.datasets()["test"]
    items = [test[i] for i in range(8)]
    past, future, observed, channel = (torch.stack([torch.as_tensor(x[k]) for x in items]) for k in range(4))
    forecast = (future + 0.3 * torch.randn_like(future)).unsqueeze(-1)
    metrics = task.evaluate(Fixed(forecast), [(past, future, observed, channel)])
    error = forecast[..., 0] - future
    assert metrics["mse"] == pytest.approx(error.square().mean().item(), rel=1e-5)
    assert metrics["mae"] == pytest.approx(error.abs().mean().item(), rel=1e-5)
    scale, mean = task.series.scale[channel.numpy()], task.series.mean[channel.numpy()]
    truth = future[..., 0].numpy() * scale[:, None] + mean[:, None]
    guess = forecast[..., 0, 0].numpy() * scale[:, None] + mean[:, None]
    assert metrics["mse_original"] == pytest.approx(np.mean((truth - guess) ** 2), rel=1e-4)
    train_rows = task.table.values[:task.series.borders["train"][1]]
    expected_mase = np.mean([mase(t, g, calculate_seasonal_error(train_rows[:, c], seasonality=24))
                             for t, g, c in zip(truth, guess, channel.numpy())])
    assert metrics["mase"] == pytest.approx(expected_mase, rel=1e-4)
    assert metrics["smape"] == pytest.approx(smape(truth, guess), rel=1e-4)


def test_unobserved_targets_count_nowhere(series_csv):
    task = _task(series_csv)
    items = [task.datasets()["test"][i] for i in range(4)]
    past, future, observed, channel = (torch.stack([torch.as_tensor(x[k]) for x in items]) for k in range(4))
    forecast = future.unsqueeze(-1).clone()
    forecast[0, 2] += 100.0                       # a wild forecast where the truth was missing
    observed = observed.clone()
    observed[0, 2] = False
    metrics = task.evaluate(Fixed(forecast), [(past, future, observed, channel)])
    assert metrics["mse"] == pytest.approx(0.0, abs=1e-10)
    assert task.loss(Fixed(forecast), (past, future, observed, channel)).item() == pytest.approx(0.0, abs=1e-10)


def test_pinball_loss_by_hand():
    levels = torch.tensor([0.1, 0.5, 0.9])
    forecast = torch.tensor([[1.0, 2.0, 3.0]])
    loss = pinball_loss(forecast, torch.tensor([2.5]), levels)
    assert torch.allclose(loss, torch.tensor([[0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5]]))


def test_quantile_levels_are_checked(series_csv):
    with pytest.raises(UserError, match="include 0.5"):
        _task(series_csv, quantiles=[0.1, 0.9])
    task = _task(series_csv, quantiles=[0.1, 0.5, 0.9])
    model = task.build_model(TitansConfig(d_model=16, n_layers=1, n_heads=2, chunk_size=4))
    past, *_ = task.datasets()["train"][0]
    assert model(past.unsqueeze(0)).shape == (1, 6, 1, 3)


def test_the_test_split_is_evaluated_whole_with_its_last_incomplete_batch(series_csv):
    from titans_seq.engine.config import load_recipe
    from titans_seq.engine.trainer import evaluation_batches

    task = _task(series_csv)
    test = task.datasets()["test"]
    recipe = load_recipe("forecast", ["train.batch_size=7"])
    assert len(test) % 7                                    # the last batch is incomplete
    seen = sum(len(batch[0]) for batch in evaluation_batches(test, recipe, torch.device("cpu")))
    assert seen == len(test)


def test_final_metrics_draw_the_test_period_example(series_csv, tmp_path):
    task = _task(series_csv)
    model = task.build_model(TitansConfig(variant="swa", d_model=8, n_layers=1, n_heads=2, window=4))
    assert task.final_metrics(model.eval(), tmp_path) == {}
    assert (tmp_path / "example.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
