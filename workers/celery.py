"""The Celery application (``celery -A workers worker -Q llmner.infer --pool solo`` finds ``app`` here).

Celery's configuration comes from ``celeryconfig.py``, a view of :class:`workers.settings.Settings`.
The app carries those settings and, in a worker process, the :class:`workers.context.WorkerContext`
its tasks run with (built when the process starts: workers/tasks.py). The embedded runner and the
tests point the app at other settings with :meth:`WorkerApp.configure`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from celery import Celery

from workers.connections import reset_clients
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.context import WorkerContext


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


class WorkerApp(Celery):
    """The Celery app of the workers, with the settings it was configured from."""

    def __init__(self) -> None:
        super().__init__("llmner", include=["workers.tasks"])
        self.config_from_object(load_celeryconfig())
        self.settings: Settings = Settings.from_env()
        self.context: WorkerContext | None = None

    def configure(self, new: Settings | None = None) -> Settings:
        """Point this app at ``new`` (sets the LLMNER_* environment variables, which celeryconfig.py
        and worker processes started from here read), or re-read the environment when ``new`` is None.

        Call before any worker starts in this process; broker connections made earlier are dropped.
        """
        if new is not None:
            env = new.to_env()
            for name in ("LLMNER_REDIS_TLS_CA", "LLMNER_REDIS_TLS_CERT", "LLMNER_REDIS_TLS_KEY", "LLMNER_BUNDLE",
                         "LLMNER_PIPELINE_FACTORY"):
                if name not in env:  # unset in ``new``: an earlier value must not leak into it
                    os.environ.pop(name, None)
            os.environ.update(env)
            os.environ.pop("LLMNER_REDIS_PASSWORD", None)  # the URL in ``new`` already carries it
        self.config_from_object(load_celeryconfig(reload=True), force=True)
        self.close()  # drop the broker connection pool built for the previous URL
        self.__dict__.pop("amqp", None)  # queues and router are cached from the previous configuration
        self.settings = Settings.from_env()
        self.context = None  # its job store and Redis clients belong to the previous settings
        reset_clients()
        return self.settings


app = WorkerApp()
