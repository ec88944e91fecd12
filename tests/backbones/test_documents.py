"""Packed documents: a packed batch gives each document's outputs and gradients as if it ran alone."""
import pytest
import torch

from titans_seq import Documents

from .test_backbone import CASES, small_model

# (row, start, end): boundaries inside memory chunks (4), MAC segments (8) and attention windows (6)
DOCUMENTS = [(0, 0, 5), (0, 5, 19), (0, 19, 27), (1, 0, 27), (2, 0, 1), (2, 1, 14), (2, 14, 15), (2, 15, 27)]


def packed_batch(dims=32, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(3, 27, dims, dtype=torch.float64, requires_grad=True)
    starts = torch.zeros(3, 27, dtype=torch.bool)
    for row, start, _ in DOCUMENTS:
        starts[row, start] = start > 0
    return x, Documents(starts)


def test_spans_follow_the_marks():
    _, documents = packed_batch()
    assert documents.spans() == DOCUMENTS
    ids = torch.tensor([[5, 1, 7, 7, 1, 1, 3]])
    assert Documents.after(ids, end_token=1).spans() == [(0, 0, 2), (0, 2, 5), (0, 5, 6), (0, 6, 7)]


@pytest.mark.parametrize("variant, options", CASES)
def test_a_packed_batch_equals_each_document_alone(variant, options):
    model = small_model(variant, **options)
    x, documents = packed_batch()
    probe = torch.randn(3, 27, 32, dtype=torch.float64)
    y = model(x, documents=documents)
    grads = torch.autograd.grad((y * probe).sum(), [x, *model.parameters()])
    alone, loss = torch.zeros_like(y), 0
    for row, start, end in DOCUMENTS:
        y_doc = model(x[row:row + 1, start:end])
        alone[row, start:end] = y_doc[0].detach()
        loss = loss + (y_doc[0] * probe[row, start:end]).sum()
    torch.testing.assert_close(y, alone, rtol=0, atol=1e-10)
    for g, g_alone in zip(grads, torch.autograd.grad(loss, [x, *model.parameters()])):
        torch.testing.assert_close(g, g_alone, rtol=0, atol=1e-9)
    torch.testing.assert_close(model(x), model(x, documents=Documents(torch.zeros(3, 27, dtype=torch.bool))))


@pytest.mark.parametrize("variant, options", CASES)
def test_streaming_a_packed_stream_equals_the_parallel_call(variant, options):
    model = small_model(variant, **options)
    x, documents = packed_batch()
    x, starts = x[2:].detach(), documents.starts[2:]           # one stream: documents at 0, 1, 14, 15
    with torch.no_grad():
        y, state = model(x, documents=Documents(starts), return_state=True)
        for cuts in ([1, 14, 15], [3, 14, 20], [*range(1, 27)]):
            state_split, ys = None, []
            for a, b in zip([0, *cuts], [*cuts, 27]):
                out, state_split = model(x[:, a:b], state=state_split, return_state=True,
                                         documents=Documents(starts[:, a:b]))
                ys.append(out)
            torch.testing.assert_close(torch.cat(ys, 1), y, rtol=0, atol=1e-10)
        y_tail, _ = model(x[:, 15:], return_state=True)         # the last document, alone
        torch.testing.assert_close(y[:, 15:], y_tail, rtol=0, atol=1e-10)
        more = torch.randn(1, 5, 32, dtype=torch.float64)
        _, tail_state = model(x[:, 15:], return_state=True)
        torch.testing.assert_close(model(more, state=state), model(more, state=tail_state), rtol=0, atol=1e-10)


def test_a_carried_state_across_boundaries_needs_one_row():
    model = small_model("lmm")
    x, documents = packed_batch()
    with torch.no_grad(), pytest.raises(ValueError, match="needs batch size 1"):
        model(x.detach(), documents=documents, return_state=True)
    with torch.no_grad(), pytest.raises(ValueError, match=r"documents.starts must be \(B, T\)"):
        model(x.detach(), documents=Documents(documents.starts[:, :5]))


@pytest.mark.parametrize("backend", ["triton", "torch_recompute"])
def test_packed_documents_on_every_memory_backend(backend):
    """The same exactness where the memory runs the Triton kernels (interpreted on a CPU) or the
    hand-written backward: documents reach the memory as sequences of their own."""
    if backend == "triton":
        pytest.importorskip("triton")
    torch.manual_seed(0)
    from titans_seq import Backbone

    from .test_backbone import small_config
    model = Backbone(small_config("mag", d_model=32, head_dim=16, chunk_size=16, memory_backend=backend)).float()
    x, documents = packed_batch()
    x = x.detach().float().requires_grad_()
    y = model(x, documents=documents)
    (g,) = torch.autograd.grad(y.square().sum(), [x])
    for row, start, end in DOCUMENTS:
        x_doc = x[row:row + 1, start:end].detach().requires_grad_()
        y_doc = model(x_doc)
        (g_doc,) = torch.autograd.grad(y_doc.square().sum(), [x_doc])
        torch.testing.assert_close(y[row, start:end], y_doc[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g[row, start:end], g_doc[0], rtol=1e-4, atol=1e-5)
