"""Reading and writing text with a trained language model, carrying the Backbone state between pieces.

The state holds the neural memory, the sliding-window caches and the current MAC segment, all of
fixed size, so memory use stays constant however long the input or output. The transformer
baseline's cache grows with every token, so it is held to the length it was trained on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from titans_seq.engine.config import Recipe
from titans_seq.engine.runs import open_run
from titans_seq.errors import UserError

from .task import lm_metrics, token_loss_sums
from .tokenizers import Tokenizer

PIECE = 512                  # tokens read per forward call when streaming


@dataclass
class LoadedModel:
    """A trained language model with its tokeniser and the recipe it was trained with."""

    model: nn.Module
    tokenizer: Tokenizer
    recipe: Recipe | None    # None: a model not read from a checkpoint
    context: int | None      # the most tokens it may read at once (None: no limit)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_language_model(checkpoint: str | Path, device: str = "auto") -> LoadedModel:
    """The model of a run or checkpoint folder (``runs/NAME``, ``runs/NAME/best``) of a language-model task."""
    run = open_run(checkpoint, device=device)
    if not hasattr(run.task, "tokenizer"):
        raise UserError(f"--checkpoint {checkpoint}: task {run.recipe.task.name!r} is not a language model")
    context = run.task.context_length if run.recipe.model.variant == "transformer" else None
    return LoadedModel(run.model, run.task.tokenizer, run.recipe, context)


def read_in_pieces(model: nn.Module, ids: Tensor, piece: int = PIECE, state: list | None = None):
    """Logits of every position of ``ids`` (B, T), read ``piece`` tokens at a time; and the state after."""
    outputs = []
    for start in range(0, ids.shape[1], piece):
        logits, state = model(ids[:, start:start + piece], state=state, return_state=True)
        outputs.append(logits)
    return torch.cat(outputs, dim=1), state


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """The next token of each row of ``logits`` (B, V): greedy at temperature 0, else sampled."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        outside = probs.cumsum(-1) - probs > top_p           # tokens after the nucleus (the first always stays)
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate(model: nn.Module, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, stop_id: int | None = None,
             stop: Callable[[list[int]], bool] | None = None) -> list[int]:
    """New token ids after ``prompt``: the prompt is read in pieces, then one token per step with the state.

    Writing ends before ``stop_id``, or after the token for which ``stop(new tokens)`` is true.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    logits, state = read_in_pieces(model, torch.tensor([prompt], device=device))
    new: list[int] = []
    for _ in range(max_new_tokens):
        token = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
        if token.item() == stop_id:
            break
        new.append(token.item())
        if stop is not None and stop(new):
            break
        logits, state = model(token.view(1, 1), state=state, return_state=True)
    return new


def check_fits(loaded: LoadedModel, prompt_tokens: int, max_new_tokens: int) -> None:
    """A UserError when a fixed-length model is asked to read or write past its context."""
    if loaded.context is not None and prompt_tokens + max_new_tokens > loaded.context:
        raise UserError(f"the prompt ({prompt_tokens} tokens) plus --max-new-tokens {max_new_tokens} exceeds the "
                        f"{loaded.context} tokens this transformer was trained on; shorten them, or use a Titans "
                        "variant")


def generate_text(loaded: LoadedModel, prompt: str, max_new_tokens: int = 200, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
    """The text a model writes after ``prompt`` (read as the start of a document)."""
    tokenizer = loaded.tokenizer
    ids = [tokenizer.eos_id, *tokenizer.encode(prompt)]
    check_fits(loaded, len(ids), max_new_tokens)
    new = generate(loaded.model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop_id=tokenizer.eos_id)
    return tokenizer.decode(new)


def file_token_blocks(path: str | Path, tokenizer: Tokenizer, block_chars: int = 1 << 20) -> Iterator[np.ndarray]:
    """The tokens of a text file, a block of lines at a time (the file is never read whole)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--input-file {path}: no such file")
    with path.open(encoding="utf-8", errors="replace") as file:
        while True:
            block = file.read(block_chars)
            if not block:
                return
            block += file.readline()            # end the block at a line break
            yield np.asarray(tokenizer.encode(block), dtype=np.int64)


@torch.no_grad()
def stream_loss_sums(loaded: LoadedModel, blocks: Iterator[np.ndarray], piece: int = PIECE) -> tuple[float, int, int]:
    """(summed nats, tokens, UTF-8 bytes) of a token stream after an end-of-document token, read piece by piece.

    The state carries everything read so far; a fixed-length model starts afresh every ``context``
    tokens instead (independent windows, each token predicted once).
    """
    token_bytes = torch.from_numpy(loaded.tokenizer.token_bytes())
    if loaded.context is not None:
        piece = min(piece, loaded.context)
    nats, tokens, text_bytes, state, read = 0.0, 0, 0, None, 0
    pending = np.asarray([loaded.tokenizer.eos_id], dtype=np.int64)
    for block in blocks:
        pending = np.concatenate((pending, block))
        while len(pending) > piece:
            if loaded.context is not None and read + piece > loaded.context:
                state, read = None, 0
            ids = torch.from_numpy(pending[:piece + 1]).to(loaded.device).view(1, -1)
            logits, state = loaded.model(ids[:, :-1], state=state, return_state=True)
            counts = token_loss_sums(logits, ids[:, 1:], token_bytes)
            nats, tokens, text_bytes = nats + counts[0], tokens + counts[1], text_bytes + counts[2]
            pending, read = pending[piece:], read + piece
    if len(pending) > 1:
        if loaded.context is not None and read + len(pending) - 1 > loaded.context:
            state = None
        ids = torch.from_numpy(pending).to(loaded.device).view(1, -1)
        counts = token_loss_sums(loaded.model(ids[:, :-1], state=state), ids[:, 1:], token_bytes)
        nats, tokens, text_bytes = nats + counts[0], tokens + counts[1], text_bytes + counts[2]
    return nats, tokens, text_bytes


def stream_metrics(loaded: LoadedModel, blocks: Iterator[np.ndarray], piece: int = PIECE) -> dict[str, float]:
    """Loss, perplexity, bits per byte and speed of a token stream (see :func:`stream_loss_sums`)."""
    started = time.perf_counter()
    nats, tokens, text_bytes = stream_loss_sums(loaded, blocks, piece)
    if tokens == 0:
        raise UserError("--input-file: the file holds no text")
    seconds = time.perf_counter() - started
    return {**lm_metrics(nats, tokens, text_bytes), "tokens": tokens, "tokens_per_s": tokens / max(seconds, 1e-9)}
