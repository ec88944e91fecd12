import random

import pytest
import torch
import torch.nn.functional as F

from titans_seq.memory import MemoryState, neural_memory, retrieve
from titans_seq.memory import chunked
from titans_seq.memory.activations import get_activation
from titans_seq.memory.chunked import memory_mlp
from titans_seq.memory.ops import resolve_backend
from titans_seq.memory.chunked import segment_products
from titans_seq.memory.state import ChunkLayout

from .reference import sequential_memory


def make_inputs(B=2, T=21, H=2, dims=(4, 8, 5), dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    q, k = rand(B, T, H, dims[0]), rand(B, T, H, dims[0])
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    v = rand(B, T, H, dims[-1])
    lr = 0.2 * torch.rand(B, T, H, generator=g, dtype=dtype)
    momentum = 0.9 * torch.rand(B, T, H, generator=g, dtype=dtype)
    decay = 0.2 * torch.rand(B, T, H, generator=g, dtype=dtype)
    weights = [rand(H, a, b) / a ** 0.5 for a, b in zip(dims[:-1], dims[1:])]
    tensors = [q, k, v, lr, momentum, decay, *weights]
    for t in tensors:
        t.requires_grad_(requires_grad)
    return tensors, len(weights)


def call(tensors, n_layers, **kw):
    q, k, v, lr, momentum, decay = tensors[:6]
    return neural_memory(q, k, v, lr, momentum, decay, tensors[6:6 + n_layers], **kw)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


DEPTH_DIMS = {1: (4, 5), 2: (4, 8, 5), 3: (4, 8, 6, 5)}


def test_segment_products():
    x = torch.rand(5, dtype=torch.float64)
    m = segment_products(x)
    for t in range(5):
        for s in range(5):
            want = torch.prod(x[s + 1:t + 1]) if t >= s else torch.tensor(0.0, dtype=x.dtype)
            assert torch.allclose(m[t, s], want)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_matches_sequential_reference(depth, chunk_size, activation):
    tensors, n = make_inputs(T=37, dims=DEPTH_DIMS[depth], seed=depth * 100 + chunk_size)
    y, state = call(tensors, n, chunk_size=chunk_size, activation=activation)
    y_ref, W_ref, S_ref = sequential_memory(*tensors[:6], tensors[6:], chunk_size, activation)
    assert rel_err(y, y_ref) <= 1e-10
    for W, Wr, S, Sr in zip(state.weights, W_ref, state.surprise, S_ref):
        assert rel_err(W, Wr) <= 1e-10 and rel_err(S, Sr) <= 1e-10


def test_the_last_update_runs_only_when_the_state_is_read(monkeypatch):
    """Training drops the state: the torch backend runs the update after the last chunk only when
    the state is read, in the grad mode of the call, and then gives the reference's state and
    its gradients."""
    updates = []
    state_after_chunk = chunked.state_after_chunk
    monkeypatch.setattr(chunked, "state_after_chunk",
                        lambda *args, **kw: updates.append(1) or state_after_chunk(*args, **kw))
    tensors, n = make_inputs(T=10, dims=DEPTH_DIMS[2], seed=5, requires_grad=True)
    y, state = call(tensors, n, chunk_size=4)
    assert len(updates) == 2                       # after chunks 1 and 2 of 3
    with torch.no_grad():
        weights, surprise = state.weights, state.surprise
    assert len(updates) == 3 and state.position == 10
    _, W_ref, S_ref = sequential_memory(*tensors[:6], tensors[6:], 4)
    probe = [torch.randn_like(W) for W in weights + surprise]
    writes = tensors[1:]                           # the state does not depend on the queries
    grads = torch.autograd.grad(sum((W * P).sum() for W, P in zip(weights + surprise, probe)), writes)
    grads_ref = torch.autograd.grad(sum((W * P).sum() for W, P in zip(W_ref + S_ref, probe)), writes)
    for W, Wr in zip(weights + surprise, W_ref + S_ref):
        assert rel_err(W, Wr) <= 1e-10
    for g, gr in zip(grads, grads_ref):
        assert rel_err(g, gr) <= 1e-10


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_float32_matches_float64_reference(depth):
    tensors, n = make_inputs(T=50, dims=DEPTH_DIMS[depth], seed=7)
    y_ref, _, _ = sequential_memory(*tensors[:6], tensors[6:], 16)
    y32, state = call([t.float() for t in tensors], n, chunk_size=16)
    assert y32.dtype == torch.float32 and state.weights[0].dtype == torch.float32
    assert rel_err(y32.double(), y_ref) <= 1e-4


def test_autocast_does_not_lower_the_memory_precision():
    tensors, n = make_inputs(T=20, seed=3, dtype=torch.float32)
    y, state = call(tensors, n, chunk_size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_auto, state_auto = call(tensors, n, chunk_size=8)
    assert y_auto.dtype == torch.float32 and torch.equal(y_auto, y)
    assert torch.equal(state_auto.weights[0], state.weights[0])


def test_bfloat16_inputs_keep_float32_state():
    tensors, n = make_inputs(T=20, seed=3)
    y, state = call([t.bfloat16() for t in tensors], n, chunk_size=8)
    assert y.dtype == torch.bfloat16
    assert all(W.dtype == torch.float32 for W in state.weights + state.surprise + state.chunk_weights)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradients_match_reference(depth):
    tensors, n = make_inputs(T=13, dims=DEPTH_DIMS[depth], seed=11, requires_grad=True)
    y, _ = call(tensors, n, chunk_size=4)
    y_ref, _, _ = sequential_memory(*tensors[:6], tensors[6:], 4)
    probe = torch.randn_like(y)
    grads = torch.autograd.grad((y * probe).sum(), tensors)
    grads_ref = torch.autograd.grad((y_ref * probe).sum(), tensors)
    for g, gr in zip(grads, grads_ref):
        assert rel_err(g, gr) <= 1e-10


@pytest.mark.parametrize("depth", [1, 2])
def test_gradcheck(depth):
    dims = (3, 4, 2) if depth == 2 else (3, 2)
    tensors, n = make_inputs(B=1, T=7, H=2, dims=dims, seed=5, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *ts: call(list(ts), n, chunk_size=3)[0], tensors)


def split_run(tensors, n, chunk_size, cuts, **options):
    q, k, v, lr, momentum, decay = tensors[:6]
    ys, state = [], None
    bounds = [0, *cuts, q.shape[1]]
    for a, b in zip(bounds[:-1], bounds[1:]):
        piece = [t[:, a:b] for t in (q, k, v, lr, momentum, decay)]
        y, state = neural_memory(*piece, tensors[6:6 + n], chunk_size=chunk_size, state=state, **options)
        ys.append(y)
    return torch.cat(ys, dim=1), state


def assert_matches_reference(tensors, n, chunk_size, **options):
    """The output and final state against the sequential reference's, with the same options; the output."""
    y, state = call(tensors, n, chunk_size=chunk_size, **options)
    y_ref, W_ref, S_ref = sequential_memory(*tensors[:6], tensors[6:6 + n], chunk_size, **options)
    assert rel_err(y, y_ref) <= 1e-10
    for W, Wr, S, Sr in zip(state.weights, W_ref, state.surprise, S_ref):
        assert rel_err(W, Wr) <= 1e-10 and rel_err(S, Sr) <= 1e-10
    return y


def assert_gradients_match_reference(tensors, n, leaves, **options):
    """The gradients for ``leaves`` of the output and final weights against the sequential reference's."""
    y, state = call(tensors, n, chunk_size=4, **options)
    y_ref, W_ref, _ = sequential_memory(*tensors[:6], tensors[6:6 + n], 4, **options)
    probe = torch.randn_like(y)
    probe_w = [torch.randn_like(W) for W in W_ref]
    out = (y * probe).sum() + sum((W * P).sum() for W, P in zip(state.weights, probe_w))
    out_ref = (y_ref * probe).sum() + sum((W * P).sum() for W, P in zip(W_ref, probe_w))
    for g, gr in zip(torch.autograd.grad(out, leaves), torch.autograd.grad(out_ref, leaves)):
        assert rel_err(g, gr) <= 1e-10


@pytest.mark.parametrize("chunk_size", [1, 4, 16])
def test_split_invariance(chunk_size):
    tensors, n = make_inputs(T=45, dims=DEPTH_DIMS[2], seed=chunk_size)
    y, state = call(tensors, n, chunk_size=chunk_size)
    rng = random.Random(chunk_size)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, 45), rng.randint(1, 6)))
        y_split, state_split = split_run(tensors, n, chunk_size, cuts)
        assert rel_err(y_split, y) <= 1e-12, cuts
        assert state_split.position == 45
        for a, b in zip(state_split.weights + state_split.surprise + state_split.chunk_weights,
                        state.weights + state.surprise + state.chunk_weights):
            assert rel_err(a, b) <= 1e-12


def test_token_by_token_equals_parallel():
    tensors, n = make_inputs(T=11, dims=DEPTH_DIMS[3], seed=2)
    y, _ = call(tensors, n, chunk_size=4)
    y_stream, _ = split_run(tensors, n, 4, list(range(1, 11)))
    assert rel_err(y_stream, y) <= 1e-12


def test_gradients_flow_through_split_state():
    tensors, n = make_inputs(T=12, dims=DEPTH_DIMS[2], seed=4, requires_grad=True)
    y, _ = call(tensors, n, chunk_size=4)
    y_split, _ = split_run(tensors, n, 4, [3, 9])
    grads = torch.autograd.grad(y.square().sum(), tensors)
    grads_split = torch.autograd.grad(y_split.square().sum(), tensors)
    for a, b in zip(grads, grads_split):
        assert rel_err(a, b) <= 1e-10


def test_causal_exactly():
    tensors, n = make_inputs(T=20, dims=DEPTH_DIMS[2], seed=9)
    y, _ = call(tensors, n, chunk_size=8)
    for j in (0, 5, 8, 13, 19):
        bumped = [t.clone() for t in tensors]
        for t in bumped[:6]:
            t[:, j] += 0.37
        y2, _ = call(bumped, n, chunk_size=8)
        assert torch.equal(y2[:, :j], y[:, :j])
        assert not torch.equal(y2[:, j], y[:, j])


def test_retrieve_reads_without_update():
    tensors, n = make_inputs(T=9, dims=DEPTH_DIMS[2], seed=1)
    q = tensors[0]
    _, state = call(tensors, n, chunk_size=4)
    W = state.weights
    h = torch.nn.functional.silu(torch.einsum("bthi,bhij->bthj", q, W[0]))
    assert torch.allclose(retrieve(q, state), torch.einsum("bthi,bhij->bthj", h, W[1]))
    h0 = torch.nn.functional.silu(torch.einsum("bthi,hij->bthj", q, tensors[6]))
    assert torch.allclose(retrieve(q, tensors[6:]), torch.einsum("bthi,hij->bthj", h0, tensors[7]))


def test_chunk_size_one_is_the_plain_recurrence():
    tensors, n = make_inputs(T=6, dims=(3, 2), seed=8)
    q, k, v, lr, momentum, decay, W = tensors
    y, _ = call(tensors, n, chunk_size=1)
    Wt, S = W.unsqueeze(0).expand(2, -1, -1, -1), torch.zeros(2, *W.shape, dtype=W.dtype)
    for t in range(6):
        err = 2 * (torch.einsum("bhi,bhij->bhj", k[:, t], Wt) - v[:, t])
        G = torch.einsum("bhi,bhj->bhij", k[:, t], err)
        S = momentum[:, t, :, None, None] * S - lr[:, t, :, None, None] * G
        Wt = (1 - decay[:, t, :, None, None]) * Wt + S
        assert torch.allclose(y[:, t], torch.einsum("bhi,bhij->bhj", q[:, t], Wt))


@pytest.mark.parametrize("bad", ["shape", "gate", "weights", "chunk", "empty", "backend", "activation", "state"])
def test_rejects_bad_arguments(bad):
    tensors, n = make_inputs(T=8)
    q, k, v, lr, momentum, decay, *W = tensors
    kw = dict(chunk_size=4)
    if bad == "shape":
        k = k[:, :5]
    elif bad == "gate":
        lr = lr[..., :1]
    elif bad == "weights":
        W = [W[0][:, :3], W[1]]
    elif bad == "chunk":
        kw["chunk_size"] = 0
    elif bad == "empty":
        q, k, v, lr, momentum, decay = (t[:, :0] for t in (q, k, v, lr, momentum, decay))
    elif bad == "backend":
        kw["backend"] = "cuda-magic"
    elif bad == "activation":
        kw["activation"] = "swish2"
    elif bad == "state":
        _, state = call(tensors, n, chunk_size=2)
        kw["state"] = state
    with pytest.raises(ValueError):
        neural_memory(q, k, v, lr, momentum, decay, W, **kw)


def test_state_detach():
    tensors, n = make_inputs(T=8, requires_grad=True)
    _, state = call(tensors, n, chunk_size=3)
    cut = state.detach()
    assert isinstance(cut, MemoryState) and cut.position == 8 and cut.chunk_size == 3
    assert not any(t.requires_grad for t in cut.weights + cut.surprise + cut.chunk_weights)


@pytest.mark.parametrize("position,length,pieces,first,n_chunks,unfinished,next_weights", [
    (0, 10, [(8, 4), (2, 2)], 4, 3, 2, "entering"),          # two whole chunks, an unfinished one
    (3, 10, [(1, 1), (8, 4), (1, 1)], 1, 4, 1, "entering"),  # the rest of a resumed chunk first
    (1, 2, [(2, 2)], 2, 1, 3, "resumed"),                   # inside one chunk, still unfinished
    (6, 2, [(2, 2)], 2, 1, 0, "final"),                     # finishing a resumed chunk
    (4, 4, [(4, 4)], 4, 1, 0, "final")])
def test_chunk_layout(position, length, pieces, first, n_chunks, unfinished, next_weights):
    """Where a call's chunks fall, and which weights the next call's unfinished chunk takes gradients at."""
    layout = ChunkLayout(position, length, 4)
    assert layout.pieces() == pieces and sum(size for size, _ in pieces) == length
    assert (layout.first, layout.n_chunks, layout.unfinished) == (first, n_chunks, unfinished)
    assert layout.resumes == (position % 4 != 0)
    assert layout.next_chunk_weights(["final"], ["entering"], ["resumed"]) == [next_weights]


def anchored_inputs(T, depth, seed, requires_grad=False):
    tensors, n = make_inputs(T=T, dims=DEPTH_DIMS[depth], seed=seed, requires_grad=requires_grad)
    g = torch.Generator().manual_seed(seed + 1)
    anchor = [(torch.randn(W.shape, generator=g, dtype=W.dtype) / W.shape[-2] ** 0.5).requires_grad_(requires_grad)
              for W in tensors[6:]]
    return tensors, n, anchor


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
def test_decay_toward_an_anchor_matches_sequential_reference(depth, chunk_size):
    tensors, n, anchor = anchored_inputs(37, depth, seed=depth * 10 + chunk_size)
    y = assert_matches_reference(tensors, n, chunk_size, anchor=anchor)
    y_zero, _ = call(tensors, n, chunk_size=chunk_size)
    assert rel_err(y, y_zero) > 1e-3                     # the anchor does change the memory


@pytest.mark.parametrize("depth", [1, 2])
def test_decay_toward_an_anchor_gradients_match_reference(depth):
    tensors, n, anchor = anchored_inputs(13, depth, seed=21, requires_grad=True)
    assert_gradients_match_reference(tensors, n, tensors + anchor, anchor=anchor)


def test_decay_toward_an_anchor_is_split_invariant():
    tensors, n, anchor = anchored_inputs(30, 2, seed=3)
    y, state = call(tensors, n, chunk_size=4, anchor=anchor)
    y_split, split_state = split_run(tensors, n, 4, [7, 8], anchor=anchor)
    assert rel_err(y_split, y) <= 1e-12
    for a, b in zip(split_state.weights + split_state.surprise, state.weights + state.surprise):
        assert rel_err(a, b) <= 1e-12


def test_decay_toward_an_anchor_needs_a_backend_that_has_it():
    tensors, n, anchor = anchored_inputs(8, 2, seed=1)
    with pytest.raises(ValueError, match="torch_recompute memory backend has no decay toward an anchor"):
        call(tensors, n, chunk_size=4, anchor=anchor, backend="torch_recompute")
    with pytest.raises(ValueError, match="anchor"):
        call(tensors, n, chunk_size=4, anchor=anchor[:1])
    assert resolve_backend("auto", torch.device("cuda"), 2, ("decay toward an anchor",)) == "torch"


def wide_inputs(T, depth, seed, requires_grad=False):
    """Keys of norm 2 and a first layer three times wider than unit: inputs whose squared norms pass 1."""
    tensors, n = make_inputs(T=T, dims=DEPTH_DIMS[depth], seed=seed)
    with torch.no_grad():
        tensors[1].mul_(2.0)
        tensors[6].mul_(3.0)
    for t in tensors:
        t.requires_grad_(requires_grad)
    return tensors, n


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
def test_steps_bounded_by_input_norm_match_sequential_reference(depth, chunk_size):
    tensors, n = wide_inputs(37, depth, seed=depth * 7 + chunk_size)
    y = assert_matches_reference(tensors, n, chunk_size, bound_by_input_norm=True)
    y_free, _ = call(tensors, n, chunk_size=chunk_size)
    assert not torch.allclose(y, y_free, atol=1e-3)      # the bound changes the memory (the free one may diverge)


@pytest.mark.parametrize("depth", [1, 2])
def test_steps_bounded_by_input_norm_gradients_match_reference(depth):
    tensors, n = wide_inputs(13, depth, seed=31, requires_grad=True)
    assert_gradients_match_reference(tensors, n, tensors, bound_by_input_norm=True)


def test_steps_bounded_by_input_norm_are_split_invariant_on_both_torch_backends():
    tensors, n = wide_inputs(30, 2, seed=4)
    y, _ = call(tensors, n, chunk_size=4, bound_by_input_norm=True)
    assert rel_err(split_run(tensors, n, 4, [7, 8], bound_by_input_norm=True)[0], y) <= 1e-12
    recomputed, _ = call(tensors, n, chunk_size=4, bound_by_input_norm=True, backend="torch_recompute")
    assert rel_err(recomputed, y) <= 1e-12


def test_a_wide_hidden_layer_diverges_unless_its_steps_are_bounded():
    """One unit key written 60 times at a step of 0.5: the second layer's input has a squared norm
    near 20, so each step overshoots its value ever further; divided by that norm, the memory settles."""
    g = torch.Generator().manual_seed(0)
    k = F.normalize(torch.randn(1, 1, 1, 4, generator=g, dtype=torch.float64), dim=-1).expand(1, 60, 1, 4)
    v = torch.randn(1, 1, 1, 4, generator=g, dtype=torch.float64).expand(1, 60, 1, 4)
    weights = [2 * torch.randn(1, 4, 16, generator=g, dtype=torch.float64),
               torch.randn(1, 16, 4, generator=g, dtype=torch.float64) / 4]
    gates = [torch.full((1, 60, 1), value, dtype=torch.float64) for value in (0.5, 0.0, 0.0)]
    assert F.silu(k[0, 0] @ weights[0][0]).square().sum() > 15

    def error_and_size(**options):
        _, state = neural_memory(k, k, v, *gates, weights, chunk_size=1, **options)
        read = memory_mlp(k[:, :1].transpose(1, 2), state.weights, get_activation("silu"))
        return (read.squeeze() - v[0, 0, 0]).norm().item(), state.weights[1].norm().item()

    free, bounded = error_and_size(), error_and_size(bound_by_input_norm=True)
    assert free[0] > 1 and free[1] > 1e5
    assert bounded[0] < 1e-6 and bounded[1] < 10
