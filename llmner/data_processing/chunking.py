"""Tokenizer-aware chunking with exact offsets back to the document, and the merge of chunk
entities into document entities.

How a document becomes chunks (``chunk_document``):

1. Sentences (``llmner.data_processing.sentences.split_sentences``, by document language).
2. Consecutive sentences are packed into one chunk while the chunk has at most
   ``sentences_per_chunk`` sentences and ``count_tokens(chunk text) <= max_tokens``.
3. A sentence longer than ``max_tokens`` becomes overlapping windows. Window edges fall on token
   boundaries: between words, punctuation marks, or single CJK characters (a word too long for a
   window by itself is cut between characters). Consecutive windows share up to
   ``overlap_tokens`` tokens (at most half a window). A window exceeds ``max_tokens`` only if a
   single character does.

Guarantees: ``chunk.text == doc.text[chunk.start:chunk.end]``; chunks are in document order; every
non-whitespace character of the document lies in at least one chunk (only whitespace between
chunks is left out, never text). Token counts come from ``count_tokens`` (pass the generator's
tokenizer); the default ``approximate_token_count`` is a fast heuristic.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmner.data_processing.sentences import split_sentences
from llmner.doc import (
    CJK_RANGES,
    Chunk,
    ChunkEntities,
    Document,
    Entity,
    dedupe_entities,
)
from llmner.errors import ConfigError, ValidationError

# Atomic pieces of a sentence with their trailing whitespace: a CJK character, a word, a symbol.
_PIECE = re.compile(rf"[{CJK_RANGES}]\s*|[^\W{CJK_RANGES}]+\s*|[^\w\s]\s*|\s+")
_HEURISTIC_TOKEN = re.compile(rf"[{CJK_RANGES}]|[^\W{CJK_RANGES}]+|[^\w\s]")


def approximate_token_count(text: str) -> int:
    """A fast stand-in for a subword tokenizer: one token per CJK character or symbol, and one per
    four characters of a word (BPE vocabularies split rare biomedical words into a few pieces)."""
    total = 0
    for match in _HEURISTIC_TOKEN.finditer(text):
        total += math.ceil((match.end() - match.start()) / 4) if match.group().isalnum() else 1
    return total


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    max_tokens: int = 256        # window size in tokenizer tokens (text only, prompt excluded)
    overlap_tokens: int = 32     # overlap between windows of an over-long sentence (used up to max_tokens // 2)
    sentences_per_chunk: int = 1 # sentences packed per chunk while they fit in max_tokens

    @property
    def effective_overlap(self) -> int:
        """The overlap actually used: at most half a window, so windows always advance by half of one
        (a small ``max_tokens`` with the default overlap stays valid)."""
        return min(self.overlap_tokens, self.max_tokens // 2)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"chunking: max_tokens must be >= 1, got {self.max_tokens}")
        if self.overlap_tokens < 0:
            raise ConfigError(f"chunking: overlap_tokens must be >= 0, got {self.overlap_tokens}")
        if self.sentences_per_chunk < 1:
            raise ConfigError(f"chunking: sentences_per_chunk must be >= 1, got {self.sentences_per_chunk}")


def _pieces(text: str, start: int, end: int, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) pieces of ``text[start:end]``; pieces over ``max_tokens`` split into characters."""
    out: list[tuple[int, int, int]] = []
    for match in _PIECE.finditer(text, start, end):
        a, b = match.span()
        core = match.group().rstrip()
        tokens = count_tokens(core) if core else 0
        if tokens <= max_tokens or b - a == 1:
            out.append((a, b, tokens))
            continue
        for i in range(a, a + len(core)):
            last = i == a + len(core) - 1
            out.append((i, b if last else i + 1, count_tokens(text[i])))
    return out


def _windows(text: str, start: int, end: int, config: ChunkingConfig, count_tokens: Callable[[str], int]) -> list[tuple[int, int]]:
    """Overlapping windows over the over-long sentence ``text[start:end]``."""
    pieces = _pieces(text, start, end, count_tokens, config.max_tokens)
    windows: list[tuple[int, int]] = []
    n = len(pieces)
    i = 0
    while i < n:
        j, total = i, 0
        while j < n and total + pieces[j][2] <= config.max_tokens:
            total += pieces[j][2]
            j += 1
        j = max(j, i + 1)
        # Piece counts only approximately add up (subword merges): check the real count.
        while j > i + 1 and count_tokens(text[pieces[i][0] : pieces[j - 1][1]].rstrip()) > config.max_tokens:
            j -= 1
        w_end = pieces[j - 1][1]
        while w_end > pieces[i][0] and text[w_end - 1].isspace():
            w_end -= 1
        windows.append((pieces[i][0], w_end))
        if j >= n:
            break
        k, overlap = j, 0
        while k - 1 > i and overlap + pieces[k - 1][2] <= config.effective_overlap:
            overlap += pieces[k - 1][2]
            k -= 1
        i = k
    return windows


def chunk_document(
    doc: Document,
    config: ChunkingConfig = ChunkingConfig(),
    count_tokens: Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Chunks of ``doc`` in document order (see the module docstring for the rules)."""
    count = count_tokens or approximate_token_count
    text = doc.text
    spans: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    packed = 0
    for s_start, s_end in split_sentences(text, doc.language):
        if current is not None and packed < config.sentences_per_chunk and count(text[current[0] : s_end]) <= config.max_tokens:
            current = (current[0], s_end)
            packed += 1
            continue
        if current is not None:
            spans.append(current)
            current = None
        if count(text[s_start:s_end]) <= config.max_tokens:
            current, packed = (s_start, s_end), 1
        else:
            spans.extend(_windows(text, s_start, s_end, config, count))
    if current is not None:
        spans.append(current)
    return [Chunk(doc.id, i, a, b, text[a:b], doc.language) for i, (a, b) in enumerate(spans)]


def merge_chunk_entities(chunks: Sequence[Chunk], per_chunk: Sequence[ChunkEntities], text: str) -> list[Entity]:
    """The document entities of ``per_chunk`` (one chunk-frame list per chunk): shifted to document
    offsets, overlaps deduped, nesting kept. The one place where chunk entities change frame and are
    deduplicated (the pipeline and the workers both merge through it).

    Rules: each entity is shifted by its chunk's start (surface text cut from the document ``text``);
    identical (start, end, type) found in several chunks are kept once (highest score); nested and
    crossing entities are all kept. An entity that touches a *cut edge* of its chunk (an edge that
    lies strictly inside another, overlapping chunk: a window boundary inside a sentence) is
    dropped when another chunk found a strictly longer entity of the same type that contains it and
    reaches past that chunk (the full mention the edge cut); if no chunk saw more of it, the cut
    entity is kept (a partial mention beats a lost one). An entity found anywhere without being cut
    is always kept.
    """
    if len(chunks) != len(per_chunk):
        raise ValidationError(f"merge: {len(chunks)} chunks but {len(per_chunk)} entity lists")
    found: list[tuple[Entity, int]] = []
    for ci, (chunk, entities) in enumerate(zip(chunks, per_chunk)):
        if text[chunk.start : chunk.end] != chunk.text:
            raise ValidationError(f"merge: chunk {chunk.index} of {chunk.doc_id!r} does not match the document text")
        for ent in entities:
            if not 0 <= ent.start < ent.end <= len(chunk.text):
                raise ValidationError(
                    f"merge: entity [{ent.start}, {ent.end}) {ent.type} is outside chunk {chunk.index} ({len(chunk.text)} characters)"
                )
            start, end = ent.start + chunk.start, ent.end + chunk.start
            found.append((dataclasses.replace(ent, start=start, end=end, text=text[start:end]), ci))

    # An edge x is cut when some chunk has start < x < end: the largest end among chunks starting
    # before x exceeds x (a chunk never cuts its own edges).
    order = sorted(range(len(chunks)), key=lambda i: chunks[i].start)
    starts = [chunks[i].start for i in order]
    max_end = list(itertools.accumulate((chunks[i].end for i in order), max))

    def is_cut(x: int) -> bool:
        before = bisect.bisect_left(starts, x)
        return before > 0 and max_end[before - 1] > x

    edges = [(is_cut(c.start), is_cut(c.end)) for c in chunks]
    by_type: dict[str, list[tuple[Entity, int]]] = {}
    for ent, ci in found:
        by_type.setdefault(ent.type, []).append((ent, ci))
    kept: list[Entity] = []
    for ent, ci in found:
        start_cut, end_cut = edges[ci]
        chunk = chunks[ci]
        at_cut = (start_cut and ent.start == chunk.start) or (end_cut and ent.end == chunk.end)
        if at_cut and any(  # only cut entities are checked, so this stays cheap
            other.start <= ent.start and ent.end <= other.end and (other.start, other.end) != (ent.start, ent.end)
            and (other.start < chunk.start or other.end > chunk.end)
            for other, _ in by_type[ent.type]
        ):
            continue
        kept.append(ent)
    return dedupe_entities(kept)
