"""The forecasting networks: RevIN round trip, patching, DLinear's decomposition, RLinear, shapes."""
import pytest
import torch

from titans_seq.backbones import TitansConfig
from titans_seq.tasks.forecast.model import DLinear, PatchForecaster, RevIN, RLinear, n_patches

TINY = dict(d_model=16, n_layers=1, n_heads=2, chunk_size=4, segment_len=8, window=8, n_persistent=2)


def test_revin_restores_what_it_normalised():
    revin = RevIN(3)
    with torch.no_grad():
        revin.weight.uniform_(0.5, 2.0)
        revin.bias.normal_()
    x = torch.randn(4, 20, 3) * 5 + 7
    normalised, stats = revin.normalise(x)
    assert torch.allclose(normalised.mean(1), revin.bias.expand(4, 3), atol=1e-4)
    restored = revin.restore(normalised.unsqueeze(-1), stats)[..., 0]
    assert torch.allclose(restored, x, atol=1e-4)


def test_patch_count_matches_patchtst():
    assert n_patches(96, 16, 8) == 12 and n_patches(336, 16, 8) == 42 and n_patches(512, 16, 8) == 64


def test_dlinear_moving_average_is_a_centred_mean_with_repeated_ends():
    model = DLinear(lookback=10, horizon=4, kernel=5)
    x = torch.arange(10.0).view(1, 10, 1) ** 2
    padded = torch.cat([x[:, :1].repeat(1, 2, 1), x, x[:, -1:].repeat(1, 2, 1)], 1)
    expected = torch.stack([padded[:, i:i + 5].mean(1) for i in range(10)], 1)
    assert torch.allclose(model.moving_average(x), expected)


def test_dlinear_starts_as_the_lookback_mean():
    model = DLinear(lookback=8, horizon=3)
    x = torch.randn(2, 8, 1)
    bias = model.trend.bias.view(1, 3, 1) + model.seasonal.bias.view(1, 3, 1)
    expected = x.mean(1, keepdim=True).expand(2, 3, 1) + bias
    assert torch.allclose(model(x)[..., 0], expected, atol=1e-5)


def test_rlinear_maps_each_variate_through_one_shared_linear_map_in_its_own_scale():
    model = RLinear(lookback=8, horizon=3, n_channels=2)
    with torch.no_grad():                       # every forecast step copies the last lookback step
        model.linear.weight.zero_()
        model.linear.weight[:, -1] = 1.0
        model.linear.bias.zero_()
    x = torch.randn(4, 8, 2) * torch.tensor([1.0, 100.0]) + torch.tensor([0.0, -50.0])
    y = model(x)
    assert y.shape == (4, 3, 2, 1)
    assert torch.allclose(y[..., 0], x[:, -1:].expand(4, 3, 2), atol=1e-3)


def test_rlinear_quantiles_are_ordered_and_follow_the_input_scale():
    torch.manual_seed(0)
    model = RLinear(lookback=8, horizon=3, n_outputs=3)
    x = torch.randn(5, 8, 1)
    y = model(x)
    assert y.shape == (5, 3, 1, 3) and (y.diff(dim=-1) >= 0).all()
    assert torch.allclose(model(x * 10 + 3), y * 10 + 3, atol=1e-4)


@pytest.mark.parametrize("variant", ["mac", "transformer"])
@pytest.mark.parametrize("channels, outputs", [(1, 1), (3, 3)])
def test_patch_forecaster_shapes_and_scale_equivariance(variant, channels, outputs):
    torch.manual_seed(0)
    model = PatchForecaster(TitansConfig(variant=variant, **TINY), lookback=32, horizon=6, n_channels=channels,
                            patch_len=8, stride=4, n_outputs=outputs)
    x = torch.randn(2, 32, channels)
    y = model(x)
    assert y.shape == (2, 6, channels, outputs)
    # RevIN makes the forecast follow a shift and rescaling of the input
    assert torch.allclose(model(x * 10 + 3), y * 10 + 3, atol=1e-3)
