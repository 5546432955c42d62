"""Scoring a normalizer: accuracy@1 on gold mentions, and strict (span, type, identifier) F1.

Gold mentions without an identifier (BC5CDR's ``-1``) are not scored for accuracy. An identifier is
right when it names the same set of concepts as the gold one (:func:`~llmner.curie.same_concepts`);
NIL is always wrong. ``in_dictionary`` counts the gold mentions whose concepts all appear somewhere
in the normalizer's dictionary: the accuracy a perfect matcher could reach with that vocabulary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llmner.curie import concept_set, same_concepts
from llmner.doc import Document
from llmner.evaluation.scorer import Counts
from llmner.normalization.base import TypedNormalizer


@dataclass(slots=True)
class LinkingScores:
    mentions: int = 0
    correct: int = 0
    nil: int = 0
    in_dictionary: int = 0
    unscored: int = 0                                    # gold mentions without an identifier
    methods: Counter[str] = field(default_factory=Counter)
    correct_by_method: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.mentions if self.mentions else 0.0

    @property
    def nil_rate(self) -> float:
        return self.nil / self.mentions if self.mentions else 0.0

    @property
    def coverage(self) -> float:
        return self.in_dictionary / self.mentions if self.mentions else 0.0

    def to_dict(self) -> dict[str, object]:
        return {"mentions": self.mentions, "correct": self.correct, "accuracy": round(self.accuracy, 4),
                "nil": self.nil, "nil_rate": round(self.nil_rate, 4), "in_dictionary": self.in_dictionary,
                "coverage": round(self.coverage, 4), "unscored": self.unscored,
                "methods": dict(self.methods), "correct_by_method": dict(self.correct_by_method)}


def known_concepts(normalizer: TypedNormalizer, etype: str) -> set[str]:
    inner = normalizer.by_type.get(etype)
    if inner is None:
        return set()
    return {c for votes in inner.exact.values() for curie in votes for c in concept_set(curie)}  # type: ignore[attr-defined]


def evaluate_linking(normalizer: TypedNormalizer, docs: Iterable[Document],
                     types: Sequence[str] | None = None) -> dict[str, LinkingScores]:
    """Per-type scores of linking the gold mentions of ``docs`` (each in its own document's context)."""
    scores: dict[str, LinkingScores] = {}
    known: dict[str, set[str]] = {}
    for doc in docs:
        ents = [e for e in doc.entities if (types is None or e.type in types) and e.type in normalizer.by_type]
        links = normalizer.link(ents, doc)
        for ent, link in zip(ents, links):
            s = scores.setdefault(ent.type, LinkingScores())
            if not concept_set(ent.normalized_id):
                s.unscored += 1
                continue
            assert link is not None
            if ent.type not in known:
                known[ent.type] = known_concepts(normalizer, ent.type)
            s.mentions += 1
            s.methods[link.method] += 1
            s.nil += link.is_nil
            s.in_dictionary += concept_set(ent.normalized_id) <= known[ent.type]
            if same_concepts(link.curie, ent.normalized_id):
                s.correct += 1
                s.correct_by_method[link.method] += 1
    return scores


def strict_id_scores(gold: Sequence[Document], predicted: Sequence[Document],
                     types: Sequence[str] | None = None) -> Counts:
    """Strict (span, type, identifier) counts: a prediction is a true positive when a gold mention has
    its span and type and the same concepts. Gold mentions without an identifier and NIL predictions
    take no part (a KG gets no node from either)."""
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        def keyed(doc: Document) -> dict[tuple[int, int, str], frozenset[str]]:
            return {e.key: concept_set(e.normalized_id) for e in doc.entities
                    if (types is None or e.type in types) and concept_set(e.normalized_id)}
        gk, pk = keyed(g), keyed(p)
        hits = sum(1 for k, ids in pk.items() if gk.get(k) == ids)
        tp += hits
        fp += len(pk) - hits
        fn += len(gk) - hits
    return Counts(tp, fp, fn)
