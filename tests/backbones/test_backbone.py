import pytest
import torch

from titans_seq import VARIANTS, Backbone, TitansConfig


def small_config(variant, **kw):
    base = dict(variant=variant, d_model=32, n_layers=2, n_heads=2, chunk_size=4, segment_len=8,
                window=6, n_persistent=2)
    return TitansConfig(**{**base, **kw})


# every variant, and MAC reading its memory through the query convolution
CASES = [pytest.param(v, {}, id=v) for v in VARIANTS] + [
    pytest.param("mac", {"mac_query_conv": True}, id="mac-query-conv"),
    pytest.param("mac", {"memory_chunk_budget": 0.5, "memory_lr_max": 0.5}, id="mac-write-budget"),
    pytest.param("mag", {"memory_chunk_budget": 0.5, "memory_lr_max": 0.5}, id="mag-write-budget"),
    pytest.param("mac", {"memory_decay_target": "init"}, id="mac-decay-to-init"),
    pytest.param("lmm", {"memory_decay_target": "init"}, id="lmm-decay-to-init"),
    pytest.param("mac", {"memory_bound_by_input_norm": True, "memory_lr_max": 0.5}, id="mac-bounded-steps")]


def small_model(variant, **kw):
    torch.manual_seed(0)
    return Backbone(small_config(variant, **kw)).double().eval()


def test_readme_example_shapes():
    cfg = TitansConfig(variant="mac", d_model=64, n_layers=2, n_heads=4)
    backbone = Backbone(cfg)
    x = torch.randn(2, 150, 64)
    y = backbone(x)
    y1, state = backbone(x[:, :100], return_state=True)
    y2, state = backbone(x[:, 100:], state=state, return_state=True)
    assert y.shape == x.shape
    assert torch.allclose(torch.cat((y1, y2), 1), y, atol=1e-4)


@pytest.mark.parametrize("variant, options", CASES)
def test_causal_exactly(variant, options):
    model = small_model(variant, **options)
    x = torch.randn(2, 27, 32, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        for j in (0, 3, 8, 15, 26):
            bumped = x.clone()
            bumped[:, j] += 1.0
            y2 = model(bumped)
            assert torch.equal(y2[:, :j], y[:, :j]), j
            assert not torch.equal(y2[:, j], y[:, j])


@pytest.mark.parametrize("variant, options", CASES)
def test_streaming_token_by_token_and_uneven_pieces(variant, options):
    model = small_model(variant, **options)
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        for cuts in ([*range(1, 23)], [5, 6, 14], [7, 8, 9, 20]):
            state, ys = None, []
            for a, b in zip([0, *cuts], [*cuts, 23]):
                out, state = model(x[:, a:b], state=state, return_state=True)
                ys.append(out)
            assert torch.allclose(torch.cat(ys, 1), y, rtol=0, atol=1e-10), cuts


@pytest.mark.parametrize("variant, options", CASES)
def test_gradients_reach_every_parameter(variant, options):
    model = small_model(variant, **options)
    model(torch.randn(2, 19, 32, dtype=torch.float64)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("variant", VARIANTS)
def test_safetensors_round_trip(variant, tmp_path):
    model = small_model(variant, memory_depth=3)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = Backbone.from_pretrained(tmp_path).double().eval()
    assert loaded.config == model.config
    x = torch.randn(1, 13, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_from_pretrained_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        Backbone.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize("bad", [dict(variant="mamba"), dict(d_model=30, n_heads=4), dict(chunk_size=0),
                                 dict(memory_lr_max=2.0), dict(n_persistent=-1),
                                 dict(memory_chunk_budget=0.0), dict(memory_decay_target="half")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TitansConfig(**bad)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="segment_length"):
        TitansConfig.from_dict({"segment_length": 3})


def test_memory_depth_and_expansion_shape_the_memory():
    model = Backbone(small_config("lmm", memory_depth=3, memory_expansion=2))
    shapes = [tuple(w.shape) for w in model.blocks[0].mixer.weights]
    assert shapes == [(2, 16, 32), (2, 32, 32), (2, 32, 16)]
