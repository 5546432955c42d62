"""Document-level consistency: a string the model tagged once is tagged wherever it recurs.

The generator sees one chunk (a sentence or a few) at a time, so it tags "Wilson disease (WD)" in the
first sentence and then misses the bare "WD" three sentences later, or tags "BRCA1" in one sentence
and not in the next. Annotation guidelines of the biomedical corpora tag every occurrence of a
mention, and a short form defined in parentheses carries its long form's type (Schwartz & Hearst,
2003). Two steps, applied per whole document after the chunks are merged:

1. abbreviations: for ``long form (SF)`` where the long form ends where a tagged entity ends and
   ``SF`` abbreviates that entity's text, ``SF`` gets the entity's type (inside the parentheses, and
   then everywhere, by step 2);
2. repeats: every other occurrence of a tagged string (case-sensitive; whole words in scripts that
   separate words, anywhere in Chinese or Japanese text) gets the type it was tagged with.

A string tagged with two different types in the document is ambiguous and is not propagated, nor is
one the model tagged at fewer than ``min_share`` of its free places (a slip, not a reading). An
occurrence that overlaps any entity already there is left alone: the model's own reading of that
place wins. An added entity takes the scores of the entities it was copied from (their maximum), so a
selector threshold applied afterwards treats it like its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from llmner.doc import Entity
from llmner.errors import ConfigError
from llmner.normalization.text import matches_short_form

_PAREN = re.compile(r"\(\s*([^()]{1,12}?)\s*\)")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class ConsistencyConfig:
    """Which steps run; the defaults are the setting chosen on dev (``benchmarks/results/consistency.md``):
    repeats of strings the model tagged at half of their places or more, no abbreviation step (it
    changed dev F1 by at most 0.3 on any corpus)."""

    abbreviations: bool = False   # step 1: "long form (SF)" gives SF the long form's type
    repeats: bool = True          # step 2: every recurrence of a tagged string gets its type
    # Step 2 propagates a string only where the model itself tagged at least this share of its
    # occurrences (free ones: those not inside another entity). On dev, propagating every tagged string
    # cost NCBI-Disease 6 F1: a gene tagged as a disease once ("BRCA1") spread to all its mentions.
    min_share: float = 0.5
    min_chars: int = 2            # shorter strings are never propagated (single letters recur by chance)

    @classmethod
    def off(cls) -> ConsistencyConfig:
        return cls(abbreviations=False, repeats=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyConfig:
        """A bundle manifest's ``consistency`` object (unknown keys and bad values are errors)."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"consistency: unknown field(s) {sorted(unknown)}")
        config = cls(**data)
        if not (isinstance(config.abbreviations, bool) and isinstance(config.repeats, bool)):
            raise ConfigError("consistency: abbreviations and repeats must be true or false")
        if not isinstance(config.min_share, (int, float)) or not 0.0 <= config.min_share <= 1.0:
            raise ConfigError(f"consistency: min_share must be a number in [0, 1], got {config.min_share!r}")
        if not isinstance(config.min_chars, int) or config.min_chars < 1:
            raise ConfigError(f"consistency: min_chars must be an integer >= 1, got {config.min_chars!r}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def enabled(self) -> bool:
        return self.abbreviations or self.repeats


def _word_bounded(text: str, start: int, end: int) -> bool:
    """``text[start:end]`` is not part of a longer word (CJK text has no word boundaries to check)."""
    if _CJK.search(text[start:end]):
        return True
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() and text[start].isalnum()) and not (after.isalnum() and text[end - 1].isalnum())


def _occurrences(text: str, string: str) -> list[int]:
    """Start offsets of ``string`` in ``text`` that are whole words (``_word_bounded``)."""
    out, at = [], text.find(string)
    while at != -1:
        if _word_bounded(text, at, at + len(string)):
            out.append(at)
        at = text.find(string, at + 1)
    return out


class _Occupied:
    """The characters entities cover: an overlap test in the span's length, not the entity count
    (a long document holds thousands of entities)."""

    def __init__(self, size: int) -> None:
        self._chars = bytearray(size)

    def add(self, start: int, end: int) -> None:
        self._chars[start:end] = b"\x01" * (end - start)

    def overlaps(self, start: int, end: int) -> bool:
        return any(self._chars[start:end])


def _copy(source: Entity, start: int, end: int, text: str) -> Entity:
    return replace(source, start=start, end=end, text=text[start:end], normalized_id=None, normalized_score=None)


def _best(entities: Sequence[Entity]) -> Entity:
    """The source whose scores a copy takes: the highest-scored of the same string's entities."""
    def rank(e: Entity) -> tuple[float, float]:
        return (e.score if e.score is not None else -1.0, e.generator_score if e.generator_score is not None else -1.0)
    return max(entities, key=rank)


def propagate(text: str, entities: Sequence[Entity], config: ConsistencyConfig | None = None) -> list[Entity]:
    """``entities`` (document frame, over ``text``) plus the entities the two steps add, sorted by
    offsets. The input entities are returned unchanged."""
    config = config or ConsistencyConfig()
    out = list(entities)
    if not config.enabled() or not out:
        return sorted(out, key=lambda e: (e.start, -e.end, e.type))
    occupied = _Occupied(len(text))
    for e in out:
        occupied.add(e.start, e.end)
    by_string: dict[str, list[Entity]] = {}
    for e in out:
        by_string.setdefault(text[e.start : e.end], []).append(e)

    if config.abbreviations:
        ends: dict[int, list[Entity]] = {}
        for e in out:
            ends.setdefault(e.end, []).append(e)
        for m in _PAREN.finditer(text):
            short = m.group(1)
            if len(short) < config.min_chars or not any(c.isalpha() for c in short):
                continue
            gap_start = m.start()
            while gap_start > 0 and text[gap_start - 1].isspace():
                gap_start -= 1
            longs = [e for e in ends.get(gap_start, []) if matches_short_form(short, text[e.start : e.end])]
            if len({e.type for e in longs}) != 1:
                continue
            source = _best(longs)
            start, end = m.start(1), m.end(1)
            if not occupied.overlaps(start, end):
                added = _copy(source, start, end, text)
                out.append(added)
                occupied.add(start, end)
                by_string.setdefault(short, []).append(added)

    if config.repeats:
        for string, sources in list(by_string.items()):
            if len(string) < config.min_chars or len({e.type for e in sources}) != 1 or not string.strip():
                continue
            source = _best(sources)
            tagged = {(e.start, e.end) for e in sources}
            free = [(at, at + len(string)) for at in _occurrences(text, string)
                    if (at, at + len(string)) not in tagged and not occupied.overlaps(at, at + len(string))]
            if not free or len(tagged) < config.min_share * (len(tagged) + len(free)):
                continue
            for start, end in free:
                if not occupied.overlaps(start, end):
                    out.append(_copy(source, start, end, text))
                    occupied.add(start, end)
    return sorted(out, key=lambda e: (e.start, -e.end, e.type))
