"""Sending what cannot be tagged to the dead stream, with its metrics and one log line.

Three cases: a rejected input (ingest: the payload as it was sent), a job that cannot finish (a
chunk failed LLMNER_MAX_DELIVERIES times, or reassembly failed: the stored document), and a job
whose state vanished before it had an outcome (state_lost). Every one is written at most once per
job (workers/jobs.py); logs name job ids and reason codes only, never note text (PHI).
"""

from __future__ import annotations

import logging

from workers import metrics
from workers.jobs import JobStore, job_of
from workers.payloads import Rejected, document_id_in, original_payload

log = logging.getLogger(__name__)


def reject_input(store: JobStore, rejected: Rejected, payload: bytes | str, encoding: str, job_id: str) -> None:
    """Dead-letter a malformed ingest input with its original payload."""
    original = original_payload(payload, encoding)
    if store.dead_letter(rejected.reason, original, stage="ingest", document_id=document_id_in(original, rejected.code),
                         job_id=job_id, code=rejected.code) is None:
        return  # a redelivered ingest message: this input was dead-lettered already
    metrics.DEAD_LETTERS.labels("ingest").inc()
    metrics.DOCUMENTS.labels("rejected").inc()
    log.warning("job %s rejected: %s", job_id, rejected.code)


def dead_job(store: JobStore, ref: str, reason: str, code: str = "chunk_failed") -> None:
    """Dead-letter the job of chunk ``ref`` (it cannot finish) with its document."""
    job_id = job_of(ref)
    document_json = store.document_json(job_id)
    if store.dead_job(job_id, reason, document_json, stage="infer", code=code) is not None:
        metrics.DEAD_LETTERS.labels("infer").inc()
        metrics.DOCUMENTS.labels("dead").inc()
        log.error("job %s sent to the dead stream: %s", job_id, code)
    elif document_json is None:
        job_gone(store, ref)


def job_gone(store: JobStore, ref: str) -> None:
    """No manifest: fine when the job has an outcome; otherwise its state was lost (dead letter)."""
    job_id = job_of(ref)
    if store.state_lost(job_id, stage="infer") is not None:
        metrics.DEAD_LETTERS.labels("infer").inc()
        metrics.DOCUMENTS.labels("dead").inc()
        log.error("job %s sent to the dead stream: state_lost", job_id)
