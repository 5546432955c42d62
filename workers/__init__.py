"""Celery adapter of llmner: streaming ingestion, micro-batched inference, result and dead-letter streams.

No ML logic lives here: the workers call :class:`llmner.pipeline.Pipeline`. The Celery app is in
``workers.celery`` (``celery -A workers worker`` finds it there); importing this package stays light
so that the ``llmner`` CLI can discover ``workers.cli`` quickly.
"""
