"""The ``lines`` codec, compatible with the LLMNER seed format.

One line per entity type present, in order of the type's first mention in the text: the type, a
colon, two spaces, then the full text with ``[`` and ``]`` around each mention of that type
(nested brackets for nested mentions). Lines are joined by two spaces and a newline (``"  \\n"``)::

    Disease:  Germline mutations cause [inherited [breast cancer]].  \\n
    Gene:  Germline mutations in [BRCA1] cause ...

No entities: the empty string.

Escaping (so any source text round-trips): a backslash escapes the characters the format uses,
``\\[``, ``\\]``, ``\\\\`` for ``[``, ``]``, ``\\``, and a source newline is written ``\\n`` (a real
newline always separates lines). Text without these characters is written unchanged, as in the seed.

What the format expresses: the same as ``inline`` (a ``]`` closes the most recent ``[`` of its
line): same-type spans nest or are disjoint; crossing same-type spans, duplicates, empty spans and
non-identifier type names are counted in ``inexpressible_spans``. Spans of different types may
cross (they live on different lines).

Decoding never raises. Each line is parsed on its own (a repeated type line adds its mentions), its
copy of the text is aligned to the source like ``inline`` (see ``llmner.codecs.alignment``), and
the diagnostics count: lines without a ``type:`` prefix (``unknown_markers``), types not in
``types`` (``unknown_types``, once per line), unmatched brackets (``unbalanced_markers``), ``[]``
(``empty_mentions``), and the character differences of every line's copy.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from llmner.codecs.alignment import align_mentions
from llmner.codecs.base import Codec, DecodeResult, Diagnostics, EncodeResult, SpanConfidence
from llmner.codecs.inline import expressible_entities
from llmner.doc import Entity, dedupe_entities
from llmner.schema import TYPE_NAME_PATTERN

LINE_SEPARATOR = "  \n"
TYPE_SEPARATOR = ":  "
_ESCAPES = {"\\": "\\\\", "[": "\\[", "]": "\\]", "\n": "\\n"}
_UNESCAPES = {"\\": "\\", "[": "[", "]": "]", "n": "\n"}
_TYPE_PREFIX = re.compile(rf"\s*({TYPE_NAME_PATTERN}):( {{0,2}})")


def escape_text(text: str) -> str:
    if not any(c in text for c in _ESCAPES):
        return text
    return "".join(_ESCAPES.get(c, c) for c in text)


def _bracketed_line(text: str, spans: Sequence[Entity]) -> str:
    opens: dict[int, int] = {}
    closes: dict[int, int] = {}
    for ent in spans:
        opens[ent.start] = opens.get(ent.start, 0) + 1
        closes[ent.end] = closes.get(ent.end, 0) + 1
    out: list[str] = []
    cursor = 0
    for pos in sorted(opens.keys() | closes.keys()):
        out.append(escape_text(text[cursor:pos]))
        cursor = pos
        out.append("]" * closes.get(pos, 0) + "[" * opens.get(pos, 0))
    out.append(escape_text(text[cursor:]))
    return "".join(out)


def _parse_line(body: str, diagnostics: Diagnostics) -> tuple[str, list[tuple[int, int]]]:
    """The unescaped copy of the text in one line body and its bracketed spans (copy offsets)."""
    pieces: list[str] = []
    length = 0
    stack: list[int] = []
    spans: list[tuple[int, int]] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n and body[i + 1] in _UNESCAPES:
            pieces.append(_UNESCAPES[body[i + 1]])
            length += 1
            i += 2
            continue
        if c == "[":
            stack.append(length)
        elif c == "]":
            if stack:
                start = stack.pop()
                if start == length:
                    diagnostics.empty_mentions += 1
                else:
                    spans.append((start, length))
            else:
                diagnostics.unbalanced_markers += 1
        else:
            pieces.append(c)
            length += 1
        i += 1
    diagnostics.unbalanced_markers += len(stack)
    return "".join(pieces), spans


class LinesCodec(Codec):
    """One bracketed copy of the text per entity type (see the module docstring)."""

    name = "lines"

    def encode_with_report(self, text: str, entities: Sequence[Entity]) -> EncodeResult:
        kept, dropped, notes = expressible_entities(text, entities)
        by_type: dict[str, list[Entity]] = {}
        for ent in kept:  # (start, -end, type) order: types in order of first mention
            by_type.setdefault(ent.type, []).append(ent)
        lines = [etype + TYPE_SEPARATOR + _bracketed_line(text, spans) for etype, spans in by_type.items()]
        return EncodeResult(LINE_SEPARATOR.join(lines), Diagnostics(inexpressible_spans=dropped, notes=notes))

    def decode(self, output: str, text: str, types: Collection[str] | None = None,
               confidence: SpanConfidence | None = None) -> DecodeResult:
        diagnostics = Diagnostics()
        allowed = None if types is None else set(types)
        entities: list[Entity] = []
        raw_lines = output.split("\n")
        for index, line in enumerate(raw_lines):
            if index < len(raw_lines) - 1 and line.endswith("  "):
                line = line[:-2]  # the separator's two spaces
            if not line.strip():
                continue
            prefix = _TYPE_PREFIX.match(line)
            if prefix is None:
                diagnostics.unknown_markers += 1
                diagnostics.notes.append(f"line {index + 1} has no 'type:' prefix")
                continue
            etype = prefix.group(1)
            if allowed is not None and etype not in allowed:
                diagnostics.unknown_types += 1
                continue
            copy, spans = _parse_line(line[prefix.end() :], diagnostics)
            entities.extend(align_mentions(copy, text, [(s, e, etype, None) for s, e in spans], diagnostics))
        return DecodeResult(dedupe_entities(entities), diagnostics)
