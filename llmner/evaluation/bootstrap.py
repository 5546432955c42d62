"""Confidence intervals of strict F1 by resampling documents (percentile bootstrap).

The benchmark reports score small subsets (``llmner.evaluation.subsets``), so every F1 they show
comes with the 95% interval of documents drawn with replacement. Two systems scored on the same
documents are compared on the same draws (paired): the document-to-document variation both share
cancels out of their difference. Inputs are per-document strict (tp, fp, fn) counts
(``per_document_counts``), so a result cached as JSON can be resampled again without the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmner.doc import Document
from llmner.evaluation.scorer import score

# Per-document counts: scope ("all" = strict micro, else an entity type) -> [tp, fp, fn].
DocumentCounts = dict[str, list[int]]


def per_document_counts(gold: Sequence[Document], predicted: Sequence[Document]) -> list[DocumentCounts]:
    """Strict [tp, fp, fn] of each document, overall ("all") and per type (for bootstrap intervals)."""
    out = []
    for g, p in zip(gold, predicted):
        report = score([g], [p])
        counts = {"all": [report.strict.tp, report.strict.fp, report.strict.fn]}
        for etype, c in report.per_type.items():
            counts[etype] = [c.tp, c.fp, c.fn]
        out.append(counts)
    return out


def f1_of(counts: np.ndarray) -> np.ndarray:
    """Strict F1 from [..., 3] arrays of summed (tp, fp, fn)."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def counts_array(per_document: Sequence[DocumentCounts], scope: str) -> np.ndarray:
    """[documents, 3] counts of one scope (a document without the type counts zeros)."""
    return np.array([d.get(scope, [0, 0, 0]) for d in per_document], dtype=np.float64)


def resamples(n: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n] document indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def bootstrap_f1(per_document: Sequence[DocumentCounts], scope: str, samples: int = 1000,
                 seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of strict micro F1 over documents resampled with replacement."""
    if samples <= 0 or len(per_document) < 2:
        return None
    counts = counts_array(per_document, scope)
    lo, hi = np.percentile(f1_of(counts[resamples(len(counts), samples, seed)].sum(axis=1)), [2.5, 97.5])
    return float(lo), float(hi)


def paired_bootstrap_difference(first: Sequence[DocumentCounts], second: Sequence[DocumentCounts],
                                scope: str, samples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95% interval of F1(first) - F1(second), both scored on the same resampled documents (paired:
    the document-to-document variation both systems share cancels out). Needs per-document counts
    of the same documents in the same order."""
    if samples <= 0 or len(first) < 2 or len(first) != len(second):
        return None
    a, b = counts_array(first, scope), counts_array(second, scope)
    idx = resamples(len(a), samples, seed)
    lo, hi = np.percentile(f1_of(a[idx].sum(axis=1)) - f1_of(b[idx].sum(axis=1)), [2.5, 97.5])
    return float(lo), float(hi)


def macro_f1_comparison(per_document: Mapping[str, Mapping[str, Sequence[Sequence[int]]]], corpora: Sequence[str],
                        reference: str, samples: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Systems scored on the same documents of several corpora (``per_document[system][corpus]``:
    strict [tp, fp, fn] per document). Per system: P/R/F1 per corpus, the macro F1 over corpora
    (every corpus counts the same) with its 95% interval, and the paired interval of its macro-F1
    difference from ``reference`` (every system is scored on the same draws of each corpus)."""
    rng = np.random.default_rng(seed)
    draws = {c: rng.integers(0, len(per_document[reference][c]), size=(samples, len(per_document[reference][c])))
             for c in corpora}
    boot: dict[str, np.ndarray] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, rows in per_document.items():
        per_corpus = {}
        macro_samples = np.zeros(samples)
        for c in corpora:
            counts = np.array(rows[c], dtype=np.float64)
            tp, fp, fn = counts.sum(axis=0)
            per_corpus[c] = {"tp": int(tp), "fp": int(fp), "fn": int(fn),
                             "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
                             "f1": float(f1_of(counts.sum(axis=0)))}
            macro_samples += f1_of(counts[draws[c]].sum(axis=1)) / len(corpora)
        boot[name] = macro_samples
        out[name] = {"per_corpus": per_corpus, "macro_f1": float(np.mean([per_corpus[c]["f1"] for c in corpora])),
                     "macro_f1_ci": [float(v) for v in np.percentile(macro_samples, [2.5, 97.5])]}
    for name, summary in out.items():
        summary["diff_vs_reference"] = summary["macro_f1"] - out[reference]["macro_f1"]
        summary["diff_ci"] = [float(v) for v in np.percentile(boot[name] - boot[reference], [2.5, 97.5])]
    return out
