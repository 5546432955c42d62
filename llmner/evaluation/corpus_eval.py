"""Evaluate a pipeline on labelled documents, with and without its selector.

One generator pass (``llmner.evaluation.predict``): every candidate is kept with its selector
score, then scored twice with the strict scorer (``llmner.evaluation.scorer``): all candidates
(generator alone) and the candidates the selector keeps (generator + selector). The difference is
the selector's effect on precision and recall. ``llmner eval --corpus NAME --split SPLIT`` prints
and writes the ``CorpusEvaluation`` this returns; the benchmarks keep its predicted documents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmner.doc import Document
from llmner.errors import ValidationError
from llmner.evaluation.predict import predict, predict_in_parts, predicted_documents
from llmner.evaluation.scorer import Report, score
from llmner.schema import EntitySchema

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline


@dataclass(slots=True)
class CorpusEvaluation:
    """Gold documents, what the pipeline predicted on them, and the scores of both views."""

    corpus: str
    split: str
    gold: list[Document]
    alone: list[Document]              # predicted documents, every candidate (the generator alone)
    selected: list[Document] | None    # ... the candidates the selector keeps (None: no selector)
    without_selector: Report
    with_selector: Report | None
    threshold: float | None            # the selector threshold of the corpus's schema (None: no selector)
    model_ids: dict[str, str]
    seconds: float                     # prediction time

    @property
    def selector_effect(self) -> dict[str, float] | None:
        """Strict micro P/R/F1 change from the generator alone to generator + selector, and what it dropped."""
        without, with_sel = self.without_selector, self.with_selector
        if with_sel is None:
            return None
        return {
            "precision": with_sel.strict.precision - without.strict.precision,
            "recall": with_sel.strict.recall - without.strict.recall,
            "f1": with_sel.strict.f1 - without.strict.f1,
            "dropped_candidates": without.predicted_entities - with_sel.predicted_entities,
            "dropped_true_positives": without.strict.tp - with_sel.strict.tp,
            "dropped_false_positives": without.strict.fp - with_sel.strict.fp,
        }

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as ``llmner eval --corpus ... --json`` writes them."""
        out: dict[str, Any] = {
            "corpus": self.corpus, "split": self.split, "documents": len(self.gold), "model_ids": self.model_ids,
            "seconds": round(self.seconds, 1), "without_selector": self.without_selector.to_dict(),
        }
        if self.with_selector is not None:
            out["with_selector"] = self.with_selector.to_dict()
            out["threshold"] = self.threshold
            out["selector_effect"] = self.selector_effect
        return out


def labeled_documents(corpus: str, split: str, limit: int | None = None) -> list[Document]:
    """The gold documents of ``corpus``/``split`` (the first ``limit`` ones); an error names a split
    without labels or a limit below 1 before any model is loaded."""
    from llmner.data_processing.corpora import is_labeled, load_corpus

    if not is_labeled(corpus, split):
        raise ValidationError(f"corpus {corpus!r} split {split!r} has no gold labels to evaluate against")
    gold = load_corpus(corpus, split)
    if limit is not None:
        if limit < 1:
            raise ValidationError(f"--limit must be >= 1, got {limit}")
        gold = gold[:limit]
    return gold


def evaluate_documents(pipe: Pipeline, gold: Sequence[Document], schema: EntitySchema, corpus: str, split: str,
                       batch_documents: int = 8, on_batch: Callable[[int], None] | None = None,
                       parts_dir: Path | None = None, part_documents: int = 100,
                       parts_from_end: bool = False) -> CorpusEvaluation:
    """Predict ``gold`` under ``schema`` (every candidate kept) and score it without and with the selector.

    ``parts_dir``: predict in parts of ``part_documents`` documents stored there, resuming from the
    parts an interrupted run left (``predict_in_parts``); the directory must belong to this pipeline's
    models and settings alone. ``parts_from_end``: fill the parts from the last one (a second process on
    the same split)."""
    if parts_dir is None:
        started = time.perf_counter()
        records = predict(pipe, gold, schema, batch_documents, on_batch=on_batch)
        seconds = time.perf_counter() - started
    else:
        records, seconds = predict_in_parts(pipe, gold, schema, parts_dir, part_documents, batch_documents, on_batch,
                                            from_end=parts_from_end)
    # The proposing stage's candidates alone (the generator's, or the reader's in the schemas it tags): the
    # selector's own spans and a proposer's are part of what it selects.
    proposer = pipe.proposes(schema)
    alone = predicted_documents(gold, records, select=lambda es: [e for e in es if e.source == "generator"
                                                                    or (e.source == "reader" and not proposer)])
    selected = threshold = with_selector = None
    if pipe.selector is not None:
        selected = predicted_documents(gold, records, select=lambda es: pipe.selection(es, schema))
        with_selector = score(gold, selected)
        threshold = pipe.threshold_for(schema)
    return CorpusEvaluation(corpus=corpus, split=split, gold=list(gold), alone=alone, selected=selected,
                            without_selector=score(gold, alone), with_selector=with_selector, threshold=threshold,
                            model_ids=pipe.model_ids, seconds=seconds)
