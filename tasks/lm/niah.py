"""Single-needle haystacks after RULER's S-NIAH tasks, and their scoring.

Three kinds: ``pk``, a five-digit pass key in a haystack of one repeated noise paragraph; ``n``,
a seven-digit magic number for a key word in essays; ``w``, a UUID for a key word in essays. A
sample is built in tokens: the haystack (whole sentences from a random place, cut to fit), the
needle inserted at the sentence boundary nearest the requested depth, then the question, so that
the whole prompt is exactly ``length`` tokens. The answer is scored as RULER does: a hit when the
expected string appears in what the model wrote.
"""
from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from titans_seq.data import resolve_path
from titans_seq.errors import UserError

from .tokenizers import Tokenizer

KINDS = ("pk", "n", "w")
NOISE = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")
ESSAYS = "niah/paul_graham_essays"   # a dataset key (titans-seq data list), or a text file
KEY_WORDS = ("amber", "harbor", "velvet", "canyon", "lantern", "meadow", "quartz", "falcon", "orchid", "glacier",
             "saffron", "timber", "cobalt", "lagoon", "thistle", "marble", "ember", "willow", "copper", "summit")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Needle:
    """What is hidden, the question that asks for it, and the expected answer."""

    text: str
    question: str
    answer: str


def make_needle(kind: str, rng: random.Random) -> Needle:
    """A random needle of one of the ``KINDS``."""
    if kind == "pk":
        key = str(rng.randint(10_000, 99_999))
        return Needle(f"The pass key is {key}. Remember it. {key} is the pass key. ",
                      "What is the pass key? The pass key is", key)
    if kind not in KINDS:
        raise UserError(f"needle kind {kind!r} is not one of {', '.join(KINDS)}")
    word = f"{rng.choice(KEY_WORDS)}-{rng.choice(KEY_WORDS)}"
    what, value = ("number", str(rng.randint(1_000_000, 9_999_999))) if kind == "n" else \
        ("uuid", str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    return Needle(f"One of the special magic {what}s for {word} is: {value}. ",
                  f"What is the special magic {what} for {word} mentioned in the provided text? "
                  f"The special magic {what} for {word} mentioned in the provided text is", value)


def read_haystack(path: Path) -> str:
    """A filler text: a text file, or a folder of ``.txt`` files joined in name order by blank lines
    (each stripped of trailing newlines, as the usual single-file concatenation of the essays is)."""
    if path.is_dir():
        texts = [p.read_text(encoding="utf-8", errors="replace").rstrip("\n") for p in sorted(path.glob("*.txt"))]
        return "\n\n".join(texts) + "\n"
    return path.read_text(encoding="utf-8", errors="replace")


class Haystack:
    """The sentences of a filler text, tokenised once, taken in order from any sentence on (cycling)."""

    def __init__(self, text: str, tokenizer: Tokenizer):
        sentences = [s for s in SENTENCE_END.split(text) if s.strip()]
        if not sentences:
            raise UserError("the haystack text is empty")
        self.sentences = [tokenizer.encode(s + " ") for s in sentences]

    @classmethod
    def for_kind(cls, kind: str, tokenizer: Tokenizer, essays: str | Path = ESSAYS) -> Haystack:
        """The noise paragraph for ``pk``, the essays file for ``n`` and ``w``."""
        if kind == "pk":
            return cls(NOISE, tokenizer)
        path = resolve_path(str(essays))
        if not path.exists():
            raise UserError(f"haystack {path}: no such file (the essays the n and w needles hide in; "
                            "pass --haystack, or use kind pk)")
        return cls(read_haystack(path), tokenizer)

    def take(self, n_tokens: int, rng: random.Random) -> tuple[list[int], list[int]]:
        """``n_tokens`` tokens from a random sentence on, and the positions where sentences start."""
        ids, starts, i = [], [], rng.randrange(len(self.sentences))
        while len(ids) < n_tokens:
            starts.append(len(ids))
            ids.extend(self.sentences[i % len(self.sentences)])
            i += 1
        return ids[:n_tokens], starts + [n_tokens]


@dataclass
class NeedleSample:
    """A prompt of ``length`` tokens with one needle at ``needle_start`` (``depth`` of the haystack)."""

    ids: list[int]
    needle: Needle
    needle_start: int
    needle_tokens: int
    depth: float


def make_sample(kind: str, length: int, depth: float, tokenizer: Tokenizer, haystack: Haystack,
                rng: random.Random) -> NeedleSample:
    """One S-NIAH prompt: haystack with the needle at the sentence boundary nearest ``depth``, then the question."""
    if not 0 <= depth <= 1:
        raise UserError(f"needle depth {depth} must be in [0, 1]")
    needle = make_needle(kind, rng)
    needle_ids = tokenizer.encode(needle.text)
    question_ids = tokenizer.encode(" " + needle.question)    # the haystack may end mid-sentence
    budget = length - len(needle_ids) - len(question_ids)
    if budget < 1:
        raise UserError(f"length {length} is too short for a {kind} needle and its question "
                        f"({len(needle_ids) + len(question_ids)} tokens)")
    filler, starts = haystack.take(budget, rng)
    at = min(starts, key=lambda s: abs(s - depth * budget))
    ids = filler[:at] + needle_ids + filler[at:] + question_ids
    return NeedleSample(ids, needle, at, len(needle_ids), depth)


def string_match_all(prediction: str, references: list[str]) -> float:
    """RULER's score: the fraction of references found (case-insensitively) in the prediction."""
    found = sum(reference.lower() in prediction.lower() for reference in references)
    return found / max(len(references), 1)
