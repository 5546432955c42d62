"""The Normalizer interface: (entity, document context) -> identifier or NIL, with a score.

A normalizer never guesses: when nothing in its vocabulary is close enough it answers NIL
(``Link.curie is None``). :class:`TypedNormalizer` routes each entity type to its own normalizer (a
bundle ships one per type it can link, e.g. Disease and Chemical to MeSH); types without one are
left untouched (no identifier, no normalization score).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llmner.doc import Document, Entity


@dataclass(frozen=True, slots=True)
class Link:
    """A normalizer's answer: ``curie`` (None = NIL), its ``score`` in [0, 1] and the matching step
    that produced it (``exact``, ``normalized``, ``composite``, ``abbreviation``, ``expanded``,
    ``stripped``, ``head``, ``document``, ``ngram`` or ``encoder``, ``nil``)."""

    curie: str | None
    score: float
    method: str

    @property
    def is_nil(self) -> bool:
        return self.curie is None


NIL = Link(None, 0.0, "nil")


@runtime_checkable
class Normalizer(Protocol):
    def link(self, entities: Sequence[Entity], doc: Document) -> list[Link]:
        """One Link per entity; ``doc`` is the context (its text holds the abbreviation definitions)."""
        ...


class TypedNormalizer:
    """Per-type normalizers behind one ``link`` call; an entity of a type without one gets None."""

    def __init__(self, by_type: Mapping[str, Normalizer], name: str = "normalizer") -> None:
        self.by_type = dict(by_type)
        self.name = name
        self.last_ms = 0.0

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.by_type)

    def link(self, entities: Sequence[Entity], doc: Document) -> list[Link | None]:
        out: list[Link | None] = [None] * len(entities)
        for etype, normalizer in self.by_type.items():
            idx = [i for i, e in enumerate(entities) if e.type == etype]
            if idx:
                for i, link in zip(idx, normalizer.link([entities[i] for i in idx], doc)):
                    out[i] = link
        return out

    def normalize(self, entities: Sequence[Entity], doc: Document) -> list[Entity]:
        """The entities with ``normalized_id`` (None for NIL) and ``normalized_score`` set where a
        normalizer of their type ran; other entities come back unchanged."""
        t0 = time.perf_counter()
        links = self.link(entities, doc)
        out = [e if link is None else dataclasses.replace(e, normalized_id=link.curie, normalized_score=round(link.score, 4))
               for e, link in zip(entities, links)]
        self.last_ms = (time.perf_counter() - t0) * 1000
        return out

    def normalize_document(self, doc: Document) -> Document:
        doc.entities = self.normalize(doc.entities, doc)
        return doc
