"""Map mentions found in a model's (possibly altered) copy of the source back to the source.

Used by every codec that asks the model to copy the text (``inline``, ``lines``). When the copy
equals the source, offsets are read directly; otherwise the copy is aligned to the source at
character level and each mention boundary is mapped through the alignment.

The alignment is a minimal edit script (Myers' O((N+M)D) diff, i.e. a longest common subsequence
of characters) on the part between the common prefix and suffix: cheap when the copy is nearly
right (D small), and optimal, so repeated characters ("0000", "aaa") are not misaligned the way a
longest-block heuristic misaligns them. When the copy is so different that D would exceed a work
budget, ``difflib.SequenceMatcher`` (junk heuristic off) is used instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher

from llmner.codecs.base import Diagnostics
from llmner.doc import Entity, dedupe_entities

# Upper bound on Myers' work, about (len(a) + len(b)) * D steps, before falling back to difflib.
_MYERS_WORK = 3_000_000


def _myers_matches(a: str, b: str, max_d: int) -> list[tuple[int, int]] | None:
    """Matched index pairs (i, j) of a minimal edit script from ``a`` to ``b``; None if D > max_d."""
    n, m = len(a), len(b)
    v: dict[int, int] = {1: 0}
    trace: list[dict[int, int]] = []
    for d in range(min(max_d, n + m) + 1):
        trace.append(v.copy())
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[k - 1] < v[k + 1]):
                x = v[k + 1]
            else:
                x = v[k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[k] = x
            if x >= n and y >= m:
                return _myers_backtrack(trace, n, m, d)
    return None


def _myers_backtrack(trace: list[dict[int, int]], n: int, m: int, depth: int) -> list[tuple[int, int]]:
    matches: list[tuple[int, int]] = []
    x, y = n, m
    for d in range(depth, -1, -1):
        v = trace[d]
        k = x - y
        prev_k = k + 1 if (k == -d or (k != d and v[k - 1] < v[k + 1])) else k - 1
        prev_x = v[prev_k]
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:
            x -= 1
            y -= 1
            matches.append((x, y))
        x, y = prev_x, prev_y
    matches.reverse()
    return matches


def diff_opcodes(a: str, b: str) -> list[tuple[str, int, int, int, int]]:
    """``difflib``-style opcodes (equal/replace/delete/insert) turning ``a`` into ``b``."""
    if not a and not b:
        return []
    matches = _myers_matches(a, b, max(16, _MYERS_WORK // (len(a) + len(b) + 1)))
    if matches is None:
        return SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    opcodes: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    for x, y in [*matches, (len(a), len(b))]:
        if x > i or y > j:
            tag = "replace" if x > i and y > j else ("delete" if x > i else "insert")
            opcodes.append((tag, i, x, j, y))
        if x < len(a):
            if opcodes and opcodes[-1][0] == "equal" and opcodes[-1][2] == x:
                _, i1, _, j1, _ = opcodes[-1]
                opcodes[-1] = ("equal", i1, x + 1, j1, y + 1)
            else:
                opcodes.append(("equal", x, x + 1, y, y + 1))
        i, j = x + 1, y + 1
    return opcodes


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
    for tag, i1, i2, j1, j2 in diff_opcodes(a, b):
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
    copy: str, text: str, mentions: Iterable[tuple[int, int, str, float | None]], diagnostics: Diagnostics
) -> list[Entity]:
    """Entities over ``text`` for ``(start, end, type, generator_score)`` mentions in ``copy`` offsets.

    Exact copy: offsets unchanged. Otherwise boundaries are mapped through the alignment
    (``inserted_chars``/``deleted_chars`` added to ``diagnostics``), then trimmed of whitespace at
    both ends; a mention left with no source character counts in ``unplaced_mentions``.
    Identical results are returned once, sorted by (start, -end, type).
    """
    if copy == text:
        return dedupe_entities(Entity(s, e, t, text[s:e], generator_score=g) for s, e, t, g in mentions)
    start_map, end_map, inserted, deleted = aligned_boundaries(copy, text)
    diagnostics.inserted_chars += inserted
    diagnostics.deleted_chars += deleted
    entities = []
    for s, e, t, g in mentions:
        start, end = start_map[s], end_map[e]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            diagnostics.unplaced_mentions += 1
            continue
        entities.append(Entity(start, end, t, text[start:end], generator_score=g))
    return dedupe_entities(entities)
