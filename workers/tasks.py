"""The two tasks: ``llmner.ingest`` (validate, chunk, write the manifest, queue the chunks) and
``llmner.infer`` (take a micro-batch of chunks across documents, tag it, store each chunk's
entities, reassemble and publish finished documents).

Reliability (acks_late, prefetch 1): an infer task message is a *tick*; the chunks it takes are
recorded in ``<p>inflight:{task id}`` with their owner in the same atomic step that removes them
from the work queue. If the worker dies, the heartbeat sweeper (workers/heartbeat.py) moves them to
the retry list within seconds and puts the dead worker's unacknowledged message back on its queue;
chunks of the retry list are tagged one at a time, and a death while a chunk is tagged alone
counts against it, so a chunk that kills its worker only counts against itself and reaches the
dead stream after LLMNER_MAX_DELIVERIES such failures. Chunk results are idempotent and publication is once-only (see
workers/state.py), so a repeated chunk never duplicates a result.

On a Redis error a task is rejected *with requeue* and never retried through Celery: a retry must
publish a new message, which fails while Redis is down, and Celery then drops the original
(reject without requeue). Left unacknowledged, the message is delivered again; the sweeper
catches what remains.

Every input is validated: task arguments, each item, the note (size, chunk count, id, control
characters, visible text). Anything malformed goes to the dead stream with a reason.

PHI: note text never appears in logs or task events. Logs name job ids, counts and reason codes
only; argsrepr is forced to a placeholder by workers.broker.Consumer whatever the producer sent;
reasons with details go to the dead stream.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import re
import signal
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import redis
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from kombu.exceptions import OperationalError

from llmner.doc import LANGUAGES, Chunk, Document, Entity
from llmner.errors import ConfigError, ValidationError
from workers import heartbeat, metrics
from workers.celery import app, settings
from workers.models import get_pipeline, model_version, remove_ready_marker
from workers.state import JobStore, parse_ref

log = logging.getLogger("workers.tasks")

REDACTED = "<redacted: note payload>"

_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError)
_MAX_ITEMS = 1000  # items per ingest message (the client sends 32)


class Rejected(Exception):
    """A malformed input: ``code`` names the class, ``reason`` is one line for the dead stream."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason


class TaskTimeLimit(Exception):
    """The task ran past LLMNER_TASK_TIME_LIMIT."""


_stores: dict[Any, JobStore] = {}
_heartbeat: heartbeat.Heartbeat | None = None


def job_store() -> JobStore:
    s = settings()
    store = _stores.get(s)
    if store is None:
        store = _stores[s] = JobStore(s)
    return store


def reset_stores() -> None:
    _stores.clear()


@worker_process_init.connect
def _start_worker_process(**_: Any) -> None:
    # Models load once per worker process, before the first task, never per task.
    global _heartbeat
    s = settings()
    metrics.serve(s.metrics_port, s.metrics_addr)
    get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)
    if _heartbeat is None:
        _heartbeat = heartbeat.Heartbeat(s, job_store(), send_ticks=send_infer_ticks).start()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop_worker_process(**_: Any) -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
    remove_ready_marker(settings().ready_file)


@contextlib.contextmanager
def _running(store: JobStore, task_id: str) -> Iterator[None]:
    """Tell the sweeper which worker runs ``task_id`` (so it leaves its message and chunks alone)."""
    heartbeat.set_current_task(task_id)
    try:
        store.r.hset(store.settings.running_key(), task_id, heartbeat.worker_name())
        yield
    finally:
        heartbeat.set_current_task("")
        with contextlib.suppress(*_REDIS_ERRORS):
            store.r.hdel(store.settings.running_key(), task_id)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TaskTimeLimit in this task after ``seconds``. Celery's own limits need the prefork
    pool; the workers run the solo pool, whose tasks run in the main thread, where SIGALRM works.
    (Embedded worker threads get no limit; they serve `llmner run` on a private server.)"""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _expired(*_: object) -> None:
        raise TaskTimeLimit(f"task ran past its time limit ({seconds:.0f} s, LLMNER_TASK_TIME_LIMIT)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _redis_error(task_name: str, task_id: str, exc: BaseException) -> Reject:
    """Leave the message unacknowledged-then-requeued: it is delivered again once Redis is back."""
    log.warning("%s task %s: Redis error (%s); the message will be delivered again", task_name, task_id,
                type(exc).__name__)
    time.sleep(1.0)  # do not spin while Redis restarts
    return Reject(type(exc).__name__, requeue=True)


# -- validation ---------------------------------------------------------------------------------

# C0 controls except tab, newline and carriage return; DEL; C1 controls. Replaced by spaces, not
# removed, so that entity offsets still point into the note as it was sent.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_visible_text(text: str) -> bool:
    """Letters, digits, punctuation or symbols: not only spaces, controls or zero-width characters."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in text)


def check_id(doc_id: str, max_chars: int) -> None:
    if len(doc_id) > max_chars:
        raise Rejected("invalid_id", f"document id has {len(doc_id)} characters; the limit is {max_chars} "
                                     "(LLMNER_MAX_ID_CHARS)")
    bad = next((c for c in doc_id if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise Rejected("invalid_id", f"document id contains the control or format character U+{ord(bad):04X}")
    if not doc_id.strip():
        raise Rejected("invalid_id", "document id is blank")


def parse_document(payload: str, encoding: str, max_chars: int, pipe: Any, max_id_chars: int = 256) -> Document:
    """The document in a submitted payload, or Rejected naming the first problem."""
    if encoding == "base64":
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            raise Rejected("not_json", "payload is not valid base64 (inbox bridge bug)") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("not_utf8", f"payload is not UTF-8 (invalid byte at offset {exc.start})") from None
    elif encoding == "utf-8":
        text = payload
    else:
        raise Rejected("invalid_message", f"unknown payload encoding {encoding[:40]!r}")
    # A JSON-escaped note can be longer than its text; this bound only stops absurd payloads early.
    if len(text) > 6 * max_chars + 65536:
        raise Rejected("too_large", f"payload of {len(text)} characters exceeds the limit ({max_chars} characters of text)")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"payload is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise Rejected("not_json", f"payload must be a JSON object, got {type(data).__name__}")
    for name in ("id", "text"):
        if name not in data:
            raise Rejected("missing_field", f"document: missing field '{name}'")
    language = data.get("language", "en")
    if language not in LANGUAGES:
        raise Rejected("unknown_language", f"unknown language {str(language)[:40]!r} (expected one of {', '.join(LANGUAGES)})")
    data = {k: v for k, v in data.items() if k != "entities"}  # gold entities are not needed to tag
    if isinstance(data.get("id"), str):
        check_id(data["id"], max_id_chars)
    if isinstance(data.get("text"), str):
        data["text"] = _CONTROL.sub(" ", data["text"])
    try:
        doc = Document.from_dict(data)
    except ValidationError as exc:
        raise Rejected("invalid_document", str(exc)) from None
    check_id(doc.id, max_id_chars)
    if len(doc.text) > max_chars:
        raise Rejected("too_large", f"document text has {len(doc.text)} characters; the limit is {max_chars} (LLMNER_MAX_DOC_CHARS)")
    if not doc.text.strip():
        raise Rejected("empty_text", "document text is empty")
    if not has_visible_text(doc.text):
        raise Rejected("empty_text", "document text has no visible characters (only spaces, controls or "
                                     "zero-width characters)")
    schema = doc.metadata.get("schema")
    if schema is not None:
        # Built-in names only: a payload must not make the worker read files by path.
        from llmner.schema import builtin_schema_names

        known = builtin_schema_names()
        if not isinstance(schema, str) or schema not in known:
            raise Rejected("unknown_schema", f"unknown schema {str(schema)[:80]!r} (built-in schemas: {', '.join(known)})")
    try:
        pipe.schema_for(doc)
    except (ValidationError, ConfigError) as exc:
        raise Rejected("unknown_schema", str(exc)) from None
    return doc


def parse_ingest_args(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any], float | None]:
    """``(items, submitted_at)`` of an ingest message, or Rejected (the whole message is malformed)."""
    kwargs = dict(kwargs)
    submitted_at = kwargs.pop("submitted_at", None)
    items = kwargs.pop("items", None)
    rest = list(args)
    if items is None and rest:
        items = rest.pop(0)
    if rest and submitted_at is None:
        submitted_at = rest.pop(0)
    if rest or kwargs:
        raise Rejected("invalid_message", f"ingest takes (items, submitted_at); got {len(args)} arguments "
                                          f"and keywords {sorted(map(str, kwargs))[:5]}")
    if not isinstance(items, list) or not items:
        raise Rejected("invalid_message", f"ingest items must be a non-empty list, got {type(items).__name__}")
    if len(items) > _MAX_ITEMS:
        raise Rejected("invalid_message", f"ingest message has {len(items)} items; the limit is {_MAX_ITEMS}")
    if submitted_at is not None and (isinstance(submitted_at, bool) or not isinstance(submitted_at, (int, float))
                                     or not math.isfinite(submitted_at)):
        raise Rejected("invalid_message", "ingest submitted_at must be a number (Unix time)")
    return items, submitted_at


def parse_item(item: Any) -> tuple[str, str]:
    """``[payload, encoding]`` (encoding utf-8 or base64), or Rejected."""
    if not isinstance(item, list) or not 1 <= len(item) <= 2 or not all(isinstance(x, str) for x in item):
        raise Rejected("invalid_message", "an ingest item must be [payload, encoding] with two strings, "
                                          f"got {type(item).__name__}")
    payload, encoding = (item[0], item[1]) if len(item) == 2 else (item[0], "utf-8")
    if encoding not in ("utf-8", "base64"):
        raise Rejected("invalid_message", f"unknown payload encoding {encoding[:40]!r}")
    return payload, encoding


# -- ingest -------------------------------------------------------------------------------------

@app.task(name="llmner.ingest", bind=True, typing=False)
def ingest(self, *args: Any, **kwargs: Any) -> dict[str, int]:
    """Validate and chunk each ``[payload, encoding]`` item; job ``i`` of this task is ``{task id}.{i}``.

    Arguments: ``(items, submitted_at=None)``; anything else is dead-lettered (typing=False: Celery
    would otherwise fail the task on a wrong signature, and the message would vanish).
    """
    s = settings()
    store = job_store()
    task_id = self.request.id
    try:
        with _running(store, task_id), time_limit(s.effective_time_limit):
            return _ingest(store, task_id, args, kwargs)
    except _REDIS_ERRORS as exc:
        with contextlib.suppress(*_REDIS_ERRORS):
            store.uncount_delivery(task_id)
        raise _redis_error("ingest", task_id, exc) from None


def _ingest(store: JobStore, task_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, int]:
    s = store.settings
    try:
        items, submitted_at = parse_ingest_args(args, kwargs)
    except Rejected as rej:
        _reject(store, rej, orjson.dumps({"args": args, "kwargs": kwargs}, default=str), "utf-8", f"{task_id}.msg")
        store.clear_task(task_id)
        return {"jobs": 0, "chunks": 0, "rejected": 1}
    submitted_at = submitted_at or time.time()
    deliveries = store.count_delivery(task_id)
    if deliveries > s.max_deliveries:
        # This message killed its worker every time: give up on the items that never became jobs.
        for i, item in enumerate(items):
            job_id = f"{task_id}.{i}"
            if not store.r.exists(s.seen_key(job_id)):
                _reject(store, Rejected("delivery_limit", f"ingest delivered {deliveries - 1} times without finishing"),
                        orjson.dumps(item), "utf-8", job_id)
        store.clear_task(task_id)
        return {"jobs": 0, "chunks": 0, "rejected": len(items)}
    pipe = get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)
    queued_chunks = jobs = rejected = 0
    for i, item in enumerate(items):
        job_id = f"{task_id}.{i}"
        started = time.perf_counter()
        payload, encoding = "", "utf-8"
        try:
            payload, encoding = parse_item(item)
            doc = parse_document(payload, encoding, s.max_doc_chars, pipe, s.max_id_chars)
            chunks = list(pipe.chunk(doc))
            if not chunks:
                raise Rejected("empty_text", "no text to tag after chunking")
            if len(chunks) > s.max_doc_chunks:
                raise Rejected("too_many_chunks", f"document makes {len(chunks)} chunks; the limit is "
                                                  f"{s.max_doc_chunks} (LLMNER_MAX_DOC_CHUNKS)")
        except Rejected as rej:
            _reject(store, rej, payload if payload else orjson.dumps(item, default=str), encoding, job_id)
            rejected += 1
            continue
        except _REDIS_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others (time limit too)
            code = "time_limit" if isinstance(exc, TaskTimeLimit) else "ingest_failed"
            _reject(store, Rejected(code, f"chunking failed: {type(exc).__name__}"), payload, encoding, job_id)
            log.warning("ingest of job %s failed: %s", job_id, type(exc).__name__)
            rejected += 1
            if isinstance(exc, TaskTimeLimit):
                for j in range(i + 1, len(items)):  # the budget is spent: the rest are dead-lettered too
                    _reject(store, Rejected("time_limit", "ingest message ran past its time limit"),
                            orjson.dumps(items[j], default=str), "utf-8", f"{task_id}.{j}")
                    rejected += 1
                break
            continue
        ingest_ms = (time.perf_counter() - started) * 1000
        fields: dict[str, Any] = {
            "n": str(len(chunks)),
            "doc": orjson.dumps({"id": doc.id, "text": doc.text, "language": doc.language, "metadata": doc.metadata}),
            "submitted_at": repr(submitted_at),
            "ingest_ms": f"{ingest_ms:.3f}",
            "schema": str(doc.metadata.get("schema") or ""),
        }
        for index, chunk in enumerate(chunks):
            fields[f"c{index}"] = orjson.dumps(chunk.to_dict())
        store.create_job(job_id, fields, len(chunks))  # False after a redelivery: already queued
        metrics.STAGE_SECONDS.labels("ingest").observe(ingest_ms / 1000)
        queued_chunks += len(chunks)
        jobs += 1
    send_infer_ticks(math.ceil(queued_chunks / s.infer_batch_size))
    store.clear_task(task_id)
    log.info("ingest task %s: %d jobs, %d chunks queued, %d rejected", task_id, jobs, queued_chunks, rejected)
    return {"jobs": jobs, "chunks": queued_chunks, "rejected": rejected}


def _reject(store: JobStore, rej: Rejected, payload: bytes | str, encoding: str, job_id: str) -> None:
    original: bytes | str = payload
    if encoding == "base64" and isinstance(payload, str):
        try:
            original = base64.b64decode(payload)
        except ValueError:
            original = payload
    document_id = ""
    if rej.code not in ("not_utf8", "not_json", "invalid_message", "too_large"):
        try:
            document_id = str(orjson.loads(original).get("id", ""))
        except Exception:  # noqa: BLE001
            document_id = ""
    if store.dead_letter(rej.reason, original, stage="ingest", document_id=document_id, job_id=job_id,
                         code=rej.code) is None:
        return  # a redelivered ingest message: this input was dead-lettered already
    metrics.DEAD_LETTERS.labels("ingest").inc()
    metrics.DOCUMENTS.labels("rejected").inc()
    log.warning("job %s rejected: %s", job_id, rej.code)


def send_infer_ticks(count: int) -> None:
    """Ask for ``count`` infer runs; each takes up to LLMNER_INFER_BATCH_SIZE queued chunks."""
    queue = settings().infer_queue
    for _ in range(count):
        infer.apply_async(queue=queue)


# -- infer --------------------------------------------------------------------------------------

@app.task(name="llmner.infer", bind=True, typing=False)
def infer(self, *args: Any, **kwargs: Any) -> dict[str, int]:
    """Take a micro-batch of queued chunks (across documents), tag it, publish finished documents."""
    s = settings()
    store = job_store()
    task_id = self.request.id
    try:
        if args or kwargs:
            _reject(store, Rejected("invalid_message", "infer takes no arguments"),
                    orjson.dumps({"args": args, "kwargs": kwargs}, default=str), "utf-8", f"{task_id}.msg")
            return {"chunks": 0, "published": 0}
        with _running(store, task_id), time_limit(s.effective_time_limit):
            return _infer(store, task_id)
    except _REDIS_ERRORS as exc:
        raise _redis_error("infer", task_id, exc) from None


def _infer(store: JobStore, task_id: str) -> dict[str, int]:
    s = store.settings
    pipe = get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)
    published = 0
    refs: list[str] = []
    leftover = store.inflight(task_id)
    if leftover:
        # A previous delivery of this message ended mid-batch. Its chunks are re-run one by one
        # (through the retry list) so that a chunk that crashed the worker only counts against itself.
        owner = store.owners().get(task_id, {}).get("worker", "")
        owner_dead = owner != heartbeat.worker_name() and not (owner and store.r.exists(s.heartbeat_key(owner)))
        n = store.reclaim(task_id, count=owner_dead)
        metrics.REDELIVERIES.inc(n)
        log.warning("infer task %s redelivered: re-running %d in-flight chunks one by one", task_id, n)
        send_infer_ticks(max(0, n - 1))
    try:
        refs = store.take_batch(task_id, s.infer_batch_size, heartbeat.worker_name())
        if refs:
            published += run_batch(pipe, store, task_id, refs)
    except _REDIS_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - never strand taken chunks: put them back for another try
        stranded = store.inflight(task_id)
        log.error("infer task %s failed (%s); %d chunks requeued", task_id, type(exc).__name__, len(stranded))
        store.retry_alone(stranded)
        store.clear_task(task_id)
        send_infer_ticks(len(stranded))
        return {"chunks": len(refs), "published": published, "requeued": len(stranded)}
    store.clear_task(task_id)
    jobs, retry = store.queued()
    if (jobs or retry) and store.r.llen(s.infer_queue) == 0:
        send_infer_ticks(1)  # keep the work flowing even if ticks were lost (a killed worker, a Redis restart)
    return {"chunks": len(refs), "published": published}


def _fail_chunks(store: JobStore, task_id: str, refs: Sequence[str], why: str) -> None:
    """Count a failed delivery of each chunk; dead-letter its job at the limit, else retry it alone."""
    s = store.settings
    retry: list[str] = []
    for ref in refs:
        n = store.count_failure(ref)
        if n >= s.max_deliveries:
            _dead_job(store, ref, f"chunk {parse_ref(ref)[1]} failed {n} times ({why})")
        else:
            log.warning("chunk %s failed (%s), attempt %d of %d; requeued", ref, why, n, s.max_deliveries)
            retry.append(ref)
        store.done_with(task_id, ref)
    store.retry_alone(retry)
    send_infer_ticks(len(retry))


def run_batch(pipe: Any, store: JobStore, task_id: str, refs: Sequence[str], split: bool = True) -> int:
    """Tag the chunks ``refs`` (already in this task's in-flight list); return documents published."""
    s = store.settings
    live: list[str] = []
    for ref, n in zip(refs, store.get_attempts(refs)):
        if n >= s.max_deliveries:
            _dead_job(store, ref, f"chunk {parse_ref(ref)[1]} failed {n} times (it killed its worker or raised)")
            store.done_with(task_id, ref)
        else:
            live.append(ref)
    pairs: list[tuple[str, Chunk]] = []
    schemas = []
    for ref, (data, schema_name) in zip(live, store.load_chunks(live)):
        if data is None:  # the job was published or dead-lettered meanwhile, or its state was lost
            _job_gone(store, ref)
            store.done_with(task_id, ref)
        else:
            chunk = Chunk.from_dict(data)
            pairs.append((ref, chunk))
            schemas.append(pipe.schema_named(schema_name) if schema_name else pipe.default_schema(chunk.language))
    if not pairs:
        return 0
    started = time.perf_counter()
    try:
        per_chunk = pipe.infer_chunks([chunk for _, chunk in pairs], schemas)
        if len(per_chunk) != len(pairs):
            raise RuntimeError(f"pipeline returned {len(per_chunk)} results for {len(pairs)} chunks")
    except Exception as exc:  # noqa: BLE001 - find the failing chunk, keep the worker up
        refs_taken = [ref for ref, _ in pairs]
        if len(pairs) > 1 and isinstance(exc, TaskTimeLimit):
            # The task's time is spent: the chunks are retried alone by later tasks, uncounted
            # (which one hangs is unknown).
            log.warning("batch of %d chunks ran past the time limit; retrying them one by one", len(pairs))
            store.retry_alone(refs_taken)
            for ref in refs_taken:
                store.done_with(task_id, ref)
            send_infer_ticks(len(refs_taken))
            return 0
        if len(pairs) > 1 and split:
            log.warning("batch of %d chunks failed (%s); retrying them one by one", len(pairs), type(exc).__name__)
            return sum(run_batch(pipe, store, task_id, [ref], split=False) for ref, _ in pairs)
        _fail_chunks(store, task_id, refs_taken, type(exc).__name__)
        return 0
    seconds = time.perf_counter() - started
    metrics.STAGE_SECONDS.labels("infer").observe(seconds)
    metrics.BATCH_SIZE.observe(len(pairs))
    per_chunk_ms = seconds * 1000 / len(pairs)
    published = 0
    for (ref, _chunk), entities in zip(pairs, per_chunk):
        result = {"e": [e.to_dict() for e in entities], "ms": per_chunk_ms, "bs": len(pairs)}
        status = store.store_chunk(ref, result)
        if status >= 0:
            metrics.CHUNKS.inc()
        else:
            _job_gone(store, ref)
        if status == 1:
            try:
                published += assemble_and_publish(pipe, store, parse_ref(ref)[0])
            except _REDIS_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - a merge bug must not block the queue
                _dead_job(store, ref, f"reassembly failed ({type(exc).__name__})", code="assemble_failed")
        store.done_with(task_id, ref)
    return published


def _job_gone(store: JobStore, ref: str) -> None:
    """No manifest: fine when the job has an outcome; otherwise its state was lost (dead letter)."""
    job_id = parse_ref(ref)[0] if "|" in ref else ref
    if store.state_lost(job_id, stage="infer") is not None:
        metrics.DEAD_LETTERS.labels("infer").inc()
        metrics.DOCUMENTS.labels("dead").inc()
        log.error("job %s sent to the dead stream: state_lost", job_id)


def _dead_job(store: JobStore, ref: str, reason: str, code: str = "chunk_failed") -> None:
    job_id, _ = parse_ref(ref)
    raw = store.r.hget(store.settings.manifest_key(job_id), "doc")
    if store.dead_job(job_id, reason, raw.decode() if raw else "", stage="infer", code=code) is not None:
        metrics.DEAD_LETTERS.labels("infer").inc()
        metrics.DOCUMENTS.labels("dead").inc()
        log.error("job %s sent to the dead stream: %s", job_id, code)
    elif raw is None:
        _job_gone(store, ref)


def assemble_and_publish(pipe: Any, store: JobStore, job_id: str) -> int:
    """Merge a complete job's chunk results into one ResultRecord and publish it (once)."""
    loaded = store.load_job(job_id)
    if loaded is None:
        _job_gone(store, job_id)
        return 0
    manifest, results = loaded
    started = time.perf_counter()
    n = int(manifest[b"n"])
    doc = Document.from_dict(orjson.loads(manifest[b"doc"]))
    chunks = [Chunk.from_dict(orjson.loads(manifest[f"c{i}".encode()])) for i in range(n)]
    per_chunk = [[Entity.from_dict(e) for e in results[i]["e"]] for i in range(n)]
    record = pipe.assemble(doc, chunks, per_chunk)
    record.chunk_count = n
    if not record.model_ids:
        record.model_ids = dict(pipe.model_ids)
    submitted_at = float(manifest.get(b"submitted_at", b"0") or 0)
    record.timings_ms.update({
        "ingest": float(manifest.get(b"ingest_ms", b"0")),
        "infer": sum(float(results[i]["ms"]) for i in range(n)),
        "assemble": (time.perf_counter() - started) * 1000,
        "end_to_end": max(0.0, (time.time() - submitted_at) * 1000) if submitted_at else 0.0,
        "max_batch_size": float(max(int(results[i].get("bs", 1)) for i in range(n))),
    })
    entry = store.publish(job_id, doc.id, model_version(pipe), record.to_json())
    if entry is None:
        return 0
    metrics.STAGE_SECONDS.labels("assemble").observe(record.timings_ms["assemble"] / 1000)
    if submitted_at:
        metrics.STAGE_SECONDS.labels("end_to_end").observe(record.timings_ms["end_to_end"] / 1000)
    metrics.DOCUMENTS.labels("published").inc()
    return 1
