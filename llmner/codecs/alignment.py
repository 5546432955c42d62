"""Map mentions found in a model's (possibly altered) copy of the source back to the source.

Used by every codec that asks the model to copy the text (``inline``, ``lines``). When the copy
equals the source, offsets are read directly; otherwise the copy is aligned to the source at
character level with ``difflib.SequenceMatcher`` (run only on the part between the common prefix
and suffix, junk heuristic off) and each mention boundary is mapped through the alignment.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher

from llmner.codecs.base import Diagnostics
from llmner.doc import Entity, dedupe_entities


def aligned_boundaries(copy: str, text: str) -> tuple[list[int], list[int], int, int]:
    """Map every boundary of ``copy`` (0..len) to a boundary of ``text``.

    Two maps, because a boundary sitting where source characters were dropped is ambiguous: a
    mention *start* goes after the dropped characters, a mention *end* before them (the mention
    covers what the model wrote). Characters the model changed (a ``replace`` block) map
    proportionally inside the block. Returns (start_map, end_map, inserted, deleted).
    """
    n, m = len(copy), len(text)
    prefix = 0
    limit = min(n, m)
    while prefix < limit and copy[prefix] == text[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and copy[n - 1 - suffix] == text[m - 1 - suffix]:
        suffix += 1
    opcodes = [("equal", 0, prefix, 0, prefix)]
    a, b = copy[prefix : n - suffix], text[prefix : m - suffix]
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        opcodes.append((tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix))
    opcodes.append(("equal", n - suffix, n, m - suffix, m))
    start_map = [0] * (n + 1)
    end_map = [0] * (n + 1)
    inserted = deleted = 0
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            for k in range(i1, i2 + 1):
                start_map[k] = end_map[k] = j1 + (k - i1)
        elif tag == "delete":  # copy characters with no source counterpart
            inserted += i2 - i1
            for k in range(i1, i2 + 1):
                start_map[k] = end_map[k] = j1
        elif tag == "replace":  # changed characters: map proportionally inside the block
            inserted += i2 - i1
            deleted += j2 - j1
            for k in range(i1, i2 + 1):
                start_map[k] = end_map[k] = j1 + round((k - i1) * (j2 - j1) / (i2 - i1))
    for tag, i1, _i2, j1, j2 in opcodes:  # last, so that neighbours do not overwrite them
        if tag == "insert":  # source characters the copy dropped
            deleted += j2 - j1
            start_map[i1] = j2
            end_map[i1] = j1
    return start_map, end_map, inserted, deleted


def align_mentions(
    copy: str, text: str, mentions: Iterable[tuple[int, int, str]], diagnostics: Diagnostics
) -> list[Entity]:
    """Entities over ``text`` for ``(start, end, type)`` mentions in ``copy`` offsets.

    Exact copy: offsets unchanged. Otherwise boundaries are mapped through the alignment
    (``inserted_chars``/``deleted_chars`` added to ``diagnostics``), then trimmed of whitespace at
    both ends; a mention left with no source character counts in ``unplaced_mentions``.
    Identical results are returned once, sorted by (start, -end, type).
    """
    if copy == text:
        return dedupe_entities(Entity(s, e, t, text[s:e]) for s, e, t in mentions)
    start_map, end_map, inserted, deleted = aligned_boundaries(copy, text)
    diagnostics.inserted_chars += inserted
    diagnostics.deleted_chars += deleted
    entities = []
    for s, e, t in mentions:
        start, end = start_map[s], end_map[e]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            diagnostics.unplaced_mentions += 1
            continue
        entities.append(Entity(start, end, t, text[start:end]))
    return dedupe_entities(entities)
