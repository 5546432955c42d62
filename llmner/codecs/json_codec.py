"""The ``json`` codec, compatible with BioSelectTune: ``[{"entity": type, "name": surface}]``.

Entities are listed in text order (start, then longer first, then type); ``[]`` when there are none.
JSON is written with ``ensure_ascii=False`` (CJK stays readable, as in the seed data).

Mapping names back to offsets (the rule encode and decode agree on): listings are grouped by
(surface, type); the k-th listing of a group maps to the k-th occurrence of the surface in the
text, where occurrences are found left to right, each search starting one character after the
previous occurrence's start (so overlapping occurrences such as "aa" in "aaa" count). Listings of
different groups do not interact: "IL-2" as protein and "IL-2" as DNA both map to the first
"IL-2". Consequently a set of mentions is expressible when, for every (surface, type), its mentions
are exactly the first k occurrences of the surface; any other mention (e.g. only the second
"cancer" tagged) is counted in ``inexpressible_spans`` by encode, as are duplicates, empty spans
and spans outside the text.

Decoding never raises. Output that is not valid JSON is read leniently: the outermost ``[...]``
if that parses, else every ``{"entity": ..., "name": ...}`` object found by a pattern (one
``unknown_markers`` for the malformed output, plus one per item that is not such an object).
Types not in ``types`` count as ``unknown_types``, empty names as ``empty_mentions``. A name with
no exact occurrence left is searched case-insensitively, then with any whitespace between its
words; if still absent it counts in ``unplaced_mentions``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

from llmner.codecs.base import Codec, DecodeResult, Diagnostics, EncodeResult, SpanConfidence
from llmner.doc import Entity, dedupe_entities

_STRING = r'"((?:[^"\\]|\\.)*)"'
_OBJECT = re.compile(
    r"\{\s*\"entity\"\s*:\s*" + _STRING + r"\s*,\s*\"name\"\s*:\s*" + _STRING + r"\s*\}"
    r"|\{\s*\"name\"\s*:\s*" + _STRING + r"\s*,\s*\"entity\"\s*:\s*" + _STRING + r"\s*\}",
    re.DOTALL,
)


def occurrences(surface: str, text: str) -> list[int]:
    """Start offsets of ``surface`` in ``text``, each search one character after the previous start."""
    starts: list[int] = []
    pos = text.find(surface)
    while pos != -1:
        starts.append(pos)
        pos = text.find(surface, pos + 1)
    return starts


def _fuzzy_find(name: str, text: str, after: int) -> tuple[int, int] | None:
    """(start, end) of ``name`` in ``text`` at or after ``after``: case-insensitive, then any whitespace."""
    folded_text, folded_name = text.casefold(), name.casefold()
    if len(folded_text) == len(text) and len(folded_name) == len(name):  # offsets stay valid
        pos = folded_text.find(folded_name, after)
        if pos != -1:
            return pos, pos + len(name)
    words = name.split()
    if words:
        found = re.compile(r"\s+".join(map(re.escape, words)), re.IGNORECASE).search(text, after)
        if found:
            return found.start(), found.end()
    return None


def _parse_items(output: str, diagnostics: Diagnostics) -> list[tuple[Any, Any]]:
    """(type, name) pairs from the model output, as leniently as possible."""
    stripped = output.strip()
    data: Any = None
    for candidate in (stripped, stripped[stripped.find("[") : stripped.rfind("]") + 1]):
        try:
            data = json.loads(candidate)
            break
        except ValueError:
            continue
    if isinstance(data, list):
        items = []
        for item in data:
            if isinstance(item, dict) and "entity" in item and "name" in item:
                items.append((item["entity"], item["name"]))
            else:
                diagnostics.unknown_markers += 1
        return items
    if stripped:
        diagnostics.unknown_markers += 1
        diagnostics.notes.append("output is not a JSON list; objects read by pattern")
    items = []
    for match in _OBJECT.finditer(output):
        groups = match.groups()
        raw_type, raw_name = (groups[0], groups[1]) if groups[0] is not None else (groups[3], groups[2])
        try:
            items.append((json.loads(f'"{raw_type}"'), json.loads(f'"{raw_name}"')))
        except ValueError:
            diagnostics.unknown_markers += 1
    return items


class JsonCodec(Codec):
    """A JSON list of typed surfaces (see the module docstring for the offset rule)."""

    name = "json"

    def encode_with_report(self, text: str, entities: Sequence[Entity]) -> EncodeResult:
        diagnostics = Diagnostics()
        groups: dict[tuple[str, str], list[Entity]] = {}
        seen: set[tuple[int, int, str]] = set()
        for ent in sorted(entities, key=lambda e: (e.start, -e.end, e.type)):
            if not (0 <= ent.start < ent.end <= len(text)):
                diagnostics.inexpressible_spans += 1
                diagnostics.notes.append(f"span [{ent.start}, {ent.end}) {ent.type} is empty or outside the text")
            elif ent.key in seen:
                diagnostics.inexpressible_spans += 1
                diagnostics.notes.append(f"duplicate span [{ent.start}, {ent.end}) {ent.type}")
            else:
                seen.add(ent.key)
                groups.setdefault((text[ent.start : ent.end], ent.type), []).append(ent)
        kept: list[Entity] = []
        for (surface, etype), mentions in groups.items():
            starts = occurrences(surface, text)
            # Only a prefix of the occurrence list can be expressed.
            k = 0
            while k < len(mentions) and mentions[k].start == starts[k]:
                k += 1
            kept.extend(mentions[:k])
            for ent in mentions[k:]:
                diagnostics.inexpressible_spans += 1
                diagnostics.notes.append(
                    f"{etype} {surface!r} at {ent.start} is not among the first {len(mentions)} occurrence(s) of its surface"
                )
        kept.sort(key=lambda e: (e.start, -e.end, e.type))
        payload = [{"entity": e.type, "name": text[e.start : e.end]} for e in kept]
        return EncodeResult(json.dumps(payload, ensure_ascii=False), diagnostics)

    def decode(self, output: str, text: str, types: Collection[str] | None = None,
               confidence: SpanConfidence | None = None) -> DecodeResult:
        diagnostics = Diagnostics()
        allowed = None if types is None else set(types)
        next_search: dict[tuple[str, str], int] = {}
        entities: list[Entity] = []
        for etype, name in _parse_items(output, diagnostics):
            if not isinstance(etype, str) or not isinstance(name, str):
                diagnostics.unknown_markers += 1
                continue
            if allowed is not None and etype not in allowed:
                diagnostics.unknown_types += 1
                continue
            if not name:
                diagnostics.empty_mentions += 1
                continue
            after = next_search.get((name, etype), 0)
            pos = text.find(name, after)
            found = (pos, pos + len(name)) if pos != -1 else _fuzzy_find(name, text, after)
            if found is None:
                diagnostics.unplaced_mentions += 1
                continue
            next_search[(name, etype)] = found[0] + 1
            entities.append(Entity(found[0], found[1], etype, text[found[0] : found[1]]))
        return DecodeResult(dedupe_entities(entities), diagnostics)
