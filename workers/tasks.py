"""The two Celery tasks and the worker process around them.

``llmner.ingest`` validates and chunks notes (workers/ingestion.py); ``llmner.infer`` tags a
micro-batch of chunks across documents and publishes the documents it completes
(workers/inference.py). Both run with the :class:`workers.context.WorkerContext` that this process
builds once, when it starts: settings, job store, models, heartbeat.

Reliability (acks_late, prefetch 1): an infer task message is a *tick*; the chunks it takes are
recorded in the task's in-flight list with their owner in the same atomic step that removes them
from the work queue. If the worker dies, the heartbeat sweeper (workers/heartbeat.py) moves them to
the retry list within seconds and puts the dead worker's unacknowledged message back on its queue;
chunks of the retry list are tagged one at a time, and a death while a chunk is tagged alone
counts against it, so a chunk that kills its worker only counts against itself and reaches the
dead stream after LLMNER_MAX_DELIVERIES such failures. Chunk results are idempotent and
publication is once-only (workers/jobs.py), so a repeated chunk never duplicates a result.

On a Redis error a task is rejected *with requeue* and never retried through Celery: a retry must
publish a new message, which fails while Redis is down, and Celery then drops the original
(reject without requeue). Left unacknowledged, the message is delivered again; the sweeper
catches what remains.

PHI: note text never appears in logs or task events. Logs name job ids, counts and reason codes
only; argsrepr is forced to a placeholder by workers.broker.Consumer whatever the producer sent;
reasons with details go to the dead stream.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from workers import heartbeat, metrics
from workers.celery import WorkerApp, app
from workers.connections import REDIS_ERRORS
from workers.context import WorkerContext
from workers.dead_letters import reject_input
from workers.inference import infer_tick
from workers.ingestion import ingest_message
from workers.jobs import JobStore
from workers.models import load_pipeline, remove_ready_marker, write_ready_marker
from workers.payloads import Rejected, message_payload
from workers.settings import Settings
from workers.timeouts import time_limit

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

log = logging.getLogger(__name__)

_building = threading.Lock()


# -- the worker process -------------------------------------------------------------------------

def build_context(settings: Settings, pipeline: Pipeline) -> WorkerContext:
    """The context of a worker process that tags with ``pipeline`` under ``settings``."""
    def send_infer_ticks(count: int) -> None:
        for _ in range(count):
            infer.apply_async(queue=settings.infer_queue)

    return WorkerContext(settings, JobStore(settings), pipeline, send_infer_ticks)


def worker_context(worker_app: WorkerApp) -> WorkerContext:
    """The app's worker context; built here (models loaded, ready marker written) when the process
    started without one: a deployed worker, or a pool that sends no worker_process_init."""
    with _building:
        if worker_app.context is None:
            s = worker_app.settings
            worker_app.context = build_context(s, load_pipeline(s.bundle, s.pipeline_factory))
            write_ready_marker(s.ready_file)
        return worker_app.context


@worker_process_init.connect
def _start_worker_process(**_: Any) -> None:
    # Models load once per worker process, before the first task, never per task.
    ctx = worker_context(app)
    metrics.serve(ctx.settings.metrics_port, ctx.store, ctx.settings.metrics_addr)
    if ctx.heartbeat is None:
        ctx.heartbeat = heartbeat.Heartbeat(ctx.settings, ctx.store, send_ticks=ctx.send_infer_ticks).start()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop_worker_process(**_: Any) -> None:
    ctx = app.context
    if ctx is not None and ctx.heartbeat is not None:
        ctx.heartbeat.stop()
        ctx.heartbeat = None
    remove_ready_marker(app.settings.ready_file)


@contextlib.contextmanager
def _running(store: JobStore, task_id: str) -> Iterator[None]:
    """Tell the sweeper which worker runs ``task_id`` (so it leaves its message and chunks alone)."""
    heartbeat.set_current_task(task_id)
    try:
        store.mark_running(task_id, heartbeat.worker_name())
        yield
    finally:
        heartbeat.set_current_task("")
        with contextlib.suppress(*REDIS_ERRORS):
            store.unmark_running(task_id)


def _redis_error(task_name: str, task_id: str, exc: BaseException) -> Reject:
    """Leave the message unacknowledged-then-requeued: it is delivered again once Redis is back."""
    log.warning("%s task %s: Redis error (%s); the message will be delivered again", task_name, task_id,
                type(exc).__name__)
    time.sleep(1.0)  # do not spin while Redis restarts
    return Reject(type(exc).__name__, requeue=True)


# -- the tasks ----------------------------------------------------------------------------------

@app.task(name="llmner.ingest", bind=True, typing=False)
def ingest(self: Task, *args: Any, **kwargs: Any) -> dict[str, int]:
    """Validate and chunk each ``[payload, encoding]`` item; job ``i`` of this task is ``{task id}.{i}``.

    Arguments: ``(items, submitted_at=None)``; anything else is dead-lettered (typing=False: Celery
    would otherwise fail the task on a wrong signature, and the message would vanish).
    """
    # ``app``, not ``self.app``: in an embedded worker thread Celery resolves a task's app through
    # that thread's current app, a default one.
    ctx = worker_context(app)
    task_id = self.request.id
    try:
        with _running(ctx.store, task_id), time_limit(ctx.settings.effective_time_limit):
            return ingest_message(ctx, task_id, args, kwargs)
    except REDIS_ERRORS as exc:
        with contextlib.suppress(*REDIS_ERRORS):
            ctx.store.uncount_delivery(task_id)
        raise _redis_error("ingest", task_id, exc) from None


@app.task(name="llmner.infer", bind=True, typing=False)
def infer(self: Task, *args: Any, **kwargs: Any) -> dict[str, int]:
    """Take a micro-batch of queued chunks (across documents), tag it, publish finished documents."""
    ctx = worker_context(app)
    task_id = self.request.id
    try:
        if args or kwargs:
            reject_input(ctx.store, Rejected("invalid_message", "infer takes no arguments"),
                         message_payload(args, kwargs), "utf-8", f"{task_id}.msg")
            return {"chunks": 0, "published": 0}
        with _running(ctx.store, task_id), time_limit(ctx.settings.effective_time_limit):
            return infer_tick(ctx, task_id)
    except REDIS_ERRORS as exc:
        raise _redis_error("infer", task_id, exc) from None
