"""Documents/s through Celery + Redis vs the same pipeline in-process: same documents, same model.

    .venv/bin/python benchmarks/pipeline.py [--model BUNDLE] [--docs N] [--rounds R] [--redis-url URL]

The streaming path is what ``llmner run`` does: the notes are submitted as Celery tasks, a worker
(a thread of this process, solo pool, models loaded once) validates and chunks them, tags
micro-batches of chunks across documents, reassembles each document in Redis and publishes it to
the results stream; the clock stops when the last result is read back. The in-process path is
``Pipeline.process(docs)``. Both paths alternate for ``--rounds`` rounds (the machine is shared
and noisy) and the table shows medians.

Without ``--model`` the model is a tiny random LoRA Llama + BERT selector bundle built in a
temporary directory (tests/tiny_models.py): it does real constrained generation, so model time
dominates as with a real model. A second section uses a rule-based generator (milliseconds per
document) to show the fixed queue cost per document on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_docs(n: int) -> list[dict]:
    """The example notes, repeated with fresh ids up to ``n``."""
    import orjson

    base = [orjson.loads(line) for line in (REPO / "examples" / "notes.jsonl").read_bytes().splitlines() if line.strip()]
    return [{**base[i % len(base)], "id": f"bench-{i}"} for i in range(n)]


def run_in_process(pipe, docs: list[dict]) -> float:
    from llmner.doc import Document

    t0 = time.perf_counter()
    records = pipe.process([Document.from_dict(d) for d in docs])
    assert len(records) == len(docs)
    return time.perf_counter() - t0


def run_streaming(settings, docs: list[dict]) -> tuple[float, list[float]]:
    """Seconds from the first submit to the last result; per-document queue wait (end_to_end - ingest - infer)."""
    from workers.client import submit_many
    from workers.embedded import follow

    t0 = time.perf_counter()
    jobs = submit_many(docs, batch=32)
    results, dead = follow(settings, jobs, timeout=3600)
    seconds = time.perf_counter() - t0
    if dead:
        raise SystemExit(f"{len(dead)} documents went to the dead stream: {next(iter(dead.values()))['reason']}")
    return seconds, [r["timings_ms"].get("max_batch_size", 0.0) for r in results.values()]


def measure(label: str, pipe, docs: list[dict], redis_url: str, rounds: int, batch_size: int) -> dict:
    from workers.embedded import delete_keys, running_workers
    from workers.settings import Settings

    settings = Settings.from_env().with_prefix(f"llmner-bench-{uuid.uuid4().hex[:8]}:")
    settings = dataclasses.replace(settings, redis_url=redis_url, metrics_port=0, ready_file="",
                                   infer_batch_size=batch_size)
    inproc, stream, batches = [], [], []
    run_in_process(pipe, docs[: max(2, len(docs) // 6)])  # warm-up (allocations, first-call costs)
    try:
        with running_workers(settings, pipeline=pipe) as active:
            run_streaming(active, docs[: max(2, len(docs) // 6)])  # warm-up of the streaming path
            for _ in range(rounds):
                inproc.append(run_in_process(pipe, docs))
                seconds, sizes = run_streaming(active, docs)
                stream.append(seconds)
                batches += sizes
    finally:
        delete_keys(settings)
    n = len(docs)
    t_in, t_st = statistics.median(inproc), statistics.median(stream)
    return {"label": label, "docs": n, "in_docs_s": n / t_in, "st_docs_s": n / t_st, "ratio": t_in / t_st,
            "overhead_ms": (t_st - t_in) * 1000 / n, "in_runs": inproc, "st_runs": stream,
            "max_batch": max(batches) if batches else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model bundle (default: a tiny random bundle built in a temp dir)")
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--fast-docs", type=int, default=300, help="documents for the rule-based section")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="LLMNER_INFER_BATCH_SIZE")
    parser.add_argument("--redis-url", default=None, help="default: an embedded Valkey server (unix socket)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    import logging

    logging.basicConfig(level=logging.ERROR)
    from llmner.pipeline import Pipeline
    from workers.embedded import EmbeddedRedis
    from workers_helpers import build_tiny_bundle, lexicon_pipeline

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as embedded:
        redis_url = args.redis_url or embedded.url
        bundle = args.model or str(build_tiny_bundle(Path(tmp) / "tiny"))
        model_label = "bundle " + (args.model or "tiny random (LoRA Llama 2x64 + BERT selector)")
        pipe = Pipeline.from_bundle(bundle)
        rows = [measure(model_label, pipe, load_docs(args.docs), redis_url, args.rounds, args.batch_size),
                measure("rule-based generator (queue cost alone)", lexicon_pipeline(), load_docs(args.fast_docs),
                        redis_url, args.rounds, args.batch_size)]

    where = args.redis_url or "embedded Valkey (unix socket)"
    print(f"\nCelery + Redis ({where}, 1 worker thread, solo pool, micro-batch {args.batch_size} chunks) "
          f"vs Pipeline.process in-process; medians of {args.rounds} alternating rounds\n")
    header = f"| {'model':<58} | docs | in-process docs/s | Celery+Redis docs/s | ratio | queue overhead |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        overhead_pct = (1 - r["ratio"]) * 100
        print(f"| {r['label']:<58} | {r['docs']:>4} | {r['in_docs_s']:>17.2f} | {r['st_docs_s']:>19.2f} | "
              f"{r['ratio']:>5.3f} | {overhead_pct:>5.1f} % ({r['overhead_ms']:+.1f} ms/doc) |")
    print()
    for r in rows:
        print(f"{r['label']}: in-process runs {', '.join(f'{x:.2f}' for x in r['in_runs'])} s; "
              f"Celery+Redis runs {', '.join(f'{x:.2f}' for x in r['st_runs'])} s; largest micro-batch {r['max_batch']:.0f}")
    target = rows[0]
    verdict = "meets" if (1 - target["ratio"]) <= 0.05 else "misses"
    print(f"\nTarget queue overhead <= 5 % with model time dominating: {verdict} "
          f"({(1 - target['ratio']) * 100:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
