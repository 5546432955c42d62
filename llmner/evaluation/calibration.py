"""Per-schema selection settings, chosen on the bundle's own dev candidates (``llmner calibrate``).

The selector is trained on several corpora at once and its dev threshold is one number for all of
them. The cost of a wrong cut differs by corpus: where the generator's candidates are mostly right
(GENIA's nested proteins, LINNAEUS's species) one threshold drops true mentions, where they are
mostly wrong it keeps noise. A tokens-head selector also proposes spans of its own, and what the
generator's candidates should be kept from depends on what those proposals add; where a proposal
overlaps a candidate of its type, which boundary wins is a corpus convention. So the three settings
of a schema's ``SelectionRule`` (``llmner.decoding.selection``) are chosen together:

- the selector threshold of the generator's candidates (``selector_grid``, and the global one);
- the proposal threshold (``proposal_grid``, or no proposals);
- the overlap rule (``llmner.decoding.overlaps``).

Calibration takes the generator's candidates of a corpus's dev documents (generated afresh from the end
of the split, or read from stored predictions), judges them and the selector's own spans as the pipeline
does (``llmner.evaluation.rescore.judge_stored``), and scores every rule by the strict F1 of what
``SelectionRule.select`` keeps (gold mentions never proposed count as misses).

Small dev slices overfit: with 20 LINNAEUS gold mentions a threshold of 0.449 won on dev and then
removed every candidate on test. So the baseline is the global selector threshold with the proposal
threshold chosen alone (the dev-best, both readings kept), and a rule that moves the selector threshold
or the overlap rule replaces it only with evidence that the *choice* carries over to unseen documents:
in each of ``bootstrap`` document resamples both ways of choosing pick on the drawn documents and are
compared on the documents left out (``choice_evidence``). The share of resamples in which the full
choice wins (ties count as no win) is the evidence; below ``min_evidence`` the baseline's choice stays.
Out-of-bag testing judges the whole pick-the-best procedure, which an interval around the dev-best
rule's own gain cannot do: that gain is measured on the documents that chose it. A schema with fewer
than ``min_candidates`` scored candidates keeps the baseline: too few to choose from.

A schema whose language the selector does not judge is calibrated the same way on the generator's own
probability of each entity's tags (``Entity.generator_score``; ``generator_grid``), against keeping every
candidate; its threshold goes to ``BundleManifest.generator_thresholds``.

The generator's bonus for opening a tag (``open_bias``, constrained decoding) is chosen the same way
(``calibrate_open_bias``): the bundle runs on the same dev documents once per value of a grid, each
value is scored by the strict F1 of what the pipeline finally keeps, and the dev-best value is stored
only when, out of bag, choosing it on a resample beats no bonus (0) on the documents left out often
enough. It is chosen before the selection settings, which are then calibrated on the candidates it
produces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmner.decoding.overlaps import OVERLAP_RULES
from llmner.decoding.selection import SelectionRule
from llmner.doc import Document, Entity
from llmner.errors import ValidationError
from llmner.evaluation.predict import PredictionCache, predict
from llmner.evaluation.subsets import leading_documents

if TYPE_CHECKING:
    from llmner.bundle import BundleManifest
    from llmner.pipeline import Pipeline

PROPOSAL_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
SELECTOR_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
GENERATOR_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(slots=True)
class CalibrationConfig:
    corpora: list[str] = field(default_factory=list)
    split: str = "dev"
    sentences: int = 80             # per corpus, from the end of the split
    min_gold: int = 40              # ... extended until it holds this many gold mentions (LINNAEUS is sparse)
    min_candidates: int = 20        # fewer scored candidates: keep the baseline
    batch_documents: int = 8
    bootstrap: int = 200            # document resamples for the out-of-bag evidence
    min_evidence: float = 0.8       # share of resamples the full choice must win out of bag (0: always move)
    seed: int = 0
    proposal_grid: tuple[float, ...] = PROPOSAL_GRID
    selector_grid: tuple[float, ...] = SELECTOR_GRID
    generator_grid: tuple[float, ...] = GENERATOR_GRID

    def __post_init__(self) -> None:
        if not self.corpora:
            raise ValidationError("calibration needs at least one corpus (--corpus)")
        if self.sentences < 1 or self.min_candidates < 1 or self.batch_documents < 1 or self.min_gold < 0:
            raise ValidationError("sentences, min_candidates and batch_documents must be >= 1, min_gold >= 0")
        if self.bootstrap < 1:
            raise ValidationError(f"bootstrap must be >= 1 resample, got {self.bootstrap}")
        if not 0.0 <= self.min_evidence <= 1.0:
            raise ValidationError(f"min_evidence must be in [0, 1], got {self.min_evidence}")
        for name in ("proposal_grid", "selector_grid", "generator_grid"):
            grid = getattr(self, name)
            if not grid or not all(0.0 <= v <= 1.0 for v in grid):
                raise ValidationError(f"{name} must hold values in [0, 1], got {grid}")


def rule_label(rule: SelectionRule, default: SelectionRule) -> str:
    """A rule as the reports name it: "none" or "<proposal threshold> <overlap rule>", with
    "@<selector threshold>" when it differs from ``default``'s and "gen@<t>" for a generator threshold."""
    label = "none" if rule.proposals is None else f"{rule.proposals:g} {rule.overlap}"
    if rule.threshold != default.threshold:
        label += f" @{rule.threshold:g}"
    if rule.generator_threshold is not None:
        label += f" gen@{rule.generator_threshold:g}"
    return label


@dataclass(frozen=True, slots=True)
class SchemaCalibration:
    schema: str
    corpus: str
    judge: str                       # "selector" (scores: Entity.score) or "generator" (Entity.generator_score)
    documents: int
    gold: int
    candidates: int                  # the generator's candidates the judge scored
    proposals: int                   # the selector's own spans, scored (0 when it proposes none)
    proposing: bool                  # the selector proposes spans here (proposal settings are chosen)
    default: SelectionRule           # the global selector threshold (or keep all), no proposals
    scores: dict[str, tuple[float, float, float]]   # rule_label -> strict (P, R, F1) of what it keeps
    plain: SelectionRule             # the baseline's dev-best: the proposal threshold chosen alone
    best: SelectionRule              # the dev-best of every rule
    evidence: float | None           # share of resamples where choosing among every rule beat the baseline out of bag
    oob_gain: float | None           # mean out-of-bag F1 gain of that choice over the baseline's
    chosen: SelectionRule            # what the bundle stores: best with enough evidence, else plain

    def f1(self, rule: SelectionRule) -> float:
        return self.scores[rule_label(rule, self.default)][2]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def strict_f1(kept: int, correct: int, gold: int) -> float:
    return 2 * correct / (kept + gold) if kept + gold else 0.0


def selection_rules(default: SelectionRule, judge: str, proposing: bool,
                    config: CalibrationConfig, proposer: bool = False) -> tuple[list[SelectionRule], list[SelectionRule]]:
    """(every rule to choose from, the baseline's rules), in tie-breaking order: the default threshold
    first, no proposals before proposals, "both" before the other overlap rules. ``proposer``: a
    proposer's spans are among the candidates, kept from each rule's selector threshold as
    ``Pipeline.selection_rule`` keeps them."""
    if judge == "generator":
        rules = [default] + [dataclasses.replace(default, generator_threshold=t) for t in sorted(set(config.generator_grid))]
        return rules, [default]
    thresholds = [default.threshold] + sorted(set(config.selector_grid) - {default.threshold})
    readings = [(None, "both")] + ([(p, rule) for rule in OVERLAP_RULES for p in config.proposal_grid] if proposing else [])
    rules = [SelectionRule(t, p, rule, reader_threshold=t if proposer else 0.0) for t in thresholds for p, rule in readings]
    return rules, [r for r in rules if r.threshold == default.threshold and r.overlap == "both"]


def choose_selection(pipe: Pipeline, corpus: str, gold_docs: Sequence[Document],
                     generated: Sequence[Sequence[Entity]], config: CalibrationConfig) -> SchemaCalibration:
    """Choose ``corpus``'s schema's ``SelectionRule`` on ``gold_docs`` from the generator's candidates of
    each (``generated[i]``, document frame; the selector's spans among them are ignored: they are
    proposed again)."""
    import numpy as np

    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.bootstrap import per_document_counts
    from llmner.evaluation.rescore import judge_stored

    schema = corpus_schema(corpus)
    pipe.add_schema(schema)
    languages = pipe.config.selector_languages
    judge = "selector" if pipe.selector is not None and (not languages or schema.language in languages) else "generator"
    proposing = judge == "selector" and pipe.config.proposals and pipe.selector is not None and pipe.selector.can_propose
    judged: list[list[Entity]] = []
    for doc, entities in zip(gold_docs, generated, strict=True):
        own = [e for e in entities if e.source == "generator"]   # what is proposed is proposed again
        if judge == "selector":
            judged.append(judge_stored(pipe, doc, own, schema, propose=proposing))
        else:   # stored scores of another selector must not decide
            judged.append([dataclasses.replace(e, score=None) for e in own])
    scored = sum(e.score is not None if judge == "selector" else e.generator_score is not None
                 for doc in judged for e in doc if e.source == "generator")
    proposer = judge == "selector" and pipe.proposes(schema)
    default = SelectionRule(pipe.threshold, reader_threshold=pipe.threshold if proposer else 0.0)
    rules, baseline = selection_rules(default, judge, proposing, config, proposer)
    if scored < config.min_candidates:
        rules = baseline
    counts: dict[Hashable, Any] = {}
    scores: dict[str, tuple[float, float, float]] = {}
    for rule in rules:
        predicted = [Document(d.id, d.text, d.language, {}, rule.select(entities)) for d, entities in zip(gold_docs, judged)]
        counts[rule] = np.array([c["all"] for c in per_document_counts(gold_docs, predicted)], dtype=np.float64)
        scores[rule_label(rule, default)] = _micro_prf(counts[rule])
    everything = np.arange(len(gold_docs))
    plain, best = best_option(counts, baseline, everything), best_option(counts, rules, everything)
    evidence = oob_gain = None
    if len(rules) > len(baseline):
        evidence, oob_gain = choice_evidence(counts, rules, baseline, config.bootstrap, config.seed)
    moves = best not in baseline and (config.min_evidence == 0.0 or (evidence is not None and evidence >= config.min_evidence))
    return SchemaCalibration(
        schema=schema.name, corpus=corpus, judge=judge, documents=len(gold_docs),
        gold=sum(len(d.entities) for d in gold_docs), candidates=scored,
        proposals=sum(e.source == "selector" for doc in judged for e in doc), proposing=proposing,
        default=default, scores=scores, plain=plain, best=best,   # type: ignore[arg-type]
        evidence=evidence, oob_gain=oob_gain, chosen=best if moves else plain)   # type: ignore[arg-type]


def calibrate_schema(pipe: Pipeline, corpus: str, config: CalibrationConfig,
                     stored: PredictionCache | None = None) -> SchemaCalibration:
    """Choose ``corpus``'s schema's selection settings on its dev documents: the last ones of the split,
    tagged now by ``pipe``, or those ``stored`` holds (``<corpus>.own.jsonl``, e.g. kept by
    ``benchmarks/schemas.py --cache``), without running the generator."""
    from llmner.data_processing.corpora import corpus_schema, is_labeled, load_corpus

    if not is_labeled(corpus, config.split):
        raise ValidationError(f"calibration: {corpus}/{config.split} has no gold labels")
    docs = load_corpus(corpus, config.split)
    if stored is None:
        gold_docs, _ = leading_documents(docs, config.sentences, config.min_gold, from_end=True)
        generated = [r.entities for r in predict(pipe, gold_docs, corpus_schema(corpus), config.batch_documents)]
    else:
        predicted = stored.get(corpus, "own")
        if predicted is None:
            raise ValidationError(f"calibration: {stored.root} holds no {corpus}.own.jsonl")
        by_id = {d.id: d for d in docs}
        missing = [p.id for p in predicted if p.id not in by_id]
        if missing:
            raise ValidationError(f"calibration: {len(missing)} stored {corpus} documents are not in its "
                                  f"{config.split} split (first: {missing[0]})")
        gold_docs, generated = [by_id[p.id] for p in predicted], [p.entities for p in predicted]
    return choose_selection(pipe, corpus, gold_docs, generated, config)


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


def _micro_prf(counts: Any) -> tuple[float, float, float]:
    """Strict (P, R, F1) of summed per-document (tp, fp, fn) rows."""
    tp, fp, fn = (int(x) for x in counts.sum(axis=0))
    return (tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0, strict_f1(tp + fp, tp, tp + fn))


def _micro_f1(counts: Any) -> float:
    return _micro_prf(counts)[2]


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


def calibrate(pipe: Pipeline, config: CalibrationConfig, log: Callable[[str], None] = print,
              stored: PredictionCache | None = None) -> list[SchemaCalibration]:
    """One calibration per corpus (its schema), judged by the selector where it judges the schema's
    language, else by the generator's own scores."""
    out = []
    for corpus in config.corpora:
        result = calibrate_schema(pipe, corpus, config, stored)
        log(f"{corpus}: {result.candidates} candidates scored by the {result.judge}"
            + (f", {result.proposals} proposals" if result.proposing else "") + f", {result.gold} gold; " + _verdict(result))
        out.append(result)
    return out


def _verdict(r: SchemaCalibration) -> str:
    plain = f"{rule_label(r.plain, r.default)} (F1 {r.f1(r.plain):.3f}, no proposals {r.f1(r.default):.3f})"
    if r.best == r.plain:
        return f"chose {plain}"
    won = "no resample" if r.evidence is None else f"won {r.evidence:.0%} of resamples out of bag (mean gain {r.oob_gain:+.3f})"
    verdict = "chosen" if r.chosen == r.best else "not enough evidence"
    return f"baseline {plain}; dev-best {rule_label(r.best, r.default)} (F1 {r.f1(r.best):.3f}) {won}: {verdict}"


def global_proposal_threshold(results: Sequence[SchemaCalibration], grid: Sequence[float] = PROPOSAL_GRID) -> float | None:
    """The proposal threshold for schemas without their own: the one of ``grid`` with the best macro F1
    over the proposing calibrations, both readings kept, at each one's default selector threshold."""
    proposing = [r for r in results if r.proposing]
    if not proposing:
        return None
    def macro(p: float) -> float:
        return sum(r.f1(dataclasses.replace(r.default, proposals=p)) for r in proposing) / len(proposing)
    return max(grid, key=macro)


def store_calibration(manifest: BundleManifest, results: Sequence[SchemaCalibration],
                      grid: Sequence[float] = PROPOSAL_GRID) -> None:
    """Write the chosen settings into ``manifest``: each calibrated schema's entries are replaced (a
    setting equal to the global one is not stored), other schemas' entries are kept."""
    names = {r.schema for r in results}

    def merged(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in old.items() if k not in names}, **new}

    manifest.selector_thresholds = merged(manifest.selector_thresholds, {
        r.schema: r.chosen.threshold for r in results if r.judge == "selector" and r.chosen.threshold != r.default.threshold})
    manifest.generator_thresholds = merged(manifest.generator_thresholds, {
        r.schema: r.chosen.generator_threshold for r in results if r.chosen.generator_threshold is not None})
    proposing = [r for r in results if r.proposing]
    if proposing:
        manifest.proposal_threshold = global_proposal_threshold(proposing, grid)
        manifest.proposal_thresholds = merged(manifest.proposal_thresholds, {r.schema: r.chosen.proposals for r in proposing})
        manifest.proposal_overlaps = merged(manifest.proposal_overlaps,
                                            {r.schema: r.chosen.overlap for r in proposing if r.chosen.overlap != "both"})
