"""Run a pipeline over documents in batches: the one prediction runner of the library.

Corpus evaluation, calibration, selector training and the benchmarks all tag gold documents the
same way: gold entities dropped, a schema chosen by the caller, every candidate kept with its
selector score (``select=False``) so that one generator pass serves scoring with and without the
selector. ``predict`` returns the pipeline's result records; ``predicted_documents`` turns them
back into documents (the one conversion, ``ResultRecord.to_document``); scoring and reporting are
separate steps (``llmner.evaluation.scorer``, ``llmner.evaluation.corpus_eval``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import ConfigError
from llmner.evaluation.reports import cached_row, store_row
from llmner.schema import EntitySchema

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline


def predict(pipe: Pipeline, docs: Sequence[Document], schema: EntitySchema | None = None,
            batch_documents: int = 8, select: bool = False,
            on_batch: Callable[[int], None] | None = None) -> list[ResultRecord]:
    """The pipeline's result record of each of ``docs``, in order (gold entities are not shown to it).

    ``schema``: tag every document under it (registered with the pipeline); None keeps each
    document's own ``metadata['schema']`` or the language default. ``select=False`` keeps every
    candidate with its score. ``batch_documents`` documents go to each ``process`` call;
    ``on_batch(n)`` is called after each batch with the number of documents done (progress)."""
    if schema is not None:
        pipe.add_schema(schema)
    inputs = [dataclasses.replace(d, metadata={**d.metadata, **({"schema": schema.name} if schema else {})}, entities=[])
              for d in docs]
    records: list[ResultRecord] = []
    for i in range(0, len(inputs), batch_documents):
        records.extend(pipe.process(inputs[i : i + batch_documents], select=select))
        if on_batch is not None:
            on_batch(len(records))
    return records


def predict_in_parts(pipe: Pipeline, docs: Sequence[Document], schema: EntitySchema | None, parts_dir: Path,
                     part_documents: int = 100, batch_documents: int = 8,
                     on_batch: Callable[[int], None] | None = None,
                     from_end: bool = False) -> tuple[list[ResultRecord], float]:
    """``predict`` part by part, each part of ``part_documents`` documents stored in ``parts_dir`` as it
    finishes, so that a run over a whole split (hours on a CPU) resumes where it stopped: a stored part
    whose document ids match is read back instead of predicted. Returns the records and the prediction
    seconds of all parts (stored parts count the seconds they took when they ran).

    ``parts_dir`` must be unique to the models and settings behind the records (the caller keys it,
    e.g. by bundle fingerprint): a part records only which documents it holds.

    ``from_end``: work through the parts from the last one. A second process started this way on the
    same ``parts_dir`` fills the split from the other end and the two meet in the middle (each reads
    back what the other stored; at most the part both reach at once is predicted twice). The records
    come back in document order either way."""
    if part_documents < 1:
        raise ConfigError(f"part_documents must be >= 1, got {part_documents}")
    parts_dir.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(docs), part_documents))
    by_start: dict[int, list[ResultRecord]] = {}
    seconds = 0.0
    for start in reversed(starts) if from_end else starts:
        part = docs[start : start + part_documents]
        path = parts_dir / f"part-{start:07d}.json"
        ids = [d.id for d in part]
        stored = cached_row(path)
        if stored is not None and stored["document_ids"] == ids:
            part_records = [ResultRecord.from_dict(r) for r in stored["records"]]
            part_seconds = float(stored["seconds"])
        else:
            started = time.perf_counter()
            part_records = predict(pipe, part, schema, batch_documents)
            part_seconds = time.perf_counter() - started
            store_row(path, {"document_ids": ids, "seconds": part_seconds, "records": [r.to_dict() for r in part_records]})
        by_start[start] = part_records
        seconds += part_seconds
        if on_batch is not None:
            on_batch(sum(map(len, by_start.values())))
    return [r for start in starts for r in by_start[start]], seconds


def predicted_documents(docs: Sequence[Document], records: Sequence[ResultRecord],
                        select: Callable[[list[Entity]], list[Entity]] | None = None) -> list[Document]:
    """Each of ``docs`` as predicted (``ResultRecord.to_document``: its text, the record's entities,
    the model ids in metadata); ``select`` picks from each document's entities (e.g. ``Pipeline.selection``
    for the selector's cut of a ``select=False`` run)."""
    out = []
    for doc, record in zip(docs, records, strict=True):
        predicted = record.to_document(doc.text)
        if select is not None:
            predicted.entities = select(predicted.entities)
        out.append(predicted)
    return out


def predict_documents(pipe: Pipeline, docs: Sequence[Document], schema: EntitySchema | None = None,
                      batch_documents: int = 8, select: bool = False,
                      on_batch: Callable[[int], None] | None = None) -> list[Document]:
    """``docs`` as the pipeline tags them: ``predict`` then ``predicted_documents``."""
    return predicted_documents(docs, predict(pipe, docs, schema, batch_documents, select, on_batch))


def stderr_progress(label: str, total: int) -> Callable[[int], None]:
    """A one-line progress counter on stderr (stdout stays for data)."""
    def report(done: int) -> None:
        print(f"\r{label}: {done}/{total} documents", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return report



class PredictionCache:
    """Predicted documents per (corpus, condition) as JSONL in one directory, for one model and slice
    size (``key.json``; a directory made for another key is refused rather than mixed). Without a key
    it only reads an existing directory (comparing the predictions several runs kept)."""

    def __init__(self, root: Path, key: dict[str, Any] | None = None) -> None:
        self.root = root
        if key is None:
            if not root.is_dir():
                raise ConfigError(f"no predictions kept in {root}")
            return
        root.mkdir(parents=True, exist_ok=True)
        stored = root / "key.json"
        if stored.is_file() and json.loads(stored.read_text()) != key:
            raise ConfigError(f"{root} holds predictions of {stored.read_text().strip()}, not {key}: use another directory")
        stored.write_text(json.dumps(key) + "\n")

    def get(self, corpus: str, condition: str) -> list[Document] | None:
        path = self.root / f"{corpus}.{condition}.jsonl"
        if not path.is_file():
            return None
        return [Document.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]

    def put(self, corpus: str, condition: str, predicted: Sequence[Document]) -> None:
        path = self.root / f"{corpus}.{condition}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in predicted), encoding="utf-8")
        tmp.replace(path)   # whole files only: a kill mid-write leaves no half file


__all__ = ["PredictionCache", "predict", "predict_documents", "predicted_documents", "stderr_progress"]
