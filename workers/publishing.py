"""The last step of a job: merge its chunks' entities into one ResultRecord with
:meth:`llmner.pipeline.Pipeline.assemble`, add the stage timings, and publish it once."""

from __future__ import annotations

import logging
import time

from workers import metrics
from workers.context import WorkerContext
from workers.dead_letters import job_gone
from workers.jobs import StoredJob
from workers.models import model_version

log = logging.getLogger(__name__)


def assemble_and_publish(ctx: WorkerContext, job_id: str) -> int:
    """Merge a complete job's chunk results into one ResultRecord and publish it (once); 1 when this call published."""
    job = ctx.store.load_job(job_id)
    if job is None:
        job_gone(ctx.store, job_id)
        return 0
    started = time.perf_counter()
    record = ctx.pipeline.assemble(job.document, job.chunks, job.per_chunk)
    record.timings_ms.update(stage_timings_ms(job, assemble_ms=(time.perf_counter() - started) * 1000))
    entry = ctx.store.publish(job_id, job.document.id, model_version(ctx.pipeline), record.to_json())
    if entry is None:
        return 0
    metrics.STAGE_SECONDS.labels("assemble").observe(record.timings_ms["assemble"] / 1000)
    if job.submitted_at:
        metrics.STAGE_SECONDS.labels("end_to_end").observe(record.timings_ms["end_to_end"] / 1000)
    metrics.DOCUMENTS.labels("published").inc()
    return 1


def stage_timings_ms(job: StoredJob, assemble_ms: float) -> dict[str, float]:
    """The milliseconds of each stage of a job, as the result record reports them: ingest, inference
    (its chunks' shares of their micro-batches), assembly, and submission to now (end_to_end), with
    the largest micro-batch a chunk of it ran in."""
    return {
        "ingest": job.ingest_ms,
        "infer": job.infer_ms,
        "assemble": assemble_ms,
        "end_to_end": max(0.0, (time.time() - job.submitted_at) * 1000) if job.submitted_at else 0.0,
        "max_batch_size": float(job.max_batch_size),
    }
