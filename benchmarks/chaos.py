"""Chaos run of the streaming workers: separate worker processes on a private Redis, SIGKILLs and
Redis restarts at random moments, results read back the way a loader reads them.

    .venv/bin/python benchmarks/chaos.py [--docs 100] [--kills 10] [--redis-restarts 2]
                                         [--pipeline stub|real] [--bundle DIR] [--seed 0] [--timeout 900]

It starts a private ``redis-server`` on a free loopback port with the append-only file on
(``appendfsync always``, so that a crash loses nothing Redis acknowledged), one ingest worker and
two infer workers exactly as deployments run them (``celery -A workers worker -Q ... --pool solo``)
with the default visibility timeout (3,600 s), submits the documents a few at a time, and at random
moments SIGKILLs an infer or ingest worker (a replacement starts at once, as Kubernetes would
restart it) or SIGKILLs Redis and starts it again on the same AOF. A loader
(:class:`workers.consumer.ResultConsumer`, consumer group ``chaos-loader``) reads the results
stream throughout, reconnecting when Redis is away. At the end it prints

    submitted, results (documents the loader got), missing, duplicates (delivered to the loader
    twice / entries in the stream beyond one per job), dead (with codes), and the drain time: the
    seconds from the moment the last fault was over (the worker or Redis back) to the last result.

``--pipeline stub`` (default) runs the library Pipeline around the rule-based generator of
workers/testing.py with an artificial 1 s per batch of 4 chunks (LLMNER_TEST_INFER_DELAY) and
0.3 s per note to chunk (LLMNER_TEST_INGEST_DELAY), so that kills land mid-task; ``real``
runs the packaged model bundle (or ``--bundle``). The test suite runs a short stub version
(tests/test_chaos.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # run from a checkout: llmner/ and workers/ beside benchmarks/


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server with AOF on; ``crash()`` SIGKILLs it, ``start()`` replays the AOF."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or _free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + timeout
        import redis

        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def crash(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Loader(threading.Thread):
    """Reads the results stream as a knowledge-graph loader would, through Redis restarts."""

    def __init__(self, settings) -> None:
        super().__init__(daemon=True, name="chaos-loader")
        self.s = settings
        self.delivered: Counter[str] = Counter()  # job id -> times handed to the loader
        self.last_result_at = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        import redis

        from workers.connections import new_client
        from workers.consumer import ResultConsumer

        while not self.stop.is_set():
            try:
                consumer = ResultConsumer(new_client(self.s, socket_timeout=5), group="chaos-loader", name="loader-1",
                                          stream=self.s.results_stream, min_idle_ms=30_000)
                consumer.ensure_group()
                while not self.stop.is_set():
                    entries = consumer.read(count=100, block_ms=500)
                    if entries:
                        consumer.process(entries, self._handle)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError):
                time.sleep(0.5)

    def _handle(self, entry) -> None:
        self.delivered[entry.job_id] += 1
        self.last_result_at = time.monotonic()


def _submit_with_retry(docs: list[dict], deadline: float) -> list[str]:
    from kombu.exceptions import OperationalError

    from workers.client import submit_many

    while True:
        try:
            return submit_many(docs, batch=4)
        except (OperationalError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _pick_victim(s, workers: dict, names: list[str], rng: random.Random, ingest: bool) -> tuple[str, bool]:
    """A worker caught in the middle of a task (its pid is in the task's owner or running record):
    the ingest worker when ``ingest``, else an infer worker holding a batch; any worker after 5 s."""
    import redis

    from workers.connections import new_client
    from workers.jobs import Keys

    keys = Keys(s.key_prefix)
    candidates = ["ingest"] if ingest else names[1:]
    deadline = time.monotonic() + 5
    try:
        r = new_client(s, socket_timeout=2)
        while time.monotonic() < deadline:
            holders = [json.loads(v).get("worker", "") for v in r.hvals(keys.owners)]
            holders += [v.decode() for v in r.hvals(keys.running)]
            pids = {h.split("-")[-2] for h in holders if h.count("-") >= 2}
            for name in candidates:
                proc = workers[name].proc
                if proc is not None and str(proc.pid) in pids and proc.poll() is None:
                    return name, True
            time.sleep(0.02)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        pass
    return rng.choice(candidates), False


def run(docs: int = 100, kills: int = 10, redis_restarts: int = 2, pipeline: str = "stub", bundle: str | None = None,
        seed: int = 0, timeout: float = 900.0, infer_workers: int = 2, work_dir: Path | None = None,
        heartbeat_interval: float = 2.0, heartbeat_ttl: float = 10.0, verbose: bool = True) -> dict:
    """One chaos run; returns the counts printed by ``main``."""
    rng = random.Random(seed)
    say = print if verbose else (lambda *a, **k: None)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix="llmner-chaos-"))
    (tmp / "redis").mkdir(parents=True, exist_ok=True)
    server = RedisServer(tmp / "redis")
    server.start()
    try:
        return _run(server, tmp, docs, kills, redis_restarts, pipeline, bundle, rng, say, timeout, infer_workers,
                    heartbeat_interval, heartbeat_ttl)
    finally:
        server.stop()
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(server: RedisServer, tmp: Path, docs: int, kills: int, redis_restarts: int, pipeline: str,
         bundle: str | None, rng: random.Random, say, timeout: float, infer_workers: int,
         heartbeat_interval: float, heartbeat_ttl: float) -> dict:
    from workers.jobs import decode_fields
    from workers.settings import Settings
    from workers.testing import WorkerProcess, configured, note_payloads

    s = Settings(redis_url=server.url, metrics_port=0, heartbeat_interval=heartbeat_interval,
                 heartbeat_ttl=heartbeat_ttl).with_prefix(f"chaos-{uuid.uuid4().hex[:8]}:")
    extra_env: dict[str, str] = {}
    if pipeline == "stub":
        # Small batches of a slow stub: work is in flight when the faults strike.
        s = dataclasses.replace(s, pipeline_factory="workers.testing:slow_lexicon_pipeline", infer_batch_size=4)
        extra_env["LLMNER_TEST_INFER_DELAY"] = os.environ.get("LLMNER_TEST_INFER_DELAY", "1.0")
        extra_env["LLMNER_TEST_INGEST_DELAY"] = os.environ.get("LLMNER_TEST_INGEST_DELAY", "0.3")
    bundle_arg = bundle or ""
    names = ["ingest"] + [f"infer-{i}" for i in range(infer_workers)]
    queues = {"ingest": [s.ingest_queue], **{n: [s.infer_queue] for n in names[1:]}}
    workers: dict[str, WorkerProcess] = {}
    generation: Counter[str] = Counter()

    def start_worker(name: str) -> None:
        generation[name] += 1
        w = WorkerProcess(s, queues[name], bundle_arg, f"{name}-g{generation[name]}", tmp, extra_env=extra_env)
        workers[name] = w.start(timeout=600)

    payloads = note_payloads(docs, seed=rng.randrange(1 << 30))
    job_ids: list[str] = []
    # About one kill in five hits the ingest worker (at least one when there are two or more).
    ingest_kills = max(1, kills // 5) if kills >= 2 else 0
    faults: list[tuple[str, str]] = ([("kill", "ingest")] * ingest_kills + [("kill", "infer")] * (kills - ingest_kills)
                                     + [("redis", "")] * redis_restarts)
    rng.shuffle(faults)
    loader = Loader(s)
    started = time.monotonic()
    last_fault_over = started
    fault_log: list[str] = []
    try:
        for name in names:
            start_worker(name)
        loader.start()
        with configured(s):
            # Submissions and faults interleave: a few documents, then maybe a fault.
            per_step = max(1, docs // max(1, len(faults) + 1))
            offset = 0
            pending_faults = list(faults)
            while offset < docs or pending_faults:
                if offset < docs:
                    job_ids += _submit_with_retry(payloads[offset:offset + per_step], time.monotonic() + 120)
                    offset += per_step
                time.sleep(rng.uniform(0.5, 2.0))
                if pending_faults and (offset >= docs or rng.random() < 0.8):
                    kind, target = pending_faults.pop()
                    if kind == "kill":
                        victim, mid_batch = _pick_victim(s, workers, names, rng, ingest=target == "ingest")
                        workers[victim].kill9()
                        fault_log.append(f"{time.monotonic() - started:.1f}s SIGKILL {victim}"
                                         + (" mid-task" if mid_batch else " (idle)"))
                        start_worker(victim)
                    else:
                        server.crash()
                        fault_log.append(f"{time.monotonic() - started:.1f}s Redis SIGKILL + restart")
                        time.sleep(1.0)
                        server.start()
                    last_fault_over = time.monotonic()
                    say(f"  {fault_log[-1]}", flush=True)
            # Drain: until every job has a result or a dead letter (read from Redis directly).
            import redis

            from workers.connections import new_client

            r = new_client(s, socket_timeout=5)
            wanted = set(job_ids)
            results: dict[str, int] = Counter()
            dead: dict[str, dict] = {}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    results = Counter(decode_fields(f).get("job_id", "") for _, f in r.xrange(s.results_stream))
                    dead = {decode_fields(f).get("job_id", ""): decode_fields(f) for _, f in r.xrange(s.dead_stream)}
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    time.sleep(0.5)
                    continue
                done = {j for j in wanted if j in results or j in dead}
                if len(done) == len(wanted) and set(loader.delivered) >= {j for j in wanted if j in results}:
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # a late duplicate would show up here
        loader.stop.set()
        loader.join(5)
        published = {j for j in wanted if results.get(j)}
        out = {
            "pipeline": pipeline if pipeline == "stub" else f"real ({bundle or 'packaged bundle'})", "submitted": len(job_ids), "results": len(set(loader.delivered) & wanted),
            "missing": len(wanted - published - set(dead)),
            "duplicates_delivered_to_loader": sum(n - 1 for n in loader.delivered.values() if n > 1),
            "duplicate_stream_entries": sum(n - 1 for n in results.values() if n > 1),
            "dead": len(set(dead) & wanted), "dead_codes": dict(Counter(d.get("code", "") for j, d in dead.items() if j in wanted)),
            "kills": kills, "redis_restarts": redis_restarts,
            "drain_seconds_after_last_fault": round(max(0.0, loader.last_result_at - last_fault_over), 1),
            "total_seconds": round(time.monotonic() - started, 1), "faults": fault_log,
        }
        return out
    finally:
        loader.stop.set()
        for w in workers.values():
            w.stop(timeout=15)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--redis-restarts", type=int, default=2)
    ap.add_argument("--pipeline", choices=("stub", "real"), default="stub")
    ap.add_argument("--bundle", default=None, help="model bundle for --pipeline real (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the drain")
    ap.add_argument("--infer-workers", type=int, default=2)
    args = ap.parse_args(argv)
    out = run(args.docs, args.kills, args.redis_restarts, args.pipeline, args.bundle, args.seed, args.timeout,
              args.infer_workers)
    print(f"pipeline {out['pipeline']}: submitted {out['submitted']}, results {out['results']}, "
          f"missing {out['missing']}, duplicates delivered to the loader {out['duplicates_delivered_to_loader']} "
          f"(duplicate stream entries {out['duplicate_stream_entries']}), dead {out['dead']} {out['dead_codes']}, "
          f"{out['kills']} SIGKILLs, {out['redis_restarts']} Redis restarts, drain {out['drain_seconds_after_last_fault']} s "
          f"after the last fault, {out['total_seconds']} s in all")
    print(json.dumps(out))
    return 0 if out["missing"] == 0 and out["duplicates_delivered_to_loader"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
