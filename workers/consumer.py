"""A helper for loaders reading ``llmner:results``.

    consumer = ResultConsumer(redis_client, group="kg-loader", name="loader-1")
    consumer.run(handle)          # handle(record, entry) writes somewhere; then the entry is acked

- XREADGROUP with a consumer group: several loader replicas share the stream.
- XACK only after the handler returned (the loader's write is done): a loader that dies mid-write
  gets the entry again.
- XAUTOCLAIM of entries pending longer than ``min_idle_ms`` (their loader died).
- Dedupe by job id (one submission of one document), one key per job with its own TTL
  (``dedupe_ttl``): a result entry seen twice (XAUTOCLAIM after a slow handler, a replayed stream)
  reaches the handler once, while a corrected note resubmitted under the same document id is a
  new job and is loaded. Keys expire one by one, so the dedupe state does not grow without end.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from llmner.doc import ResultRecord

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ResultEntry:
    entry_id: str
    document_id: str
    model_version: str
    job_id: str
    record: ResultRecord


@dataclass(slots=True)
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    claimed: int = 0
    invalid: int = 0


class ResultConsumer:
    def __init__(self, r: redis.Redis, group: str, name: str | None = None, stream: str = "llmner:results",
                 min_idle_ms: int = 60_000, dedupe_ttl: int = 30 * 24 * 3600, ack_retry_seconds: float = 300.0) -> None:
        self.r = r
        self.stream = stream
        self.group = group
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.min_idle_ms = min_idle_ms
        self.dedupe_ttl = dedupe_ttl
        self.ack_retry_seconds = ack_retry_seconds
        # One key per handled job: <stream>:<group>:handled:<job id> -> entry id, expiring after dedupe_ttl.
        self.dedupe_prefix = f"{stream}:{group}:handled:"
        self.stats = ConsumerStats()
        self._claim_cursor = "0-0"

    def ensure_group(self, start: str = "0") -> None:
        """Create the consumer group (from the start of the stream by default); no-op if it exists."""
        try:
            self.r.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim_stale(self, count: int) -> list[tuple[bytes, dict]]:
        out = self.r.xautoclaim(self.stream, self.group, self.name, self.min_idle_ms,
                                start_id=self._claim_cursor, count=count)
        self._claim_cursor = out[0].decode() if isinstance(out[0], bytes) else out[0]
        entries = [(eid, fields) for eid, fields in out[1] if fields]
        self.stats.claimed += len(entries)
        return entries

    def read(self, count: int = 64, block_ms: int | None = 1000) -> list[tuple[bytes, dict]]:
        """Stale pending entries first (XAUTOCLAIM), else new ones (XREADGROUP)."""
        entries = self._claim_stale(count)
        if entries:
            return entries
        resp = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count, block=block_ms)
        return [(eid, fields) for _, items in (resp or []) for eid, fields in items]

    def process(self, entries: list[tuple[bytes, dict]], handle: Callable[[ResultEntry], Any]) -> int:
        """Hand each new job's result to ``handle``, then ack; duplicates are acked unhandled."""
        handled = 0
        for eid, fields in entries:
            entry_id = eid.decode() if isinstance(eid, bytes) else eid
            f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
            try:
                record = ResultRecord.from_json(f["record"])
                doc_id = (f.get("document_id") or record.document_id.encode())
                doc_id = doc_id.decode() if isinstance(doc_id, bytes) else doc_id
                version = f.get("model_version", b"")
                version = version.decode() if isinstance(version, bytes) else version
                job = f.get("job_id", b"")
                job = job.decode() if isinstance(job, bytes) else job
            except Exception as exc:  # noqa: BLE001 - a malformed entry must not block the group
                log.error("results entry %s is not a valid result record (%s); acked and skipped", entry_id, type(exc).__name__)
                self.stats.invalid += 1
                self.r.xack(self.stream, self.group, entry_id)
                continue
            # An entry without a job id (an older publisher) dedupes on its own entry id.
            dedupe_key = self.dedupe_prefix + (job or f"entry:{entry_id}")
            if self.r.exists(dedupe_key):
                self.stats.duplicates += 1
                self.r.xack(self.stream, self.group, entry_id)
                continue
            handle(ResultEntry(entry_id, doc_id, version, job, record))
            self._mark_handled(dedupe_key, entry_id)
            self.stats.handled += 1
            handled += 1
        return handled

    def _mark_handled(self, dedupe_key: str, entry_id: str) -> None:
        """Record and acknowledge a handled entry, waiting out a Redis restart: giving up here would
        hand the entry to the loader a second time once Redis is back."""
        deadline = time.monotonic() + self.ack_retry_seconds
        while True:
            try:
                tx = self.r.pipeline()
                tx.set(dedupe_key, entry_id, ex=self.dedupe_ttl)
                tx.xack(self.stream, self.group, entry_id)
                tx.execute()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("results entry %s handled; Redis unreachable (%s), retrying the ack", entry_id,
                            type(exc).__name__)
                time.sleep(0.5)

    def run(self, handle: Callable[[ResultEntry], Any], stop: Callable[[], bool] = lambda: False,
            count: int = 64, block_ms: int = 1000) -> ConsumerStats:
        """Consume until ``stop()`` is true (checked between reads)."""
        self.ensure_group()
        while not stop():
            entries = self.read(count=count, block_ms=block_ms)
            if entries:
                self.process(entries, handle)
        return self.stats
