"""Worker heartbeats and the sweeper that recovers a dead worker's work in seconds.

Every worker process beats ``<p>worker:{name}`` = {"task": the task it runs, "t": now} every
LLMNER_HEARTBEAT_INTERVAL seconds, expiring after LLMNER_HEARTBEAT_TTL. After each beat one
worker (whoever holds a short lock) sweeps:

- the in-flight chunks of an infer task whose worker stopped beating (SIGKILL, OOM, lost node)
  go to the retry list, whose chunks are tagged one at a time; a death while a chunk was tagged
  alone counts as a failed delivery of that chunk, so a chunk that kills its worker reaches the
  dead stream after LLMNER_MAX_DELIVERIES deaths of its own (one more kill than that in all: the
  batch it came in), not after as many hours, and its batch neighbours are never blamed;
  those of a task its live worker is no longer running (it ended on a Redis error) go back
  uncounted;
- a Celery message left unacknowledged by a worker that died (at once) or that no live worker
  runs (after two heartbeat TTLs: Redis went away mid-task) is put back on its queue, instead of
  waiting for LLMNER_VISIBILITY_TIMEOUT;
- when chunks wait and no infer message is queued (ticks were lost with a worker or a Redis
  restart), one infer tick is sent.

Nothing here is correct only because it is fast: every step is idempotent (chunk results are
stored idempotently and publication is once-only), so a sweep that races a live worker costs
a repeated chunk, never a lost or duplicated document.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import orjson
import redis

from workers.connections import REDIS_ERRORS
from workers.jobs import JobStore
from workers.settings import Settings

log = logging.getLogger(__name__)

_current_task: str = ""
_name: tuple[int, str] | None = None


def worker_name() -> str:
    """``host-pid-random``, per process: prefork children (ingest) must not share their parent's name."""
    global _name
    pid = os.getpid()
    if _name is None or _name[0] != pid:
        _name = (pid, f"{socket.gethostname()}-{pid}-{uuid.uuid4().hex[:6]}")
    return _name[1]

_SEP = "\x06\x16"  # kombu's separator in its binding sets

_RESTORE = """
-- KEYS: unacked, unacked_index   ARGV: tag, queue, payload
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', ARGV[2], ARGV[3])
return 1
"""


def set_current_task(task_id: str) -> None:
    """What this process is running now (read by the next beat)."""
    global _current_task
    _current_task = task_id


def current_task() -> str:
    return _current_task


class Sweeper:
    def __init__(self, settings: Settings, store: JobStore, send_ticks: Callable[[int], None] | None = None) -> None:
        self.s = settings
        self.store = store
        self.keys = store.keys
        self.redis = store.redis
        self.send_ticks = send_ticks
        self._restore = self.redis.register_script(_RESTORE)

    def _beat_of(self, worker: str) -> dict | None:
        raw = self.redis.get(self.keys.heartbeat(worker)) if worker else None
        return None if raw is None else orjson.loads(raw)

    def reclaim_inflight(self) -> int:
        moved = 0
        for task_id, owner in self.store.owners().items():
            beat = self._beat_of(owner.get("worker", ""))
            if beat is None:
                n = self.store.reclaim(task_id, count=True)
                if n:
                    log.warning("worker %s stopped beating: %d in-flight chunks of infer task %s go to the "
                                "retry list", owner.get("worker") or "?", n, task_id)
            elif beat.get("task") != task_id and float(beat.get("t", 0)) > float(owner.get("t", 0)):
                n = self.store.reclaim(task_id, count=False)
                if n:
                    log.warning("infer task %s ended without finishing its batch: %d chunks requeued", task_id, n)
            else:
                continue
            moved += n
        return moved

    def restore_unacked(self, grace: float | None = None) -> int:
        """Put back the Celery messages held by a dead worker, or by no worker at all."""
        k = self.keys
        grace = 2 * self.s.heartbeat_ttl if grace is None else grace
        restored = 0
        running = {key.decode(): v.decode() for key, v in self.redis.hgetall(k.running).items()}
        for task_id, worker in list(running.items()):
            if self._beat_of(worker) is None:  # a dead worker's entry (its HDEL never ran)
                self.redis.hdel(k.running, task_id)
        now = time.time()
        for tag, delivered_at in self.redis.zrangebyscore(k.unacked_index, 0, now, withscores=True):
            raw = self.redis.hget(k.unacked, tag)
            if raw is None:
                continue
            try:
                payload, exchange, routing_key = orjson.loads(raw)
                task_id = (payload.get("headers") or {}).get("id") or ""
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
                continue
            worker = running.get(task_id, "")
            beat = self._beat_of(worker)
            if beat is not None and beat.get("task") == task_id:
                continue  # a live worker is running it
            if not (worker and beat is None) and delivered_at > now - grace:
                # Not known to be held by a dead worker: give a young message time to start running
                # (a worker records a task a moment after it fetched the message).
                continue
            for queue in self._queues_for(exchange, routing_key):
                restored += int(self._restore(keys=[k.unacked, k.unacked_index], args=[tag, queue, orjson.dumps(payload)]))
                log.warning("task %s was held by %s: its message is back on %s", task_id,
                            worker or "no running worker", queue)
                break
        return restored

    def _queues_for(self, exchange: str, routing_key: str) -> list[str]:
        queues = []
        for member in self.redis.smembers(self.keys.kombu_bindings(exchange)):
            rk, _pattern, queue = member.decode().split(_SEP)
            if rk == routing_key:
                queues.append(queue)
        return queues or [routing_key or exchange]

    def top_up_ticks(self) -> int:
        jobs, retry = self.store.queued()
        if (jobs or retry) and self.send_ticks is not None and self.store.infer_messages_waiting() == 0:
            self.send_ticks(1)
            return 1
        return 0

    def sweep(self) -> dict[str, int]:
        return {"reclaimed": self.reclaim_inflight(), "restored": self.restore_unacked(),
                "ticks": self.top_up_ticks()}


class Heartbeat:
    """A daemon thread: beat, then sweep if this process holds the sweep lock."""

    def __init__(self, settings: Settings, store: JobStore, send_ticks: Callable[[int], None] | None = None,
                 name: str | None = None) -> None:
        self.s = settings
        self.store = store
        self.name = name or worker_name()
        self.sweeper = Sweeper(settings, store, send_ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmner-heartbeat", daemon=True)

    def beat(self) -> None:
        value = orjson.dumps({"task": current_task(), "t": time.time(), "pid": os.getpid()})
        self.store.redis.set(self.store.keys.heartbeat(self.name), value, px=int(self.s.heartbeat_ttl * 1000))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                lock_ms = max(100, int(self.s.heartbeat_interval * 1000) - 50)
                if self.store.redis.set(self.store.keys.sweep_lock, self.name, nx=True, px=lock_ms):
                    self.sweeper.sweep()
            except REDIS_ERRORS as exc:
                log.warning("heartbeat: Redis unreachable (%s)", type(exc).__name__)
            except Exception:  # the heartbeat must outlive a bug in one sweep
                log.exception("heartbeat sweep failed")
            self._stop.wait(self.s.heartbeat_interval)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.store.redis.delete(self.store.keys.heartbeat(self.name))
        except redis.exceptions.RedisError:
            pass
