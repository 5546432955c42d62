"""Submit documents to the workers (it lives here, not in the library, so that ``llmner`` never
imports Celery).

    from workers.client import submit, submit_many
    job = submit({"id": "n1", "text": "Patient denies chest pain.", "language": "en"})
    jobs = submit_many(documents)           # batched: one ingest message per ``batch`` documents

A job id names one submission: results carry the document id; the dead stream carries both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from workers.payloads import REDACTED, DocumentLike, encode_item
from workers.tasks import ingest


def _send(items: list[list[str]]) -> str:
    # argsrepr keeps note text out of Celery's logs and monitoring events (PHI).
    result = ingest.apply_async(args=(items, time.time()), argsrepr=f"({len(items)} x {REDACTED})", kwargsrepr="{}")
    return result.id


def submit(doc: DocumentLike) -> str:
    """Queue one document; returns its job id."""
    return f"{_send([encode_item(doc)])}.0"


def submit_many(docs: Iterable[DocumentLike], batch: int = 32) -> list[str]:
    """Queue documents ``batch`` per ingest message (fewer messages, same result); returns job ids in order."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    jobs: list[str] = []
    pending: list[list[str]] = []
    for doc in docs:
        pending.append(encode_item(doc))
        if len(pending) == batch:
            task_id = _send(pending)
            jobs += [f"{task_id}.{i}" for i in range(len(pending))]
            pending = []
    if pending:
        task_id = _send(pending)
        jobs += [f"{task_id}.{i}" for i in range(len(pending))]
    return jobs

