"""The GluonTS route: our estimator trains through the engine; GluonTS evaluates our predictor."""
import sys

import numpy as np
import pandas as pd
from gluonts.dataset.common import ListDataset
from gluonts.dataset.pandas import PandasDataset
from gluonts.dataset.split import split
from gluonts.ev.metrics import MASE, MSE, ND, SMAPE, MeanWeightedSumQuantileLoss
from gluonts.evaluation import make_evaluation_predictions
from gluonts.model import evaluate_model
from gluonts.model.predictor import Predictor

from titans_seq.tasks.forecast.gluonts_adapter import TitansEstimator

TINY = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=4", "model.segment_len=8",
        "task.patch_len=8", "task.stride=4", "train.max_steps=4", "train.batch_size=8", "train.eval_every=4"]


def _dataset(n_series: int = 3, length: int = 200) -> ListDataset:
    rng = np.random.default_rng(0)
    t = np.arange(length)
    return ListDataset([{"start": pd.Period("2024-01-01", "h"), "item_id": f"s{i}",
                         "target": (i + 1) * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 0.1, length)}
                        for i in range(n_series)], freq="h")


def test_estimator_predictor_and_evaluate_model(tmp_path):
    train, test_template = split(_dataset(), offset=-24)
    estimator = TitansEstimator(prediction_length=12, freq="h", lookback=36, quantiles=[0.1, 0.5, 0.9],
                                out_dir=str(tmp_path / "run"), overrides=TINY)
    predictor = estimator.train(train)
    test = test_template.generate_instances(prediction_length=12, windows=2)
    metrics = evaluate_model(predictor, test_data=test,
                             metrics=[MSE(), MASE(), SMAPE(), ND(), MeanWeightedSumQuantileLoss([0.1, 0.5, 0.9])])
    assert len(metrics) == 1 and np.isfinite(metrics.to_numpy()).all()
    assert "lightning" not in sys.modules

    forecasts, _ = make_evaluation_predictions(_dataset(), predictor)
    forecasts = list(forecasts)
    assert len(forecasts) == 3 and forecasts[0].start_date == pd.Period("2024-01-08 20:00", "h")   # 200 - 12 steps in
    assert (forecasts[0].quantile(0.1) <= forecasts[0].quantile(0.9)).all()

    predictor.serialize(tmp_path / "saved")
    loaded = Predictor.deserialize(tmp_path / "saved")
    first = next(iter(loaded.predict(_dataset())))
    np.testing.assert_allclose(first.quantile(0.5), next(iter(predictor.predict(_dataset()))).quantile(0.5))


def test_pandas_dataset_and_short_series(tmp_path):
    frame = pd.DataFrame({"value": np.sin(np.arange(120) / 4)},
                         index=pd.period_range("2024-01-01", periods=120, freq="D"))
    short = pd.DataFrame({"value": np.arange(20.0)}, index=pd.period_range("2024-01-01", periods=20, freq="D"))
    dataset = PandasDataset({"long": frame, "short": short}, target="value")
    estimator = TitansEstimator(prediction_length=7, freq="D", lookback=24, variant="dlinear",
                                out_dir=str(tmp_path / "run"), overrides=TINY)
    predictor = estimator.train(dataset)
    forecasts = list(predictor.predict(dataset))          # the short series is padded, not dropped
    assert [f.item_id for f in forecasts] == ["long", "short"] and forecasts[1].mean.shape == (7,)
