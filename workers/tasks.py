"""The two tasks: ``llmner.ingest`` (validate, chunk, write the manifest, queue the chunks) and
``llmner.infer`` (take a micro-batch of chunks across documents, tag it, store each chunk's
entities, reassemble and publish finished documents).

Reliability (acks_late, prefetch 1): an infer task message is a *tick*; the chunks it takes are
recorded in ``<p>inflight:{task id}`` in the same atomic step that removes them from the work list.
If the worker dies, Redis redelivers the message after the visibility timeout with the same task
id, and the new delivery re-runs exactly the chunks left in flight, one by one, counting each
chunk's deliveries so a chunk that kills its worker cannot loop forever (LLMNER_MAX_DELIVERIES,
then its document goes to the dead stream). Chunk results are idempotent and publication is
once-only (see workers/state.py), so a redelivery never duplicates a result.

PHI: note text never appears in logs. Logs name job ids, counts and reason codes only; task
arguments are sent with a redacted ``argsrepr``; reasons with details go to the dead stream.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from llmner.data_processing.chunking import Chunk
from llmner.doc import LANGUAGES, Document, Entity
from llmner.errors import ConfigError, ValidationError
from workers import metrics
from workers.celery import app, settings
from workers.models import get_pipeline, model_version, remove_ready_marker
from workers.state import JobStore, parse_ref

log = logging.getLogger("workers.tasks")

REDACTED = "<redacted: note payload>"


_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Rejected(Exception):
    """A malformed input: ``code`` names the class, ``reason`` is one line for the dead stream."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason


_stores: dict[Any, JobStore] = {}


def job_store() -> JobStore:
    s = settings()
    store = _stores.get(s)
    if store is None:
        store = _stores[s] = JobStore(s)
    return store


def reset_stores() -> None:
    _stores.clear()


@worker_process_init.connect
def _load_models_at_start(**_: Any) -> None:
    # Models load once per worker process, before the first task, never per task.
    s = settings()
    metrics.serve(s.metrics_port)
    get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _clear_ready_marker(**_: Any) -> None:
    remove_ready_marker(settings().ready_file)


# -- validation ---------------------------------------------------------------------------------

def parse_document(payload: str, encoding: str, max_chars: int, pipe: Any) -> Document:
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
        raise Rejected("not_json", f"unknown payload encoding {encoding!r}")
    # A JSON-escaped note can be longer than its text; this bound only stops absurd payloads early.
    if len(text) > 6 * max_chars + 65536:
        raise Rejected("too_large", f"payload of {len(text)} characters exceeds the limit ({max_chars} characters of text)")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected("not_json", f"payload must be a JSON object, got {type(data).__name__}")
    for name in ("id", "text"):
        if name not in data:
            raise Rejected("missing_field", f"document: missing field '{name}'")
    language = data.get("language", "en")
    if language not in LANGUAGES:
        raise Rejected("unknown_language", f"unknown language {language!r} (expected one of {', '.join(LANGUAGES)})")
    data = {k: v for k, v in data.items() if k != "entities"}  # gold entities are not needed to tag
    try:
        doc = Document.from_dict(data)
    except ValidationError as exc:
        raise Rejected("invalid_document", str(exc)) from None
    if not doc.text.strip():
        raise Rejected("empty_text", "document text is empty")
    if len(doc.text) > max_chars:
        raise Rejected("too_large", f"document text has {len(doc.text)} characters; the limit is {max_chars} (LLMNER_MAX_DOC_CHARS)")
    schema = doc.metadata.get("schema")
    if schema is not None:
        # Built-in names only: a payload must not make the worker read files by path.
        from llmner.schema import builtin_schema_names

        known = builtin_schema_names()
        if not isinstance(schema, str) or schema not in known:
            raise Rejected("unknown_schema", f"unknown schema {schema!r} (built-in schemas: {', '.join(known)})")
    try:
        pipe.schema_for(doc)
    except (ValidationError, ConfigError) as exc:
        raise Rejected("unknown_schema", str(exc)) from None
    return doc


# -- ingest -------------------------------------------------------------------------------------

# Retried with the same task id on a Redis outage: job ids derive from it, so nothing is created twice.
@app.task(name="llmner.ingest", bind=True, autoretry_for=_REDIS_ERRORS, retry_backoff=True, retry_backoff_max=60,
          max_retries=20)
def ingest(self, items: Sequence[Sequence[str]], submitted_at: float | None = None) -> dict[str, int]:
    """Validate and chunk each ``[payload, encoding]`` item; job ``i`` of this task is ``{task id}.{i}``."""
    s = settings()
    store = job_store()
    task_id = self.request.id
    submitted_at = submitted_at or time.time()
    deliveries = store.count_delivery(task_id)
    if deliveries > s.max_deliveries:
        # This message killed its worker every time: give up on the items that never became jobs.
        for i, (payload, encoding) in enumerate(items):
            job_id = f"{task_id}.{i}"
            if not store.r.exists(s.seen_key(job_id)):
                _reject(store, Rejected("delivery_limit", f"ingest delivered {deliveries - 1} times without finishing"),
                        payload, encoding, job_id)
        store.clear_task(task_id)
        return {"jobs": 0, "chunks": 0, "rejected": len(items)}
    pipe = get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)
    queued_chunks = jobs = rejected = 0
    for i, item in enumerate(items):
        payload, encoding = (item[0], item[1]) if len(item) > 1 else (item[0], "utf-8")
        job_id = f"{task_id}.{i}"
        started = time.perf_counter()
        try:
            doc = parse_document(payload, encoding, s.max_doc_chars, pipe)
            chunks = list(pipe.chunk(doc))
            if not chunks:
                raise Rejected("empty_text", "no text to tag after chunking")
        except Rejected as rej:
            _reject(store, rej, payload, encoding, job_id)
            rejected += 1
            continue
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others
            _reject(store, Rejected("ingest_failed", f"chunking failed: {type(exc).__name__}"), payload, encoding, job_id)
            log.warning("ingest of job %s failed: %s", job_id, type(exc).__name__)
            rejected += 1
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
        refs = [f"{job_id}|{index}" for index in range(len(chunks))]
        store.create_job(job_id, fields, refs)  # False after a redelivery: already queued
        metrics.STAGE_SECONDS.labels("ingest").observe(ingest_ms / 1000)
        queued_chunks += len(chunks)
        jobs += 1
    send_infer_ticks(math.ceil(queued_chunks / s.infer_batch_size))
    store.clear_task(task_id)
    log.info("ingest task %s: %d jobs, %d chunks queued, %d rejected", task_id, jobs, queued_chunks, rejected)
    return {"jobs": jobs, "chunks": queued_chunks, "rejected": rejected}


def _reject(store: JobStore, rej: Rejected, payload: str, encoding: str, job_id: str) -> None:
    original: bytes | str = payload
    if encoding == "base64":
        try:
            original = base64.b64decode(payload)
        except ValueError:
            original = payload
    document_id = ""
    if rej.code not in ("not_utf8", "not_json"):
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


def send_infer_ticks(count: int, countdown: float | None = None) -> None:
    """Ask for ``count`` infer runs; each takes up to LLMNER_INFER_BATCH_SIZE queued chunks."""
    queue = settings().infer_queue
    for _ in range(count):
        infer.apply_async(queue=queue, countdown=countdown)


# -- infer --------------------------------------------------------------------------------------

# A Redis outage is retried with the same task id, so the retry finds this delivery's in-flight chunks.
@app.task(name="llmner.infer", bind=True, autoretry_for=_REDIS_ERRORS, retry_backoff=True, retry_backoff_max=60,
          max_retries=20)
def infer(self) -> dict[str, int]:
    """Take a micro-batch of queued chunks (across documents), tag it, publish finished documents."""
    s = settings()
    store = job_store()
    task_id = self.request.id
    pipe = get_pipeline(s.bundle, s.ready_file, s.pipeline_factory)
    published = 0
    leftover = store.inflight(task_id)
    refs: list[str] = []
    try:
        if leftover:
            # A previous delivery of this message died mid-batch: re-run its chunks one at a time so
            # that a chunk that crashes the worker only counts against itself.
            metrics.REDELIVERIES.inc(len(leftover))
            log.warning("infer task %s redelivered: re-running %d in-flight chunks one by one", task_id, len(leftover))
            for ref in leftover:
                published += run_batch(pipe, store, task_id, [ref])
        refs = store.take_batch(task_id, s.infer_batch_size)
        if refs:
            published += run_batch(pipe, store, task_id, refs)
    except _REDIS_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - never strand taken chunks: put them back for another try
        stranded = store.inflight(task_id)
        log.error("infer task %s failed (%s); %d chunks requeued", task_id, type(exc).__name__, len(stranded))
        store.requeue(stranded)
        store.clear_task(task_id)
        send_infer_ticks(1, countdown=1.0)
        return {"chunks": len(refs) + len(leftover), "published": published, "requeued": len(stranded)}
    store.clear_task(task_id)
    return {"chunks": len(refs) + len(leftover), "published": published}


def run_batch(pipe: Any, store: JobStore, task_id: str, refs: Sequence[str], count: bool = True) -> int:
    """Tag the chunks ``refs`` (already in this task's in-flight list); return documents published.

    ``count=False`` when this delivery of the chunks was counted already (one-by-one retry of a batch).
    """
    s = store.settings
    attempts = store.count_attempts(refs) if count else store.get_attempts(refs)
    live: list[str] = []
    for ref, n in zip(refs, attempts):
        if n > s.max_deliveries:
            _dead_job(store, ref, f"chunk {parse_ref(ref)[1]} was delivered {n - 1} times without finishing")
            store.done_with(task_id, ref)
        else:
            live.append(ref)
    pairs: list[tuple[str, Chunk]] = []
    schemas = []
    for ref, (data, schema_name) in zip(live, store.load_chunks(live)):
        if data is None:  # the document was published or sent to the dead stream meanwhile
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
        if len(pairs) > 1:
            log.warning("batch of %d chunks failed (%s); retrying them one by one", len(pairs), type(exc).__name__)
            return sum(run_batch(pipe, store, task_id, [ref], count=False) for ref, _ in pairs)
        ref = pairs[0][0]
        n = store.get_attempts([ref])[0]
        if n >= s.max_deliveries:
            _dead_job(store, ref, f"chunk {parse_ref(ref)[1]} failed {n} times ({type(exc).__name__})")
        else:
            log.warning("chunk %s failed (%s), attempt %d of %d; requeued", ref, type(exc).__name__, n, s.max_deliveries)
            store.requeue([ref])
            send_infer_ticks(1, countdown=min(30.0, 0.5 * 2**n))
        store.done_with(task_id, ref)
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
        if status == 1:
            try:
                published += assemble_and_publish(pipe, store, parse_ref(ref)[0])
            except _REDIS_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - a merge bug must not block the queue
                _dead_job(store, ref, f"reassembly failed ({type(exc).__name__})", code="assemble_failed")
        store.done_with(task_id, ref)
    return published


def _dead_job(store: JobStore, ref: str, reason: str, code: str = "chunk_failed") -> None:
    job_id, _ = parse_ref(ref)
    raw = store.r.hget(store.settings.manifest_key(job_id), "doc")
    if store.dead_job(job_id, reason, raw.decode() if raw else "", stage="infer", code=code) is not None:
        metrics.DEAD_LETTERS.labels("infer").inc()
        metrics.DOCUMENTS.labels("dead").inc()
        log.error("job %s sent to the dead stream: %s", job_id, code)


def assemble_and_publish(pipe: Any, store: JobStore, job_id: str) -> int:
    """Merge a complete job's chunk results into one ResultRecord and publish it (once)."""
    loaded = store.load_job(job_id)
    if loaded is None:
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
