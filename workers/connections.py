"""Every Redis client of the workers, built in one place from one :class:`Settings` (URL, password,
TLS files and verification), so that no part of the service connects differently from Celery."""

from __future__ import annotations

import threading

import redis
from kombu.exceptions import OperationalError

from llmner.errors import LlmnerError
from workers.settings import Settings, redacted_url

# Redis (or the Celery broker on it) did not answer: never the fault of the message being worked on.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError)
_clients: dict[object, redis.Redis] = {}
_lock = threading.Lock()


class RedisUnreachable(LlmnerError):
    """Redis did not answer: one line naming the URL and the fix (the CLI prints it, no traceback)."""


def redis_py_url(url: str) -> str:
    """kombu's unix socket URL (``redis+socket:///path``) in redis-py's spelling (``unix:///path``)."""
    for scheme in ("redis+socket://", "socket://"):
        if url.startswith(scheme):
            return "unix://" + url[len(scheme):]
    return url


def new_client(settings: Settings | str, **kwargs: object) -> redis.Redis:
    """A fresh client (its own pool) for ``settings``; a plain URL gets no TLS options."""
    if isinstance(settings, str):
        return redis.Redis.from_url(redis_py_url(settings), **kwargs)
    return redis.Redis.from_url(redis_py_url(settings.redis_url), **(settings.tls_options() or {}), **kwargs)


def client(settings: Settings | str) -> redis.Redis:
    """One connection pool per settings per process (redis-py clients are thread-safe)."""
    key = settings if isinstance(settings, str) else (settings.redis_url, settings.tls_ca, settings.tls_cert,
                                                      settings.tls_key, settings.tls_verify)
    with _lock:
        if key not in _clients:
            _clients[key] = new_client(settings, health_check_interval=30)
        return _clients[key]


def reset_clients() -> None:
    with _lock:
        for c in _clients.values():
            c.close()
        _clients.clear()


def unreachable_message(url: str, exc: BaseException) -> str:
    """``cannot reach Redis at URL (reason); fix``: what the CLI prints instead of a traceback."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (f"cannot reach Redis at {redacted_url(url)} ({reason[:200]}); start Redis there, or point "
            "LLMNER_REDIS_URL / --redis-url at a running one (rediss:// with LLMNER_REDIS_TLS_CA for TLS)")


def check_reachable(settings: Settings, timeout: float = 3.0) -> None:
    """Raise :class:`RedisUnreachable` (one line) when Redis does not answer PING."""
    try:
        new_client(settings, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise RedisUnreachable(unreachable_message(settings.redis_url, exc)) from None
