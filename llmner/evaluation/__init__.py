"""Evaluation: the prediction runner (``predict``), entity-level scoring (``scorer``), corpus evaluation
(``corpus_eval``), threshold choice and calibration (``thresholds``, ``calibration``), report subsets
(``subsets``), bootstrap intervals (``bootstrap``) and the benchmark reports' row cache (``reports``)."""

from llmner.evaluation.scorer import Counts, Report, score

__all__ = ["Counts", "Report", "score"]
