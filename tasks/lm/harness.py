"""lm-evaluation-harness support: a trained checkpoint answers the harness's requests.

:class:`HarnessScorer` computes what the harness asks of a model (the log-likelihood of a
continuation, of a whole text, and generation until a stop string) from a :class:`LoadedModel`,
reading through the model's state, so a Titans model takes contexts of any length. It needs no
``lm_eval``. :func:`harness_model_class` wraps it as the harness model ``titans_seq`` (registered
when lm_eval is installed), and :func:`evaluate_harness` scores a checkpoint on harness tasks
(``titans-seq lm-eval``). Requests are read one at a time; consecutive requests that share a
context (the choices of a multiple-choice question) read that context once.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from titans_seq.engine.records import write_atomically
from titans_seq.errors import UserError

from .generation import LoadedModel, generate, load_language_model, read_in_pieces, stream_loss_sums

MAX_GEN_TOKENS = 256          # the harness's default for generate_until


class HarnessScorer:
    """The harness's three request kinds, answered by one loaded language model."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self._last_context: tuple[str, Tensor, list] | None = None   # (context, its last logits, state after it)

    def _encode(self, text: str) -> list[int]:
        return self.loaded.tokenizer.encode(text)

    def _tensor(self, ids: list[int]) -> Tensor:
        return torch.tensor([ids], device=self.loaded.device)

    def _read_context(self, context: str) -> tuple[Tensor, list]:
        """The logits after an end-of-document token and ``context``, and the state after them."""
        if self._last_context is None or self._last_context[0] != context:
            logits, state = read_in_pieces(self.loaded.model, self._tensor([self.loaded.tokenizer.eos_id,
                                                                             *self._encode(context)]))
            self._last_context = (context, logits[:, -1:], state)
        return self._last_context[1], self._last_context[2]

    @torch.no_grad()
    def loglikelihood(self, context: str, continuation: str) -> tuple[float, bool]:
        """(log p(continuation | context), whether greedy decoding would write exactly it)."""
        stripped = context.rstrip(" ")             # a word's leading space belongs to the word (as the harness does)
        context, continuation = stripped, context[len(stripped):] + continuation
        target = self._encode(continuation)
        if not target:
            return 0.0, True
        model, window = self.loaded.model, self.loaded.context
        if window is None:                         # read the context once, then the continuation from its state
            first, state = self._read_context(context)
            rest = model(self._tensor(target[:-1]), state=state) if len(target) > 1 else first[:, :0]
            logits = torch.cat([first, rest], dim=1)
        else:                                      # a fixed-length model sees the last `window` tokens
            if len(target) > window:
                raise UserError(f"a continuation of {len(target)} tokens exceeds the {window} tokens this "
                                "transformer reads at once")
            ids = [self.loaded.tokenizer.eos_id, *self._encode(context), *target][-(window + 1):]
            logits = model(self._tensor(ids[:-1]))[:, -len(target):]
        log_probs = F.log_softmax(logits[0].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        wanted = torch.tensor(target, device=log_probs.device)
        total = log_probs.gather(-1, wanted[:, None]).sum().item()
        return total, bool((log_probs.argmax(-1) == wanted).all())

    def loglikelihood_rolling(self, text: str) -> float:
        """log p(text) after an end-of-document token, every token predicted once."""
        nats, _, _ = stream_loss_sums(self.loaded, iter([np.asarray(self._encode(text), dtype=np.int64)]))
        return -nats

    def generate_until(self, context: str, until: list[str], max_tokens: int = MAX_GEN_TOKENS,
                       temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
        """The text written after ``context``, cut before the first of the ``until`` strings."""
        tokenizer, window = self.loaded.tokenizer, self.loaded.context
        prompt = [tokenizer.eos_id, *self._encode(context)]
        if window is not None:
            if max_tokens >= window:
                raise UserError(f"max_gen_toks={max_tokens} leaves no room for a context in the {window} tokens "
                                "this transformer reads at once")
            prompt = prompt[-(window - max_tokens):]

        def stop(new: list[int]) -> bool:
            return any(marker in tokenizer.decode(new) for marker in until)

        text = tokenizer.decode(generate(self.loaded.model, prompt, max_tokens, temperature, top_k, top_p, seed,
                                         stop_id=tokenizer.eos_id, stop=stop if until else None))
        ends = [text.index(marker) for marker in until if marker in text]
        return text[:min(ends)] if ends else text


def generation_options(gen_kwargs: dict) -> dict:
    """The harness's ``gen_kwargs`` as :meth:`HarnessScorer.generate_until` arguments (greedy by default)."""
    until = gen_kwargs.get("until") or []
    sample = gen_kwargs.get("do_sample", False)
    return {"until": [until] if isinstance(until, str) else list(until),
            "max_tokens": int(gen_kwargs.get("max_gen_toks", MAX_GEN_TOKENS)),
            "temperature": float(gen_kwargs.get("temperature", 1.0)) if sample else 0.0,
            "top_k": int(gen_kwargs.get("top_k") or 0), "top_p": float(gen_kwargs.get("top_p") or 1.0)}


@functools.cache
def harness_model_class() -> type:
    """The lm_eval model class of a checkpoint, registered as ``titans_seq`` (needs lm-eval installed).

    ``lm_eval.simple_evaluate(model="titans_seq", model_args="checkpoint=runs/NAME/best", tasks=[...])``
    works once this has been called.
    """
    try:
        from lm_eval.api.model import LM
        from lm_eval.api.registry import register_model
    except ImportError:
        raise UserError("lm-evaluation-harness is not installed: pip install 'titans-seq[harness]'") from None

    @register_model("titans_seq")
    class TitansHarnessModel(LM):
        """A titans_seq language-model checkpoint as an lm_eval model (batch options are accepted and unused)."""

        def __init__(self, checkpoint: str, device: str | None = None, batch_size=None, max_batch_size=None):
            super().__init__()
            self.scorer = HarnessScorer(load_language_model(checkpoint, device or "auto"))

        def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            return [self.scorer.loglikelihood(*request.args) for request in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            return [self.scorer.loglikelihood_rolling(request.args[0]) for request in requests]

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            return [self.scorer.generate_until(request.args[0], **generation_options(request.args[1]))
                    for request in requests]

    return TitansHarnessModel


def evaluate_harness(checkpoint: str, tasks: list[str], num_fewshot: int | None = None, limit: float | None = None,
                     include_path: str | None = None, out: str | None = None, device: str = "auto") -> str:
    """Score a checkpoint on lm-evaluation-harness tasks: the harness's table (and its results as JSON in ``out``)."""
    model = harness_model_class()(checkpoint=checkpoint, device=device)
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    manager = TaskManager(include_path=include_path)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        raise UserError(f"--tasks: unknown to lm-evaluation-harness: {', '.join(unknown)}"
                        f"{'' if include_path else ' (local task YAMLs: --include-path DIR)'}")
    results = lm_eval.simple_evaluate(model=model, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=manager, log_samples=False)
    if out is not None:
        summary = {"checkpoint": checkpoint, "results": results["results"], "n-shot": results.get("n-shot", {})}
        write_atomically(Path(out), json.dumps(summary, indent=2, default=str) + "\n")
    return make_table(results)
