"""What the ``titans-seq generate``, ``niah``, ``babilong`` and ``tokenizer`` commands do (the CLI only parses)."""
from __future__ import annotations

from pathlib import Path

from titans_seq.errors import UserError

from .babilong import babilong_files, babilong_table, evaluate_babilong
from .corpus import Corpus
from .generation import file_token_blocks, generate_text, load_language_model, stream_metrics
from .niah import ESSAYS
from .niah_eval import evaluate_niah, scale_forgetting, write_report
from .tokenizers import train_bpe


def generate_command(checkpoint: str, prompt: str = "", input_file: str | None = None, max_new_tokens: int = 200,
                     temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                     device: str = "auto") -> str:
    """The generated text, or with ``input_file`` one line of loss / bits per byte over the file."""
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or max_new_tokens < 0:
        raise UserError("--temperature and --top-k must be >= 0, --top-p in (0, 1], --max-new-tokens >= 0")
    loaded = load_language_model(checkpoint, device)
    if input_file is not None:
        metrics = stream_metrics(loaded, file_token_blocks(input_file, loaded.tokenizer))
        return (f"{input_file}: {metrics['tokens']:,} tokens  loss {metrics['loss']:.4f}  perplexity "
                f"{metrics['perplexity']:.2f}  bits/byte {metrics['bits_per_byte']:.4f}  "
                f"{metrics['tokens_per_s']:,.0f} tok/s")
    return prompt + generate_text(loaded, prompt, max_new_tokens, temperature, top_k, top_p, seed)


def tokenizer_command(corpus: str, vocab_size: int, out: str, text_field: str = "text") -> str:
    """Train a byte-level BPE tokeniser on a corpus; a line saying where it went."""
    tokenizer = train_bpe(Corpus(corpus, text_field).documents(), vocab_size, Path(out))
    return f"wrote {out}: byte-level BPE, {tokenizer.vocab_size} tokens (use it with task.tokenizer={out})"


def niah_command(checkpoint: str, kinds: list[str], lengths: list[int], depths: list[float], samples: int = 4,
                 seed: int = 0, haystack: str = ESSAYS, out: str | None = None, device: str = "auto",
                 forget_scale: float = 1.0) -> str:
    """S-NIAH accuracy of a checkpoint per kind, length and depth: the table, and where the files went.

    ``forget_scale`` multiplies every memory's forgetting gate (0: it never forgets), to test whether
    forgetting is what limits the reach.
    """
    loaded = load_language_model(checkpoint, device)
    if forget_scale != 1:
        scale_forgetting(loaded.model, forget_scale)
    results = evaluate_niah(loaded, kinds, lengths, depths, samples, seed, haystack)
    out_dir = Path(out) if out else Path(checkpoint).parent / "niah"
    table = write_report(results, out_dir)
    return f"{table}\nwrote {out_dir / 'niah.md'}, {out_dir / 'niah.png'} and {out_dir / 'results.jsonl'}"


def parse_list(text: str, kind: type, what: str) -> list:
    """Comma-separated values; lengths may say ``4K`` for 4096 (``1M`` for 1,048,576)."""
    values = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        scale = {"K": 1 << 10, "M": 1 << 20}.get(item[-1].upper(), 1) if kind is int else 1
        try:
            values.append(kind(float(item[:-1]) * scale) if scale > 1 else kind(item))
        except ValueError:
            raise UserError(f"{what} {text!r}: {item!r} is not a number") from None
    if not values:
        raise UserError(f"{what}: give at least one value")
    return values


def babilong_command(checkpoint: str, data: str, tasks: list[str], lengths: list[str], samples: int = 0,
                     device: str = "auto") -> str:
    """BABILong accuracy of a checkpoint, a row per task and a column per length."""
    for task in tasks:                       # every file is found before the model is loaded
        for length in lengths:
            babilong_files(data, task, length)
    return babilong_table(evaluate_babilong(load_language_model(checkpoint, device), data, tasks, lengths, samples))
