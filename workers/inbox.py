"""Bridge from the inbox stream (any language: ``XADD llmner:inbox * payload '<document JSON>'``) into
the task flow.

    python -m workers.inbox            # runs until SIGTERM

Consumer group ``llmner-bridge``: each entry becomes one ingest message whose task id is derived
from the entry id, so an entry re-read after a bridge crash (XAUTOCLAIM) maps to the same job and
is not ingested twice. The entry is acked after the ingest message was sent. The payload bytes
travel base64-encoded, so that non-UTF-8 input reaches the dead stream as it was sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

import redis
from kombu.exceptions import OperationalError

from workers.settings import Settings

log = logging.getLogger(__name__)

GROUP = "llmner-bridge"


class InboxBridge:
    def __init__(self, settings: Settings, r: redis.Redis, name: str | None = None, min_idle_ms: int = 30_000) -> None:
        self.s = settings
        self.r = r
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.min_idle_ms = min_idle_ms
        self.forwarded = 0
        self.rejected = 0

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.s.inbox_stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def poll(self, block_ms: int = 1000, count: int = 64) -> int:
        """Forward one read's worth of entries; returns how many were handled."""
        from workers.jobs import JobStore
        from workers.payloads import REDACTED, encode_inbox_item
        from workers.tasks import ingest

        _, claimed, *_ = self.r.xautoclaim(self.s.inbox_stream, GROUP, self.name, self.min_idle_ms, count=count)
        entries = [(eid, f) for eid, f in claimed if f]
        if not entries:
            resp = self.r.xreadgroup(GROUP, self.name, {self.s.inbox_stream: ">"}, count=count, block=block_ms)
            entries = [(eid, f) for _, items in (resp or []) for eid, f in items]
        store = None
        for eid, fields in entries:
            entry_id = eid.decode()
            payload = fields.get(b"payload")
            if payload is None:
                store = store or JobStore(self.s, self.r)
                fields_text = ", ".join(sorted(k.decode("utf-8", "replace") for k in fields))
                store.dead_letter(f"inbox entry {entry_id} has no 'payload' field (fields: {fields_text})",
                                  b"", stage="inbox", code="missing_field", job_id=f"inbox-{entry_id}.0")
                self.rejected += 1
            else:
                ingest.apply_async(args=([encode_inbox_item(payload)], time.time()), task_id=f"inbox-{entry_id}",
                                   argsrepr=f"(1 x {REDACTED})", kwargsrepr="{}")
                self.forwarded += 1
            self.r.xack(self.s.inbox_stream, GROUP, entry_id)
            # The payload is in a task message now; keep the inbox small.
            self.r.xdel(self.s.inbox_stream, entry_id)
        return len(entries)

    def run(self, stop: Callable[[], bool]) -> None:
        self.ensure_group()
        while not stop():
            try:
                self.poll()
            except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
                log.warning("inbox bridge: Redis unreachable (%s); retrying", exc.__class__.__name__)
                time.sleep(1)


def main() -> int:
    from workers.celery import app
    from workers.connections import client
    from workers.shutdown import StopFlag

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = app.settings
    bridge = InboxBridge(s, client(s))
    stop = StopFlag()
    log.info("inbox bridge: %s -> %s", s.inbox_stream, s.ingest_queue)
    bridge.run(stop)
    log.info("inbox bridge stopped: %d forwarded, %d rejected", bridge.forwarded, bridge.rejected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
