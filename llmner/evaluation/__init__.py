"""Evaluation: the prediction runner (``predict``), entity-level scoring (``scorer``), corpus evaluation
(``corpus_eval``), threshold choice and calibration (``thresholds``, ``calibration``), report subsets
(``subsets``), bootstrap intervals (``bootstrap``), the benchmark reports' row cache (``reports``) and
the scores of an entity normalizer (``normalization``)."""

from llmner.evaluation.scorer import Counts, Report, score

__all__ = ["Counts", "Report", "score"]
