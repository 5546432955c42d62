"""What an infer task message (a *tick*) does: take a micro-batch of queued chunks across
documents, tag it, store each chunk's entities, and publish the documents this completes.

A batch that raises is retried chunk by chunk, so that one bad chunk fails alone; a chunk that
fails LLMNER_MAX_DELIVERIES times (raised, or killed its worker while tagged alone) sends its
document to the dead stream. Taken chunks are never stranded: on an unexpected error they go
back to the retry list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmner.doc import Chunk
from workers import heartbeat, metrics
from workers.connections import REDIS_ERRORS
from workers.context import WorkerContext
from workers.dead_letters import dead_job, job_gone
from workers.jobs import parse_ref
from workers.publishing import assemble_and_publish
from workers.timeouts import TaskTimeLimit

if TYPE_CHECKING:
    from llmner.schema import EntitySchema

log = logging.getLogger(__name__)


def infer_tick(ctx: WorkerContext, task_id: str) -> dict[str, int]:
    """Take and tag one micro-batch; counts of chunks taken, documents published (and chunks requeued)."""
    store = ctx.store
    published = 0
    refs: list[str] = []
    leftover = store.inflight(task_id)
    if leftover:
        # A previous delivery of this message ended mid-batch. Its chunks are re-run one by one
        # (through the retry list) so that a chunk that crashed the worker only counts against itself.
        owner = store.owners().get(task_id, {}).get("worker", "")
        owner_dead = owner != heartbeat.worker_name() and not store.worker_alive(owner)
        n = store.reclaim(task_id, count=owner_dead)
        metrics.REDELIVERIES.inc(n)
        log.warning("infer task %s redelivered: re-running %d in-flight chunks one by one", task_id, n)
        ctx.send_infer_ticks(max(0, n - 1))
    try:
        refs = store.take_batch(task_id, ctx.settings.infer_batch_size, heartbeat.worker_name())
        if refs:
            published += run_batch(ctx, task_id, refs)
    except REDIS_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - never strand taken chunks: put them back for another try
        stranded = store.inflight(task_id)
        log.error("infer task %s failed (%s); %d chunks requeued", task_id, type(exc).__name__, len(stranded))
        store.retry_alone(stranded)
        store.clear_task(task_id)
        ctx.send_infer_ticks(len(stranded))
        return {"chunks": len(refs), "published": published, "requeued": len(stranded)}
    store.clear_task(task_id)
    jobs, retry = store.queued()
    if (jobs or retry) and store.infer_messages_waiting() == 0:
        ctx.send_infer_ticks(1)  # keep the work flowing even if ticks were lost (a killed worker, a Redis restart)
    return {"chunks": len(refs), "published": published}


def run_batch(ctx: WorkerContext, task_id: str, refs: Sequence[str], split: bool = True) -> int:
    """Tag the chunks ``refs`` (already in this task's in-flight list); return documents published.

    ``split``: when the batch raises, retry its chunks one by one (:func:`retry_chunk_by_chunk`)."""
    batch = live_chunks(ctx, task_id, refs)
    if not batch:
        return 0
    started = time.perf_counter()
    try:
        per_chunk = ctx.pipeline.infer_chunks([chunk for _, chunk, _ in batch], [schema for _, _, schema in batch])
        if len(per_chunk) != len(batch):
            raise RuntimeError(f"pipeline returned {len(per_chunk)} results for {len(batch)} chunks")
    except Exception as exc:  # noqa: BLE001 - find the failing chunk, keep the worker up
        return retry_chunk_by_chunk(ctx, task_id, [ref for ref, _, _ in batch], exc, split)
    seconds = time.perf_counter() - started
    metrics.STAGE_SECONDS.labels("infer").observe(seconds)
    metrics.BATCH_SIZE.observe(len(batch))
    per_chunk_ms = seconds * 1000 / len(batch)  # each chunk's share of the batch
    published = 0
    for (ref, _chunk, _schema), entities in zip(batch, per_chunk):
        status = ctx.store.store_chunk(ref, entities, per_chunk_ms, len(batch))
        if status >= 0:
            metrics.CHUNKS.inc()
        else:
            job_gone(ctx.store, ref)
        if status == 1:
            try:
                published += assemble_and_publish(ctx, parse_ref(ref)[0])
            except REDIS_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - a merge bug must not block the queue
                dead_job(ctx.store, ref, f"reassembly failed ({type(exc).__name__})", code="assemble_failed")
        ctx.store.done_with(task_id, ref)
    return published


def live_chunks(ctx: WorkerContext, task_id: str, refs: Sequence[str]) -> list[tuple[str, Chunk, EntitySchema]]:
    """(ref, chunk, schema) of the chunks still worth tagging: a chunk at its delivery limit sends its
    job to the dead stream, and a chunk whose job was published, dead-lettered or lost is dropped."""
    store, pipeline = ctx.store, ctx.pipeline
    live: list[str] = []
    for ref, n in zip(refs, store.get_attempts(refs)):
        if n >= ctx.settings.max_deliveries:
            dead_job(store, ref, f"chunk {parse_ref(ref)[1]} failed {n} times (it killed its worker or raised)")
            store.done_with(task_id, ref)
        else:
            live.append(ref)
    batch = []
    for ref, (chunk, schema_name) in zip(live, store.load_chunks(live)):
        if chunk is None:  # the job was published or dead-lettered meanwhile, or its state was lost
            job_gone(store, ref)
            store.done_with(task_id, ref)
        else:
            schema = pipeline.schema_named(schema_name) if schema_name else pipeline.default_schema(chunk.language)
            batch.append((ref, chunk, schema))
    return batch


def retry_chunk_by_chunk(ctx: WorkerContext, task_id: str, refs: Sequence[str], exc: Exception, split: bool) -> int:
    """After a batch raised ``exc``: tag its chunks again one by one (here, or through the retry list
    when the task's time is spent), or, for a chunk that failed alone, count the failure."""
    if len(refs) > 1 and isinstance(exc, TaskTimeLimit):
        # The task's time is spent: the chunks are retried alone by later tasks, uncounted
        # (which one hangs is unknown).
        log.warning("batch of %d chunks ran past the time limit; retrying them one by one", len(refs))
        ctx.store.retry_alone(refs)
        for ref in refs:
            ctx.store.done_with(task_id, ref)
        ctx.send_infer_ticks(len(refs))
        return 0
    if len(refs) > 1 and split:
        log.warning("batch of %d chunks failed (%s); retrying them one by one", len(refs), type(exc).__name__)
        return sum(run_batch(ctx, task_id, [ref], split=False) for ref in refs)
    count_failed_chunks(ctx, task_id, refs, type(exc).__name__)
    return 0


def count_failed_chunks(ctx: WorkerContext, task_id: str, refs: Sequence[str], why: str) -> None:
    """Count a failed delivery of each chunk; dead-letter its job at the limit, else retry it alone."""
    store, limit = ctx.store, ctx.settings.max_deliveries
    retry: list[str] = []
    for ref in refs:
        n = store.count_failure(ref)
        if n >= limit:
            dead_job(store, ref, f"chunk {parse_ref(ref)[1]} failed {n} times ({why})")
        else:
            log.warning("chunk %s failed (%s), attempt %d of %d; requeued", ref, why, n, limit)
            retry.append(ref)
        store.done_with(task_id, ref)
    store.retry_alone(retry)
    ctx.send_infer_ticks(len(retry))
