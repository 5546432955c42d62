"""Run-time settings of the workers, from the environment variables documented in celeryconfig.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType


def load_celeryconfig(reload: bool = False) -> ModuleType:
    """``celeryconfig`` from sys.path, else from the repository root next to this package.

    ``reload=True`` re-executes it so that it reads the environment again.
    """
    module = sys.modules.get("celeryconfig")
    if module is not None and not reload:
        return module
    path: Path | None = None
    if module is not None and getattr(module, "__file__", None):
        path = Path(module.__file__)
    else:
        spec = importlib.util.find_spec("celeryconfig")
        if spec is not None and spec.origin:
            path = Path(spec.origin)
        else:
            path = Path(__file__).resolve().parents[1] / "celeryconfig.py"
    spec = importlib.util.spec_from_file_location("celeryconfig", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"celeryconfig.py not found (looked on sys.path and at {path})")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["celeryconfig"] = module
    return module


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "llmner:"
    ingest_queue: str = "llmner.ingest"
    infer_queue: str = "llmner.infer"
    inbox_stream: str = "llmner:inbox"
    results_stream: str = "llmner:results"
    dead_stream: str = "llmner:dead"
    chunk_list: str = "llmner:chunks"
    infer_batch_size: int = 16
    max_doc_chars: int = 1_000_000
    max_deliveries: int = 3
    visibility_timeout: int = 3600
    state_ttl: int = 7 * 24 * 3600
    bundle: str | None = None
    pipeline_factory: str | None = None
    metrics_port: int = 9808
    ready_file: str = "/tmp/llmner-worker-ready"

    @classmethod
    def from_env(cls) -> Settings:
        redis_url_from_env = load_celeryconfig().redis_url_from_env  # URL and password combined in one place

        prefix = os.environ.get("LLMNER_KEY_PREFIX", "") or "llmner:"
        env = os.environ.get
        return cls(
            redis_url=redis_url_from_env(),
            key_prefix=prefix,
            ingest_queue=env("LLMNER_INGEST_QUEUE", "") or "llmner.ingest",
            infer_queue=env("LLMNER_INFER_QUEUE", "") or "llmner.infer",
            inbox_stream=env("LLMNER_INBOX_STREAM", "") or "llmner:inbox",
            results_stream=env("LLMNER_RESULTS_STREAM", "") or "llmner:results",
            dead_stream=env("LLMNER_DEAD_STREAM", "") or "llmner:dead",
            chunk_list=env("LLMNER_CHUNK_LIST", "") or f"{prefix}chunks",
            infer_batch_size=max(1, _int("LLMNER_INFER_BATCH_SIZE", 16)),
            max_doc_chars=_int("LLMNER_MAX_DOC_CHARS", 1_000_000),
            max_deliveries=max(1, _int("LLMNER_MAX_DELIVERIES", 3)),
            visibility_timeout=_int("LLMNER_VISIBILITY_TIMEOUT", 3600),
            state_ttl=_int("LLMNER_STATE_TTL", 7 * 24 * 3600),
            bundle=env("LLMNER_BUNDLE") or None,
            pipeline_factory=env("LLMNER_PIPELINE_FACTORY") or None,
            metrics_port=_int("LLMNER_METRICS_PORT", 9808),
            # Set but empty: no marker (the embedded `llmner run` must not touch a deployed worker's).
            ready_file=env("LLMNER_READY_FILE", "/tmp/llmner-worker-ready"),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in another process."""
        env = {
            "LLMNER_REDIS_URL": self.redis_url,
            "LLMNER_KEY_PREFIX": self.key_prefix,
            "LLMNER_INGEST_QUEUE": self.ingest_queue,
            "LLMNER_INFER_QUEUE": self.infer_queue,
            "LLMNER_INBOX_STREAM": self.inbox_stream,
            "LLMNER_RESULTS_STREAM": self.results_stream,
            "LLMNER_DEAD_STREAM": self.dead_stream,
            "LLMNER_CHUNK_LIST": self.chunk_list,
            "LLMNER_INFER_BATCH_SIZE": str(self.infer_batch_size),
            "LLMNER_MAX_DOC_CHARS": str(self.max_doc_chars),
            "LLMNER_MAX_DELIVERIES": str(self.max_deliveries),
            "LLMNER_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "LLMNER_STATE_TTL": str(self.state_ttl),
            "LLMNER_METRICS_PORT": str(self.metrics_port),
            "LLMNER_READY_FILE": self.ready_file,
        }
        if self.bundle:
            env["LLMNER_BUNDLE"] = self.bundle
        if self.pipeline_factory:
            env["LLMNER_PIPELINE_FACTORY"] = self.pipeline_factory
        return env

    def with_prefix(self, prefix: str) -> Settings:
        """Every key and queue under ``prefix`` (tests isolate runs this way)."""
        return replace(
            self, key_prefix=prefix, ingest_queue=f"{prefix}ingest", infer_queue=f"{prefix}infer",
            inbox_stream=f"{prefix}inbox", results_stream=f"{prefix}results", dead_stream=f"{prefix}dead",
            chunk_list=f"{prefix}chunks",
        )

    # Per-document (per-job) state. A job is one submission of one document; its id is the
    # ingest task id, so a redelivered ingest message maps to the same job.
    def manifest_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}"

    def chunk_results_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}:chunks"

    def attempts_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}:attempts"

    def seen_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}:seen"

    def inflight_key(self, task_id: str) -> str:
        return f"{self.key_prefix}inflight:{task_id}"

    def deliveries_key(self, task_id: str) -> str:
        return f"{self.key_prefix}deliveries:{task_id}"
