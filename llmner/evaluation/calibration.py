"""Per-schema selector thresholds, chosen on the bundle's own generator candidates (``llmner calibrate``).

The selector is trained on several corpora at once and its dev threshold is one number for all of
them. The cost of a wrong cut differs by corpus: where the generator's candidates are mostly right
(GENIA's nested proteins, LINNAEUS's species) one threshold drops true mentions, where they are
mostly wrong it keeps noise. Calibration runs the whole bundle on the last dev documents of each
corpus, keeps every candidate with its score, and picks for that corpus's schema the threshold with
the best strict F1 (keeping every candidate is one of the choices; gold mentions the generator never
proposed count as misses). A schema with fewer than ``min_candidates`` scored candidates keeps the
global threshold: too few to choose from.

Small dev slices overfit: with 20 LINNAEUS gold mentions a threshold of 0.449 won on dev and then
removed every candidate on test; with 40 mentions 0.597 won and did the same. So a schema's threshold
moves away from the global one only with evidence that the *choice* carries over to unseen documents:
in each of ``bootstrap`` document resamples the threshold is chosen on the drawn documents and
compared with the global threshold on the documents left out (out of bag). The share of resamples in
which it wins (ties count as no win) is the evidence; below ``min_evidence`` the global threshold
stays. Out-of-bag testing judges the whole pick-the-best procedure, which an interval around the
dev-best threshold's own gain cannot do: that gain is measured on the documents that chose it.

A schema whose language the selector does not judge (Chinese, with the English MiniLM selector) is
calibrated the same way on the generator's own probability of each entity's tags
(``Entity.generator_score``), against keeping every candidate (threshold 0) instead of the global
selector threshold; its threshold goes to ``BundleManifest.generator_thresholds``.

The generator's bonus for opening a tag (``open_bias``, constrained decoding) is chosen the same way
(``calibrate_open_bias``): the bundle runs on the same dev documents once per value of a grid, each
value is scored by the strict F1 of what the pipeline finally keeps, and the dev-best value is stored
only when, out of bag, choosing it on a resample beats no bonus (0) on the documents left out often
enough. It is chosen before the thresholds, which are then calibrated on the candidates it produces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmner.errors import ValidationError
from llmner.evaluation.predict import predict
from llmner.evaluation.subsets import leading_documents
from llmner.evaluation.thresholds import best_threshold

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline


@dataclass(slots=True)
class CalibrationConfig:
    corpora: list[str] = field(default_factory=list)
    split: str = "dev"
    sentences: int = 80             # per corpus, from the end of the split
    min_gold: int = 40              # ... extended until it holds this many gold mentions (LINNAEUS is sparse)
    min_candidates: int = 20        # fewer scored candidates: keep the global threshold
    batch_documents: int = 8
    bootstrap: int = 200            # document resamples for the out-of-bag evidence
    min_evidence: float = 0.8       # share of resamples the dev-chosen threshold must win out of bag (0: always move)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.corpora:
            raise ValidationError("calibration needs at least one corpus (--corpus)")
        if self.sentences < 1 or self.min_candidates < 1 or self.batch_documents < 1 or self.min_gold < 0:
            raise ValidationError("sentences, min_candidates and batch_documents must be >= 1, min_gold >= 0")
        if self.bootstrap < 1:
            raise ValidationError(f"bootstrap must be >= 1 resample, got {self.bootstrap}")
        if not 0.0 <= self.min_evidence <= 1.0:
            raise ValidationError(f"min_evidence must be in [0, 1], got {self.min_evidence}")


@dataclass(frozen=True, slots=True)
class SchemaCalibration:
    schema: str
    corpus: str
    judge: str                       # "selector" (scores: Entity.score) or "generator" (Entity.generator_score)
    documents: int
    gold: int
    candidates: int                  # scored candidates (the judge scored them)
    global_threshold: float          # the selector's global threshold; 0 (keep all) for the generator judge
    global_f1: float                 # strict F1 on these documents at the global threshold
    best_threshold: float | None     # the dev-best threshold (None: too few candidates to choose)
    best_f1: float                   # strict F1 at it (= global_f1 when None)
    evidence: float | None           # share of resamples where the in-bag choice beat the global threshold out of bag
    oob_gain: float | None           # mean out-of-bag F1 gain of the in-bag choice over the global threshold
    threshold: float | None          # what the bundle stores: best_threshold with enough evidence, else None (global)
    f1: float                        # strict F1 at the threshold in use (= global_f1 when None)
    keep_all_f1: float               # strict F1 keeping every candidate (the generator alone)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def strict_f1(kept: int, correct: int, gold: int) -> float:
    return 2 * correct / (kept + gold) if kept + gold else 0.0


@dataclass(slots=True)
class _DocumentCandidates:
    """One dev document's candidates as calibration needs them."""
    scores: list[float]              # scored candidates (the judge scored them)
    hits: list[bool]                 # ... and whether each is a gold mention
    gold: int
    unscored: int = 0                # candidates the judge has no score for: always kept
    unscored_correct: int = 0


class _CandidatePool:
    """Candidates of a set of documents (with repeats, for resamples), and F1 / best threshold on them."""

    def __init__(self, docs: Sequence[_DocumentCandidates]):
        import numpy as np

        self.scores = np.array([s for d in docs for s in d.scores], dtype=np.float64)
        self.hits = np.array([h for d in docs for h in d.hits], dtype=np.float64)
        self.gold = sum(d.gold for d in docs)
        self.unscored = sum(d.unscored for d in docs)
        self.unscored_correct = sum(d.unscored_correct for d in docs)

    def f1_at(self, threshold: float) -> float:
        keep = self.scores >= threshold
        return strict_f1(int(keep.sum()) + self.unscored, int(self.hits[keep].sum()) + self.unscored_correct, self.gold)

    def best_threshold(self) -> float:
        chosen, _ = best_threshold(self.scores, self.hits, total_gold=self.gold,
                                   always_kept=self.unscored, always_correct=self.unscored_correct)
        return min(max(chosen, 0.0), 1.0)


def out_of_bag_evidence(docs: Sequence[_DocumentCandidates], global_threshold: float, resamples: int,
                        seed: int = 0) -> tuple[float | None, float | None]:
    """(share of resamples won, mean F1 gain) of choosing the threshold on a document resample and
    using it on the documents left out, against the global threshold there. (None, None) when no
    resample both had scored candidates to choose from and left documents out."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(docs)
    gains = []
    for _ in range(resamples):
        drawn = rng.integers(0, n, n)
        left_out = np.setdiff1d(np.arange(n), drawn)
        in_bag = _CandidatePool([docs[i] for i in drawn])
        if not left_out.size or not in_bag.scores.size:
            continue
        out = _CandidatePool([docs[i] for i in left_out])
        gains.append(out.f1_at(in_bag.best_threshold()) - out.f1_at(global_threshold))
    if not gains:
        return None, None
    g = np.array(gains)
    return float((g > 0).mean()), float(g.mean())


def calibrate_schema(pipe: Pipeline, corpus: str, config: CalibrationConfig) -> SchemaCalibration:
    """Run ``pipe`` on the last dev documents of ``corpus`` and choose its schema's threshold."""
    from llmner.data_processing.corpora import corpus_schema, is_labeled, load_corpus

    if not is_labeled(corpus, config.split):
        raise ValidationError(f"calibration: {corpus}/{config.split} has no gold labels")
    schema = corpus_schema(corpus)
    languages = pipe.config.selector_languages
    judge = "selector" if pipe.selector is not None and (not languages or schema.language in languages) else "generator"
    gold_docs, _ = leading_documents(load_corpus(corpus, config.split), config.sentences, config.min_gold, from_end=True)
    records = predict(pipe, gold_docs, schema, config.batch_documents)
    per_doc = []
    for doc, record in zip(gold_docs, records):
        gold = {(e.start, e.end, e.type) for e in doc.entities}
        d = _DocumentCandidates(scores=[], hits=[], gold=len(doc.entities))
        # The selector's own spans have their own threshold, and the schema's overlap rule decides between
        # a kept one and a kept candidate of its type: what they keep at the current thresholds is a given.
        selected = {id(e) for e in pipe.selection(record.entities, schema)}
        for e in record.entities:
            hit = (e.start, e.end, e.type) in gold
            if e.source == "selector":
                if id(e) in selected:
                    d.unscored, d.unscored_correct = d.unscored + 1, d.unscored_correct + hit
                continue
            if id(e) not in selected and pipe.keeps(e, schema):
                continue     # a kept proposal of its type overlaps it and wins (overlap rule "selector")
            score = e.score if judge == "selector" else e.generator_score
            if score is None:            # nothing to judge it by: always kept
                d.unscored, d.unscored_correct = d.unscored + 1, d.unscored_correct + hit
            else:
                d.scores.append(score)
                d.hits.append(hit)
        per_doc.append(d)
    pool = _CandidatePool(per_doc)

    global_threshold = pipe.threshold if judge == "selector" else 0.0
    best: float | None = None
    evidence = oob_gain = None
    if len(pool.scores) >= config.min_candidates:
        best = pool.best_threshold()
        evidence, oob_gain = out_of_bag_evidence(per_doc, global_threshold, config.bootstrap, config.seed)
    moves = best is not None and (config.min_evidence == 0.0 or (evidence is not None and evidence >= config.min_evidence))
    chosen = best if moves else None
    global_f1 = pool.f1_at(global_threshold)
    return SchemaCalibration(
        schema=schema.name, corpus=corpus, judge=judge, documents=len(gold_docs), gold=pool.gold,
        candidates=len(pool.scores),
        global_threshold=global_threshold, global_f1=global_f1,
        best_threshold=best, best_f1=pool.f1_at(best) if best is not None else global_f1,
        evidence=evidence, oob_gain=oob_gain, threshold=chosen,
        f1=pool.f1_at(chosen) if chosen is not None else global_f1, keep_all_f1=pool.f1_at(0.0))


@dataclass(frozen=True, slots=True)
class OpenBiasCalibration:
    schema: str
    corpus: str
    documents: int
    gold: int
    f1_by_bias: dict[float, float]   # strict F1 of the pipeline's output at each value of the grid
    best_bias: float                 # the dev-best value (ties: the smallest)
    evidence: float | None           # share of resamples where the in-bag choice beat 0 out of bag
    oob_gain: float | None           # mean out-of-bag F1 gain of the in-bag choice over 0
    open_bias: float                 # what the bundle stores: best_bias with enough evidence, else 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "f1_by_bias": {str(k): v for k, v in self.f1_by_bias.items()}}


def _micro_f1(counts: Any) -> float:
    """Strict F1 of summed per-document (tp, fp, fn) rows."""
    tp, fp, fn = (int(x) for x in counts.sum(axis=0))
    return strict_f1(tp + fp, tp, tp + fn)


def best_option(counts: Mapping[Hashable, Any], options: Sequence[Hashable], rows: Any) -> Hashable:
    """The option of ``options`` with the best strict micro F1 over the documents ``rows`` (indices,
    repeats allowed) of ``counts[option]``, per-document (tp, fp, fn) arrays; ties: the earliest."""
    return max(options, key=lambda o: _micro_f1(counts[o][rows]))


def choice_evidence(counts: Mapping[Hashable, Any], options: Sequence[Hashable], baseline: Sequence[Hashable],
                    resamples: int, seed: int = 0) -> tuple[float | None, float | None]:
    """Out-of-bag evidence for choosing among ``options`` rather than among ``baseline`` (a fixed value
    when it is one option): in each document resample, each one's best option on the drawn documents
    (``best_option``), scored on the documents left out. Returns (share of resamples where choosing among
    ``options`` did better, mean F1 gain); (None, None) when no resample left documents out."""
    import numpy as np

    n = len(next(iter(counts.values())))
    everything = np.arange(n)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(resamples):
        drawn = rng.integers(0, n, n)
        left_out = np.setdiff1d(everything, drawn)
        if left_out.size:
            gains.append(_micro_f1(counts[best_option(counts, options, drawn)][left_out])
                         - _micro_f1(counts[best_option(counts, baseline, drawn)][left_out]))
    if not gains:
        return None, None
    return float((np.array(gains) > 0).mean()), float(np.mean(gains))


def calibrate_open_bias(pipe: Pipeline, corpus: str, config: CalibrationConfig,
                        grid: Sequence[float]) -> OpenBiasCalibration:
    """Choose ``corpus``'s schema's ``open_bias`` from ``grid`` on the last dev documents (see module doc)."""
    import numpy as np

    from llmner.data_processing.corpora import corpus_schema, is_labeled, load_corpus
    from llmner.evaluation.bootstrap import per_document_counts
    from llmner.evaluation.predict import predicted_documents

    if not is_labeled(corpus, config.split):
        raise ValidationError(f"calibration: {corpus}/{config.split} has no gold labels")
    values = sorted({0.0, *(float(b) for b in grid)})
    schema = corpus_schema(corpus)
    gold_docs, _ = leading_documents(load_corpus(corpus, config.split), config.sentences, config.min_gold, from_end=True)
    saved = dict(pipe.open_biases)
    counts = {}
    try:
        for value in values:
            pipe.open_biases = {**saved, schema.name: value}
            records = predict(pipe, gold_docs, schema, config.batch_documents, select=True)   # what is kept
            predicted = predicted_documents(gold_docs, records)
            counts[value] = np.array([c["all"] for c in per_document_counts(gold_docs, predicted)], dtype=np.float64)
    finally:
        pipe.open_biases = saved

    best = best_option(counts, values, np.arange(len(gold_docs)))    # ties: the smallest bonus
    evidence, oob_gain = choice_evidence(counts, values, [0.0], config.bootstrap, config.seed)
    moves = best != 0.0 and (config.min_evidence == 0.0 or (evidence is not None and evidence >= config.min_evidence))
    return OpenBiasCalibration(schema=schema.name, corpus=corpus, documents=len(gold_docs),
                               gold=int(counts[0.0][:, [0, 2]].sum()),
                               f1_by_bias={v: _micro_f1(counts[v]) for v in values}, best_bias=best,
                               evidence=evidence, oob_gain=oob_gain, open_bias=best if moves else 0.0)


def calibrate(pipe: Pipeline, config: CalibrationConfig,
              log: Callable[[str], None] = print) -> list[SchemaCalibration]:
    """One calibration per corpus (its schema), judged by the selector where it judges the schema's
    language, else by the generator's own scores."""
    out = []
    for corpus in config.corpora:
        result = calibrate_schema(pipe, corpus, config)
        log(f"{corpus}: {result.candidates} candidates scored by the {result.judge}, {result.gold} gold; "
            + _verdict(result))
        out.append(result)
    return out


def _verdict(r: SchemaCalibration) -> str:
    if r.best_threshold is None:
        return f"F1 {r.global_f1:.3f} at the global threshold (too few candidates to choose)"
    won = "no resample" if r.evidence is None else f"won {r.evidence:.0%} of resamples out of bag (mean gain {r.oob_gain:+.3f})"
    if r.threshold is None:
        return (f"dev-best {r.best_threshold:.3f} (F1 {r.global_f1:.3f} -> {r.best_f1:.3f}) {won}: "
                f"not enough evidence, keeps the global threshold")
    return f"F1 global {r.global_f1:.3f} -> {r.f1:.3f} at {r.threshold:.3f}, {won}"


def thresholds_of(results: Sequence[SchemaCalibration], judge: str = "selector") -> dict[str, float]:
    """schema -> chosen threshold of ``judge``'s calibrations, for ``BundleManifest.selector_thresholds``
    (judge "selector") or ``generator_thresholds`` (judge "generator")."""
    return {r.schema: r.threshold for r in results if r.threshold is not None and r.judge == judge}
