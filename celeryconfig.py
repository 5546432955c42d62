"""Celery configuration: :func:`workers.broker.celery_config` of :class:`workers.settings.Settings`,
which alone reads the environment; the job store and every Redis client of the workers are built
from the same settings, so that their keys and queue names cannot diverge from Celery's.

Contract (names shared with deploy/): every setting comes from one of these variables.
  LLMNER_REDIS_URL            redis://[:password@]host:port/db or rediss://... (TLS); default redis://127.0.0.1:6379/0
                              (redis+socket:///path/to/sock for a unix socket)
  LLMNER_REDIS_PASSWORD       optional; overrides the password in the URL (from a Kubernetes Secret)
  LLMNER_REDIS_TLS_CA / LLMNER_REDIS_TLS_CERT / LLMNER_REDIS_TLS_KEY   files for rediss:// (optional;
                              every client uses them: Celery, job store, health check, bridge, consumers, CLI)
  LLMNER_REDIS_TLS_VERIFY     required (default) | optional | none
  LLMNER_KEY_PREFIX           prefix of every other Redis key the workers write, default "llmner:"
  LLMNER_INGEST_QUEUE         default llmner.ingest  (CPU: validate, chunk)
  LLMNER_INFER_QUEUE          default llmner.infer   (GPU: generator + selector)
  LLMNER_INBOX_STREAM         default llmner:inbox   (any language XADDs a JSON note here)
  LLMNER_RESULTS_STREAM       default llmner:results
  LLMNER_DEAD_STREAM          default llmner:dead
  LLMNER_CHUNK_LIST           ring of jobs with chunks waiting for inference, default <prefix>chunks
  LLMNER_INFER_BATCH_SIZE     chunks per micro-batch, default 16
  LLMNER_MAX_DOC_CHARS        size limit of a note, default 1000000
  LLMNER_MAX_DOC_CHUNKS       chunks per note, default 4000 (more: dead letter too_many_chunks)
  LLMNER_MAX_ID_CHARS         length limit of a document id, default 256
  LLMNER_MAX_DELIVERIES       deliveries of a chunk before its document goes to the dead stream, default 3
  LLMNER_VISIBILITY_TIMEOUT   seconds, broker and result backend alike, default 3600
  LLMNER_TASK_TIME_LIMIT      seconds one task may run, default 600 (always below the visibility timeout)
  LLMNER_HEARTBEAT_INTERVAL   seconds between worker heartbeats, default 2
  LLMNER_HEARTBEAT_TTL        seconds after which a silent worker counts as dead, default 10
  LLMNER_STATE_TTL            seconds the per-document state may live, default 604800 (7 days)
  LLMNER_OUTCOME_TTL          seconds a job's outcome (published / dead) is remembered, default 2592000 (30 days)
  LLMNER_DEAD_PAYLOAD_BYTES   bytes of a rejected payload kept in the dead stream, default 65536
  LLMNER_SOFT_SHUTDOWN_TIMEOUT seconds, default 60
  LLMNER_BUNDLE               model bundle directory; default: the bundle shipped in the package
  LLMNER_PIPELINE_FACTORY     "module:function" returning the pipeline object (called with the bundle path or None)
  LLMNER_METRICS_PORT         Prometheus metrics port, default 9808 (0 = no metrics server)
  LLMNER_METRICS_ADDR         address the metrics server binds, default 127.0.0.1 (the chart sets the pod IP)
  LLMNER_READY_FILE           marker the infer worker writes once its models are loaded (health check),
                              default /tmp/llmner-worker-ready; empty: no marker (the embedded `llmner run`)

An empty variable means its default, everywhere (Celery's keys and the job store's cannot diverge).

Only JSON crosses the wire (pickle is refused): a payload from another team's producer must never
be able to run code in a worker.
"""

from workers.broker import celery_config
from workers.settings import Settings

globals().update(celery_config(Settings.from_env()))
