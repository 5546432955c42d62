"""The Celery application (``celery -A workers worker -Q llmner.infer --pool solo`` finds ``app`` here).

Configuration comes from ``celeryconfig.py`` (environment variables); the embedded runner and the
tests re-read it after changing the environment with :func:`configure`.
"""

from __future__ import annotations

import os

from celery import Celery

from workers.settings import Settings, load_celeryconfig

app = Celery("llmner", include=["workers.tasks"])
app.config_from_object(load_celeryconfig())
_settings: Settings | None = None


def settings() -> Settings:
    """The settings of this process (read once from the environment)."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def configure(new: Settings | None = None) -> Settings:
    """Point this process's app and settings at ``new`` (sets the LLMNER_* environment variables),
    or re-read the environment when ``new`` is None.

    Call before any worker starts in this process; broker connections made earlier are dropped.
    """
    global _settings
    if new is not None:
        env = new.to_env()
        for name in ("LLMNER_REDIS_TLS_CA", "LLMNER_REDIS_TLS_CERT", "LLMNER_REDIS_TLS_KEY", "LLMNER_BUNDLE",
                     "LLMNER_PIPELINE_FACTORY"):
            if name not in env:  # unset in ``new``: an earlier value must not leak into it
                os.environ.pop(name, None)
        os.environ.update(env)
        os.environ.pop("LLMNER_REDIS_PASSWORD", None)  # the URL in ``new`` already carries it
    app.config_from_object(load_celeryconfig(reload=True), force=True)
    app.close()  # drop the broker connection pool built for the previous URL
    app.__dict__.pop("amqp", None)  # queues and router are cached from the previous configuration
    _settings = Settings.from_env()
    from workers import state, tasks

    state.reset_clients()
    tasks.reset_stores()
    return _settings
