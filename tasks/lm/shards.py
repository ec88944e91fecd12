"""Token shards: a corpus tokenised once into memory-mapped files, then read as one stream.

A shard folder holds ``shard-NNNNN.bin`` files of raw token ids (uint16 when the vocabulary fits,
else uint32) and an ``index.json`` header naming them, their sizes and what they were made from.
Shards are written under temporary names and renamed when full; the index is written last,
atomically, so a folder without one was never finished and is written again.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from titans_seq.engine.records import write_atomically
from titans_seq.errors import UserError

from .corpus import Corpus
from .tokenizers import Tokenizer

INDEX = "index.json"
SHARD_TOKENS = 1 << 27          # 128M tokens: 256 MB of uint16 per shard


@dataclass
class ShardIndex:
    """The header of a shard folder."""

    dtype: str
    vocab_size: int
    eos_id: int
    source: str                              # what the tokens were made from (corpus and tokeniser)
    documents: int = 0
    text_bytes: int = 0                      # UTF-8 bytes of the documents
    shards: list[dict] = field(default_factory=list)   # {"file": name, "tokens": count}

    @property
    def tokens(self) -> int:
        return sum(shard["tokens"] for shard in self.shards)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_shards(documents: Iterable[str], tokenizer: Tokenizer, directory: str | Path, source: str = "",
                 shard_tokens: int = SHARD_TOKENS, total_bytes: int | None = None) -> TokenShards:
    """Tokenise ``documents`` (each followed by the end-of-document token) into a shard folder.

    ``total_bytes``, when known, sizes the progress bar (shown on a terminal).
    """
    directory = Path(directory)
    for stale in [directory / INDEX, *directory.glob("shard-*.bin"), *directory.glob(".shard-*.tmp")]:
        stale.unlink(missing_ok=True)         # an unfinished (or outdated) shard folder: write it again
    directory.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    index = ShardIndex(dtype=dtype.name, vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, source=source)
    writer = _ShardWriter(directory, dtype, shard_tokens, index)
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenising", disable=None) as bar:
        for text in documents:
            size = len(text.encode("utf-8"))
            writer.append(np.array([*tokenizer.encode(text), tokenizer.eos_id], dtype=dtype))
            index.documents += 1
            index.text_bytes += size
            bar.update(size)
    writer.close()
    if index.documents == 0:
        if not any(directory.iterdir()):
            directory.rmdir()
        raise UserError(f"{source or 'corpus'}: the corpus is empty (no document with any text)")
    write_atomically(directory / INDEX, json.dumps(asdict(index), indent=1) + "\n")
    return TokenShards(directory)


class _ShardWriter:
    """Appends token arrays to shard files, renaming each into place once it is full or closed."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_tokens: int, index: ShardIndex):
        self.directory, self.dtype, self.shard_tokens, self.index = directory, dtype, shard_tokens, index
        self.file, self.count = None, 0

    def append(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.file is None:
                self.file = (self.directory / f".shard-{len(self.index.shards):05d}.tmp").open("wb")
            room = self.shard_tokens - self.count
            tokens[:room].tofile(self.file)
            self.count += min(room, len(tokens))
            tokens = tokens[room:]
            if self.count == self.shard_tokens:
                self._finish()

    def _finish(self) -> None:
        name = f"shard-{len(self.index.shards):05d}.bin"
        self.file.close()
        Path(self.file.name).replace(self.directory / name)
        self.index.shards.append({"file": name, "tokens": self.count})
        self.file, self.count = None, 0

    def close(self) -> None:
        if self.file is not None:
            self._finish()


def _read_index(path: Path) -> ShardIndex:
    try:
        index = ShardIndex(**json.loads(path.read_bytes()))
        np.dtype(index.dtype)
        if not all(isinstance(s["file"], str) and isinstance(s["tokens"], int) for s in index.shards):
            raise TypeError("a shard entry is not a file name and a token count")
    except (ValueError, TypeError, KeyError) as error:
        raise UserError(f"{path}: the token-shard index is damaged ({' '.join(str(error).split())})") from None
    return index


def _open_shard(path: Path, dtype: np.dtype, tokens: int) -> np.memmap:
    """A shard file, memory-mapped, after checking it holds exactly the tokens its index counts."""
    size = path.stat().st_size if path.is_file() else None
    if size != tokens * dtype.itemsize or tokens < 1:
        raise UserError(f"{path}: the token shard is damaged or missing ({size} bytes, its index counts "
                        f"{tokens} tokens of {dtype.itemsize} bytes)")
    return np.memmap(path, dtype=dtype, mode="r", shape=(tokens,))


class TokenShards:
    """A finished shard folder read as one token stream; only the slices asked for are paged in."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_path = self.directory / INDEX
        if not index_path.is_file():
            raise UserError(f"{self.directory}: not a finished token-shard folder (no {INDEX})")
        self.index = _read_index(index_path)
        self.shards = [_open_shard(self.directory / s["file"], np.dtype(self.index.dtype), s["tokens"])
                       for s in self.index.shards]
        self.starts = np.cumsum([0] + [s["tokens"] for s in self.index.shards])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream, across shard boundaries, as int64."""
        assert 0 <= start <= stop <= len(self), (start, stop, len(self))
        pieces = []
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for i in range(first, len(self.shards)):
            if self.starts[i] >= stop:
                break
            lo, hi = max(start, self.starts[i]) - self.starts[i], min(stop, self.starts[i + 1]) - self.starts[i]
            pieces.append(self.shards[i][lo:hi])
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)


def cached_shards(corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | Path) -> TokenShards:
    """The corpus's shards under ``cache_dir``, written on first use and reused while nothing changed."""
    tokenizer_file = Path(tokenizer.name)
    tokenizer_id = [tokenizer.name, tokenizer.vocab_size]
    if tokenizer_file.is_file():
        tokenizer_id += [tokenizer_file.stat().st_size, tokenizer_file.stat().st_mtime_ns]
    source = json.dumps([corpus.fingerprint(), tokenizer_id])
    directory = Path(cache_dir).expanduser() / hashlib.sha1(source.encode()).hexdigest()[:16]
    if (directory / INDEX).is_file():
        try:
            return TokenShards(directory)
        except UserError as damage:           # a cache is rebuilt, never trusted when damaged
            warnings.warn(f"{damage}; tokenising the corpus again", stacklevel=2)
    return write_shards(corpus.documents(), tokenizer, directory, source=source, total_bytes=corpus.size_bytes())


class PackedSequences(Dataset):
    """Fixed-length training sequences cut from tokens [start, stop) of a stream: (inputs, next tokens).

    Documents are packed back to back, each ended by the end-of-document token, so a sequence may
    hold the end of one document and the start of the next, with the boundary marked.
    """

    def __init__(self, shards: TokenShards, seq_len: int, start: int = 0, stop: int | None = None):
        self.shards, self.seq_len, self.start = shards, seq_len, start
        self.stop = len(shards) if stop is None else stop
        self.count = max(0, (self.stop - self.start - 1) // seq_len)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        begin = self.start + i * self.seq_len
        tokens = torch.from_numpy(self.shards.read(begin, begin + self.seq_len + 1))
        return tokens[:-1], tokens[1:]
