"""The Triton backend against the torch backend: outputs, every gradient, state, streaming.

On a CPU these run in Triton's interpreter (tests/conftest.py), on small shapes.
"""
import os

import pytest
import torch

from titans_seq.memory import neural_memory
from titans_seq.memory.ops import BACKENDS

from .test_operator import make_inputs, rel_err

if "triton" not in BACKENDS and os.environ.get("CI") != "true":   # in CI a missing triton must fail
    pytest.skip("triton is not installed", allow_module_level=True)
from triton.runtime.errors import OutOfResources  # noqa: E402

from titans_seq.memory import triton_backend  # noqa: E402
from titans_seq.memory.triton_backend import KernelDoesNotFit, launch_fitting  # noqa: E402
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def inputs(dims, T=37, B=2, H=2, seed=0, dtype=torch.float32, requires_grad=False):
    tensors, _ = make_inputs(B=B, T=T, H=H, dims=dims, dtype=torch.float64, seed=seed)
    tensors = [t.to(DEVICE, dtype).requires_grad_(requires_grad) for t in tensors]
    return tensors[:6], tensors[6:]


def run(gates_and_qkv, weights, backend, **kw):
    return neural_memory(*gates_and_qkv, weights, backend=backend, **kw)


CASES = [  # (Dk, hidden..., Dv), chunk size
    ((16, 16), 16),
    ((128, 128), 128),       # the largest head and chunk
    ((64, 128, 64), 64),
    ((32, 24), 16),
    ((16, 64, 16), 16),      # expansion 4
    ((24, 24, 24), 32),      # expansion 1, head dim not a power of two
    ((16, 32, 16), 24),      # chunk size not a power of two
]


@pytest.mark.parametrize("dims,chunk", CASES)
@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_forward_and_state_match_torch(dims, chunk, activation):
    x, W = inputs(dims, T=chunk + 21, seed=len(dims) + chunk)
    y_ref, ref = run(x, W, "torch", chunk_size=chunk, activation=activation)
    y, state = run(x, W, "triton", chunk_size=chunk, activation=activation)
    assert rel_err(y, y_ref) <= 1e-4
    for a, b in zip(state.weights + state.surprise + state.chunk_weights,
                    ref.weights + ref.surprise + ref.chunk_weights):
        assert rel_err(a, b) <= 1e-4
    assert state.position == ref.position


@pytest.mark.parametrize("dims", [(16, 16), (16, 32, 16)])
@pytest.mark.parametrize("position", [0, 5])
def test_kernels_write_every_output(dims, position, monkeypatch):
    """Every buffer the kernels fill is left uninitialised by the host: poisoned, none stays NaN."""
    from titans_seq.memory.state import ChunkLayout
    from titans_seq.memory.triton_backend import (Launch, StateGradients, StateInputs, memory_backward,
                                                  memory_forward)

    monkeypatch.setattr(triton_backend, "_uninitialised",
                        lambda shape, dtype, device: torch.full(shape, float("nan"), dtype=dtype, device=device))
    x, W = inputs(dims, T=41)
    launch = Launch(len(W), "silu", ChunkLayout(position, 41, 16), carries_state=position > 0)
    batched = [w.unsqueeze(0).expand(2, -1, -1, -1) for w in W]
    state = StateInputs(batched, [0.1 * w for w in batched], batched) if position else StateInputs(batched, None, None)
    y, saved = memory_forward(tuple(x), state, launch)
    assert not y.isnan().any()
    N = launch.layout.n_chunks
    for buf in saved.w_bufs + saved.s_bufs:
        assert not buf[:, :, :N + 1].isnan().any()
    zeros = [torch.zeros_like(b[:, :, 0]) for b in saved.w_bufs]
    d_tokens, d_state = memory_backward(saved, torch.randn_like(y), StateGradients(zeros, zeros, zeros), launch)
    for g in [*d_tokens, *d_state.weights, *d_state.surprise, *(d_state.chunk_weights if position else [])]:
        assert not g.isnan().any()


@pytest.mark.parametrize("dims,chunk,activation", [((16, 16), 16, "silu"), ((16, 32, 16), 16, "silu"),
                                                   ((24, 48, 16), 24, "gelu"), ((16, 32, 16), 16, "relu")])
def test_gradients_match_torch(dims, chunk, activation):
    x, W = inputs(dims, T=29, seed=3, requires_grad=True)
    probe = torch.randn(2, 29, 2, dims[-1], device=DEVICE)
    grads = {}
    for backend in ("torch", "triton"):
        y, state = run(x, W, backend, chunk_size=chunk, activation=activation)
        loss = (y * probe).sum() + sum(w.square().sum() for w in state.weights + state.surprise)
        grads[backend] = torch.autograd.grad(loss, [*x, *W])
    for g, g_ref in zip(grads["triton"], grads["torch"]):
        assert rel_err(g, g_ref) <= 1e-4


@pytest.mark.parametrize("dims", [(16, 16), (16, 32, 16)])
def test_split_invariance_and_gradients_through_state(dims):
    x, W = inputs(dims, T=40, seed=5, requires_grad=True)
    y_whole, _ = run(x, W, "torch", chunk_size=16)
    ys, state = [], None
    for a, b in ((0, 7), (7, 9), (9, 30), (30, 40)):     # cuts inside chunks and on a boundary
        y, state = run([t[:, a:b] for t in x], W, "triton", chunk_size=16, state=state)
        ys.append(y)
    y_split = torch.cat(ys, 1)
    assert rel_err(y_split, y_whole) <= 1e-4
    g_split = torch.autograd.grad(y_split.square().sum(), [*x, *W])
    g_whole = torch.autograd.grad(y_whole.square().sum(), [*x, *W])
    for a, b in zip(g_split, g_whole):
        assert rel_err(a, b) <= 1e-4


def test_bfloat16_inputs():
    x, W = inputs((16, 32, 16), T=33, seed=2, requires_grad=True)
    y_ref, _ = run(x, W, "torch", chunk_size=16)
    x16 = [t.detach().bfloat16().requires_grad_() for t in x]
    y, state = run(x16, W, "triton", chunk_size=16)
    assert y.dtype == torch.bfloat16 and state.weights[0].dtype == torch.float32
    assert rel_err(y.float(), y_ref) <= 2e-2
    grads = torch.autograd.grad(y.float().square().sum(), [*x16, *W])
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [*x, *W])
    for g, g_ref in zip(grads, grads_ref):
        assert rel_err(g.float(), g_ref) <= 2e-2


def test_deep_memory_falls_back_to_torch_with_a_warning():
    x, W = inputs((16, 16, 16, 16), T=20)
    y_ref, _ = run(x, W, "torch", chunk_size=16)
    with pytest.warns(UserWarning, match="depth 3 runs on the torch backend"):
        y, _ = run(x, W, "triton", chunk_size=16)
    assert torch.equal(y, y_ref)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only check")
def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    x, W = inputs((16, 16), T=8)
    with pytest.raises(ValueError, match="CUDA"):
        run(x, W, "triton", chunk_size=16)


@pytest.mark.parametrize("dims", [(16, 16), (16, 32, 16)])
def test_gates_at_their_bounds(dims):
    """Momentum 0, full forgetting, learning rate 0: products hit exact zeros, gradients stay exact."""
    x, W = inputs(dims, T=26, seed=8)
    lr, momentum, decay = x[3].clone(), x[4].clone(), x[5].clone()
    momentum[:, ::3] = 0.0
    decay[:, 5] = 1.0
    lr[:, 7] = 0.0
    x = [*x[:3], lr, momentum, decay]
    x = [t.detach().requires_grad_() for t in x]
    grads = {}
    for backend in ("torch", "triton"):
        y, state = run(x, W, backend, chunk_size=16)
        grads[backend] = torch.autograd.grad(y.square().sum() + state.surprise[0].sum(), x)
    for g, g_ref in zip(grads["triton"], grads["torch"]):
        assert rel_err(g, g_ref) <= 1e-4


class RefusingKernel:
    """Stands in for a Triton kernel on a GPU with room for BLOCK_H <= ``fits`` only."""

    def __init__(self, fits):
        self.fits, self.tried = fits, []

    def __getitem__(self, grid):
        def launch(*args, BLOCK_H, **options):
            self.tried.append(BLOCK_H)
            if BLOCK_H > self.fits:
                raise OutOfResources(BLOCK_H * 4096, self.fits * 4096, "shared memory")
        return launch


def test_a_kernel_too_large_for_the_gpu_is_launched_with_narrower_tiles():
    kernel = RefusingKernel(fits=16)
    options = {"BT": 64, "BLOCK_H": 64, "ACT": 0}
    launch_fitting(kernel, (4,), (), options)
    launch_fitting(kernel, (4,), (), options)            # the tile that fitted is remembered
    assert kernel.tried == [64, 32, 16, 16]
    with pytest.raises(KernelDoesNotFit, match="does not fit this GPU even with 16-wide tiles"):
        launch_fitting(RefusingKernel(fits=8), (4,), (), {"BT": 128, "BLOCK_H": 32, "ACT": 0})


def refuse(kernels: set[str]):
    """A launch_fitting for a GPU too small for the named kernels."""
    real = triton_backend.launch_fitting

    def launch(kernel, grid, args, options):
        if kernel.fn.__name__ in kernels:
            raise KernelDoesNotFit(f"{kernel.fn.__name__} does not fit this GPU even with 16-wide tiles")
        real(kernel, grid, args, options)
    return launch


@pytest.mark.parametrize("dims", [(16, 16), (16, 32, 16)])
@pytest.mark.parametrize("refused", ["fwd", "bwd"])
def test_a_kernel_that_fits_no_gpu_tile_falls_back_to_torch_exactly(dims, refused, monkeypatch):
    depth = len(dims) - 1
    monkeypatch.setattr(triton_backend, "launch_fitting", refuse({f"memory_{refused}_depth{depth}_kernel"}))
    x, W = inputs(dims, T=40, seed=7, requires_grad=True)
    y_whole, _ = run(x, W, "torch", chunk_size=16)
    ys, state = [], None
    with pytest.warns(UserWarning, match="runs on the torch backend"):
        for a, b in ((0, 7), (7, 30), (30, 40)):        # a resumed chunk and carried momentum too
            y, state = run([t[:, a:b] for t in x], W, "triton", chunk_size=16, state=state)
            ys.append(y)
        y_split = torch.cat(ys, 1)
        loss = y_split.square().sum() + sum(w.square().sum() for w in state.weights + state.surprise)
        g_split = torch.autograd.grad(loss, [*x, *W])
    assert rel_err(y_split, y_whole) <= 1e-4
    _, ref = run(x, W, "torch", chunk_size=16)
    loss_ref = y_whole.square().sum() + sum(w.square().sum() for w in ref.weights + ref.surprise)
    for a, b in zip(g_split, torch.autograd.grad(loss_ref, [*x, *W])):
        assert rel_err(a, b) <= 1e-4


def bounded_inputs(dims, T):
    """Keys of norms 0.5-2 and a first layer three times wider than unit: the bound by input norm acts
    on some tokens of each layer and not on others."""
    x, W = inputs(dims, T=T, seed=7)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        x[1].mul_((0.5 + 1.5 * torch.rand(x[1].shape[:-1], generator=g)).unsqueeze(-1).to(DEVICE))
        W[0].mul_(3.0)
    return [t.requires_grad_() for t in x], [w.requires_grad_() for w in W]


@pytest.mark.parametrize("dims,chunk,activation", [((16, 16), 16, "silu"), ((16, 32, 16), 16, "silu"),
                                                   ((24, 48, 16), 24, "gelu"), ((16, 64, 16), 16, "relu")])
def test_steps_bounded_by_input_norm_match_torch(dims, chunk, activation):
    """Outputs, state and every gradient match with the bound in force."""
    x, W = bounded_inputs(dims, T=29)
    probe = torch.randn(2, 29, 2, dims[-1], device=DEVICE)
    results = {}
    for backend in ("torch", "triton"):
        y, state = run(x, W, backend, chunk_size=chunk, activation=activation, bound_by_input_norm=True)
        loss = (y * probe).sum() + sum(w.square().sum() for w in state.weights + state.surprise)
        results[backend] = (y, *state.weights, *torch.autograd.grad(loss, [*x, *W]))
    for got, want in zip(results["triton"], results["torch"]):
        assert rel_err(got, want) <= 1e-4
    free, _ = run(x, W, "torch", chunk_size=chunk, activation=activation)
    assert rel_err(results["torch"][0], free) > 1e-2             # the bound is in force


@pytest.mark.parametrize("dims", [(16, 16), (16, 32, 16)])
def test_steps_bounded_by_input_norm_stream_exactly(dims):
    """Read in pieces through the state (a resumed chunk, carried momentum), the bounded kernels give
    the bounded torch backend's whole-sequence output and gradients."""
    x, W = bounded_inputs(dims, T=40)
    y_whole, _ = run(x, W, "torch", chunk_size=16, bound_by_input_norm=True)
    ys, state = [], None
    for a, b in ((0, 7), (7, 30), (30, 40)):
        y, state = run([t[:, a:b] for t in x], W, "triton", chunk_size=16, state=state, bound_by_input_norm=True)
        ys.append(y)
    y_split = torch.cat(ys, 1)
    assert rel_err(y_split, y_whole) <= 1e-4
    for got, want in zip(torch.autograd.grad(y_split.square().sum(), [*x, *W]),
                         torch.autograd.grad(y_whole.square().sum(), [*x, *W])):
        assert rel_err(got, want) <= 1e-4
