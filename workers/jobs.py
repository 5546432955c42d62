"""Jobs in Redis, and every Redis key the workers use: manifests, the fair work queue, idempotent
chunk results, atomic publication of results and dead letters, the durable outcome of every job,
and the bookkeeping of tasks and workers.

A *job* is one submission of one document (its id is ``{ingest task id}.{item index}``, so a
redelivered ingest message is the same job). Keys (``<p>`` = LLMNER_KEY_PREFIX), named by :class:`Keys`:

  <p>job:{job}            hash: n (chunk count), doc (document JSON), c{i} (chunk i JSON), schema,
                          submitted_at, ingest_ms
  <p>job:{job}:queue      list of chunk indices of this job waiting for inference
  <p>job:{job}:chunks     hash: i -> {"e": the chunk's entities as Pipeline.infer_chunks returned them
                          (handed unchanged to Pipeline.assemble), "ms": inference ms, "bs": batch size}
  <p>job:{job}:attempts   hash: i -> failed deliveries of chunk i (raised, or killed its worker)
  <p>job:{job}:seen       marker: this job was created (a redelivered ingest must not create it twice)
  <p>outcome:{job}        "published <entry id>" or "dead <entry id>" (LLMNER_OUTCOME_TTL, longer than the state)
  <p>chunks               ring of jobs with queued chunks (LLMNER_CHUNK_LIST): a batch takes one chunk per
                          job per turn, so a 4,000-chunk note shares the workers with the short notes behind it
  <p>chunks:retry         chunk references "job|i" of batches whose worker died, taken one at a time
  <p>inflight:{task}      list of the references an infer task has taken
  <p>owners               hash: infer task id -> {"worker", "t"} (the heartbeat sweeper reclaims
                          the in-flight chunks of a task whose worker died or moved on)
  <p>deliveries:{task}    deliveries of an ingest message (one that kills its worker is given up)
  <p>running              hash: Celery task id -> the worker running it
  <p>worker:{name}        a worker's heartbeat; <p>sweeper:lock: who sweeps now
  <p>unacked, <p>unacked_index, <p>unacked_mutex   kombu's unacknowledged messages (Celery's config names them)

Queues and streams are named by the settings (LLMNER_*_QUEUE, LLMNER_*_STREAM).

Every transition that must not be split by a crash is one Lua script: creating a job and queueing
its chunks; taking a micro-batch; storing a chunk result and detecting completion; publishing the
result (or a dead letter) with its outcome and deleting the state; reclaiming in-flight chunks.
A job whose state vanished (TTL, eviction) without an outcome goes to the dead stream (state_lost).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from llmner.doc import Chunk
from llmner.doc import Document, Entity
from workers.connections import client
from workers.payloads import encode_payload
from workers.settings import Settings

MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of the workers' Redis keys under one prefix (LLMNER_KEY_PREFIX).

    Per job: its id is the ingest task id plus the item index, so a redelivered ingest message
    maps to the same job. The Lua scripts below spell ``job:{job}:queue`` and ``job:{job}:attempts``
    the same way (they receive the prefix).
    """

    prefix: str

    def manifest(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def chunk_results(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:chunks"

    def attempts(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:attempts"

    def seen(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:seen"

    def job_queue(self, job_id: str) -> str:
        """Chunk indices of this job waiting for inference (the ring ``chunk_list`` names the job)."""
        return f"{self.prefix}job:{job_id}:queue"

    def outcome(self, job_id: str) -> str:
        """``published <entry id>`` or ``dead <entry id>``: outlives the job state (LLMNER_OUTCOME_TTL)."""
        return f"{self.prefix}outcome:{job_id}"

    @property
    def retry_list(self) -> str:
        """Chunks of a batch whose worker died: taken one at a time, so a poison chunk only hurts itself."""
        return f"{self.prefix}chunks:retry"

    @property
    def owners(self) -> str:
        """Hash: infer task id -> JSON {worker, taken_at} for every non-empty in-flight list."""
        return f"{self.prefix}owners"

    @property
    def sweep_lock(self) -> str:
        return f"{self.prefix}sweeper:lock"

    def heartbeat(self, worker: str) -> str:
        return f"{self.prefix}worker:{worker}"

    @property
    def running(self) -> str:
        """Hash: Celery task id -> worker name, while a worker runs the task."""
        return f"{self.prefix}running"

    @property
    def unacked(self) -> str:
        return f"{self.prefix}unacked"

    @property
    def unacked_index(self) -> str:
        return f"{self.prefix}unacked_index"

    @property
    def unacked_mutex(self) -> str:
        return f"{self.prefix}unacked_mutex"

    def inflight(self, task_id: str) -> str:
        return f"{self.prefix}inflight:{task_id}"

    def deliveries(self, task_id: str) -> str:
        return f"{self.prefix}deliveries:{task_id}"

    @staticmethod
    def kombu_bindings(exchange: str) -> str:
        """kombu's set of (routing key, pattern, queue) bindings of an exchange (not under the prefix)."""
        return f"_kombu.binding.{exchange}"

    @staticmethod
    def kombu_permanent_bindings(exchange: str) -> str:
        return f"_kombu.binding_permanent.{exchange}"


_CREATE_JOB = """
-- KEYS: seen, manifest, ring, job_queue   ARGV: ttl, job_id, nchunks, nfields, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
local nfields = tonumber(ARGV[4])
redis.call('SET', KEYS[1], '1', 'EX', ttl)
for i = 5, 4 + 2 * nfields, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ttl)
local n = tonumber(ARGV[3])
for i = 0, n - 1, 1000 do
  local batch = {}
  for j = i, math.min(i + 999, n - 1) do batch[#batch + 1] = tostring(j) end
  redis.call('RPUSH', KEYS[4], unpack(batch))
end
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
"""

_TAKE_BATCH = """
-- KEYS: ring, inflight, retry, owners   ARGV: count, ttl, prefix, task_id, owner JSON
-- A chunk of a killed batch is taken alone; otherwise one chunk per job per turn of the ring.
local out = {}
local suspect = redis.call('LPOP', KEYS[3])
if suspect then
  out[1] = suspect
else
  local count = tonumber(ARGV[1])
  while #out < count do
    local job = redis.call('LPOP', KEYS[1])
    if not job then break end
    local q = ARGV[3] .. 'job:' .. job .. ':queue'
    local idx = redis.call('LPOP', q)
    if idx then
      out[#out + 1] = job .. '|' .. idx
      if redis.call('LLEN', q) > 0 then redis.call('RPUSH', KEYS[1], job) end
    end
  end
end
if #out > 0 then
  redis.call('RPUSH', KEYS[2], unpack(out))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
end
return out
"""

_REQUEUE = """
-- KEYS: ring   ARGV: prefix, ttl, ref, ...   (back to the front of its job's queue)
for i = 3, #ARGV do
  local ref = ARGV[i]
  local sep = string.find(ref, '|[^|]*$')
  local job = string.sub(ref, 1, sep - 1)
  local q = ARGV[1] .. 'job:' .. job .. ':queue'
  if redis.call('LLEN', q) == 0 then redis.call('RPUSH', KEYS[1], job) end
  redis.call('LPUSH', q, string.sub(ref, sep + 1))
  redis.call('EXPIRE', q, tonumber(ARGV[2]))
end
return #ARGV - 2
"""

_RECLAIM = """
-- KEYS: inflight, retry, owners   ARGV: task_id, count (1: the chunks' worker died), prefix, ttl
-- A death counts against a chunk only when the chunk was alone: in a batch, the culprit is unknown,
-- and every chunk of it is retried alone first.
local refs = redis.call('LRANGE', KEYS[1], 0, -1)
if #refs > 0 then
  redis.call('RPUSH', KEYS[2], unpack(refs))
  if ARGV[2] == '1' and #refs == 1 then
    for _, ref in ipairs(refs) do
      local sep = string.find(ref, '|[^|]*$')
      local a = ARGV[3] .. 'job:' .. string.sub(ref, 1, sep - 1) .. ':attempts'
      redis.call('HINCRBY', a, string.sub(ref, sep + 1), 1)
      redis.call('EXPIRE', a, tonumber(ARGV[4]))
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return #refs
"""

_STORE_CHUNK = """
-- KEYS: manifest, chunk_results   ARGV: index, result JSON, ttl
-- -1: the job state is gone; 1: this store completed the job; 0: not yet.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if redis.call('HLEN', KEYS[2]) >= n then return 1 end
return 0
"""

_FINISH_JOB = """
-- KEYS: manifest, chunk_results, attempts, job_queue, outcome, stream   ARGV: outcome ttl, kind, field, value, ...
-- Publishes one entry, records the outcome and deletes the job state, once.
if redis.call('EXISTS', KEYS[5]) == 1 then return false end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[6], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[5], ARGV[2] .. ' ' .. id, 'EX', tonumber(ARGV[1]))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return id
"""

_DEAD_ONCE = """
-- KEYS: seen, dead stream, outcome   ARGV: ttl, outcome ttl, check seen (1/0), field, value, ...
-- A rejected input (or a job whose state was lost) is dead-lettered once per job.
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return false end
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[3], 'dead ' .. id, 'EX', tonumber(ARGV[2]))
return id
"""


def chunk_ref(job_id: str, index: int) -> str:
    return f"{job_id}|{index}"


def parse_ref(ref: bytes | str) -> tuple[str, int]:
    text = ref.decode() if isinstance(ref, bytes) else ref
    job_id, _, index = text.rpartition("|")
    return job_id, int(index)


def job_of(ref: str) -> str:
    """The job of a chunk reference ``job|i``, or ``ref`` itself when it names a job."""
    return parse_ref(ref)[0] if "|" in ref else ref


@dataclass(slots=True)
class StoredJob:
    """A complete job as the store holds it: the note, its chunks, each chunk's entities and timings."""

    document: Document
    chunks: list[Chunk]
    per_chunk: list[list[Entity]]
    submitted_at: float
    ingest_ms: float
    infer_ms: float
    max_batch_size: int


class JobStore:
    """The Redis side of the flow for one set of settings."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.redis = redis_client if redis_client is not None else client(settings)
        self._create = self.redis.register_script(_CREATE_JOB)
        self._take = self.redis.register_script(_TAKE_BATCH)
        self._requeue = self.redis.register_script(_REQUEUE)
        self._reclaim = self.redis.register_script(_RECLAIM)
        self._store = self.redis.register_script(_STORE_CHUNK)
        self._finish = self.redis.register_script(_FINISH_JOB)
        self._dead_once = self.redis.register_script(_DEAD_ONCE)

    # -- ingest ---------------------------------------------------------------------------
    def create_job(self, job_id: str, doc: Document, chunks: Sequence[Chunk], submitted_at: float,
                   ingest_ms: float) -> bool:
        """Write the manifest and queue the job's chunks atomically; False if the job existed."""
        s, k = self.settings, self.keys
        fields: dict[str, str | bytes] = {
            "n": str(len(chunks)),
            "doc": orjson.dumps({"id": doc.id, "text": doc.text, "language": doc.language, "metadata": doc.metadata}),
            "submitted_at": repr(submitted_at),
            "ingest_ms": f"{ingest_ms:.3f}",
            "schema": str(doc.metadata.get("schema") or ""),
        }
        for index, chunk in enumerate(chunks):
            fields[f"c{index}"] = orjson.dumps(chunk.to_dict())
        args: list[Any] = [s.state_ttl, job_id, len(chunks), len(fields)]
        for name, value in fields.items():
            args += [name, value]
        keys = [k.seen(job_id), k.manifest(job_id), s.chunk_list, k.job_queue(job_id)]
        return bool(self._create(keys=keys, args=args))

    def job_created(self, job_id: str) -> bool:
        """Whether an ingest delivery already made this job (it may be finished since)."""
        return bool(self.redis.exists(self.keys.seen(job_id)))

    def count_delivery(self, task_id: str) -> int:
        """How many times this task message has been delivered (counts this one)."""
        key = self.keys.deliveries(task_id)
        tx = self.redis.pipeline()
        tx.incr(key)
        tx.expire(key, self.settings.state_ttl)
        return int(tx.execute()[0])

    def uncount_delivery(self, task_id: str) -> None:
        """A delivery that ended on a Redis error is not the message's fault."""
        self.redis.decr(self.keys.deliveries(task_id))

    # -- tasks and workers ----------------------------------------------------------------
    def mark_running(self, task_id: str, worker: str) -> None:
        """``worker`` runs ``task_id`` now (the sweeper leaves its message and chunks alone)."""
        self.redis.hset(self.keys.running, task_id, worker)

    def unmark_running(self, task_id: str) -> None:
        self.redis.hdel(self.keys.running, task_id)

    def worker_alive(self, worker: str) -> bool:
        """Whether ``worker`` beats (its heartbeat has not expired)."""
        return bool(worker) and bool(self.redis.exists(self.keys.heartbeat(worker)))

    def infer_messages_waiting(self) -> int:
        """Infer task messages (ticks) on the infer queue."""
        return int(self.redis.llen(self.settings.infer_queue))

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in each queue and stream (the metrics read them at scrape time).

        chunks: jobs with chunks waiting (the fair ring); retry: chunks of killed batches."""
        s = self.settings
        reads = self.redis.pipeline(transaction=False)
        reads.llen(s.ingest_queue)
        reads.llen(s.infer_queue)
        reads.llen(s.chunk_list)
        reads.hlen(self.keys.unacked)
        reads.llen(self.keys.retry_list)
        reads.xlen(s.results_stream)
        reads.xlen(s.dead_stream)
        reads.xlen(s.inbox_stream)
        names = ("ingest", "infer", "chunks", "unacked", "retry", "results_stream", "dead_stream", "inbox_stream")
        return {name: int(value) for name, value in zip(names, reads.execute())}

    # -- infer ----------------------------------------------------------------------------
    def take_batch(self, task_id: str, count: int, worker: str = "") -> list[str]:
        """Move up to ``count`` chunk references to the task's in-flight list (one atomic step),
        recording ``worker`` as their owner (the sweeper reclaims them if it dies)."""
        s, k = self.settings, self.keys
        owner = orjson.dumps({"worker": worker, "t": time.time()})
        refs = self._take(keys=[s.chunk_list, k.inflight(task_id), k.retry_list, k.owners],
                          args=[count, s.state_ttl, s.key_prefix, task_id, owner])
        return [r.decode() for r in refs]

    def inflight(self, task_id: str) -> list[str]:
        return [r.decode() for r in self.redis.lrange(self.keys.inflight(task_id), 0, -1)]

    def owners(self) -> dict[str, dict]:
        return {k.decode(): orjson.loads(v) for k, v in self.redis.hgetall(self.keys.owners).items()}

    def reclaim(self, task_id: str, count: bool) -> int:
        """Move a task's in-flight chunks to the retry list (``count``: their worker died, which
        counts as a failed delivery of the chunk when it was tagged alone). Returns how many."""
        s, k = self.settings, self.keys
        return int(self._reclaim(keys=[k.inflight(task_id), k.retry_list, k.owners],
                                 args=[task_id, "1" if count else "0", s.key_prefix, s.state_ttl]))

    def done_with(self, task_id: str, ref: str) -> None:
        self.redis.lrem(self.keys.inflight(task_id), 1, ref)

    def clear_task(self, task_id: str) -> None:
        k = self.keys
        tx = self.redis.pipeline()
        tx.delete(k.inflight(task_id), k.deliveries(task_id))
        tx.hdel(k.owners, task_id)
        tx.execute()

    def count_failure(self, ref: str) -> int:
        """Increment and return the failed deliveries of a chunk."""
        job_id, index = parse_ref(ref)
        key = self.keys.attempts(job_id)
        tx = self.redis.pipeline()
        tx.hincrby(key, str(index), 1)
        tx.expire(key, self.settings.state_ttl)
        return int(tx.execute()[0])

    def get_attempts(self, refs: Sequence[str]) -> list[int]:
        reads = self.redis.pipeline(transaction=False)
        for ref in refs:
            job_id, index = parse_ref(ref)
            reads.hget(self.keys.attempts(job_id), str(index))
        return [int(v or 0) for v in reads.execute()]

    def requeue(self, refs: Sequence[str]) -> None:
        """Put chunks back at the front of their jobs' queues."""
        if refs:
            s = self.settings
            self._requeue(keys=[s.chunk_list], args=[s.key_prefix, s.state_ttl, *refs])

    def retry_alone(self, refs: Sequence[str]) -> None:
        """Queue chunks to be retried one at a time (a failing chunk must not fail its neighbours)."""
        if refs:
            self.redis.rpush(self.keys.retry_list, *refs)

    def queued(self) -> tuple[int, int]:
        """(jobs with queued chunks, chunks waiting to be retried alone)."""
        reads = self.redis.pipeline(transaction=False)
        reads.llen(self.settings.chunk_list)
        reads.llen(self.keys.retry_list)
        jobs, retry = reads.execute()
        return int(jobs), int(retry)

    def load_chunks(self, refs: Sequence[str]) -> list[tuple[Chunk | None, str]]:
        """(chunk, schema name or "") of each reference; the chunk is None where the job is gone."""
        reads = self.redis.pipeline(transaction=False)
        for ref in refs:
            job_id, index = parse_ref(ref)
            reads.hmget(self.keys.manifest(job_id), [f"c{index}", "schema"])
        return [(None if raw is None else Chunk.from_dict(orjson.loads(raw)), (schema or b"").decode())
                for raw, schema in reads.execute()]

    def store_chunk(self, ref: str, entities: Sequence[Entity], infer_ms: float, batch_size: int) -> int:
        """Store a chunk's entities (a retry overwrites). 1: the job is complete; 0: not yet; -1: job gone."""
        job_id, index = parse_ref(ref)
        result = {"e": [e.to_dict() for e in entities], "ms": infer_ms, "bs": batch_size}
        return int(self._store(keys=[self.keys.manifest(job_id), self.keys.chunk_results(job_id)],
                               args=[index, orjson.dumps(result), self.settings.state_ttl]))

    def load_job(self, job_id: str) -> StoredJob | None:
        """The complete job, or None when it is gone."""
        reads = self.redis.pipeline(transaction=False)
        reads.hgetall(self.keys.manifest(job_id))
        reads.hgetall(self.keys.chunk_results(job_id))
        manifest, raw_results = reads.execute()
        if not manifest:
            return None
        results = {int(k): orjson.loads(v) for k, v in raw_results.items()}
        n = int(manifest[b"n"])
        return StoredJob(
            document=Document.from_dict(orjson.loads(manifest[b"doc"])),
            chunks=[Chunk.from_dict(orjson.loads(manifest[f"c{i}".encode()])) for i in range(n)],
            per_chunk=[[Entity.from_dict(e) for e in results[i]["e"]] for i in range(n)],
            submitted_at=float(manifest.get(b"submitted_at", b"0") or 0),
            ingest_ms=float(manifest.get(b"ingest_ms", b"0")),
            infer_ms=sum(float(results[i]["ms"]) for i in range(n)),
            max_batch_size=max(int(results[i].get("bs", 1)) for i in range(n)),
        )

    def document_json(self, job_id: str) -> bytes | None:
        """The job's document as ingest stored it, or None when the job is gone."""
        return self.redis.hget(self.keys.manifest(job_id), "doc")

    # -- outcomes -------------------------------------------------------------------------
    def outcome(self, job_id: str) -> str | None:
        """``published <entry>`` / ``dead <entry>``, or None when the job has no recorded outcome."""
        raw = self.redis.get(self.keys.outcome(job_id))
        return None if raw is None else raw.decode()

    def _finish_job(self, job_id: str, kind: str, stream: str, fields: Mapping[str, str | bytes]) -> str | None:
        k = self.keys
        args: list[Any] = [self.settings.outcome_ttl, kind]
        for name, value in fields.items():
            args += [name, value]
        keys = [k.manifest(job_id), k.chunk_results(job_id), k.attempts(job_id), k.job_queue(job_id),
                k.outcome(job_id), stream]
        out = self._finish(keys=keys, args=args)
        return None if out is None else out.decode()

    def publish(self, job_id: str, document_id: str, model_version: str, record_json: bytes) -> str | None:
        """XADD the result, record the outcome and delete the job state, once; None when someone else did."""
        fields = {"document_id": document_id, "model_version": model_version, "job_id": job_id,
                  "record": record_json}
        return self._finish_job(job_id, "published", self.settings.results_stream, fields)

    def dead_job(self, job_id: str, reason: str, document_json: bytes | None, stage: str, code: str) -> str | None:
        """Send a job that cannot finish (a chunk failed too often) to the dead stream with its
        document (``document_json``, as :meth:`document_json` read it), once."""
        document_id = "" if document_json is None else str(orjson.loads(document_json).get("id", ""))
        payload = document_json.decode() if document_json else ""
        fields = dead_fields(code, reason, payload, stage, document_id, job_id, self.settings.dead_payload_bytes)
        return self._finish_job(job_id, "dead", self.settings.dead_stream, fields)

    def dead_letter(self, reason: str, payload: bytes | str, stage: str, document_id: str = "",
                    job_id: str = "", code: str = "invalid", check_seen: bool = True) -> str | None:
        """XADD a rejected input to the dead stream with (a bounded prefix of) its original payload;
        once per job id (None when this job was dead-lettered, created or finished before)."""
        s, k = self.settings, self.keys
        fields = dead_fields(code, reason, payload, stage, document_id, job_id, s.dead_payload_bytes)
        if not job_id:  # not a job (a malformed broker item): nothing to deduplicate or record
            return self.redis.xadd(s.dead_stream, fields).decode()
        args: list[Any] = [s.state_ttl, s.outcome_ttl, "1" if check_seen else "0"]
        for name, value in fields.items():
            args += [name, value]
        out = self._dead_once(keys=[k.seen(job_id), s.dead_stream, k.outcome(job_id)], args=args)
        return None if out is None else out.decode()

    def state_lost(self, job_id: str, stage: str) -> str | None:
        """A job whose state vanished (LLMNER_STATE_TTL passed, or Redis evicted it) with no outcome
        recorded: it must not disappear silently."""
        if self.outcome(job_id) is not None:
            return None
        return self.dead_letter("the job's state expired or was evicted before it was published "
                                "(LLMNER_STATE_TTL, Redis maxmemory-policy)", b"", stage=stage, job_id=job_id,
                                code="state_lost", check_seen=False)


def truncate(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """At most ``limit`` characters, one line (reasons may echo raw field values of any size)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dead_fields(code: str, reason: str, payload: bytes | str, stage: str, document_id: str, job_id: str,
                max_payload_bytes: int = 65536) -> dict[str, str]:
    """A dead-stream entry: ``code`` (machine-readable class), ``reason`` (one line, bounded), a bounded
    prefix of the original payload with the SHA-256 and size of the whole one."""
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload)
    kept = raw[:max_payload_bytes]
    if isinstance(payload, str) and len(kept) < len(raw):
        kept = kept.decode("utf-8", "ignore").encode()  # do not cut a character in two
    text, encoding = encode_payload(kept)
    return {"code": code, "reason": truncate(reason), "payload": text, "payload_encoding": encoding,
            "payload_bytes": str(len(raw)), "payload_sha256": hashlib.sha256(raw).hexdigest(),
            "payload_truncated": "1" if len(kept) < len(raw) else "0", "stage": stage,
            "document_id": truncate(document_id, 256), "job_id": truncate(job_id, 256), "time": f"{time.time():.3f}"}


def decode_fields(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in fields.items()}
