"""Hypothesis strategies shared by the codec tests: hostile texts and random span sets."""

from __future__ import annotations

from hypothesis import strategies as st

from llmner.doc import Entity

TYPES = ("Disease", "Gene", "cell_line", "dis")

# Pieces that stress every codec: marker look-alikes, escapes, brackets, JSON quoting, CJK, emoji,
# whitespace runs and newlines.
_PIECES = st.sampled_from([
    "<Disease>", "</Disease>", "<Gene>", "</X>", "&amp;", "&lt;", "&", "<", ">", "[", "]", "[[", "]]",
    "\\[", "\\", "{", "}", '"', "'", ":", "Disease:  ", "  \n", "\n", "\t", "   ", " ", "e.g.", "IL-2",
    "BRCA1", "cancer", "癌症", "。", "肿瘤", "🧬", "👩‍⚕️", "é", "\u00a0", "a", "b", "ab",
])
TEXTS = st.lists(st.one_of(_PIECES, st.text(min_size=1, max_size=3)), min_size=1, max_size=12).map("".join)


def crosses(a: Entity, b: Entity) -> bool:
    """Partial overlap: neither contains the other and they share a character."""
    return a.start < b.start < a.end < b.end or b.start < a.start < b.end < a.end


@st.composite
def text_and_spans(draw, max_spans: int = 8) -> tuple[str, list[Entity]]:
    """A text and arbitrary non-empty spans over it (may cross, may repeat)."""
    text = draw(TEXTS)
    n = len(text)
    spans = []
    for _ in range(draw(st.integers(0, max_spans))):
        start = draw(st.integers(0, n - 1))
        end = draw(st.integers(start + 1, n))
        spans.append(Entity(start, end, draw(st.sampled_from(TYPES)), text[start:end]))
    return text, spans


@st.composite
def text_and_laminar_spans(draw, max_spans: int = 8) -> tuple[str, list[Entity]]:
    """Spans where same-type spans only nest or are disjoint (different types may cross); unique."""
    text, spans = draw(text_and_spans(max_spans))
    kept: list[Entity] = []
    for ent in spans:
        if any(k.key == ent.key for k in kept):
            continue
        if any(k.type == ent.type and crosses(k, ent) for k in kept):
            continue
        kept.append(ent)
    return text, kept


def keys(entities) -> list[tuple[int, int, str, str]]:
    return sorted((e.start, e.end, e.type, e.text) for e in entities)
