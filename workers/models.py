"""The model bundle of a worker process: loaded once, when the process starts, never per task."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmner.errors import ConfigError
from workers import metrics

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

log = logging.getLogger(__name__)


def load_factory(spec: str | None) -> Callable[[str | None], Pipeline]:
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


def load_pipeline(bundle: str | None = None, factory: str | None = None) -> Pipeline:
    """The :class:`llmner.pipeline.Pipeline` of ``bundle`` (LLMNER_BUNDLE; the shipped one when None),
    built by ``factory`` (LLMNER_PIPELINE_FACTORY); the load time goes to the metrics."""
    started = time.perf_counter()
    pipeline = load_factory(factory)(bundle)
    seconds = time.perf_counter() - started
    metrics.MODEL_LOAD_SECONDS.set(seconds)
    log.info("model bundle loaded in %.1f s: %s", seconds, model_version(pipeline))
    return pipeline


def model_version(pipeline: Pipeline) -> str:
    """A stable string naming the models, e.g. ``generator=abc;selector=def`` (consumers dedupe on it)."""
    ids = dict(getattr(pipeline, "model_ids", {}) or {})
    return ";".join(f"{k}={v}" for k, v in sorted(ids.items())) or "unknown"


def write_ready_marker(path: str) -> None:
    """The health check reads this: models are loaded in process ``pid``."""
    if not path:  # this process writes no marker
        return
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
