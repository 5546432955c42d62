"""What an ingest message does: validate and chunk each note, write its job and queue its chunks.

Job ``i`` of an ingest task is ``{task id}.{i}``, so a redelivered message makes the same jobs
(workers/jobs.py creates each once). Anything malformed goes to the dead stream with a reason; a
message that killed its worker LLMNER_MAX_DELIVERIES times is given up.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from workers import metrics
from workers.connections import REDIS_ERRORS
from workers.context import WorkerContext
from workers.dead_letters import reject_input
from workers.payloads import (
    Rejected,
    message_payload,
    parse_document,
    parse_ingest_args,
    parse_item,
)
from workers.timeouts import TaskTimeLimit

log = logging.getLogger(__name__)

def ingest_message(ctx: WorkerContext, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, int]:
    """Validate, chunk and queue the items of one ingest message; counts of jobs, chunks and rejected items."""
    s, store = ctx.settings, ctx.store
    try:
        items, submitted_at = parse_ingest_args(args, kwargs)
    except Rejected as rej:
        reject_input(store, rej, message_payload(args, kwargs), "utf-8", f"{task_id}.msg")
        store.clear_task(task_id)
        return {"jobs": 0, "chunks": 0, "rejected": 1}
    submitted_at = submitted_at or time.time()
    deliveries = store.count_delivery(task_id)
    if deliveries > s.max_deliveries:
        # This message killed its worker every time: give up on the items that never became jobs.
        for i, item in enumerate(items):
            job_id = f"{task_id}.{i}"
            if not store.job_created(job_id):
                reject_input(store, Rejected("delivery_limit", f"ingest delivered {deliveries - 1} times without finishing"),
                             orjson.dumps(item), "utf-8", job_id)
        store.clear_task(task_id)
        return {"jobs": 0, "chunks": 0, "rejected": len(items)}
    queued_chunks = jobs = rejected = 0
    for i, item in enumerate(items):
        job_id = f"{task_id}.{i}"
        started = time.perf_counter()
        payload, encoding = "", "utf-8"
        try:
            payload, encoding = parse_item(item)
            doc = parse_document(payload, encoding, ctx.pipeline, s.max_doc_chars, s.max_id_chars)
            chunks = list(ctx.pipeline.chunk(doc))
            if not chunks:
                raise Rejected("empty_text", "no text to tag after chunking")
            if len(chunks) > s.max_doc_chunks:
                raise Rejected("too_many_chunks", f"document makes {len(chunks)} chunks; the limit is "
                                                  f"{s.max_doc_chunks} (LLMNER_MAX_DOC_CHUNKS)")
        except Rejected as rej:
            reject_input(store, rej, payload if payload else orjson.dumps(item, default=str), encoding, job_id)
            rejected += 1
            continue
        except REDIS_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others (time limit too)
            code = "time_limit" if isinstance(exc, TaskTimeLimit) else "ingest_failed"
            reject_input(store, Rejected(code, f"chunking failed: {type(exc).__name__}"), payload, encoding, job_id)
            log.warning("ingest of job %s failed: %s", job_id, type(exc).__name__)
            rejected += 1
            if isinstance(exc, TaskTimeLimit):
                for j in range(i + 1, len(items)):  # the budget is spent: the rest are dead-lettered too
                    reject_input(store, Rejected("time_limit", "ingest message ran past its time limit"),
                                 orjson.dumps(items[j], default=str), "utf-8", f"{task_id}.{j}")
                    rejected += 1
                break
            continue
        ingest_ms = (time.perf_counter() - started) * 1000
        store.create_job(job_id, doc, chunks, submitted_at, ingest_ms)  # False after a redelivery: already queued
        metrics.STAGE_SECONDS.labels("ingest").observe(ingest_ms / 1000)
        queued_chunks += len(chunks)
        jobs += 1
    ctx.send_infer_ticks(math.ceil(queued_chunks / s.infer_batch_size))
    store.clear_task(task_id)
    log.info("ingest task %s: %d jobs, %d chunks queued, %d rejected", task_id, jobs, queued_chunks, rejected)
    return {"jobs": jobs, "chunks": queued_chunks, "rejected": rejected}
