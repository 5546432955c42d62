"""Celery configuration, read from environment variables. OWNED BY the workers helper.

Contract (names shared with deploy/): every setting comes from one of these variables.
  LLMNER_REDIS_URL            redis://[:password@]host:port/db or rediss://... (TLS); default redis://127.0.0.1:6379/0
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
  LLMNER_METRICS_PORT         Prometheus metrics port, default 9808
"""
