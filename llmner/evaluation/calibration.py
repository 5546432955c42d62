"""Per-schema selector thresholds, chosen on the bundle's own generator candidates (``llmner calibrate``).

The selector is trained on several corpora at once and its dev threshold is one number for all of
them. The cost of a wrong cut differs by corpus: where the generator's candidates are mostly right
(GENIA's nested proteins, LINNAEUS's species) one threshold drops true mentions, where they are
mostly wrong it keeps noise. Calibration runs the whole bundle on the last dev documents of each
corpus, keeps every candidate with its score, and picks for that corpus's schema the threshold with
the best strict F1 (keeping every candidate is one of the choices; gold mentions the generator never
proposed count as misses). A schema with fewer than ``min_candidates`` scored candidates keeps the
global threshold: too few to choose from. Small dev slices overfit: with 20 LINNAEUS gold mentions a
threshold of 0.449 won on dev and then removed every candidate on test, hence the defaults of 80
sentences and 40 gold mentions per corpus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmner.errors import ValidationError
from llmner.evaluation.subsets import leading_documents


@dataclass(slots=True)
class CalibrationConfig:
    corpora: list[str] = field(default_factory=list)
    split: str = "dev"
    sentences: int = 80             # per corpus, from the end of the split
    min_gold: int = 40              # ... extended until it holds this many gold mentions (LINNAEUS is sparse)
    min_candidates: int = 20        # fewer scored candidates: keep the global threshold
    batch_documents: int = 8

    def __post_init__(self) -> None:
        if not self.corpora:
            raise ValidationError("calibration needs at least one corpus (--corpus)")
        if self.sentences < 1 or self.min_candidates < 1 or self.batch_documents < 1 or self.min_gold < 0:
            raise ValidationError("sentences, min_candidates and batch_documents must be >= 1, min_gold >= 0")


@dataclass(frozen=True, slots=True)
class SchemaCalibration:
    schema: str
    corpus: str
    documents: int
    gold: int
    candidates: int                  # scored candidates (the selector judged them)
    global_threshold: float
    global_f1: float                 # strict F1 on these documents at the global threshold
    threshold: float | None          # None: too few candidates, the global threshold stays
    f1: float                        # strict F1 at the chosen threshold (= global_f1 when None)
    keep_all_f1: float               # strict F1 keeping every candidate (the generator alone)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def strict_f1(kept: int, correct: int, gold: int) -> float:
    return 2 * correct / (kept + gold) if kept + gold else 0.0


def calibrate_schema(pipe: Any, corpus: str, config: CalibrationConfig) -> SchemaCalibration:
    """Run ``pipe`` on the last dev documents of ``corpus`` and choose its schema's threshold."""
    import numpy as np

    from llmner.data_processing.corpora import corpus_schema, is_labeled, load_corpus
    from llmner.training.selector import best_threshold

    if not is_labeled(corpus, config.split):
        raise ValidationError(f"calibration: {corpus}/{config.split} has no gold labels")
    schema = corpus_schema(corpus)
    pipe.add_schema(schema)
    gold_docs, _ = leading_documents(load_corpus(corpus, config.split), config.sentences, config.min_gold, from_end=True)
    docs = [dataclasses.replace(d, metadata={**d.metadata, "schema": schema.name}, entities=[]) for d in gold_docs]
    records = []
    for i in range(0, len(docs), config.batch_documents):
        records.extend(pipe.process(docs[i : i + config.batch_documents], select=False))
    total_gold = sum(len(d.entities) for d in gold_docs)
    scores, labels = [], []
    unscored_correct = unscored = 0
    for doc, record in zip(gold_docs, records):
        gold = {(e.start, e.end, e.type) for e in doc.entities}
        for e in record.entities:
            hit = (e.start, e.end, e.type) in gold
            if e.score is None:          # a language the selector does not judge: always kept
                unscored, unscored_correct = unscored + 1, unscored_correct + hit
            else:
                scores.append(e.score)
                labels.append(hit)
    s, y = np.array(scores, dtype=np.float64), np.array(labels, dtype=np.float64)

    def f1_at(threshold: float) -> float:
        keep = s >= threshold
        return strict_f1(int(keep.sum()) + unscored, int(y[keep].sum()) + unscored_correct, total_gold)

    global_threshold = pipe.threshold
    chosen: float | None = None
    if len(s) >= config.min_candidates:
        chosen, _ = best_threshold(s, y, total_gold=total_gold, always_kept=unscored, always_correct=unscored_correct)
        chosen = min(max(chosen, 0.0), 1.0)
    return SchemaCalibration(
        schema=schema.name, corpus=corpus, documents=len(docs), gold=total_gold, candidates=len(s),
        global_threshold=global_threshold, global_f1=f1_at(global_threshold), threshold=chosen,
        f1=f1_at(chosen) if chosen is not None else f1_at(global_threshold), keep_all_f1=f1_at(0.0))


def calibrate(pipe: Any, config: CalibrationConfig,
              log: Callable[[str], None] = print) -> list[SchemaCalibration]:
    """One calibration per corpus (its schema); the pipeline must have a selector."""
    if pipe.selector is None:
        raise ValidationError("calibration needs a bundle with a selector")
    out = []
    for corpus in config.corpora:
        result = calibrate_schema(pipe, corpus, config)
        log(f"{corpus}: {result.candidates} scored candidates, {result.gold} gold; F1 global "
            f"{result.global_f1:.3f} -> {result.f1:.3f} at "
            + (f"{result.threshold:.3f}" if result.threshold is not None else "the global threshold (too few candidates)"))
        out.append(result)
    return out


def thresholds_of(results: Sequence[SchemaCalibration]) -> dict[str, float]:
    """schema -> chosen threshold, for ``BundleManifest.selector_thresholds``."""
    return {r.schema: r.threshold for r in results if r.threshold is not None}
