"""Deterministic document subsets of a split: the first (or last) documents holding N sentences.

Full splits take hours on a CPU, so calibration and the benchmark reports score a fixed slice:
documents in split order until they hold at least ``sentences`` sentences (llmner's own splitter)
and ``min_gold`` gold mentions. ``from_end`` takes the slice from the end of the split (kept in
split order), to stay apart from a slice that a report scores from the start.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmner.data_processing.sentences import split_sentences
from llmner.doc import Document
from llmner.errors import ValidationError


def count_sentences(doc: Document) -> int:
    return max(1, len(split_sentences(doc.text, doc.language)))


def leading_documents(docs: Sequence[Document], sentences: int | None, min_gold: int = 0,
                      from_end: bool = False) -> tuple[list[Document], int]:
    """(documents, their sentence count): ``sentences`` None takes every document."""
    if sentences is not None and sentences < 1:
        raise ValidationError(f"sentences must be >= 1, got {sentences}")
    chosen: list[Document] = []
    total = gold = 0
    for doc in reversed(docs) if from_end else docs:
        if sentences is not None and total >= sentences and gold >= min_gold:
            break
        chosen.append(doc)
        total += count_sentences(doc)
        gold += len(doc.entities)
    if from_end:
        chosen.reverse()
    return chosen, total
