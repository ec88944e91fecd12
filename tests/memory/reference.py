"""The slow, obviously-correct twin of the memory operator: one token at a time, autograd gradients."""
import torch
from torch.func import grad

from titans_seq.memory.activations import get_activation


def mlp(weights, x, act):
    for W in weights[:-1]:
        x = act(x @ W)
    return x @ weights[-1]


def layer_inputs(weights, x, act):
    """Each layer's input for x: x itself, then every hidden activation."""
    inputs = [x]
    for W in weights[:-1]:
        inputs.append(act(inputs[-1] @ W))
    return inputs


def sequential_memory(q, k, v, lr, momentum, decay, weights, chunk_size, activation="silu", anchor=None,
                      bound_by_input_norm=False):
    """Titans' update, literally: S_t = eta S - theta grad l_t(W_chunk start); W_t = (1 - alpha) W + S
    (with an ``anchor`` A: W_t = (1 - alpha) W + alpha A + S; ``bound_by_input_norm``: each layer's
    gradient divided by max(1, |its input|^2) at the chunk-start weights)."""
    act = get_activation(activation).fn
    B, T, H, _ = q.shape

    def loss(ws, key, value):   # summed over (B, H): each (b, h) memory only sees its own tokens
        return ((mlp(ws, key.unsqueeze(-2), act).squeeze(-2) - value) ** 2).sum()

    W = [w.unsqueeze(0).expand(B, *w.shape) for w in weights]     # (B, H, Di, Do)
    S = [torch.zeros_like(w) for w in W]
    ys = []
    for t in range(T):
        if t % chunk_size == 0:
            W_chunk = W
        G = grad(loss)(W_chunk, k[:, t], v[:, t])
        if bound_by_input_norm:
            norms = [a.square().sum(-1).clamp_min(1.0)[..., None]
                     for a in layer_inputs(W_chunk, k[:, t].unsqueeze(-2), act)]     # (B, H, 1, 1)
            G = [g / n for g, n in zip(G, norms)]
        theta, eta, alpha = (g[:, t, :, None, None] for g in (lr, momentum, decay))
        S = [eta * s - theta * g for s, g in zip(S, G)]
        W = [(1 - alpha) * w + s for w, s in zip(W, S)]
        if anchor is not None:
            W = [w + alpha * A for w, A in zip(W, anchor)]
        ys.append(mlp(W, q[:, t].unsqueeze(-2), act).squeeze(-2))
    return torch.stack(ys, dim=1), W, S
