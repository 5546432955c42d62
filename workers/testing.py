"""Harness for running the streaming workers outside a deployment (the worker tests and the queue
benchmarks): isolated key prefixes on a Redis, worker processes started exactly as deployments start
them, stream readers, synthetic notes, and rule-based pipelines for ``LLMNER_PIPELINE_FACTORY``
(``workers.testing:lexicon_pipeline``, ``:slow_lexicon_pipeline``, ``:killer_lexicon_pipeline``).

Nothing here needs pytest; the tests' skip-without-Redis fixture lives in tests/conftest.py.
The tiny random model bundle is ``llmner.testing.build_tiny_bundle``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import orjson

from workers.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TEST_REDIS_URL = os.environ.get("LLMNER_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def redis_client():
    import redis

    from workers.connections import redis_py_url

    return redis.Redis.from_url(redis_py_url(TEST_REDIS_URL), socket_connect_timeout=1)


def redis_problem() -> str | None:
    """None when the Redis at TEST_REDIS_URL answers, else why not (with how to start one)."""
    try:
        redis_client().ping()
    except Exception as exc:  # noqa: BLE001
        return (f"no Redis server at {TEST_REDIS_URL} ({type(exc).__name__}); start one "
                "(redis-server --port 6379 --save '') or set LLMNER_TEST_REDIS_URL")
    return None


def isolated_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings whose every key, queue and stream lives under a unique prefix."""
    prefix = f"llmnertest-{uuid.uuid4().hex[:10]}:"
    s = Settings(redis_url=TEST_REDIS_URL, metrics_port=0, ready_file=str(tmp_path / "ready")).with_prefix(prefix)
    return dataclasses.replace(s, **overrides)


def cleanup(settings: Settings) -> None:
    from workers.embedded import delete_keys

    delete_keys(settings)


def stream_entries(settings: Settings, stream: str) -> list[dict[str, str]]:
    from workers.connections import client
    from workers.jobs import decode_fields

    return [decode_fields(f) for _, f in client(settings.redis_url).xrange(stream)]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_jobs(settings: Settings, job_ids: Iterable[str], timeout: float = 60.0) -> tuple[dict, dict]:
    from workers.embedded import follow

    return follow(settings, list(job_ids), timeout=timeout)


class WorkerProcess:
    """``celery -A workers worker -Q ... --pool solo`` in a subprocess, as deployments run it."""

    def __init__(self, settings: Settings, queues: list[str], bundle: str, name: str, log_dir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.ready_file = str(log_dir / f"{name}.ready")
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, **settings.to_env(), "LLMNER_BUNDLE": bundle, "LLMNER_READY_FILE": self.ready_file,
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               **(extra_env or {})}
        self.cmd = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(queues),
                    "--pool", "solo", "-n", f"{name}-{uuid.uuid4().hex[:6]}@test", "--without-heartbeat",
                    "--without-mingle", "--without-gossip", "-l", "INFO"]
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        Path(self.ready_file).unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop()
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO), env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(lambda: Path(self.ready_file).exists() or self.proc.poll() is not None, timeout, f"worker {self.name}")
        # A worker that got ready has started, even if a job killed it since (a chunk that kills its worker
        # can do so before this poll sees the ready file): its death is for the caller to see, via alive().
        if not Path(self.ready_file).exists():
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def note_payloads(n: int, seed: int = 0) -> list[dict]:
    """``n`` small synthetic notes (English and a few Chinese), no real PHI."""
    import random

    rng = random.Random(seed)
    en = ["Patient with type 2 diabetes started metformin.", "BRCA1 is mutated in ovarian cancer.",
          "No signs of pneumonia on chest X-ray.", "Aspirin was stopped because of gastric bleeding.",
          "TNF-alpha inhibits the IL-2 promoter in T cells.", "Mother has a history of breast cancer.",
          "Hemophilia A was confirmed; factor VIII activity is low.", "She denies fever and cough."]
    zh = ["患者出现发热和咳嗽。", "诊断为2型糖尿病，给予二甲双胍治疗。", "胸片未见肺炎征象。"]
    out = []
    for i in range(n):
        if i % 7 == 3:
            text, lang = "".join(rng.sample(zh, k=rng.randint(1, 2))), "zh"
        else:
            text, lang = " ".join(rng.sample(en, k=rng.randint(1, 3))), "en"
        out.append({"id": f"note-{seed}-{i}", "text": text, "language": lang})
    return out


def payload_lines(docs: list[dict]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


# A rule-based generator runtime: the real Pipeline (chunking, schema per chunk, merge to document
# offsets, dedupe) around a deterministic, millisecond-fast GeneratorRuntime. The queue tests that
# push hundreds of documents through worker processes use it: a tiny random LLM needs about a
# second per note on this shared 2-core machine. The tiny random LLM bundle still runs the
# end-to-end identity, `llmner run` and kill -9 tests.
LEXICON = {
    "diabetes": "Disease", "ovarian cancer": "Disease", "breast cancer": "Disease", "cancer": "Disease",
    "pneumonia": "Disease", "asthma": "Disease", "hemophilia a": "Disease", "fever": "Disease",
    "metformin": "Chemical", "aspirin": "Chemical", "insulin": "Chemical", "factor viii": "Gene",
    "brca1": "Gene", "tnf-alpha": "Gene", "il-2": "Gene", "t cells": "CellType",
    "发热": "sym", "咳嗽": "sym", "糖尿病": "dis", "二甲双胍": "dru", "肺炎": "dis",
}


def _lexicon_runtime():
    import re

    from llmner.runtime.base import GeneratorRuntime, TagResult

    pattern = re.compile("|".join(sorted(map(re.escape, LEXICON), key=len, reverse=True)), re.IGNORECASE)

    class LexiconGenerator(GeneratorRuntime):
        model_id = "lexicon-v1"

        def tag(self, requests):
            from llmner.doc import Entity

            out = []
            for req in requests:
                ents = [Entity(m.start(), m.end(), LEXICON[m.group().lower()], m.group())
                        for m in pattern.finditer(req.text) if LEXICON[m.group().lower()] in req.schema]
                out.append(TagResult(entities=ents, output=req.text))
            return out

    return LexiconGenerator()


def lexicon_pipeline(bundle: str | None = None):
    """LLMNER_PIPELINE_FACTORY target: the library Pipeline with the rule-based generator, no selector."""
    from llmner.pipeline import Pipeline

    return Pipeline(_lexicon_runtime(), None, count_tokens=lambda text: len(text.split()))


def lexicon_bundle_pipeline(bundle: str | None = None):
    """LLMNER_PIPELINE_FACTORY target: the rule-based generator (deterministic entities) with the
    normalizer that :meth:`Pipeline.from_bundle` finds in ``bundle``'s ``normalizer/`` folder."""
    from llmner.pipeline import Pipeline

    full = Pipeline.from_bundle(bundle)
    return Pipeline(_lexicon_runtime(), None, count_tokens=lambda text: len(text.split()),
                    model_ids={"bundle": full.model_ids["bundle"]}, normalizer=full.normalizer)


class configured:
    """Point this process's Celery app (the producer side) at ``settings``; restore on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> Settings:
        self._saved = {k: v for k, v in os.environ.items() if k.startswith("LLMNER_")}
        from workers.celery import app

        return app.configure(self.settings)

    def __exit__(self, *exc: object) -> None:
        from workers.celery import app

        for k in [k for k in os.environ if k.startswith("LLMNER_")]:
            del os.environ[k]
        os.environ.update(self._saved)
        app.configure()


class _SlowPipeline:
    """A pipeline whose inference takes ``delay`` seconds per batch (so that a test can kill a worker mid-batch)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer_chunks(self, chunks, schemas=None):
        time.sleep(self.delay)
        return self.inner.infer_chunks(chunks, schemas)

    def chunk(self, doc):
        time.sleep(float(os.environ.get("LLMNER_TEST_INGEST_DELAY", "0")))
        return self.inner.chunk(doc)


def slow_lexicon_pipeline(bundle: str | None = None):
    """LLMNER_PIPELINE_FACTORY target: the lexicon pipeline, LLMNER_TEST_INFER_DELAY seconds per batch (default 0.5)."""
    return _SlowPipeline(lexicon_pipeline(), float(os.environ.get("LLMNER_TEST_INFER_DELAY", "0.5")))


class _KillerPipeline(_SlowPipeline):
    """Dies (as an OOM kill would) when a batch holds a chunk containing KILLME."""

    def infer_chunks(self, chunks, schemas=None):
        if any("KILLME" in c.text for c in chunks):
            os._exit(137)
        if any("HANGME" in c.text for c in chunks):
            time.sleep(3600)  # a model call that never returns (the task time limit must end it)
        return super().infer_chunks(chunks, schemas)


def killer_lexicon_pipeline(bundle: str | None = None):
    """LLMNER_PIPELINE_FACTORY target: the slow lexicon pipeline that kills its worker on KILLME."""
    return _KillerPipeline(lexicon_pipeline(), float(os.environ.get("LLMNER_TEST_INFER_DELAY", "0.2")))
