"""The broker edge: what the workers do with items on their queues that are not valid task messages.

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

Dead letters keep a bounded prefix of the payload and its hash (workers.state.dead_fields).
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

log = logging.getLogger(__name__)

REDACTED_ARGS = "<redacted: task arguments>"
_TASKS = ("llmner.ingest", "llmner.infer")


def dead_letter_raw(code: str, reason: str, payload: bytes | str, queue: str) -> None:
    """Dead-letter something that arrived on a queue (never raises: the worker must go on)."""
    from workers.celery import settings
    from workers.state import JobStore

    try:
        store = JobStore(settings())
        store.dead_letter(reason, payload, stage="broker", code=code, job_id="", check_seen=False)
        from workers import metrics

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
