"""The ``inline`` codec (default): one copy of the text with typed open/close markers.

Format: ``<Type>`` opens and ``</Type>`` closes a mention; nesting by nesting, e.g.
``<DNA><protein>IL-2</protein> promoter</DNA>``. Source characters ``&``, ``<`` and ``>`` are
written as ``&amp;``, ``&lt;`` and ``&gt;`` so that every literal ``<`` in a target is a marker
and any source text (including text that looks like a marker) round-trips.

What the format expresses (the rules encode and decode agree on):

- A closing marker ``</T>`` closes the most recent still-open ``<T>`` of the same type. Because
  closing markers name their type, spans of *different* types may cross:
  ``<A>ab<B>cd</A>ef</B>`` is A = "abcd" and B = "cdef".
- Spans of the *same* type must be nested or disjoint. Two crossing same-type spans cannot be
  written (the decoder would read them as nested), so encode keeps the first (in (start, -end)
  order) and counts the other in ``Diagnostics.inexpressible_spans``. Identical duplicates
  (same start, end, type), empty spans, spans outside the text and type names that are not
  not valid marker names (``llmner.schema.TYPE_NAME_PATTERN``: a letter of any script, then letters, digits, ``_`` or ``-``) are counted there too.
- At one position, closing markers come before opening markers (adjacent mentions), outer
  mentions open first and close last.

Decoding never raises. A well-formed model output (what the constrained decoder produces) takes
a fast path: the unescaped, marker-free copy equals the source, so offsets are read directly.
Otherwise the copy is aligned to the source at character level (a minimal edit script, see
``llmner.codecs.alignment``) and every mention boundary is mapped through the alignment; see
:class:`InlineCodec` for the rules and the diagnostics counted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from llmner.codecs.alignment import align_mentions
from llmner.codecs.base import Codec, DecodeResult, Diagnostics, EncodeResult, SpanConfidence
from llmner.doc import Entity
from llmner.schema import TYPE_NAME_PATTERN

ESCAPES: dict[str, str] = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
UNESCAPES: dict[str, str] = {v: k for k, v in ESCAPES.items()}

TYPE_NAME = re.compile(TYPE_NAME_PATTERN)
# One token of a target: a marker, an escape, or a lone '<' / '&' (kept as literal text).
_TOKEN = re.compile(rf"<(/?)({TYPE_NAME_PATTERN})>|&(amp|lt|gt);|<")
_ESCAPE_CHAR = {"amp": "&", "lt": "<", "gt": ">"}


def escape_text(text: str) -> str:
    """The source text as it appears in an inline target."""
    if not any(c in text for c in ESCAPES):
        return text
    return "".join(ESCAPES.get(c, c) for c in text)


def escaped_pieces(text: str) -> list[str]:
    """One escaped piece per source character (a piece is atomic: no marker may split it)."""
    return [ESCAPES.get(c, c) for c in text]


def open_marker(entity_type: str) -> str:
    return f"<{entity_type}>"


def close_marker(entity_type: str) -> str:
    return f"</{entity_type}>"


def expressible_entities(text: str, entities: Sequence[Entity]) -> tuple[list[Entity], int, list[str]]:
    """The subset of ``entities`` the inline format can write, the count left out, and why.

    Same-type spans must form a laminar family (nested or disjoint); the first span of a crossing
    pair in (start, -end) order is kept.
    """
    kept: list[Entity] = []
    dropped = 0
    notes: list[str] = []
    seen: set[tuple[int, int, str]] = set()
    by_type: dict[str, list[Entity]] = {}
    for ent in sorted(entities, key=lambda e: (e.start, -e.end, e.type)):
        if not (0 <= ent.start < ent.end <= len(text)):
            dropped += 1
            notes.append(f"span [{ent.start}, {ent.end}) {ent.type} is empty or outside the text")
        elif not TYPE_NAME.fullmatch(ent.type):
            dropped += 1
            notes.append(f"type {ent.type!r} is not a valid marker name")
        elif ent.key in seen:
            dropped += 1
            notes.append(f"duplicate span [{ent.start}, {ent.end}) {ent.type}")
        else:
            seen.add(ent.key)
            by_type.setdefault(ent.type, []).append(ent)
    for etype, spans in by_type.items():
        stack: list[Entity] = []  # accepted spans containing the current start, outermost first
        for ent in spans:  # sorted by (start, -end)
            while stack and stack[-1].end <= ent.start:
                stack.pop()
            if stack and ent.end > stack[-1].end:
                dropped += 1
                top = stack[-1]
                notes.append(f"same-type spans cross: [{top.start}, {top.end}) and [{ent.start}, {ent.end}) {etype}")
                continue
            stack.append(ent)
            kept.append(ent)
    kept.sort(key=lambda e: (e.start, -e.end, e.type))
    return kept, dropped, notes


class InlineCodec(Codec):
    """``<Type>mention</Type>`` markers in one copy of the text (see the module docstring).

    Decoding rules for broken output (each counted in the diagnostics, never raised):

    - ``</T>`` with no open ``<T>`` and ``<T>`` never closed: ``unbalanced_markers``; dropped.
    - A raw ``<`` that does not start a well-formed marker (e.g. ``<Disease`` cut off, ``< b``):
      ``unknown_markers``; kept as a literal character for the alignment.
    - A well-formed marker whose type is not in ``types`` (when given): ``unknown_types``; dropped
      with its mention.
    - ``<T></T>``: ``empty_mentions``.
    - A copy that differs from the source: aligned at character level; ``inserted_chars`` /
      ``deleted_chars`` count the differences. Mention boundaries are mapped through the
      alignment, then trimmed of whitespace at both ends; a mention that covers no source
      character afterwards (e.g. only invented words) counts in ``unplaced_mentions``.
    - Identical mentions (same start, end, type) are returned once.
    """

    name = "inline"

    def encode_with_report(self, text: str, entities: Sequence[Entity]) -> EncodeResult:
        kept, dropped, notes = expressible_entities(text, entities)
        diagnostics = Diagnostics(inexpressible_spans=dropped, notes=notes)
        if not kept:
            return EncodeResult(escape_text(text), diagnostics)
        # Markers at each boundary: closes (innermost first), then opens (outermost first).
        opens: dict[int, list[Entity]] = {}
        closes: dict[int, list[Entity]] = {}
        for ent in kept:  # (start, -end, type) order = outermost first at a start
            opens.setdefault(ent.start, []).append(ent)
            closes.setdefault(ent.end, []).append(ent)
        out: list[str] = []
        cursor = 0
        for pos in sorted(opens.keys() | closes.keys()):
            out.append(escape_text(text[cursor:pos]))
            cursor = pos
            for ent in sorted(closes.get(pos, ()), key=lambda e: (e.start, e.type), reverse=True):
                out.append(close_marker(ent.type))
            for ent in opens.get(pos, ()):
                out.append(open_marker(ent.type))
        out.append(escape_text(text[cursor:]))
        return EncodeResult("".join(out), diagnostics)

    def decode(self, output: str, text: str, types: Collection[str] | None = None,
               confidence: SpanConfidence | None = None) -> DecodeResult:
        diagnostics = Diagnostics()
        allowed = None if types is None else set(types)
        pieces: list[str] = []
        length = 0           # length of the unescaped, marker-free copy so far
        cursor = 0
        open_stack: dict[str, list[tuple[int, float | None]]] = {}  # type -> (copy offset, open marker's probability)
        open_count = 0
        mentions: list[tuple[int, int, str, float | None]] = []
        for match in _TOKEN.finditer(output):
            if match.start() > cursor:
                literal = output[cursor : match.start()]
                pieces.append(literal)
                length += len(literal)
            cursor = match.end()
            etype = match.group(2)
            if etype is not None:
                if allowed is not None and etype not in allowed:
                    diagnostics.unknown_types += 1
                elif match.group(1):  # close
                    stack = open_stack.get(etype)
                    if stack:
                        start, opened = stack.pop()
                        open_count -= 1
                        if start == length:
                            diagnostics.empty_mentions += 1
                        else:
                            closed = confidence(match.start(), match.end()) if confidence else None
                            score = opened * closed if opened is not None and closed is not None else None
                            mentions.append((start, length, etype, score))
                    else:
                        diagnostics.unbalanced_markers += 1
                else:
                    opened = confidence(match.start(), match.end()) if confidence else None
                    open_stack.setdefault(etype, []).append((length, opened))
                    open_count += 1
            elif match.group(3) is not None:
                pieces.append(_ESCAPE_CHAR[match.group(3)])
                length += 1
            else:  # a lone '<' that starts no marker
                diagnostics.unknown_markers += 1
                pieces.append("<")
                length += 1
        if cursor < len(output):
            pieces.append(output[cursor:])
        diagnostics.unbalanced_markers += open_count
        copy = "".join(pieces)

        # Exact copy (always the case with constrained decoding): offsets read directly.
        return DecodeResult(align_mentions(copy, text, mentions, diagnostics), diagnostics)
