"""Issue 16: reliability and security of the streaming workers, one test per defect (each failed on
the code before the fix), against the real Redis of the test suite (and a private TLS redis-server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from workers.jobs import Keys
from workers.testing import (
    REPO,
    WorkerProcess,
    cleanup,
    configured,
    isolated_settings,
    lexicon_pipeline,
    note_payloads,
    payload_lines,
    stream_entries,
    wait_for,
    wait_for_jobs,
)

pytestmark = pytest.mark.redis

MARKER = "Patient Jane Roe, HIV positive, MRN 5550-1616"


@pytest.fixture(scope="module")
def pipeline():
    return lexicon_pipeline()


@pytest.fixture
def settings(tmp_path, require_redis):
    s = isolated_settings(tmp_path, infer_batch_size=4, max_doc_chars=2000, heartbeat_interval=0.5,
                          heartbeat_ttl=2.0)
    yield s
    cleanup(s)


@pytest.fixture
def worker(settings, pipeline):
    from workers.embedded import running_workers

    with running_workers(settings, pipeline=pipeline) as active:
        yield active


def _dead_by_code(settings) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for entry in stream_entries(settings, settings.dead_stream):
        out.setdefault(entry["code"], []).append(entry)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- defect 1: TLS everywhere -------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_redis(tmp_path):
    """A private ``redis-server --tls-port P --port 0`` whose certificate is signed by a CA made here."""
    server = shutil.which("redis-server")
    if server is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and the openssl CLI")
    d = tmp_path / "tls"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=llmner test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    port = _free_port()
    proc = subprocess.Popen([server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
                             "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(d)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.3)
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.skip(f"this redis-server was not built with TLS: {out[-300:]}")
        wait_for(lambda: _port_open(port), 10, "the TLS redis-server")
        yield f"rediss://127.0.0.1:{port}/0", str(d / "ca.pem")
    finally:
        proc.terminate()
        proc.wait(10)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_every_client_connects_to_a_tls_redis_with_a_private_ca(tls_redis, tmp_path, pipeline):
    """Defect 1: the job store, the health check, the consumer, the inbox bridge and ``llmner results``
    used to build their clients without LLMNER_REDIS_TLS_*: CERTIFICATE_VERIFY_FAILED, health exit 2."""
    from workers.client import submit_many
    from workers.connections import client
    from workers.consumer import ResultConsumer
    from workers.embedded import running_workers
    from workers.inbox import InboxBridge
    from workers.jobs import JobStore

    url, ca = tls_redis
    base = dataclasses.replace(isolated_settings(tmp_path, infer_batch_size=4), redis_url=url)
    env = {**os.environ, **base.to_env(), "LLMNER_REDIS_TLS_CA": ca, "PYTHONPATH": str(REPO)}
    ready = tmp_path / "ready"
    ready.write_text(f"{os.getpid()}\n")
    health = subprocess.run([sys.executable, "-m", "workers.health"], env={**env, "LLMNER_READY_FILE": str(ready)},
                            capture_output=True, text=True, check=False, timeout=60)
    assert health.returncode == 0, health.stdout
    # Without the CA the same server is refused: the test really exercises certificate verification.
    no_ca = {k: v for k, v in env.items() if k != "LLMNER_REDIS_TLS_CA"}
    refused = subprocess.run([sys.executable, "-m", "workers.health"], env={**no_ca, "LLMNER_READY_FILE": str(ready)},
                             capture_output=True, text=True, check=False, timeout=60)
    assert refused.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout
    s = dataclasses.replace(base, tls_ca=ca)

    docs = note_payloads(3, seed=16)
    with running_workers(s, pipeline=pipeline) as active:  # Celery broker and job store over TLS
        jobs = submit_many(docs)
        client(active).xadd(active.inbox_stream, {"payload": orjson.dumps({"id": "via-inbox", "text": "Fever."})})
        bridge = InboxBridge(active, client(active))
        bridge.ensure_group()
        wait_for(lambda: bridge.poll(block_ms=100) or bridge.forwarded, 30, "the bridge over TLS")
        results, dead = wait_for_jobs(active, jobs, timeout=60)
        assert dead == {} and len(results) == 3
        wait_for(lambda: client(active).xlen(active.results_stream) == 4, 30, "the inbox note's result")
        assert JobStore(active).redis.ping()
    consumer = ResultConsumer(client(s), group="tls", stream=s.results_stream, min_idle_ms=0)
    consumer.ensure_group()
    handled = consumer.process(consumer.read(count=10, block_ms=100), lambda e: None)
    assert handled == 4
    shown = subprocess.run([sys.executable, "-m", "llmner.cli.main", "results", "--count", "5"], env=env,
                           capture_output=True, text=True, check=False, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"{s.results_stream}: 4 entries" in shown.stderr


# -- settings: one reader of the environment ------------------------------------------------------

def test_empty_key_prefix_and_queue_variables_mean_the_defaults_everywhere(monkeypatch):
    """Celery's unacked keys and the job store's keys used to diverge for LLMNER_KEY_PREFIX="" (and the
    queue names for empty queue variables): celeryconfig.py read the environment on its own, with ""
    for an empty prefix where workers/settings.py used "llmner:"."""
    from workers.celery import app, load_celeryconfig
    from workers.jobs import JobStore
    from workers.settings import Settings

    for name in ("LLMNER_KEY_PREFIX", "LLMNER_INGEST_QUEUE", "LLMNER_INFER_QUEUE", "LLMNER_CHUNK_LIST"):
        monkeypatch.setenv(name, "")
    try:
        cfg = load_celeryconfig(reload=True)
        s = Settings.from_env()
        keys = JobStore(s).keys  # the job store's key names (no command is sent)
        assert s.key_prefix == "llmner:" and keys.unacked == "llmner:unacked"
        transport = cfg.broker_transport_options
        assert (transport["unacked_key"], transport["unacked_index_key"], transport["unacked_mutex_key"]) == \
            (keys.unacked, keys.unacked_index, keys.unacked_mutex)
        assert cfg.task_routes["llmner.ingest"] == {"queue": s.ingest_queue} and s.ingest_queue == "llmner.ingest"
        assert cfg.task_routes["llmner.infer"] == {"queue": s.infer_queue} and s.infer_queue == "llmner.infer"
        assert cfg.task_default_queue == s.ingest_queue
        assert s.chunk_list == "llmner:chunks"
        # The app a worker runs agrees too: its Celery config and the settings its job store is built from.
        active = app.configure()
        assert active == s
        assert app.conf.broker_transport_options["unacked_key"] == JobStore(active).keys.unacked
        assert app.conf.task_routes["llmner.infer"] == {"queue": active.infer_queue}
        # celeryconfig.py reads no variable itself: it is a view of Settings.
        source = (REPO / "celeryconfig.py").read_text()
        assert "os.environ" not in source and "getenv" not in source
    finally:
        monkeypatch.undo()
        load_celeryconfig(reload=True)
        app.configure()


# -- defect 2: heartbeat and sweeper (see also tests/test_workers_resilience.py and the chaos test) --

def test_sigkilled_infer_worker_recovered_within_seconds_at_the_default_visibility_timeout(settings, tmp_path):
    """Defect 2: recovery relied on the 3,600 s visibility timeout. A SIGKILLed infer worker's chunks
    and message now come back within a few heartbeat periods of a replacement worker starting."""
    from workers.client import submit_many
    from workers.connections import client

    s = dataclasses.replace(settings, pipeline_factory="workers.testing:slow_lexicon_pipeline", infer_batch_size=4)
    assert s.visibility_timeout == 3600
    r = client(s)
    ingest = WorkerProcess(s, [s.ingest_queue], "", "ingest", tmp_path).start()
    infer_a = WorkerProcess(s, [s.infer_queue], "", "infer-a", tmp_path).start()
    infer_b = None
    try:
        docs = note_payloads(12, seed=21)
        with configured(s):
            jobs = submit_many(docs, batch=6)
            wait_for(lambda: any(r.llen(k) for k in r.scan_iter(match=f"{s.key_prefix}inflight:*")), 60,
                     "a batch in flight", interval=0.01)
            infer_a.kill9()
            killed_at = time.monotonic()
            infer_b = WorkerProcess(s, [s.infer_queue], "", "infer-b", tmp_path).start()
            results, dead = wait_for_jobs(s, jobs, timeout=60)
            drained = time.monotonic() - killed_at
        print(f"\nSIGKILL at default visibility timeout: {len(results)} published, {len(dead)} dead, "
              f"drained {drained:.1f} s after the kill")
        assert dead == {} and len(results) == len(docs)
        assert r.xlen(s.results_stream) == len(docs)
        assert drained < 60
        wait_for(lambda: r.hlen(Keys(s.key_prefix).unacked) == 0, 30, "the killed worker's message restored")
    finally:
        for w in (ingest, infer_a, infer_b):
            if w is not None:
                w.stop()


def test_chunk_that_kills_its_worker_reaches_the_dead_stream_in_seconds(settings, tmp_path):
    """Defect 2: a chunk that killed its worker took 3 x 3,600 s to reach the dead stream, and the chunks
    queued behind it waited as long. Its batch neighbours must not be blamed for it."""
    from workers.client import submit_many
    from workers.connections import client

    s = dataclasses.replace(settings, pipeline_factory="workers.testing:killer_lexicon_pipeline", infer_batch_size=4,
                            max_deliveries=2)
    r = client(s)
    ingest = WorkerProcess(s, [s.ingest_queue], "", "ingest", tmp_path).start()
    infer = WorkerProcess(s, [s.infer_queue], "", "infer-0", tmp_path).start()
    deaths = 0
    try:
        docs = note_payloads(6, seed=61)
        docs.insert(1, {"id": "killer", "text": "Fever. KILLME now.", "language": "en"})
        with configured(s):
            jobs = submit_many(docs, batch=7)
            started = time.monotonic()
            deadline = started + 120
            done: set = set()
            while time.monotonic() < deadline and len(done) < len(jobs):
                if not infer.alive():  # what Kubernetes does: start a replacement
                    deaths += 1
                    infer = WorkerProcess(s, [s.infer_queue], "", f"infer-{deaths}", tmp_path).start()
                ids = {e["job_id"] for e in stream_entries(s, s.results_stream) + stream_entries(s, s.dead_stream)}
                done = ids & set(jobs)
                time.sleep(0.2)
            elapsed = time.monotonic() - started
        results = {e["document_id"] for e in stream_entries(s, s.results_stream)}
        dead = {e["document_id"]: e for e in stream_entries(s, s.dead_stream)}
        print(f"\nkiller chunk: {deaths} worker deaths, dead after {elapsed:.1f} s; {len(results)} published")
        assert set(dead) == {"killer"} and dead["killer"]["code"] == "chunk_failed"
        assert results == {d["id"] for d in docs} - {"killer"}
        assert deaths == 1 + s.max_deliveries  # the batch, then alone max_deliveries times
        assert elapsed < 120
        assert r.llen(Keys(s.key_prefix).retry_list) == 0
    finally:
        ingest.stop()
        infer.stop()


# -- defect 3: Redis errors in the middle of a task ------------------------------------------------

def test_redis_error_mid_task_leaves_the_message_to_be_delivered_again(settings, pipeline, monkeypatch):
    """Defect 3: a Redis error made Celery retry, the retry could not publish (Redis down) and the task
    was rejected without requeue: the message and its chunks were gone. Now the message is requeued."""
    import redis
    from celery.signals import task_postrun
    from kombu import Producer
    from kombu.exceptions import OperationalError

    from workers.client import submit_many
    from workers.embedded import running_workers
    from workers.jobs import JobStore

    down = threading.Event()
    failed_tasks: list[str] = []
    real_take = JobStore.take_batch

    def take_batch(self, task_id, count, *args, **kwargs):
        if not failed_tasks:
            real_take(self, task_id, count, *args, **kwargs)  # taken, then Redis "goes away"
            failed_tasks.append(task_id)
            down.set()
            raise redis.exceptions.ConnectionError("Redis went away (injected)")
        return real_take(self, task_id, count, *args, **kwargs)

    real_publish = Producer.publish

    def publish(self, *args, **kwargs):  # every message sent, from any thread
        if down.is_set():
            raise OperationalError("Redis went away (injected)")
        return real_publish(self, *args, **kwargs)

    def back_up(task_id=None, **_):
        if failed_tasks and task_id == failed_tasks[0]:
            down.clear()

    monkeypatch.setattr(JobStore, "take_batch", take_batch)
    task_postrun.connect(back_up, weak=False)
    try:
        docs = note_payloads(5, seed=31)
        with running_workers(settings, pipeline=pipeline) as active:
            monkeypatch.setattr(Producer, "publish", publish)
            jobs = submit_many(docs[:1]) + submit_many(docs[1:])
            results, dead = wait_for_jobs(active, jobs, timeout=45)
    finally:
        task_postrun.disconnect(back_up)
    assert failed_tasks, "the fault was not injected"
    assert dead == {} and sorted(r["document_id"] for r in results.values()) == sorted(d["id"] for d in docs)


# -- defect 4: no note text anywhere ----------------------------------------------------------------

def test_planted_marker_appears_in_no_log_and_no_task_event(settings, tmp_path):
    """Defect 4: a producer's argsrepr, an unknown task name (Celery logged the whole body) and a
    malformed broker item must not put note text into logs or task events (Flower)."""
    from workers.celery import app
    from workers.connections import client

    s = dataclasses.replace(settings, pipeline_factory="workers.testing:lexicon_pipeline")
    events: list[dict] = []
    r = client(s)
    w = WorkerProcess(s, [s.ingest_queue, s.infer_queue], "", "phi", tmp_path).start()
    try:
        with configured(s):
            app.conf.task_send_sent_event = False  # the test's own producer events are not the worker's
            stop = threading.Event()

            def receive() -> None:
                with app.connection_for_read() as conn:
                    recv = app.events.Receiver(conn, handlers={"*": events.append})
                    for _ in recv.itercapture(limit=None, timeout=None, wakeup=False):
                        if stop.is_set():
                            break

            t = threading.Thread(target=receive, daemon=True)
            t.start()
            time.sleep(1.0)
            good = orjson.dumps({"id": "phi-good", "text": f"{MARKER} has type 2 diabetes."}).decode()
            # A producer that puts the note into argsrepr itself.
            app.send_task("llmner.ingest", args=[[[good, "utf-8"]], time.time()], argsrepr=f"({MARKER})",
                          queue=s.ingest_queue, task_id="phi-task")
            app.send_task("llmner.tag_note", args=[MARKER], queue=s.ingest_queue)  # unknown task name
            app.send_task("llmner.ingest", args=[MARKER], queue=s.ingest_queue)  # malformed arguments
            r.lpush(s.ingest_queue, f"not a message: {MARKER}")  # not even JSON
            wait_for_jobs(s, ["phi-task.0"], timeout=60)
            with contextlib.suppress(AssertionError):  # (a worker that died on them writes none)
                wait_for(lambda: len(stream_entries(s, s.dead_stream)) >= 3, 30, "three dead letters")
            time.sleep(1.5)  # the last events
            stop.set()
            app.send_task("llmner.infer", queue=s.infer_queue)  # wakes the receiver up
            t.join(5)
        survived = w.alive()
    finally:
        w.stop()
    log = w.log()
    assert "llmner.ingest" in log and events, "expected logs and task events to inspect"
    assert any(e.get("type") == "task-received" for e in events)
    dumped = orjson.dumps(events, default=str).decode()
    for secret in (MARKER, "Jane Roe", "HIV positive"):
        assert secret not in log, log[-3000:]
        assert secret not in dumped
    assert survived, log[-2000:]
    assert {"unknown_task", "invalid_message"} <= set(_dead_by_code(s))


# -- defect 5: jobs vanish ------------------------------------------------------------------------

def test_job_whose_state_vanished_goes_to_the_dead_stream_and_outcomes_are_recorded(settings, pipeline):
    """Defect 5: a missing manifest was taken as 'already published': a job past LLMNER_STATE_TTL or
    evicted disappeared without a dead letter."""
    from workers.client import submit_many
    from workers.connections import client
    from workers.embedded import running_workers
    from workers.jobs import JobStore

    r = client(settings)
    docs = note_payloads(3, seed=41)
    with running_workers(settings, pipeline=pipeline, queues=[settings.ingest_queue]):
        jobs = submit_many(docs)
        wait_for(lambda: all(r.exists(Keys(settings.key_prefix).manifest(j)) for j in jobs), 30, "jobs created")
    r.delete(Keys(settings.key_prefix).manifest(jobs[1]))  # evicted (or expired) before inference
    with running_workers(settings, pipeline=pipeline) as active:
        results, dead = wait_for_jobs(active, jobs, timeout=60)
    assert sorted(results) == sorted([jobs[0], jobs[2]])
    assert dead[jobs[1]]["code"] == "state_lost" and "evicted" in dead[jobs[1]]["reason"]
    store = JobStore(settings)
    assert store.outcome(jobs[0]).startswith("published ") and store.outcome(jobs[1]).startswith("dead ")
    assert 0 < r.ttl(Keys(settings.key_prefix).outcome(jobs[0])) <= settings.outcome_ttl


# -- defect 6: corrected resubmissions ------------------------------------------------------------

def test_consumer_loads_a_corrected_resubmission_and_dedupe_keys_expire(worker):
    """Defect 6: dedupe on (document id, model version) acknowledged a corrected note with the same id
    without loading it, and the dedupe hash never expired entry by entry."""
    from workers.client import submit
    from workers.connections import client
    from workers.consumer import ResultConsumer

    first = submit({"id": "same-id", "text": "Fever.", "language": "en"})
    wait_for_jobs(worker, [first], timeout=60)
    corrected = submit({"id": "same-id", "text": "Fever and pneumonia.", "language": "en"})
    wait_for_jobs(worker, [corrected], timeout=60)
    r = client(worker)
    consumer = ResultConsumer(r, group="kg", stream=worker.results_stream, min_idle_ms=0, dedupe_ttl=3600)
    consumer.ensure_group()
    loaded: list = []
    consumer.process(consumer.read(count=10, block_ms=100), loaded.append)
    assert [e.job_id for e in loaded] == [first, corrected]
    assert [len(e.record.entities) for e in loaded] == [1, 2]
    keys = list(r.scan_iter(match=f"{worker.results_stream}:kg:*"))
    assert len(keys) == 2 and all(0 < r.ttl(k) <= 3600 for k in keys)


def test_consumer_waits_out_a_redis_restart_between_handling_and_acknowledging(worker, monkeypatch):
    """Chaos finding: a Redis restart between the loader's write and the XACK handed the entry to the
    loader a second time (the ack failed, the entry stayed pending and was claimed again)."""
    import redis

    from workers.client import submit
    from workers.connections import client
    from workers.consumer import ResultConsumer

    job = submit({"id": "ack-retry", "text": "Fever.", "language": "en"})
    wait_for_jobs(worker, [job], timeout=60)
    consumer = ResultConsumer(client(worker), group="kg", stream=worker.results_stream, min_idle_ms=0)
    consumer.ensure_group()
    failures = [redis.exceptions.ConnectionError("Redis restarting (injected)")] * 2
    real_execute = redis.client.Pipeline.execute

    def execute(self, *args, **kwargs):
        if failures:
            raise failures.pop()
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    handled: list = []
    consumer.process(consumer.read(count=10, block_ms=100), handled.append)
    monkeypatch.undo()
    consumer.process(consumer.read(count=10, block_ms=100), handled.append)
    assert [e.job_id for e in handled] == [job]
    assert client(worker).xpending(worker.results_stream, "kg")["pending"] == 0


# -- defect 7: bad broker messages ----------------------------------------------------------------

def test_malformed_broker_items_and_task_arguments_are_dead_lettered(worker):
    """Defect 7: a non-JSON item on the ingest queue killed the worker; ``[123]`` as ingest arguments
    was acknowledged without a dead letter."""
    from workers.celery import app
    from workers.client import submit
    from workers.connections import client

    r = client(worker)
    r.lpush(worker.ingest_queue, b"\xff not json")
    r.lpush(worker.ingest_queue, b'{"no": "properties"}')
    r.lpush(worker.ingest_queue, b"[1, 2, 3]")
    app.send_task("llmner.ingest", args=[123], queue=worker.ingest_queue)
    app.send_task("llmner.ingest", args=[[123]], queue=worker.ingest_queue)
    app.send_task("llmner.ingest", args=[[["{}", "rot13"]]], queue=worker.ingest_queue)
    app.send_task("llmner.ingest", args=[[["{}"]]], kwargs={"surprise": 1}, queue=worker.ingest_queue)
    app.send_task("llmner.infer", args=["unexpected"], queue=worker.infer_queue)
    app.send_task("llmner.unknown", args=[], queue=worker.ingest_queue)
    good = submit({"id": "good-after-garbage", "text": "Fever.", "language": "en"})
    results, _ = wait_for_jobs(worker, [good], timeout=60)
    assert results[good]["document_id"] == "good-after-garbage"
    wait_for(lambda: len(stream_entries(worker, worker.dead_stream)) >= 9, 30, "nine dead letters")
    codes = _dead_by_code(worker)
    assert len(codes["invalid_message"]) == 8 and len(codes["unknown_task"]) == 1
    assert all(e["reason"] for es in codes.values() for e in es)


def test_producer_acl_is_documented():
    ops = (REPO / "docs" / "operations.md").read_text()
    assert "ACL SETUSER" in ops and "+xadd" in ops and "~llmner:inbox" in ops


# -- defect 8: one input cannot stall the service -------------------------------------------------

def test_huge_note_is_capped_and_a_long_note_does_not_block_short_ones(settings, pipeline):
    """Defect 8: chunks were served FIFO (a long note blocked every later note) and the number of chunks
    of a note had no limit."""
    from workers.client import submit, submit_many
    from workers.connections import client
    from workers.embedded import running_workers

    s = dataclasses.replace(settings, max_doc_chars=200_000, max_doc_chunks=60, infer_batch_size=4)
    sentence = "Fever resolved. "
    long_doc = {"id": "long", "text": "Aspirin was stopped because of gastric bleeding. " * 40, "language": "en"}
    with running_workers(s, pipeline=pipeline, queues=[s.ingest_queue]):
        huge = submit({"id": "huge", "text": sentence * 10_000, "language": "en"})
        long_job = submit(long_doc)
        short_jobs = submit_many(note_payloads(6, seed=51), batch=1)
        r = client(s)
        wait_for(lambda: all(r.exists(Keys(s.key_prefix).seen(j)) for j in [huge, long_job, *short_jobs]), 60, "ingest")
    n_long = int(r.hget(Keys(s.key_prefix).manifest(long_job), "n"))
    assert 10 < n_long <= 60
    with running_workers(s, pipeline=pipeline) as active:
        _, dead = wait_for_jobs(active, [huge, long_job, *short_jobs], timeout=90)
    assert dead[huge]["code"] == "too_many_chunks" and "LLMNER_MAX_DOC_CHUNKS" in dead[huge]["reason"]
    order = [e["job_id"] for e in stream_entries(s, s.results_stream)]
    assert order[-1] == long_job  # every short note finished while the long one was still being tagged
    assert set(order[:-1]) == set(short_jobs)


def test_control_characters_and_invisible_notes(worker):
    """Defect 8: NUL-only and zero-width-only notes were accepted; control characters reached the model."""
    from workers.client import submit

    jobs = {
        "nul": submit({"id": "nul", "text": "\x00" * 500}),
        "zero_width": submit({"id": "zw", "text": "\u200b\u200c\u200d\ufeff" * 50}),
        "backspace": submit({"id": "bs", "text": "\x08\x08 \x1b \x7f\x9b"}),
        "mixed": submit({"id": "mixed", "text": "Fever\x00 and\x08 pneumonia.\x0c"}),
    }
    results, dead = wait_for_jobs(worker, list(jobs.values()), timeout=60)
    for name in ("nul", "zero_width", "backspace"):
        assert dead[jobs[name]]["code"] == "empty_text", name
    record = results[jobs["mixed"]]
    text = "Fever\x00 and\x08 pneumonia.\x0c"
    # Controls become spaces: offsets still point into the note as it was sent.
    assert [(e["start"], e["end"]) for e in record["entities"]] == [(0, 5), (12, 21)]
    assert [text[e["start"]:e["end"]] for e in record["entities"]] == ["Fever", "pneumonia"]


def test_hanging_chunk_is_stopped_by_the_task_time_limit_and_dead_lettered(settings, tmp_path):
    """Defect 8: there was no task time limit; a chunk whose inference hangs held its worker forever."""
    from workers.client import submit_many

    s = dataclasses.replace(settings, pipeline_factory="workers.testing:killer_lexicon_pipeline", infer_batch_size=4,
                            max_deliveries=2)
    w = WorkerProcess(s, [s.ingest_queue, s.infer_queue], "", "hang", tmp_path,
                      extra_env={"LLMNER_TASK_TIME_LIMIT": "3"}).start()
    try:
        docs = note_payloads(5, seed=71)
        docs.insert(2, {"id": "hanger", "text": "Fever. HANGME please.", "language": "en"})
        with configured(s):
            jobs = submit_many(docs, batch=6)
            started = time.monotonic()
            results, dead = wait_for_jobs(s, jobs, timeout=90)
            elapsed = time.monotonic() - started
        assert w.alive()
    finally:
        w.stop()
    print(f"\nhanging chunk: dead-lettered after {elapsed:.1f} s with a 3 s time limit")
    assert {d["document_id"] for d in dead.values()} == {"hanger"}
    entry = next(iter(dead.values()))
    assert entry["code"] == "chunk_failed" and "TaskTimeLimit" in entry["reason"]
    assert {r["document_id"] for r in results.values()} == {d["id"] for d in docs} - {"hanger"}
    assert "failed 2 times" in entry["reason"]  # alone, twice: its batch neighbours were not blamed


def test_task_time_limit_is_below_the_visibility_timeout_and_enforced():
    from workers.broker import celery_config
    from workers.settings import Settings
    from workers.timeouts import TaskTimeLimit, time_limit

    s = Settings(visibility_timeout=60, task_time_limit=600)
    assert s.effective_time_limit < 60 and celery_config(s)["task_time_limit"] == s.effective_time_limit
    assert celery_config(Settings())["task_time_limit"] == 600 < Settings().visibility_timeout
    started = time.monotonic()
    with pytest.raises(TaskTimeLimit), time_limit(0.3):
        time.sleep(5)
    assert time.monotonic() - started < 2


# -- defect 9: bounded dead letters ---------------------------------------------------------------

def test_dead_letters_are_truncated_and_keep_a_payload_hash(settings, pipeline):
    """Defect 9: rejected payloads were stored whole (up to 6.6 MB each) and reasons echoed field values
    of up to 100 KB."""
    from workers.client import submit
    from workers.embedded import running_workers

    s = dataclasses.replace(settings, dead_payload_bytes=4096)
    big = b"x" * 300_000  # not JSON, 300 KB
    long_language = orjson.dumps({"id": "lang", "text": "Fever.", "language": "q" * 100_000})
    with running_workers(s, pipeline=pipeline) as active:
        jobs = [submit(big), submit(long_language)]
        _, dead = wait_for_jobs(active, jobs, timeout=60)
    for job, original in zip(jobs, (big, long_language)):
        entry = dead[job]
        assert len(entry["payload"].encode()) <= 4096 and entry["payload_truncated"] == "1"
        assert entry["payload_sha256"] == hashlib.sha256(original).hexdigest()
        assert entry["payload_bytes"] == str(len(original))
        assert len(entry["reason"]) <= 500
        assert original.startswith(entry["payload"].encode())


# -- defect 10: smaller items ---------------------------------------------------------------------

def test_ids_with_control_characters_or_too_long_are_rejected(settings, pipeline):
    from workers.client import submit
    from workers.embedded import running_workers

    with running_workers(dataclasses.replace(settings, max_doc_chars=200_000), pipeline=pipeline) as worker:
        _check_ids(worker, submit)


def _check_ids(worker, submit) -> None:
    jobs = [submit({"id": "a\nb", "text": "Fever."}), submit({"id": "\x1b[2Jx", "text": "Fever."}),
            submit({"id": "i" * 100_000, "text": "Fever."}), submit({"id": "ok-id", "text": "Fever."})]
    results, dead = wait_for_jobs(worker, jobs, timeout=60)
    assert [dead[j]["code"] for j in jobs[:3]] == ["invalid_id"] * 3
    assert list(results) == [jobs[3]]
    assert all(len(dead[j]["reason"]) <= 500 for j in jobs[:3])


def test_metrics_server_listens_on_loopback_by_default(monkeypatch):
    from workers import metrics
    from workers.settings import Settings

    assert Settings().metrics_addr == "127.0.0.1" and Settings.from_env().metrics_addr in ("127.0.0.1",
                                                                                          os.environ.get("LLMNER_METRICS_ADDR"))
    seen = {}
    monkeypatch.setattr(metrics, "start_http_server", lambda port, addr="0.0.0.0": seen.update(port=port, addr=addr))
    monkeypatch.setattr(metrics, "_started", False)
    monkeypatch.setattr(metrics.REGISTRY, "register", lambda collector: None)
    assert metrics.serve(9999, store=None)
    assert seen == {"port": 9999, "addr": "127.0.0.1"}


class _RunsCode:
    def __reduce__(self):
        return (print, ("a checkpoint ran code on load",))


def test_training_resume_does_not_unpickle_arbitrary_objects(tmp_path):
    import pickle

    import torch

    from llmner.training.checkpoint import STATE_NAME, load_state, rng_states

    good = tmp_path / "good"
    good.mkdir()
    torch.save({"step": 3, "rng": rng_states(), "history": [{"loss": 1.0}]}, good / STATE_NAME)
    assert load_state(good)["step"] == 3                      # our own states, NumPy RNG included, load
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"step": 3, "payload": _RunsCode()}, bad / STATE_NAME)
    with pytest.raises(pickle.UnpicklingError):
        load_state(bad)


# -- the Redis one-liner ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["results"], ["submit", "NOTES"]])
def test_unreachable_redis_is_one_line_naming_the_url_and_the_fix(command, tmp_path):
    notes = tmp_path / "notes.jsonl"
    notes.write_bytes(payload_lines(note_payloads(2)))
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"
    args = [str(notes) if a == "NOTES" else a for a in command]
    env = {**os.environ, "LLMNER_REDIS_URL": url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "llmner.cli.main", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2, done.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1" in done.stderr and "LLMNER_REDIS_URL" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr



def test_worker_name_differs_in_a_forked_child():
    """Prefork ingest children must beat under their own names (the sweeper tells them apart)."""
    from workers.heartbeat import worker_name

    parent = worker_name()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, worker_name().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    assert child != parent and f"-{pid}-" in child and worker_name() == parent
