"""Run a pipeline over documents in batches and return the predicted documents.

Evaluation needs the pipeline's raw output (every candidate with its selector score) on gold
documents, under a schema chosen by the evaluator; scoring and reporting are separate steps
(``llmner.evaluation.scorer``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from llmner.doc import Document
from llmner.schema import EntitySchema


def predict_documents(pipe: Any, docs: Sequence[Document], schema: EntitySchema | None = None,
                      batch_documents: int = 8, select: bool = False,
                      on_batch: Callable[[int], None] | None = None) -> list[Document]:
    """``docs`` as the pipeline tags them: same ids and texts, predicted entities (gold dropped).

    ``schema``: tag every document under it (registered with the pipeline); None keeps each
    document's own ``metadata['schema']`` or the language default. ``select=False`` keeps every
    candidate with its score, so that one run serves scoring with and without the selector.
    ``on_batch(n)`` is called after each batch with the number of documents done (progress)."""
    if schema is not None:
        pipe.add_schema(schema)
    inputs = [dataclasses.replace(d, metadata={**d.metadata, **({"schema": schema.name} if schema else {})}, entities=[])
              for d in docs]
    out: list[Document] = []
    for i in range(0, len(inputs), batch_documents):
        batch = inputs[i : i + batch_documents]
        for doc, record in zip(batch, pipe.process(batch, select=select)):
            out.append(Document(doc.id, doc.text, doc.language, {}, list(record.entities)))
        if on_batch is not None:
            on_batch(len(out))
    return out


def stderr_progress(label: str, total: int) -> Callable[[int], None]:
    """A one-line progress counter on stderr (stdout stays for data)."""
    def report(done: int) -> None:
        print(f"\r{label}: {done}/{total} documents", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return report


__all__ = ["predict_documents", "stderr_progress"]
