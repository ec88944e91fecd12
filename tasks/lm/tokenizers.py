"""Tokenisers: bytes by default (no files), any SentencePiece model, any Hugging Face ``tokenizers`` JSON.

Every tokeniser has one end-of-document token (``eos_id``) and knows how many UTF-8 bytes each
token stands for (``token_bytes``), so a loss can be reported in bits per byte whatever the
tokeniser. SentencePiece and ``tokenizers`` are optional (``pip install titans-seq[lm]``) and
imported only when a file of theirs is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from titans_seq.errors import UserError

BYTE = "byte"
EOS_TEXT = "<|endoftext|>"


class Tokenizer(Protocol):
    """What the LM task needs of a tokeniser."""

    name: str
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_bytes(self) -> np.ndarray: ...


class ByteTokenizer:
    """UTF-8 bytes 0..255, and 256 for the end of a document."""

    name = BYTE
    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes per token id: 1 for every byte, 0 for the end-of-document token."""
        return np.array([1] * 256 + [0], dtype=np.int64)


class SentencePieceTokenizer:
    """A SentencePiece ``.model`` file; its ``</s>`` (or a piece named ``<|endoftext|>``) ends a document."""

    def __init__(self, path: Path):
        import sentencepiece

        self.name = str(path)
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as error:
            raise UserError(f"tokenizer {path}: not a SentencePiece model ({str(error).splitlines()[0]})") from None
        self.vocab_size = self.processor.get_piece_size()
        eos = self.processor.eos_id()
        self.eos_id = eos if eos >= 0 else self.processor.piece_to_id(EOS_TEXT)
        if self.eos_id == self.processor.unk_id():
            raise UserError(f"tokenizer {path}: has no end-of-sequence piece (</s> or {EOS_TEXT})")

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.processor.decode([i for i in ids if i != self.eos_id])

    def token_bytes(self) -> np.ndarray:
        """Bytes per piece: byte-fallback pieces are one byte, control pieces none, '▁' a space."""
        sp = self.processor
        sizes = [1 if sp.is_byte(i) else 0 if sp.is_control(i) or sp.is_unknown(i)
                 else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")) for i in range(self.vocab_size)]
        return np.array(sizes, dtype=np.int64)


class HFTokenizer:
    """A Hugging Face ``tokenizers`` JSON file; ``<|endoftext|>`` (or ``</s>``, ``<eos>``) ends a document."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as RustTokenizer

        self.name = str(path)
        try:
            self.tokenizer = RustTokenizer.from_file(str(path))
        except Exception as error:   # the Rust side raises a bare Exception for any malformed file
            raise UserError(f"tokenizer {path}: not a tokenizers JSON file ({str(error).splitlines()[0]})") from None
        self.vocab_size = self.tokenizer.get_vocab_size()
        eos = next((self.tokenizer.token_to_id(t) for t in (EOS_TEXT, "</s>", "<eos>")
                    if self.tokenizer.token_to_id(t) is not None), None)
        if eos is None:
            raise UserError(f"tokenizer {path}: has no end-of-document token ({EOS_TEXT}, </s> or <eos>)")
        self.eos_id = eos

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != self.eos_id])

    def token_bytes(self) -> np.ndarray:
        """Bytes per token; exact for byte-level BPE, where each character of a token is one byte."""
        byte_level = type(self.tokenizer.decoder).__name__ == "ByteLevel"
        special = {token.content for token in self.tokenizer.get_added_tokens_decoder().values() if token.special}
        sizes = []
        for i in range(self.vocab_size):
            token = self.tokenizer.id_to_token(i) or ""
            if token in special:
                sizes.append(0)
            else:
                sizes.append(len(token) if byte_level else len(self.tokenizer.decode([i]).encode("utf-8")))
        return np.array(sizes, dtype=np.int64)


def load_tokenizer(spec: str) -> Tokenizer:
    """``byte``, a SentencePiece ``.model`` file, or a ``tokenizers`` ``.json`` file."""
    if spec == BYTE:
        return ByteTokenizer()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"tokenizer {spec!r}: no such file (use 'byte', a SentencePiece .model or a tokenizers .json)")
    try:
        return HFTokenizer(path) if path.suffix == ".json" else SentencePieceTokenizer(path)
    except ImportError as error:
        raise UserError(f"tokenizer {spec}: needs {error.name}; pip install 'titans-seq[lm]'") from None


def train_bpe(texts: Iterable[str], vocab_size: int, out: str | Path) -> HFTokenizer:
    """Train a byte-level BPE tokeniser on ``texts`` and save it as a ``tokenizers`` JSON file."""
    try:
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers
    except ImportError:
        raise UserError("training a tokenizer needs the tokenizers package; pip install 'titans-seq[lm]'") from None
    if vocab_size < 257:
        raise UserError(f"--vocab-size {vocab_size}: a byte-level BPE needs at least 257 tokens")
    tokenizer = RustTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    documents = 0

    def counted(texts: Iterable[str]) -> Iterable[str]:
        nonlocal documents
        for text in texts:
            documents += 1
            yield text
    tokenizer.train_from_iterator(counted(texts), trainer=trainer)
    if documents == 0:
        raise UserError("cannot train a tokenizer: the corpus is empty (no document with any text)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tokenizer.save(str(tmp))
    tmp.replace(out)
    return HFTokenizer(out)
