"""The selector threshold with the best F1 on scored candidates (selector training's dev threshold).

Keep every candidate scored at or above the threshold, count gold mentions never proposed as misses,
and cut only where the score changes.
"""

from __future__ import annotations

import numpy as np

from llmner.errors import ValidationError


def best_threshold(scores: np.ndarray, labels: np.ndarray, total_gold: int | None = None) -> tuple[float, dict[str, float]]:
    """Threshold with the best F1 when keeping candidates with score >= threshold.

    ``total_gold`` (default: positives among the candidates) is the recall denominator, so gold
    mentions the candidates never proposed count as misses.
    """
    if scores.size == 0:
        raise ValidationError("no dev candidates to choose a threshold on")
    total = int(labels.sum()) if total_gold is None else total_gold
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    kept = np.arange(1, len(s) + 1)
    precision = tp / kept
    recall = tp / max(total, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    # Only cut where the score changes (ties must be kept or dropped together).
    valid = np.append(s[1:] < s[:-1], True)
    f1 = np.where(valid, f1, -1.0)
    i = int(np.argmax(f1))
    # Midway to the next lower score: robust to tiny numeric differences (ONNX, int8).
    threshold = float(s[i]) if i + 1 >= len(s) else float((s[i] + s[i + 1]) / 2)
    return threshold, {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                       "candidates": len(s), "gold": total}
