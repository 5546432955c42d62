"""Per-document state in Redis: manifests, the chunk work list, idempotent chunk results, atomic
publication of results and dead letters.

A *job* is one submission of one document (its id is the ingest task id, so a redelivered ingest
message is the same job). Keys (``<p>`` = LLMNER_KEY_PREFIX):

  <p>job:{job}            hash: n (chunk count), doc (document JSON), c{i} (chunk i JSON), timings
  <p>job:{job}:chunks     hash: i -> {"e": entities in document offsets, "ms": inference ms, "bs": batch size}
  <p>job:{job}:attempts   hash: i -> deliveries of chunk i so far
  <p>job:{job}:seen       marker: this job was created (a redelivered ingest must not create it twice)
  <p>chunks               list of chunk references "job|i" waiting for inference
  <p>inflight:{task}      list of the references an infer task has taken (re-run if its worker dies)

Every transition that must not be split by a crash is one Lua script: creating a job and queueing
its chunks; taking a micro-batch; storing a chunk result and detecting completion; publishing the
result (or a dead letter) and deleting the state. Publication checks that the job still exists, so
a document is published at most once even when chunks are processed twice after a redelivery.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis

from workers.settings import Settings

_CREATE_JOB = """
-- KEYS: seen, manifest, chunk_list   ARGV: ttl, nfields, field, value, ..., ref, ref, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
local nfields = tonumber(ARGV[2])
redis.call('SET', KEYS[1], '1', 'EX', ttl)
for i = 3, 2 + 2 * nfields, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ttl)
for i = 3 + 2 * nfields, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
return 1
"""

_TAKE_BATCH = """
-- KEYS: chunk_list, inflight   ARGV: count, ttl
local refs = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not refs then return {} end
for _, ref in ipairs(refs) do redis.call('RPUSH', KEYS[2], ref) end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return refs
"""

_STORE_CHUNK = """
-- KEYS: manifest, chunk_results   ARGV: index, result JSON, ttl
-- -1: the job is gone (published or dead already); 1: this store completed the job; 0: not yet.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if redis.call('HLEN', KEYS[2]) >= n then return 1 end
return 0
"""

_FINISH_JOB = """
-- KEYS: manifest, chunk_results, attempts, stream   ARGV: field, value, ...
-- Publishes one entry and deletes the job state, once: a second call finds no manifest.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[4], '*', unpack(ARGV))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return id
"""

_DEAD_ONCE = """
-- KEYS: seen, dead stream   ARGV: ttl, field, value, ...
-- A rejected input is dead-lettered once per job, even when its ingest message is redelivered.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
"""

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_py_url(url: str) -> str:
    """kombu's unix socket URL (``redis+socket:///path``) in redis-py's spelling (``unix:///path``)."""
    for scheme in ("redis+socket://", "socket://"):
        if url.startswith(scheme):
            return "unix://" + url[len(scheme):]
    return url


def client(url: str) -> redis.Redis:
    """One connection pool per URL per process (redis-py clients are thread-safe)."""
    with _clients_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(redis_py_url(url), health_check_interval=30)
        return _clients[url]


def reset_clients() -> None:
    with _clients_lock:
        for c in _clients.values():
            c.close()
        _clients.clear()


def chunk_ref(job_id: str, index: int) -> str:
    return f"{job_id}|{index}"


def parse_ref(ref: bytes | str) -> tuple[str, int]:
    text = ref.decode() if isinstance(ref, bytes) else ref
    job_id, _, index = text.rpartition("|")
    return job_id, int(index)


def encode_payload(payload: bytes | str) -> tuple[str, str]:
    """(text, encoding) for a payload that must survive JSON: UTF-8 text as is, other bytes base64."""
    if isinstance(payload, str):
        return payload, "utf-8"
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


class JobStore:
    """The Redis side of the flow for one set of settings."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.r = redis_client if redis_client is not None else client(settings.redis_url)
        self._create = self.r.register_script(_CREATE_JOB)
        self._take = self.r.register_script(_TAKE_BATCH)
        self._store = self.r.register_script(_STORE_CHUNK)
        self._finish = self.r.register_script(_FINISH_JOB)
        self._dead_once = self.r.register_script(_DEAD_ONCE)

    # -- ingest ---------------------------------------------------------------------------
    def create_job(self, job_id: str, fields: Mapping[str, str | bytes], refs: Sequence[str]) -> bool:
        """Write the manifest and queue the chunk references atomically; False if the job existed."""
        s = self.settings
        args: list[Any] = [s.state_ttl, len(fields)]
        for k, v in fields.items():
            args += [k, v]
        args += list(refs)
        keys = [s.seen_key(job_id), s.manifest_key(job_id), s.chunk_list]
        return bool(self._create(keys=keys, args=args))

    # -- infer ----------------------------------------------------------------------------
    def take_batch(self, task_id: str, count: int) -> list[str]:
        """Move up to ``count`` chunk references to the task's in-flight list (one atomic step)."""
        s = self.settings
        refs = self._take(keys=[s.chunk_list, s.inflight_key(task_id)], args=[count, s.state_ttl])
        return [r.decode() for r in refs]

    def inflight(self, task_id: str) -> list[str]:
        return [r.decode() for r in self.r.lrange(self.settings.inflight_key(task_id), 0, -1)]

    def done_with(self, task_id: str, ref: str) -> None:
        self.r.lrem(self.settings.inflight_key(task_id), 1, ref)

    def clear_task(self, task_id: str) -> None:
        self.r.delete(self.settings.inflight_key(task_id), self.settings.deliveries_key(task_id))

    def count_delivery(self, task_id: str) -> int:
        """How many times this task message has been delivered (counts this one)."""
        key = self.settings.deliveries_key(task_id)
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.settings.state_ttl)
        return int(pipe.execute()[0])

    def count_attempts(self, refs: Sequence[str]) -> list[int]:
        """Increment and return the delivery count of each chunk reference."""
        pipe = self.r.pipeline(transaction=False)
        for ref in refs:
            job_id, index = parse_ref(ref)
            pipe.hincrby(self.settings.attempts_key(job_id), str(index), 1)
            pipe.expire(self.settings.attempts_key(job_id), self.settings.state_ttl)
        out = pipe.execute()
        return [int(v) for v in out[0::2]]

    def get_attempts(self, refs: Sequence[str]) -> list[int]:
        pipe = self.r.pipeline(transaction=False)
        for ref in refs:
            job_id, index = parse_ref(ref)
            pipe.hget(self.settings.attempts_key(job_id), str(index))
        return [int(v or 0) for v in pipe.execute()]

    def requeue(self, refs: Sequence[str]) -> None:
        if refs:
            self.r.rpush(self.settings.chunk_list, *refs)

    def load_chunks(self, refs: Sequence[str]) -> list[tuple[dict | None, str]]:
        """(chunk JSON, schema name or "") of each reference; the chunk is None where the job is gone."""
        pipe = self.r.pipeline(transaction=False)
        for ref in refs:
            job_id, index = parse_ref(ref)
            pipe.hmget(self.settings.manifest_key(job_id), [f"c{index}", "schema"])
        return [(None if raw is None else orjson.loads(raw), (schema or b"").decode())
                for raw, schema in pipe.execute()]

    def store_chunk(self, ref: str, result: Mapping[str, Any]) -> int:
        """Store a chunk's result (a retry overwrites). 1: the job is complete; 0: not yet; -1: job gone."""
        job_id, index = parse_ref(ref)
        s = self.settings
        return int(self._store(keys=[s.manifest_key(job_id), s.chunk_results_key(job_id)],
                               args=[index, orjson.dumps(result), s.state_ttl]))

    def load_job(self, job_id: str) -> tuple[dict[bytes, bytes], dict[int, dict]] | None:
        """(manifest, chunk results by index), or None when the job is gone."""
        s = self.settings
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(s.manifest_key(job_id))
        pipe.hgetall(s.chunk_results_key(job_id))
        manifest, results = pipe.execute()
        if not manifest:
            return None
        return manifest, {int(k): orjson.loads(v) for k, v in results.items()}

    # -- publication ----------------------------------------------------------------------
    def _finish_job(self, job_id: str, stream: str, fields: Mapping[str, str | bytes]) -> str | None:
        s = self.settings
        args: list[Any] = []
        for k, v in fields.items():
            args += [k, v]
        keys = [s.manifest_key(job_id), s.chunk_results_key(job_id), s.attempts_key(job_id), stream]
        out = self._finish(keys=keys, args=args)
        return None if out is None else out.decode()

    def publish(self, job_id: str, document_id: str, model_version: str, record_json: bytes) -> str | None:
        """XADD the result and delete the job state, once; None when someone else already did."""
        fields = {"document_id": document_id, "model_version": model_version, "job_id": job_id,
                  "record": record_json}
        return self._finish_job(job_id, self.settings.results_stream, fields)

    def dead_job(self, job_id: str, reason: str, payload: str, stage: str, code: str) -> str | None:
        """Send a job that cannot finish (a chunk failed too often) to the dead stream, once."""
        manifest = self.r.hget(self.settings.manifest_key(job_id), "doc")
        document_id = ""
        if manifest is not None:
            document_id = str(orjson.loads(manifest).get("id", ""))
        fields = dead_fields(code, reason, payload, "utf-8", stage, document_id, job_id)
        return self._finish_job(job_id, self.settings.dead_stream, fields)

    def dead_letter(self, reason: str, payload: bytes | str, stage: str, document_id: str = "",
                    job_id: str = "", code: str = "invalid") -> str | None:
        """XADD a rejected input (it never became a job) to the dead stream with its original payload;
        once per job id (None when this job was dead-lettered or created before)."""
        text, encoding = encode_payload(payload)
        fields = dead_fields(code, reason, text, encoding, stage, document_id, job_id)
        args: list[Any] = [self.settings.state_ttl]
        for k, v in fields.items():
            args += [k, v]
        out = self._dead_once(keys=[self.settings.seen_key(job_id), self.settings.dead_stream], args=args)
        return None if out is None else out.decode()


def dead_fields(code: str, reason: str, payload: str, encoding: str, stage: str, document_id: str,
                job_id: str) -> dict[str, str]:
    """A dead-stream entry: ``code`` (machine-readable class), ``reason`` (one line), the original payload."""
    return {"code": code, "reason": reason, "payload": payload, "payload_encoding": encoding, "stage": stage,
            "document_id": document_id, "job_id": job_id, "time": f"{time.time():.3f}"}


def decode_fields(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in fields.items()}
