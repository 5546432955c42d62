"""What the tasks of one worker process work with: its settings, its job store, its pipeline and
the way to ask for more inference. Built once when the worker process starts (workers/tasks.py,
or the embedded runner with a pipeline of its own) and handed to every task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers.heartbeat import Heartbeat
from workers.jobs import JobStore
from workers.settings import Settings

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    store: JobStore
    pipeline: Pipeline
    # Queue ``n`` infer task messages (ticks); each takes up to LLMNER_INFER_BATCH_SIZE queued chunks.
    send_infer_ticks: Callable[[int], None]
    heartbeat: Heartbeat | None = None
