"""The short chaos run of benchmarks/chaos.py (stub pipeline) and a fuzz run through every entry point.

The chaos run needs a Redis it may kill: it starts a private redis-server (AOF on) on a free
loopback port rather than restarting the suite's shared one on 6379.
"""

from __future__ import annotations

import base64
import random
import shutil
import sys
import time

import orjson
import pytest

from workers.testing import (
    REPO,
    cleanup,
    isolated_settings,
    lexicon_pipeline,
    note_payloads,
)

pytestmark = pytest.mark.redis


def test_short_chaos_run_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary (the chaos run restarts its own Redis)")
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setenv("LLMNER_TEST_INFER_DELAY", "0.5")
    from chaos import run

    out = run(docs=12, kills=3, redis_restarts=1, pipeline="stub", seed=3, timeout=120, work_dir=tmp_path,
              heartbeat_interval=0.5, heartbeat_ttl=3.0, verbose=False)
    print(f"\nshort chaos run: {out}")
    assert out["submitted"] == 12
    assert out["missing"] == 0 and out["results"] + out["dead"] == 12
    assert out["dead"] == 0, out["dead_codes"]
    assert out["duplicates_delivered_to_loader"] == 0
    assert out["drain_seconds_after_last_fault"] < 60


def _malformed(rng: random.Random, i: int) -> bytes:
    kinds = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
        lambda: orjson.dumps({"id": f"m{i}", "text": "Fever."})[: rng.randint(1, 20)],
        lambda: orjson.dumps(rng.choice([[], 1, "text", None, True, [{"id": "x"}]])),
        lambda: orjson.dumps({"id": f"m{i}"}),
        lambda: orjson.dumps({"text": "Fever."}),
        lambda: orjson.dumps({"id": rng.choice([None, [], {}, True, ""]), "text": "Fever."}),
        lambda: orjson.dumps({"id": f"m{i}", "text": rng.choice([None, 5, [], {"a": 1}])}),
        lambda: orjson.dumps({"id": f"m{i}", "text": "Fever.", "language": rng.choice(["xx", "", 3, None])}),
        lambda: orjson.dumps({"id": f"m{i}", "text": "x" * 5000}),
        lambda: orjson.dumps({"id": f"m{i}", "text": rng.choice(["\x00" * 50, "\u200b" * 40, "   \n\t ", "\x08\x7f"])}),
        lambda: orjson.dumps({"id": rng.choice(["a\nb", "\x1b[2J", "i" * 1000, "\u202e"]), "text": "Fever."}),
        lambda: orjson.dumps({"id": f"m{i}", "text": "Fever.", "metadata": {"schema": rng.choice(["/etc/passwd", 5, "nope"])}}),
        # An extra field is kept in metadata (issue 17); one that clashes with a metadata key is refused.
        lambda: orjson.dumps({"id": f"m{i}", "text": "Fever.", "mrn": 1, "metadata": {"mrn": 2}}),
        lambda: b"[" * 10_000,
    ]
    return rng.choice(kinds)()


def _raw_broker_item(rng: random.Random, i: int) -> bytes:
    kinds = [
        lambda: f"garbage {i}".encode(),
        lambda: orjson.dumps(rng.choice([[], 1, "s", None])),
        lambda: orjson.dumps({"body": "x", "properties": {}}),
        lambda: orjson.dumps({"body": "!!!", "properties": {"delivery_tag": f"t{i}", "body_encoding": "base64",
                                                           "delivery_info": {"exchange": "", "routing_key": "q"}}}),
        lambda: orjson.dumps({"body": base64.b64encode(b"not json").decode(), "content-type": "application/json",
                              "content-encoding": "utf-8", "headers": {"task": "llmner.ingest", "id": f"raw-{i}"},
                              "properties": {"delivery_tag": f"t{i}", "body_encoding": "base64",
                                             "delivery_info": {"exchange": "", "routing_key": "q"}}}),
        lambda: orjson.dumps({"body": base64.b64encode(b"[[], {}, {}]").decode(), "content-type": "application/json",
                              "content-encoding": "utf-8", "headers": {"lang": "py"},
                              "properties": {"delivery_tag": f"t{i}", "body_encoding": "base64",
                                             "delivery_info": {"exchange": "", "routing_key": "q"}}}),
    ]
    return rng.choice(kinds)()


def test_fuzz_200_malformed_payloads_through_every_entry_point_good_notes_all_published(tmp_path, require_redis):
    """submit(), the inbox stream and raw broker items: every malformed input is dead-lettered, the
    worker stays up, and every good note interleaved with them is published."""
    from workers.client import submit
    from workers.connections import client
    from workers.embedded import follow, running_workers
    from workers.inbox import InboxBridge
    from workers.jobs import decode_fields

    s = isolated_settings(tmp_path, infer_batch_size=4, max_doc_chars=2000)
    rng = random.Random(1616)
    good_docs = note_payloads(20, seed=1616)
    try:
        with running_workers(s, pipeline=lexicon_pipeline()) as active:
            r = client(active)
            bridge = InboxBridge(active, r)
            bridge.ensure_group()
            bad_jobs: list[str] = []
            good_jobs: list[str] = []
            raw_items = 0
            for i in range(200):
                route = i % 3
                if route == 0:
                    bad_jobs.append(submit(_malformed(rng, i)))
                elif route == 1:
                    fields = {"payload": _malformed(rng, i)} if i % 2 else {"note": b"no payload field"}
                    eid = r.xadd(active.inbox_stream, fields).decode()
                    bad_jobs.append(f"inbox-{eid}.0")
                else:
                    r.lpush(rng.choice([active.ingest_queue, active.infer_queue]), _raw_broker_item(rng, i))
                    raw_items += 1
                if i % 10 == 0:
                    good = good_docs[i // 10]
                    if i % 20 == 0:
                        good_jobs.append(submit(good))
                    else:
                        eid = r.xadd(active.inbox_stream, {"payload": orjson.dumps(good)}).decode()
                        good_jobs.append(f"inbox-{eid}.0")
                if i % 25 == 0:
                    bridge.poll(block_ms=10)
            deadline = time.monotonic() + 60
            while r.xlen(active.inbox_stream) and time.monotonic() < deadline:
                bridge.poll(block_ms=100)
            results, dead = follow(active, bad_jobs + good_jobs, timeout=90)
            time.sleep(1.0)
            broker_dead = [decode_fields(f) for _, f in r.xrange(active.dead_stream)]
            broker_dead = [d for d in broker_dead if d["stage"] == "broker" or d["job_id"].endswith(".msg")]
    finally:
        cleanup(s)
    assert sorted(results) == sorted(good_jobs), f"{len(results)} of {len(good_jobs)} good notes published"
    assert sorted(dead) == sorted(bad_jobs)
    assert all(d["code"] and d["reason"] for d in dead.values())
    assert len(broker_dead) == raw_items, (len(broker_dead), raw_items)
    assert all(len(d["payload"]) <= 65536 * 2 and len(d["reason"]) <= 500 for d in [*dead.values(), *broker_dead])
    print(f"\nfuzz: {len(bad_jobs)} malformed jobs and {raw_items} raw broker items dead-lettered, "
          f"{len(good_jobs)} good notes published; {sys.version_info[:2]}")
