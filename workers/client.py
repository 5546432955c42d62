"""Submit documents to the workers (the issue's ``llmner.client``; it lives here so that the library
never imports Celery).

    from workers.client import submit, submit_many
    job = submit({"id": "n1", "text": "Patient denies chest pain.", "language": "en"})
    jobs = submit_many(documents)           # batched: one ingest message per ``batch`` documents

A job id names one submission: results carry the document id; the dead stream carries both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from llmner.doc import Document
from workers.state import encode_payload
from workers.tasks import REDACTED, ingest

DocumentLike = Document | Mapping[str, Any] | str | bytes


def _payload(doc: DocumentLike) -> list[str]:
    """``[payload, encoding]``: validation happens in the worker, so malformed input reaches the dead stream."""
    if isinstance(doc, Document):
        raw: bytes | str = orjson.dumps({"id": doc.id, "text": doc.text, "language": doc.language,
                                         **({"metadata": doc.metadata} if doc.metadata else {})})
    elif isinstance(doc, Mapping):
        raw = orjson.dumps(dict(doc))
    elif isinstance(doc, (str, bytes)):
        raw = doc
    else:
        raise TypeError(f"submit expects a Document, a mapping or a JSON string, got {type(doc).__name__}")
    text, encoding = encode_payload(raw)
    return [text, encoding]


def _send(items: list[list[str]]) -> str:
    # argsrepr keeps note text out of Celery's logs and monitoring events (PHI).
    result = ingest.apply_async(args=(items, time.time()), argsrepr=f"({len(items)} x {REDACTED})", kwargsrepr="{}")
    return result.id


def submit(doc: DocumentLike) -> str:
    """Queue one document; returns its job id."""
    return f"{_send([_payload(doc)])}.0"


def submit_many(docs: Iterable[DocumentLike], batch: int = 32) -> list[str]:
    """Queue documents ``batch`` per ingest message (fewer messages, same result); returns job ids in order."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    jobs: list[str] = []
    pending: list[list[str]] = []
    for doc in docs:
        pending.append(_payload(doc))
        if len(pending) == batch:
            task_id = _send(pending)
            jobs += [f"{task_id}.{i}" for i in range(len(pending))]
            pending = []
    if pending:
        task_id = _send(pending)
        jobs += [f"{task_id}.{i}" for i in range(len(pending))]
    return jobs

