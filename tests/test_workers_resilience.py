"""Worker processes against a real Redis: kill -9 mid-batch, redelivery after the visibility
timeout, and 1,000 documents through two worker processes, each published exactly once.

Workers are started exactly as deployments start them: ``celery -A workers worker -Q ... --pool solo``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from llmner.testing import build_tiny_bundle
from workers.testing import (
    REPO,
    WorkerProcess,
    cleanup,
    configured,
    isolated_settings,
    lexicon_pipeline,
    note_payloads,
    wait_for,
    wait_for_jobs,
)

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def stack(tmp_path, require_redis):
    """Started worker processes are stopped and the run's keys deleted, whatever happens."""
    started: list[WorkerProcess] = []
    settings_used: list = []
    yield started, settings_used
    for w in started:
        w.stop()
    for s in settings_used:
        cleanup(s)


def _consume_all(settings, group: str):
    from workers.connections import client
    from workers.consumer import ResultConsumer

    consumer = ResultConsumer(client(settings.redis_url), group=group, stream=settings.results_stream, min_idle_ms=0)
    consumer.ensure_group()
    handled: list[str] = []
    while True:
        entries = consumer.read(count=500, block_ms=200)
        if not entries:
            break
        consumer.process(entries, lambda e: handled.append(e.document_id))
    return consumer.stats, handled


def test_kill_9_of_infer_worker_mid_batch_loses_nothing(stack, tmp_path, bundle_dir):
    from workers.client import submit_many
    from workers.connections import client

    started, used = stack
    s = isolated_settings(tmp_path, infer_batch_size=3, visibility_timeout=3)
    used.append(s)
    ingest = WorkerProcess(s, [s.ingest_queue], str(bundle_dir), "ingest", tmp_path)
    infer_a = WorkerProcess(s, [s.infer_queue], str(bundle_dir), "infer-a", tmp_path)
    started += [ingest, infer_a]
    ingest.start()
    infer_a.start()
    docs = note_payloads(12, seed=5)
    r = client(s.redis_url)
    with configured(s):
        jobs = submit_many(docs, batch=4)

        def batch_in_flight():
            # Kill once some documents are out, while a later batch is being tagged.
            if r.xlen(s.results_stream) < 2:
                return []
            return [k for k in r.scan_iter(match=f"{s.key_prefix}inflight:*") if r.llen(k) > 0]

        inflight_keys = wait_for(batch_in_flight, 180, "an infer batch in flight", interval=0.005)
        in_flight_chunks = sum(r.llen(k) for k in inflight_keys)
        infer_a.kill9()
        published_before_kill = r.xlen(s.results_stream)
        # The batch may have finished between the check and the kill (a race on a loaded machine):
        # only chunks still in flight after the kill must be re-run.
        killed_chunks = sum(r.llen(k) for k in inflight_keys)
        infer_b = WorkerProcess(s, [s.infer_queue], str(bundle_dir), "infer-b", tmp_path)
        started.append(infer_b)
        infer_b.start()
        _, dead = wait_for_jobs(s, jobs, timeout=240)
    stats, handled = _consume_all(s, "kill-test")
    entries = r.xlen(s.results_stream)
    unique = len({e for e in handled})
    print(f"\nkill -9 test: documents {len(docs)}, published before the kill {published_before_kill}, "
          f"chunks in flight at the kill {in_flight_chunks} (after it {killed_chunks}), result entries {entries}, unique documents {unique}, "
          f"duplicates in stream {entries - unique}, consumer handled {stats.handled}, "
          f"consumer dropped duplicates {stats.duplicates}, missing {len(docs) - unique}, dead {len(dead)}")
    assert dead == {}
    assert sorted(handled) == sorted(d["id"] for d in docs)  # every document, once, after dedupe
    assert stats.handled == len(docs) and entries == stats.handled + stats.duplicates
    assert 2 <= published_before_kill < len(docs)  # the kill really happened mid-run
    # The killed batch's chunks were re-run: by the restarted worker when it got the redelivered message
    # first, or through the retry list when a live worker's sweeper saw the dead one stop beating first
    # (a race on a loaded machine: infer-b's models can take longer to load than LLMNER_HEARTBEAT_TTL).
    if killed_chunks:
        assert "re-running" in infer_b.log() or "stopped beating" in ingest.log() + infer_b.log()
    assert ingest.alive() and infer_b.alive()


_CRASHING_CONSUMER = """
import os
from workers.celery import app
from workers.jobs import JobStore
s = app.settings
with app.connection_for_read() as conn:
    queue = conn.SimpleQueue(s.infer_queue)
    message = queue.get(timeout=30)           # delivered, not acknowledged
    task_id = message.headers["id"]
    store = JobStore(s)
    store.redis.set(store.keys.heartbeat("doomed"), '{"task": "%s", "t": 0}' % task_id, px=int(s.heartbeat_ttl * 1000))
    refs = store.take_batch(task_id, s.infer_batch_size, "doomed")   # what the infer task does first
    print(task_id, len(refs), flush=True)
    os._exit(0)                                # vanish: no ack, no clean close
"""


def test_vanished_consumer_recovered_by_heartbeat_sweeper_not_visibility_timeout(stack, tmp_path, caplog):
    """Issue 16, defect 2: a worker that vanishes mid-batch (no ack, no heartbeat) used to hold its
    chunks and its message until the visibility timeout (3,600 s by default) redelivered it. The
    sweeper now requeues its in-flight chunks and its message within a few heartbeat periods."""
    import logging
    import os

    from workers.client import submit_many
    from workers.connections import client
    from workers.embedded import running_workers

    caplog.set_level(logging.WARNING)
    _, used = stack
    # The default visibility timeout: recovery must not depend on it.
    s = isolated_settings(tmp_path, infer_batch_size=50, heartbeat_interval=0.5, heartbeat_ttl=2.0)
    assert s.visibility_timeout == 3600
    used.append(s)
    pipe = lexicon_pipeline()
    docs = note_payloads(6, seed=6)
    r = client(s.redis_url)
    with running_workers(s, pipeline=pipe, queues=[s.ingest_queue]):
        jobs = submit_many(docs, batch=10)
        wait_for(lambda: r.llen(s.infer_queue) > 0 and r.llen(s.chunk_list) > 0, 30, "chunks queued")
    env = {**os.environ, **s.to_env(), "PYTHONPATH": str(REPO)}
    crashed = subprocess.run([sys.executable, "-c", _CRASHING_CONSUMER], env=env, capture_output=True, text=True,
                             check=False, timeout=60)
    assert crashed.returncode == 0, crashed.stderr[-2000:]
    task_id, taken = crashed.stdout.split()
    assert int(taken) > 0 and r.hlen(f"{s.key_prefix}unacked") == 1
    crashed_at = time.monotonic()
    with running_workers(s, pipeline=pipe) as active:
        results, dead = wait_for_jobs(active, jobs, timeout=60)
        elapsed = time.monotonic() - crashed_at
        wait_for(lambda: r.hlen(f"{s.key_prefix}unacked") == 0, 30, "the vanished worker's message restored and run")
    print(f"\nvanished consumer: {len(docs)} documents published {elapsed:.1f} s after the crash "
          f"(visibility timeout {s.visibility_timeout} s)")
    assert dead == {} and sorted(rec["document_id"] for rec in results.values()) == sorted(d["id"] for d in docs)
    assert 1.0 < elapsed < 30  # after the heartbeat expired: seconds, not the hour of the visibility timeout
    assert f"infer task {task_id}" in caplog.text
    assert r.xlen(s.results_stream) == len(docs)  # re-running the taken chunks published nothing twice


def test_thousand_documents_two_worker_processes_each_published_exactly_once(stack, tmp_path):
    from workers.client import submit_many
    from workers.connections import client

    started, used = stack
    s = isolated_settings(tmp_path, infer_batch_size=16, pipeline_factory="workers.testing:lexicon_pipeline")
    used.append(s)
    workers = [WorkerProcess(s, [s.ingest_queue, s.infer_queue], "", f"w{i}", tmp_path) for i in range(2)]
    started += workers
    for w in workers:
        w.start()
    docs = note_payloads(1000, seed=7)
    t0 = time.perf_counter()
    with configured(s):
        jobs = submit_many(docs, batch=50)
        _, dead = wait_for_jobs(s, jobs, timeout=300)
    seconds = time.perf_counter() - t0
    stats, handled = _consume_all(s, "thousand")
    entries = client(s.redis_url).xlen(s.results_stream)
    busy = [w.log().count("llmner.infer[") for w in workers]
    print(f"\n1000-document test: {entries} result entries, {stats.handled} handled after dedupe, "
          f"{stats.duplicates} duplicates dropped, {len(dead)} dead, {seconds:.1f} s, infer tasks per worker {busy}")
    assert dead == {}
    assert stats.handled == 1000 and sorted(handled) == sorted(d["id"] for d in docs)
    assert entries == 1000  # exactly once in the stream itself, not only after dedupe
    assert all(b > 0 for b in busy)  # both workers took part
