"""Which span stays where the selector's own span and a generator candidate of its type overlap.

The tokens-head selector proposes the spans it tags (``SelectorRuntime.propose``); the pipeline adds
those the generator did not propose. One that overlaps a kept generator candidate of the same type is
most often the same mention read with another boundary ("hepatic adenoma" against "adenoma"), and
keeping both costs a false positive whichever boundary the corpus annotates. Which reader's boundary is
right more often is a corpus convention, so the rule is chosen per schema on dev
(``benchmarks/selector_proposals.py``) and stored in the bundle (``BundleManifest.proposal_overlaps``):

- ``both``: keep both (a corpus may annotate a mention inside another of its type);
- ``generator``: the generator's candidate stays and the proposal goes (proposals only fill places the
  generator left empty of that type);
- ``selector``: the proposal stays and every candidate of its type it overlaps goes.

Only proposals (``source == "selector"``) meet candidates here: two generator candidates that overlap
are the generator's own nested reading, and the tagger's spans of one type never overlap each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from llmner.doc import SELECTOR_AND_READER, Entity
from llmner.errors import ConfigError

OVERLAP_RULES = ("both", "generator", "selector")


def check_overlap_rule(rule: object, where: str = "proposal overlap rule") -> str:
    """``rule`` when it is one of ``OVERLAP_RULES``; a ConfigError naming ``where`` otherwise."""
    if rule not in OVERLAP_RULES:
        raise ConfigError(f"{where} must be one of {', '.join(OVERLAP_RULES)}, got {rule!r}")
    return rule  # type: ignore[return-value]


def resolve_proposal_overlaps(kept: Sequence[Entity], rule: str) -> list[Entity]:
    """``kept`` (one chunk's or one document's selected entities, any one frame) under ``rule``, in
    their order."""
    check_overlap_rule(rule)
    if rule == "both":
        return list(kept)
    by_source: dict[bool, dict[str, list[Entity]]] = {True: {}, False: {}}   # proposed? -> type -> spans
    for e in kept:
        by_source[e.source == "selector"].setdefault(e.type, []).append(e)
    if not by_source[True]:
        return list(kept)
    # "selector": a candidate goes when a proposal overlaps it; "generator": a proposal goes when a candidate does.
    proposals_lose = rule == "generator"
    winners = by_source[not proposals_lose]
    return [e for e in kept if (e.source == "selector") != proposals_lose or not _overlaps_any(e, winners)]


def yield_to(spans: Sequence[Entity], others: Sequence[Entity]) -> list[Entity]:
    """The reader's spans among ``spans`` that overlap none of ``others`` (the entities that stay from the
    generator and the selector) of their type."""
    by_type: dict[str, list[Entity]] = {}
    for e in others:
        by_type.setdefault(e.type, []).append(e)
    return [e for e in spans if not _overlaps_any(e, by_type)]


def with_proposer_spans(entities: Sequence[Entity], spans: Sequence[Entity]) -> list[Entity]:
    """One chunk's candidates with the proposer's ``spans`` (same frame) added: a span the generator
    proposed (same offsets and type) is not added again; one the selector proposed becomes theirs both
    (``source="selector+reader"``, its score kept: the selector scores a span alike whoever proposed it);
    the rest join unscored (the selector judges them)."""
    at = {e.key: i for i, e in enumerate(entities)}
    out = list(entities)
    for span in spans:
        i = at.get(span.key)
        if i is None:
            at[span.key] = len(out)
            out.append(span)
        elif out[i].source == "selector":
            out[i] = dataclasses.replace(out[i], source=SELECTOR_AND_READER)
    return out


def _overlaps_any(entity: Entity, spans: dict[str, list[Entity]]) -> bool:
    return any(s.start < entity.end and entity.start < s.end for s in spans.get(entity.type, ()))
