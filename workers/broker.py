"""The broker edge: Celery's configuration of the Redis broker (:func:`celery_config`, which
``celeryconfig.py`` exposes), and what the workers do with items on their queues that are not valid
task messages.

Redis lists are writable by anyone who can reach them, so a worker must survive whatever lands
there, and must not copy a note into its logs while complaining about it:

- :class:`Channel` (through :class:`Transport`, ``broker_transport``): an item that is not a
  kombu envelope (not JSON, not an object, no properties, a body that does not decode) used to
  raise out of kombu's BRPOP handler and kill the worker (exit 1). It goes to the dead stream.
- :class:`Consumer` (``worker_consumer``): an unknown task name, a message that is not a Celery
  protocol-2 task, an undecodable or invalid body is dead-lettered and acknowledged, with a
  one-line log naming the queue and the reason, never the body (Celery's handlers log up to
  1 KB of it). Every accepted message gets a placeholder ``argsrepr``, so task events (Flower)
  never show arguments, whatever the producer sent.

Dead letters keep a bounded prefix of the payload and its hash (workers.jobs.dead_fields).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import orjson
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from workers.jobs import JobStore, Keys
from workers.settings import Settings

log = logging.getLogger(__name__)

REDACTED_ARGS = "<redacted: task arguments>"
_TASKS = ("llmner.ingest", "llmner.infer")


def celery_config(s: Settings) -> dict[str, Any]:
    """Celery's settings for ``s`` (celeryconfig.py exposes these as module globals)."""
    keys = Keys(s.key_prefix)
    # Kombu restores an unacknowledged message (worker died) once it is older than the visibility
    # timeout; the heartbeat sweeper (workers/heartbeat.py) restores a dead worker's much sooner.
    restore_interval = max(1, min(10, s.visibility_timeout // 4))
    conf: dict[str, Any] = {
        "broker_url": s.redis_url,
        "result_backend": s.redis_url,
        # Our kombu channel dead-letters broker items that are not a message instead of crashing.
        "broker_transport": None if "+" in s.redis_url.split("://", 1)[0] else "workers.broker:Transport",
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": s.visibility_timeout,
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            "unacked_key": keys.unacked,
            "unacked_index_key": keys.unacked_index,
            "unacked_mutex_key": keys.unacked_mutex,
        },
        "result_backend_transport_options": {"visibility_timeout": s.visibility_timeout},
        # Results travel through the results stream, not the result backend.
        "task_ignore_result": True,
        "result_expires": 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Enforced by the prefork pool; the solo pool the workers run is covered by the in-task
        # alarm of workers/timeouts.py. Both stay below the visibility timeout.
        "task_time_limit": s.effective_time_limit,
        "worker_soft_shutdown_timeout": float(s.soft_shutdown_timeout),
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Redacts and dead-letters unknown, malformed and undecodable messages (PHI in their bodies).
        "worker_consumer": "workers.broker:Consumer",
        "task_default_queue": s.ingest_queue,
        "task_routes": {"llmner.ingest": {"queue": s.ingest_queue}, "llmner.infer": {"queue": s.infer_queue}},
        "task_create_missing_queues": True,
    }
    if conf["broker_transport"] is None:
        del conf["broker_transport"]
    tls = s.tls_options()
    if tls is not None:
        conf["broker_use_ssl"] = tls
        conf["redis_backend_use_ssl"] = tls
    return conf


def dead_letter_raw(code: str, reason: str, payload: bytes | str, queue: str) -> None:
    """Dead-letter something that arrived on a queue (never raises: the worker must go on)."""
    # kombu builds the channel from the broker URL alone, so it reaches the settings through the
    # app that the worker runs, not through an argument.
    from workers import metrics
    from workers.celery import app

    try:
        store = JobStore(app.settings)
        store.dead_letter(reason, payload, stage="broker", code=code, job_id="", check_seen=False)
        metrics.DEAD_LETTERS.labels("broker").inc()
    except Exception as exc:  # noqa: BLE001 - Redis trouble: the item is lost, which is logged
        log.error("could not dead-letter a malformed item from %s (%s)", queue, type(exc).__name__)
    log.error("malformed item on %s dead-lettered: %s", queue, code)


def envelope_problem(item: Any) -> str | None:
    """Why ``item`` (decoded JSON) cannot be a kombu message, or None."""
    if not isinstance(item, dict):
        return f"not a JSON object ({type(item).__name__})"
    props = item.get("properties")
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return "no properties.delivery_tag"
    if not isinstance(props.get("delivery_info", {}), dict):
        return "properties.delivery_info is not an object"
    headers = item.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "headers is not an object"
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        return "body is not a string"
    if body and props.get("body_encoding") == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "body is not valid base64"
    return None


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # as kombu: disconnect, so that the next iteration reconnects
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = orjson.loads(item)
            except orjson.JSONDecodeError:
                dead_letter_raw("invalid_message", "broker item is not JSON", item, dest)
                return True
            problem = envelope_problem(message)
            if problem is not None:
                dead_letter_raw("invalid_message", f"broker item is not a message: {problem}", item, dest)
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()


class Transport(kombu_redis.Transport):
    Channel = Channel


class Consumer(CeleryConsumer):
    def create_task_handler(self, promise: Any = None) -> Any:
        inner = super().create_task_handler(promise) if promise is not None else super().create_task_handler()

        def on_task_received(message: Any) -> Any:
            headers = message.headers
            if not isinstance(headers, dict) or "task" not in headers or "id" not in headers:
                # Protocol 1 messages carry the arguments in the body, where Celery would repr them into events.
                return self._dead(message, "invalid_message", "not a Celery protocol 2 task message")
            if headers["task"] not in _TASKS:
                return self._dead(message, "unknown_task", f"unknown task name {str(headers['task'])[:80]!r}")
            headers["argsrepr"] = REDACTED_ARGS
            headers["kwargsrepr"] = "{}"
            return inner(message)

        return on_task_received

    def _dead(self, message: Any, code: str, reason: str) -> None:
        queue = (message.delivery_info or {}).get("routing_key", "?")
        raw = getattr(message, "body", b"")
        dead_letter_raw(code, reason, raw if isinstance(raw, (bytes, str)) else b"", queue)
        message.ack()

    # Celery's own handlers log the message body (dump_body): dead-letter instead, log no body.
    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead(message, "invalid_message", "not a task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Any) -> None:
        self._dead(message, "unknown_task", f"unknown task: {type(exc).__name__}")

    def on_invalid_task(self, body: Any, message: Any, exc: Any) -> None:
        self._dead(message, "invalid_message", f"invalid task message: {type(exc).__name__}")

    def on_decode_error(self, message: Any, exc: Any) -> None:
        self._dead(message, "invalid_message", f"task body does not decode: {type(exc).__name__}")
