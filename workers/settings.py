"""Run-time settings of the workers: the only reader of the LLMNER_* environment variables.

``celeryconfig.py`` is a few lines over :func:`workers.broker.celery_config` of these settings, the
job store (workers/jobs.py) names every Redis key from them, and every Redis client of the workers
is built by :func:`workers.connections.client` from them, so Celery, the job store, the health
check, the inbox bridge, the consumers and the CLI cannot disagree on a key prefix, a queue name or
a TLS option. The variables are listed in celeryconfig.py (the deploy contract). An empty variable
means its default, everywhere.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit


def _env(name: str, default: str) -> str:
    # Set-but-empty means the default: a Helm value left blank must not become an empty key prefix.
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


def redis_url_from_env() -> str:
    """LLMNER_REDIS_URL with LLMNER_REDIS_PASSWORD applied (the Secret wins over the URL)."""
    return with_password(_env("LLMNER_REDIS_URL", "redis://127.0.0.1:6379/0"), os.environ.get("LLMNER_REDIS_PASSWORD", ""))


def with_password(url: str, password: str) -> str:
    if not password:
        return url
    parts = urlsplit(url)
    if parts.scheme == "redis+socket":
        # kombu reads the password of a unix socket URL from the netloc as well.
        return urlunsplit((parts.scheme, f":{quote(password, safe='')}@", parts.path, parts.query, parts.fragment))
    host = parts.hostname or "127.0.0.1"
    netloc = f"{parts.username or ''}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redacted_url(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{parts.username or ''}:***@{netloc}", parts.path, parts.query, parts.fragment))


_VERIFY = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: str = "required"
    key_prefix: str = "llmner:"
    ingest_queue: str = "llmner.ingest"
    infer_queue: str = "llmner.infer"
    inbox_stream: str = "llmner:inbox"
    results_stream: str = "llmner:results"
    dead_stream: str = "llmner:dead"
    chunk_list: str = "llmner:chunks"
    infer_batch_size: int = 16
    max_doc_chars: int = 1_000_000
    max_doc_chunks: int = 4000
    max_id_chars: int = 256
    max_deliveries: int = 3
    visibility_timeout: int = 3600
    task_time_limit: int = 600
    heartbeat_interval: float = 2.0
    heartbeat_ttl: float = 10.0
    state_ttl: int = 7 * 24 * 3600
    outcome_ttl: int = 30 * 24 * 3600
    dead_payload_bytes: int = 65536
    soft_shutdown_timeout: int = 60
    bundle: str | None = None
    pipeline_factory: str | None = None
    metrics_port: int = 9808
    metrics_addr: str = "127.0.0.1"
    ready_file: str = "/tmp/llmner-worker-ready"

    @classmethod
    def from_env(cls) -> Settings:
        prefix = _env("LLMNER_KEY_PREFIX", "llmner:")
        verify = _env("LLMNER_REDIS_TLS_VERIFY", "required").lower()
        if verify not in _VERIFY:
            raise ValueError(f"LLMNER_REDIS_TLS_VERIFY must be required, optional or none, got {verify!r}")
        return cls(
            redis_url=redis_url_from_env(),
            tls_ca=os.environ.get("LLMNER_REDIS_TLS_CA") or None,
            tls_cert=os.environ.get("LLMNER_REDIS_TLS_CERT") or None,
            tls_key=os.environ.get("LLMNER_REDIS_TLS_KEY") or None,
            tls_verify=verify,
            key_prefix=prefix,
            ingest_queue=_env("LLMNER_INGEST_QUEUE", "llmner.ingest"),
            infer_queue=_env("LLMNER_INFER_QUEUE", "llmner.infer"),
            inbox_stream=_env("LLMNER_INBOX_STREAM", "llmner:inbox"),
            results_stream=_env("LLMNER_RESULTS_STREAM", "llmner:results"),
            dead_stream=_env("LLMNER_DEAD_STREAM", "llmner:dead"),
            chunk_list=_env("LLMNER_CHUNK_LIST", f"{prefix}chunks"),
            infer_batch_size=max(1, _int("LLMNER_INFER_BATCH_SIZE", 16)),
            max_doc_chars=_int("LLMNER_MAX_DOC_CHARS", 1_000_000),
            max_doc_chunks=max(1, _int("LLMNER_MAX_DOC_CHUNKS", 4000)),
            max_id_chars=max(1, _int("LLMNER_MAX_ID_CHARS", 256)),
            max_deliveries=max(1, _int("LLMNER_MAX_DELIVERIES", 3)),
            visibility_timeout=_int("LLMNER_VISIBILITY_TIMEOUT", 3600),
            task_time_limit=max(1, _int("LLMNER_TASK_TIME_LIMIT", 600)),
            heartbeat_interval=max(0.1, _float("LLMNER_HEARTBEAT_INTERVAL", 2.0)),
            heartbeat_ttl=max(0.5, _float("LLMNER_HEARTBEAT_TTL", 10.0)),
            state_ttl=_int("LLMNER_STATE_TTL", 7 * 24 * 3600),
            outcome_ttl=_int("LLMNER_OUTCOME_TTL", 30 * 24 * 3600),
            dead_payload_bytes=max(256, _int("LLMNER_DEAD_PAYLOAD_BYTES", 65536)),
            soft_shutdown_timeout=_int("LLMNER_SOFT_SHUTDOWN_TIMEOUT", 60),
            bundle=os.environ.get("LLMNER_BUNDLE") or None,
            pipeline_factory=os.environ.get("LLMNER_PIPELINE_FACTORY") or None,
            metrics_port=_int("LLMNER_METRICS_PORT", 9808),
            metrics_addr=_env("LLMNER_METRICS_ADDR", "127.0.0.1"),
            # Set but empty: no marker (the embedded `llmner run` must not touch a deployed worker's).
            ready_file=os.environ.get("LLMNER_READY_FILE", "/tmp/llmner-worker-ready"),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in another process."""
        env = {
            "LLMNER_REDIS_URL": self.redis_url,
            "LLMNER_REDIS_TLS_VERIFY": self.tls_verify,
            "LLMNER_KEY_PREFIX": self.key_prefix,
            "LLMNER_INGEST_QUEUE": self.ingest_queue,
            "LLMNER_INFER_QUEUE": self.infer_queue,
            "LLMNER_INBOX_STREAM": self.inbox_stream,
            "LLMNER_RESULTS_STREAM": self.results_stream,
            "LLMNER_DEAD_STREAM": self.dead_stream,
            "LLMNER_CHUNK_LIST": self.chunk_list,
            "LLMNER_INFER_BATCH_SIZE": str(self.infer_batch_size),
            "LLMNER_MAX_DOC_CHARS": str(self.max_doc_chars),
            "LLMNER_MAX_DOC_CHUNKS": str(self.max_doc_chunks),
            "LLMNER_MAX_ID_CHARS": str(self.max_id_chars),
            "LLMNER_MAX_DELIVERIES": str(self.max_deliveries),
            "LLMNER_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "LLMNER_TASK_TIME_LIMIT": str(self.task_time_limit),
            "LLMNER_HEARTBEAT_INTERVAL": repr(self.heartbeat_interval),
            "LLMNER_HEARTBEAT_TTL": repr(self.heartbeat_ttl),
            "LLMNER_STATE_TTL": str(self.state_ttl),
            "LLMNER_OUTCOME_TTL": str(self.outcome_ttl),
            "LLMNER_DEAD_PAYLOAD_BYTES": str(self.dead_payload_bytes),
            "LLMNER_SOFT_SHUTDOWN_TIMEOUT": str(self.soft_shutdown_timeout),
            "LLMNER_METRICS_PORT": str(self.metrics_port),
            "LLMNER_METRICS_ADDR": self.metrics_addr,
            "LLMNER_READY_FILE": self.ready_file,
        }
        for name, value in (("LLMNER_REDIS_TLS_CA", self.tls_ca), ("LLMNER_REDIS_TLS_CERT", self.tls_cert),
                            ("LLMNER_REDIS_TLS_KEY", self.tls_key), ("LLMNER_BUNDLE", self.bundle),
                            ("LLMNER_PIPELINE_FACTORY", self.pipeline_factory)):
            if value:
                env[name] = value
        return env

    def with_prefix(self, prefix: str) -> Settings:
        """Every key and queue under ``prefix`` (tests isolate runs this way)."""
        return replace(
            self, key_prefix=prefix, ingest_queue=f"{prefix}ingest", infer_queue=f"{prefix}infer",
            inbox_stream=f"{prefix}inbox", results_stream=f"{prefix}results", dead_stream=f"{prefix}dead",
            chunk_list=f"{prefix}chunks",
        )

    @property
    def effective_time_limit(self) -> int:
        """The task time limit, kept below the visibility timeout so that a running task is never
        redelivered to a second worker while the first still runs it."""
        return max(1, min(self.task_time_limit, self.visibility_timeout - 5)) if self.visibility_timeout > 5 \
            else self.task_time_limit

    def tls_options(self) -> dict[str, Any] | None:
        """redis-py / kombu keyword arguments for rediss:// (the two accept the same names); None without TLS."""
        if not self.redis_url.startswith("rediss://"):
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": _VERIFY[self.tls_verify]}
        for key, value in (("ssl_ca_certs", self.tls_ca), ("ssl_certfile", self.tls_cert),
                           ("ssl_keyfile", self.tls_key)):
            if value:
                options[key] = value
        return options
