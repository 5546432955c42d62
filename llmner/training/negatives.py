"""Negative candidates for the selector, built from gold mentions (and the generator's mistakes).

Kinds (``Negative.kind``):

- ``extend_left`` / ``extend_right`` / ``shrink_left`` / ``shrink_right``: one boundary moved by
  ``amount`` = 1..3 tokens. Tokens are whitespace-separated words with punctuation split off
  (``\\w+`` runs or single punctuation characters; each CJK character is a token) so that
  "cancer," gives "cancer" and ","; the moved region contains exactly ``amount`` whole tokens.
- ``nest_swap``: across nesting, the outer span with the inner mention's type and vice versa.
- ``super_span``: one span covering two nearby gold mentions (at most 3 tokens between them).
- ``type_swap``: the same span with another type of the schema.
- ``random``: a random run of 1-5 tokens.
- ``generator``: a false positive of the generator on the same text (the most valuable ones).

Invariant: no negative equals a gold (start, end, type); spans never start or end in whitespace.
Each gold mention forms a ``Group`` with the negatives derived from it (InfoNCE); negatives not tied
to one mention (random, most generator false positives) go into ``unattached`` (BCE only).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmner.doc import Document, Entity
from llmner.schema import EntitySchema

BOUNDARY_KINDS = ("extend_left", "extend_right", "shrink_left", "shrink_right")
_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+|[^\w\s]")


@dataclass(frozen=True, slots=True)
class Negative:
    start: int
    end: int
    type: str
    kind: str
    amount: int = 0        # tokens moved, for boundary kinds

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.type)


@dataclass(slots=True)
class Group:
    """A gold mention and the negatives derived from it (one InfoNCE group)."""

    gold: Entity
    negatives: list[Negative] = field(default_factory=list)


@dataclass(slots=True)
class NegativeConfig:
    max_shift: int = 3               # boundary moves of 1..max_shift tokens
    per_mention: int = 8             # at most this many negatives per group (sampled, boundary kinds first)
    random_per_text: int = 2         # random spans per document
    max_random_tokens: int = 5
    super_span_gap: int = 3          # max tokens between two mentions merged into a super-span
    seed: int = 13


@dataclass(slots=True)
class DocumentNegatives:
    doc: Document
    groups: list[Group]
    unattached: list[Negative]

    def count(self) -> int:
        return sum(len(g.negatives) for g in self.groups) + len(self.unattached)


def tokenize(text: str) -> list[tuple[int, int]]:
    """(start, end) of each token: word runs, single punctuation, single CJK characters."""
    return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]


def whole_tokens_in(text: str, start: int, end: int) -> int:
    """How many tokens of ``text`` lie entirely within [start, end)."""
    return sum(1 for s, e in tokenize(text) if s >= start and e <= end)


def boundary_negatives(text: str, gold: Entity, max_shift: int = 3, tokens: list[tuple[int, int]] | None = None) -> list[Negative]:
    """Every boundary move of 1..max_shift tokens that stays inside the text and non-empty."""
    toks = tokens if tokens is not None else tokenize(text)
    before = [t for t in toks if t[1] <= gold.start]
    after = [t for t in toks if t[0] >= gold.end]
    inner = [t for t in toks if t[0] >= gold.start and t[1] <= gold.end]
    out: list[Negative] = []
    for k in range(1, max_shift + 1):
        if len(before) >= k:
            out.append(Negative(before[-k][0], gold.end, gold.type, "extend_left", k))
        if len(after) >= k:
            out.append(Negative(gold.start, after[k - 1][1], gold.type, "extend_right", k))
        if len(inner) > k:
            out.append(Negative(inner[k][0], gold.end, gold.type, "shrink_left", k))
            out.append(Negative(gold.start, inner[-k - 1][1], gold.type, "shrink_right", k))
    return out


def build_negatives(doc: Document, schema: EntitySchema, config: NegativeConfig | None = None,
                    generator_predictions: Sequence[Entity] = (), rng: random.Random | None = None) -> DocumentNegatives:
    """Groups (gold + derived negatives) and unattached negatives for one document."""
    config = config or NegativeConfig()
    rng = rng or random.Random(f"{config.seed}:{doc.id}")
    text = doc.text
    toks = tokenize(text)
    golds = sorted({e.key: e for e in doc.entities if e.type in schema}.values(), key=lambda e: (e.start, -e.end, e.type))
    gold_keys = {e.key for e in golds}
    used: set[tuple[int, int, str]] = set(gold_keys)

    def accept(neg: Negative) -> bool:
        if neg.key in used or not (0 <= neg.start < neg.end <= len(text)):
            return False
        span = text[neg.start : neg.end]
        if span != span.strip():
            return False
        used.add(neg.key)
        return True

    groups = [Group(gold) for gold in golds]
    # Pass 0: the generator's own false positives come first (the most valuable negatives; they are
    # not capped by per_mention).
    generator_unattached: list[Negative] = []
    for pred in generator_predictions:
        neg = Negative(pred.start, pred.end, pred.type, "generator")
        if pred.type not in schema or not accept(neg):
            continue
        # Attach to the gold mention it overlaps most (a wrong boundary or type of that mention).
        best, best_overlap = None, 0
        for group in groups:
            overlap = min(group.gold.end, pred.end) - max(group.gold.start, pred.start)
            if overlap > best_overlap:
                best, best_overlap = group, overlap
        (best.negatives if best is not None else generator_unattached).append(neg)
    # Pass 1: structural negatives first (they would otherwise be taken as plain type swaps of
    # another group): a span nested with this mention (inside or around it) carrying this mention's
    # type, and a super-span joining this mention with a nearby one.
    for group in groups:
        gold = group.gold
        structural = []
        for other in golds:
            if other.key == gold.key:
                continue
            nested = (other.start <= gold.start and gold.end <= other.end) or (gold.start <= other.start and other.end <= gold.end)
            if nested:
                structural.append(Negative(other.start, other.end, gold.type, "nest_swap"))
            if gold.end <= other.start and whole_tokens_in(text, gold.end, other.start) <= config.super_span_gap:
                structural.append(Negative(gold.start, other.end, gold.type, "super_span"))
        rng.shuffle(structural)
        for neg in structural[: max(1, config.per_mention // 4)]:
            if accept(neg):
                group.negatives.append(neg)
    # Pass 2: boundary moves (the selector's main job, at least half) and type swaps.
    for group in groups:
        gold = group.gold
        cands: list[Negative] = boundary_negatives(text, gold, config.max_shift, toks)
        rng.shuffle(cands)
        swaps = [Negative(gold.start, gold.end, t, "type_swap") for t in schema.type_names if t != gold.type]
        rng.shuffle(swaps)
        room = config.per_mention - len(group.negatives)
        n_boundary = max(room - len(swaps), (room + 1) // 2)
        for neg in cands[:n_boundary] + swaps + cands[n_boundary:]:
            if len(group.negatives) >= config.per_mention:
                break
            if accept(neg):
                group.negatives.append(neg)

    unattached: list[Negative] = list(generator_unattached)
    for _ in range(config.random_per_text * 3):
        if len(unattached) - len(generator_unattached) >= config.random_per_text or not toks:
            break
        a = rng.randrange(len(toks))
        b = min(len(toks) - 1, a + rng.randrange(config.max_random_tokens))
        neg = Negative(toks[a][0], toks[b][1], rng.choice(schema.type_names), "random")
        if accept(neg):
            unattached.append(neg)

    return DocumentNegatives(doc, groups, unattached)
