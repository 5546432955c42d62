"""Celery configuration: a view of :class:`workers.settings.Settings`, which alone reads the
LLMNER_* environment variables (they are listed in workers/settings.py). Only JSON crosses the wire
(pickle is refused): a payload from another team's producer must never be able to run code in a worker.
"""

from workers.settings import Settings, celery_config, redis_url_from_env  # noqa: F401 - kept for callers

settings = Settings.from_env()
globals().update(celery_config(settings))
