"""The time limit of a task (LLMNER_TASK_TIME_LIMIT), enforced inside the task.

Celery's own limits need the prefork pool; the infer workers run the solo pool, whose tasks run
in the main thread, where SIGALRM works. (Embedded worker threads get no limit; they serve
``llmner run`` on a private server.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class TaskTimeLimit(Exception):
    """The task ran past LLMNER_TASK_TIME_LIMIT."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TaskTimeLimit in this task after ``seconds``."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _expired(*_: object) -> None:
        raise TaskTimeLimit(f"task ran past its time limit ({seconds:.0f} s, LLMNER_TASK_TIME_LIMIT)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
