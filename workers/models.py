"""The model bundle of this worker process: loaded once (at worker start), never per task."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmner.errors import ConfigError
from workers import metrics

log = logging.getLogger(__name__)

_pipeline: Any = None
_lock = threading.Lock()


def load_factory(spec: str | None) -> Callable[[str | None], Any]:
    """``module:function`` (LLMNER_PIPELINE_FACTORY), default :meth:`llmner.pipeline.Pipeline.from_bundle`."""
    if not spec:
        from llmner.pipeline import Pipeline

        return Pipeline.from_bundle
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"LLMNER_PIPELINE_FACTORY must look like 'module:function', got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def get_pipeline(bundle: str | None = None, ready_file: str | None = None, factory: str | None = None) -> Any:
    """The process-wide :class:`llmner.pipeline.Pipeline` (loads it on first use)."""
    global _pipeline
    if _pipeline is not None:
        return _pipeline
    with _lock:
        if _pipeline is None:
            started = time.perf_counter()
            pipe = load_factory(factory)(bundle)
            seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.set(seconds)
            log.info("model bundle loaded in %.1f s: %s", seconds, model_version(pipe))
            _pipeline = pipe
            if ready_file:
                write_ready_marker(ready_file)
    return _pipeline


def set_pipeline(pipe: Any, ready_file: str | None = None) -> None:
    """Use an already built pipeline in this process (the embedded runner, tests, benchmarks)."""
    global _pipeline
    with _lock:
        _pipeline = pipe
    if ready_file:
        write_ready_marker(ready_file)


def clear_pipeline() -> None:
    global _pipeline
    with _lock:
        _pipeline = None


def model_version(pipe: Any) -> str:
    """A stable string naming the models, e.g. ``generator=abc;selector=def`` (consumers dedupe on it)."""
    ids = dict(getattr(pipe, "model_ids", {}) or {})
    return ";".join(f"{k}={v}" for k, v in sorted(ids.items())) or "unknown"


def write_ready_marker(path: str) -> None:
    """The health check reads this: models are loaded in process ``pid``."""
    try:
        Path(path).write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write ready marker %s: %s", path, exc.strerror)


def remove_ready_marker(path: str) -> None:
    if not path:  # this process writes no marker
        return
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
