"""Evaluation: entity-level scoring (``scorer``) and whole-corpus evaluation of a model bundle."""

from llmner.evaluation.scorer import Counts, Report, score

__all__ = ["Counts", "Report", "score"]
