"""Celery configuration, read from environment variables. OWNED BY the workers helper.

Contract (names shared with deploy/): every setting comes from one of these variables.
  LLMNER_REDIS_URL            redis://[:password@]host:port/db or rediss://... (TLS); default redis://127.0.0.1:6379/0
                              (redis+socket:///path/to/sock for a unix socket)
  LLMNER_REDIS_PASSWORD       optional; overrides the password in the URL (from a Kubernetes Secret)
  LLMNER_INGEST_QUEUE         default llmner.ingest  (CPU: validate, chunk)
  LLMNER_INFER_QUEUE          default llmner.infer   (GPU: generator + selector)
  LLMNER_INBOX_STREAM         default llmner:inbox   (any language XADDs a JSON note here)
  LLMNER_RESULTS_STREAM       default llmner:results
  LLMNER_DEAD_STREAM          default llmner:dead
  LLMNER_INFER_BATCH_SIZE     chunks per micro-batch, default 16
  LLMNER_MAX_DOC_CHARS        size limit of a note, default 1000000
  LLMNER_MAX_DELIVERIES       deliveries of a chunk before its document goes to the dead stream, default 3
  LLMNER_VISIBILITY_TIMEOUT   seconds, broker and result backend alike, default 3600
  LLMNER_SOFT_SHUTDOWN_TIMEOUT seconds, default 60
  LLMNER_BUNDLE               model bundle directory; default: the bundle shipped in the package
  LLMNER_METRICS_PORT         Prometheus metrics port, default 9808 (0 = no metrics server)
Added by the workers helper (all optional):
  LLMNER_KEY_PREFIX           prefix of every other Redis key the workers write, default "llmner:"
                              (per-document state, the chunk work list, Celery's unacked hash
                              "<prefix>unacked"); tests use a unique prefix to isolate runs
  LLMNER_CHUNK_LIST           Redis list of chunk references waiting for inference, default <prefix>chunks
                              (queued infer work = LLEN of this list + LLEN of LLMNER_INFER_QUEUE
                              + entries of the unacked hash; scale infer workers on that sum)
  LLMNER_STATE_TTL            seconds the per-document state may live, default 604800 (7 days)
  LLMNER_READY_FILE           marker the infer worker writes once its models are loaded (health check),
                              default /tmp/llmner-worker-ready; empty: no marker (the embedded `llmner run`)
  LLMNER_PIPELINE_FACTORY     "module:function" returning the pipeline object (called with the bundle path or None);
                              default llmner.pipeline:Pipeline.from_bundle. For custom PipelineConfig settings.
  LLMNER_REDIS_TLS_CA / LLMNER_REDIS_TLS_CERT / LLMNER_REDIS_TLS_KEY   files for rediss:// (optional)
  LLMNER_REDIS_TLS_VERIFY     required (default) | optional | none

Only JSON crosses the wire (pickle is refused): a payload from another team's producer must never
be able to run code in a worker.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import quote, urlsplit, urlunsplit


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def redis_url_from_env() -> str:
    """LLMNER_REDIS_URL with LLMNER_REDIS_PASSWORD applied (the Secret wins over the URL)."""
    url = os.environ.get("LLMNER_REDIS_URL", "") or "redis://127.0.0.1:6379/0"
    password = os.environ.get("LLMNER_REDIS_PASSWORD", "")
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


def _tls_options() -> dict | None:
    url = os.environ.get("LLMNER_REDIS_URL", "")
    if not url.startswith("rediss://"):
        return None
    verify = os.environ.get("LLMNER_REDIS_TLS_VERIFY", "required").lower()
    reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    if verify not in reqs:
        raise ValueError(f"LLMNER_REDIS_TLS_VERIFY must be required, optional or none, got {verify!r}")
    options: dict = {"ssl_cert_reqs": reqs[verify]}
    for var, key in (("LLMNER_REDIS_TLS_CA", "ssl_ca_certs"), ("LLMNER_REDIS_TLS_CERT", "ssl_certfile"),
                     ("LLMNER_REDIS_TLS_KEY", "ssl_keyfile")):
        if os.environ.get(var):
            options[key] = os.environ[var]
    return options


key_prefix = os.environ.get("LLMNER_KEY_PREFIX", "llmner:")
visibility_timeout = _int("LLMNER_VISIBILITY_TIMEOUT", 3600)
ingest_queue = os.environ.get("LLMNER_INGEST_QUEUE", "llmner.ingest")
infer_queue = os.environ.get("LLMNER_INFER_QUEUE", "llmner.infer")

broker_url = redis_url_from_env()
result_backend = broker_url
broker_connection_retry_on_startup = True
_tls = _tls_options()
if _tls is not None:
    broker_use_ssl = _tls
    redis_backend_use_ssl = _tls

# Kombu restores an unacknowledged message (worker died) once it is older than the visibility
# timeout; the sweep must run often enough for short timeouts to mean something.
_restore_interval = max(1, min(10, visibility_timeout // 4))
broker_transport_options = {
    "visibility_timeout": visibility_timeout,
    "unacked_restore_interval": _restore_interval,
    "unacked_restore_throttle": 1,
    "unacked_key": f"{key_prefix}unacked",
    "unacked_index_key": f"{key_prefix}unacked_index",
    "unacked_mutex_key": f"{key_prefix}unacked_mutex",
}
result_backend_transport_options = {"visibility_timeout": visibility_timeout}

# Results travel through the llmner:results stream, not the result backend.
task_ignore_result = True
result_expires = 3600

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
event_serializer = "json"

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_soft_shutdown_timeout = float(_int("LLMNER_SOFT_SHUTDOWN_TIMEOUT", 60))
worker_enable_soft_shutdown_on_idle = True
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False

task_default_queue = ingest_queue
task_routes = {
    "llmner.ingest": {"queue": ingest_queue},
    "llmner.infer": {"queue": infer_queue},
}
task_create_missing_queues = True
