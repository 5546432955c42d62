"""Entity-level scoring of predicted documents against gold documents.

Three views, all over character spans and all counting nested entities individually:

- ``strict``: a prediction is correct when (start, end, type) equals a gold entity. Micro P/R/F1
  over all entities, macro P/R/F1 (the unweighted mean of the per-type scores over every type seen
  in gold or predictions, as seqeval does), and per type.
- ``boundary``: (start, end) only, type ignored; a span annotated with two types counts once.
- ``partial``: a prediction matches a gold entity of the same type when they share at least one
  character; each gold and each prediction is used at most once (a maximum matching, so the count
  does not depend on the order of entities).

Entities repeated with the same key in one document count once. Documents are matched by id: a
gold document without predictions counts as predicting nothing (``Report.missing_predictions``); a
predicted id unknown to gold is an error, as is a predicted text that differs from the gold text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from llmner.doc import Document, Entity
from llmner.errors import ValidationError


@dataclass(slots=True)
class Counts:
    """True positives, false positives and false negatives, with the scores they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def to_dict(self) -> dict[str, float | int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(slots=True)
class Report:
    """Scores of one evaluation (see the module docstring for the definitions)."""

    strict: Counts
    per_type: dict[str, Counts]
    boundary: Counts
    partial: Counts
    documents: int = 0
    gold_entities: int = 0
    predicted_entities: int = 0
    missing_predictions: int = 0
    partial_per_type: dict[str, Counts] = field(default_factory=dict)

    @property
    def macro(self) -> dict[str, float]:
        """Unweighted mean of the per-type strict precision, recall and F1."""
        if not self.per_type:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        n = len(self.per_type)
        return {
            "precision": sum(c.precision for c in self.per_type.values()) / n,
            "recall": sum(c.recall for c in self.per_type.values()) / n,
            "f1": sum(c.f1 for c in self.per_type.values()) / n,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "gold_entities": self.gold_entities,
            "predicted_entities": self.predicted_entities,
            "missing_predictions": self.missing_predictions,
            "strict": {"micro": self.strict.to_dict(), "macro": self.macro},
            "per_type": {t: c.to_dict() for t, c in sorted(self.per_type.items())},
            "boundary": self.boundary.to_dict(),
            "partial": self.partial.to_dict(),
            "partial_per_type": {t: c.to_dict() for t, c in sorted(self.partial_per_type.items())},
        }

    def to_table(self, title: str = "Entity scores") -> Table:
        """A rich table: one row per view and per type."""
        table = Table(title=title)
        for name, justify in (("view", "left"), ("P", "right"), ("R", "right"), ("F1", "right"),
                              ("TP", "right"), ("FP", "right"), ("FN", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]

        def row(label: str, c: Counts) -> None:
            table.add_row(label, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.tp), str(c.fp), str(c.fn))

        row("strict (micro)", self.strict)
        m = self.macro
        table.add_row("strict (macro)", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", "", "", "")
        row("boundary", self.boundary)
        row("partial", self.partial)
        for etype, c in sorted(self.per_type.items()):
            row(f"  {etype}", c)
        table.caption = (
            f"{self.documents} documents, {self.gold_entities} gold / {self.predicted_entities} predicted entities"
            + (f", {self.missing_predictions} documents without predictions" if self.missing_predictions else "")
        )
        return table


def _max_overlap_matching(gold: Sequence[Entity], pred: Sequence[Entity]) -> int:
    """Size of a maximum matching between predictions and gold entities that share a character."""
    edges = [[g for g, ge in enumerate(gold) if pe.start < ge.end and ge.start < pe.end] for pe in pred]
    match_of_gold: dict[int, int] = {}

    def augment(p: int, seen: set[int]) -> bool:
        for g in edges[p]:
            if g in seen:
                continue
            seen.add(g)
            if g not in match_of_gold or augment(match_of_gold[g], seen):
                match_of_gold[g] = p
                return True
        return False

    return sum(1 for p in range(len(pred)) if augment(p, set()))


def _unique(entities: Iterable[Entity]) -> list[Entity]:
    seen: dict[tuple[int, int, str], Entity] = {}
    for ent in entities:
        seen.setdefault(ent.key, ent)
    return list(seen.values())


def score(gold: Sequence[Document], predicted: Sequence[Document]) -> Report:
    """Score ``predicted`` against ``gold`` (documents matched by id)."""
    gold_by_id: dict[str, Document] = {}
    for doc in gold:
        if doc.id in gold_by_id:
            raise ValidationError(f"gold: document id {doc.id!r} appears twice")
        gold_by_id[doc.id] = doc
    pred_by_id: dict[str, Document] = {}
    for doc in predicted:
        if doc.id not in gold_by_id:
            raise ValidationError(f"predictions: document id {doc.id!r} is not in the gold documents")
        if doc.id in pred_by_id:
            raise ValidationError(f"predictions: document id {doc.id!r} appears twice")
        gold_text = gold_by_id[doc.id].text
        if doc.text and gold_text and doc.text != gold_text:
            raise ValidationError(f"predictions: document {doc.id!r} has a different text than the gold document")
        pred_by_id[doc.id] = doc

    report = Report(strict=Counts(), per_type={}, boundary=Counts(), partial=Counts(), documents=len(gold_by_id))
    for doc_id, gold_doc in gold_by_id.items():
        pred_doc = pred_by_id.get(doc_id)
        if pred_doc is None:
            report.missing_predictions += 1
        g = _unique(gold_doc.entities)
        p = _unique(pred_doc.entities) if pred_doc is not None else []
        report.gold_entities += len(g)
        report.predicted_entities += len(p)

        g_keys, p_keys = {e.key for e in g}, {e.key for e in p}
        for etype in {k[2] for k in g_keys | p_keys}:
            gt = {k for k in g_keys if k[2] == etype}
            pt = {k for k in p_keys if k[2] == etype}
            counts = Counts(len(gt & pt), len(pt - gt), len(gt - pt))
            report.per_type.setdefault(etype, Counts()).add(counts)
            report.strict.add(counts)
            matched = _max_overlap_matching([e for e in g if e.type == etype], [e for e in p if e.type == etype])
            partial = Counts(matched, len(pt) - matched, len(gt) - matched)
            report.partial.add(partial)
            report.partial_per_type.setdefault(etype, Counts()).add(partial)

        g_spans, p_spans = {(e.start, e.end) for e in g}, {(e.start, e.end) for e in p}
        report.boundary.add(Counts(len(g_spans & p_spans), len(p_spans - g_spans), len(g_spans - p_spans)))
    return report
