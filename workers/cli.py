"""Streaming CLI commands (run, submit, results).

Registered into ``llmner`` through the ``llmner.cli`` entry point; heavy imports (Celery, models)
happen inside the commands so that ``llmner --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from llmner.errors import ConfigError, DataNotFoundError

console = Console(stderr=True)


def _settings_with_url(redis_url: str | None):
    """The settings, with ``--redis-url`` applied; RedisUnreachable (one line, exit 2) when Redis does not answer."""
    from workers.celery import app
    from workers.connections import check_reachable

    s = app.configure(dataclasses.replace(app.settings, redis_url=redis_url)) if redis_url else app.settings
    check_reachable(s)
    return s


@contextlib.contextmanager
def _redis_errors_in_one_line(url: str) -> Iterator[None]:
    # Redis going away mid-command: one line naming the URL and the fix, not a 150-line traceback.
    import redis
    from kombu.exceptions import OperationalError

    from workers.connections import RedisUnreachable, unreachable_message

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError) as exc:
        raise RedisUnreachable(unreachable_message(url, exc)) from None


RUN_OUTPUT_FORMATS = ("records", "jsonl", "pubtator", "bioc", "bioc_json")


def run(
    input: Annotated[Path, typer.Argument(help="JSONL file, one note per line: {\"id\", \"text\", \"language\"?, \"metadata\"?}")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="results JSONL (default: INPUT.results.jsonl)")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="use this Redis instead of an embedded server")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model bundle directory (default: the shipped bundle)")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="chunks per inference micro-batch")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    output_format: Annotated[str | None, typer.Option("--output-format", help=f"{', '.join(RUN_OUTPUT_FORMATS)}: result records (one per line, no note text), or documents with their text like `llmner tag` writes (default: from --output's extension: .xml bioc, .json bioc_json, .pubtator pubtator, else records)")] = None,
) -> None:
    """Tag a file of notes end to end through the streaming workers (embedded Redis, no set-up)."""
    if not input.is_file():
        raise DataNotFoundError(f"input file not found: {input}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    from llmner.data_processing.corpora import guess_output_format

    fmt = output_format or (guess_output_format(output, "records") if output else "records")
    if fmt not in RUN_OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r} (expected one of {', '.join(RUN_OUTPUT_FORMATS)})")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    from workers.embedded import run_file

    if fmt == "records":
        summary = run_file(input, output, redis_url=redis_url, bundle=model, batch_size=batch_size, show_progress=not quiet)
    else:
        summary = _run_to_documents(input, output or input.with_suffix(f".results.{fmt}"), fmt, redis_url=redis_url,
                                    bundle=model, batch_size=batch_size, show_progress=not quiet)
    rate = summary.submitted / summary.seconds if summary.seconds else 0.0
    console.print(f"{summary.published} of {summary.submitted} notes tagged in {summary.seconds:.1f} s "
                  f"({rate:.1f} notes/s) -> {summary.output}")
    if summary.dead:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(summary.dead_codes.items()))
        where = ("their lines in the output carry the reason" if fmt == "records"
                 else "they are left out of the output (--output-format records gives the reasons)")
        console.print(f"[yellow]{summary.dead} rejected[/] ({codes}); {where}")


def _run_to_documents(input: Path, output: Path, fmt: str, **run_options):
    """``run_file`` into a temporary file of result records, then the predicted documents (each
    note's text joined back by id) written in ``fmt``. The notes are read and the output format is
    checked before the workers start."""
    import tempfile

    from llmner.data_processing.corpora import (
        check_writable,
        read_documents,
        read_result_records,
        write_documents,
    )
    from llmner.doc import Document
    from workers.embedded import run_file

    notes = {d.id: d for d in read_documents(input, "jsonl")}
    check_writable(list(notes.values()), fmt)
    with tempfile.TemporaryDirectory(prefix="llmner-run-") as tmp:
        summary = run_file(input, Path(tmp) / "records.jsonl", **run_options)
        predicted = read_result_records(Path(tmp) / "records.jsonl")
    docs = [Document(p.id, notes[p.id].text, p.language, p.metadata, p.entities) for p in predicted]
    write_documents(docs, output, fmt)
    summary.output = str(output)
    return summary


def submit(
    file: Annotated[Path, typer.Argument(help="JSONL file of notes")],
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="default: LLMNER_REDIS_URL")] = None,
    batch: Annotated[int, typer.Option("--batch", help="notes per ingest message")] = 32,
) -> None:
    """Queue the notes of FILE for the running workers; prints one job id per note."""
    if not file.is_file():
        raise DataNotFoundError(f"input file not found: {file}")
    s = _settings_with_url(redis_url)
    from workers.client import submit_many
    from workers.embedded import read_payloads

    with _redis_errors_in_one_line(s.redis_url):
        jobs = submit_many(read_payloads(file), batch=batch)
    for job in jobs:
        print(job)
    console.print(f"submitted {len(jobs)} notes")


def _summary(stream_kind: str, fields: dict[str, str]) -> dict:
    if stream_kind == "results":
        rec = orjson.loads(fields.get("record", "{}"))
        return {"document_id": fields.get("document_id"), "model_version": fields.get("model_version"),
                "entities": len(rec.get("entities", [])), "chunks": rec.get("chunk_count"),
                "end_to_end_ms": round(rec.get("timings_ms", {}).get("end_to_end", 0.0), 1)}
    if stream_kind == "dead":
        return {k: fields.get(k) for k in ("code", "reason", "stage", "document_id", "job_id")}
    return {"fields": sorted(fields)}


def results(
    stream: Annotated[str, typer.Option("--stream", help="results | dead | inbox")] = "results",
    count: Annotated[int, typer.Option("--count", "-n", help="show the last N entries")] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new entries")] = False,
    full: Annotated[bool, typer.Option("--full", help="print whole entries (result records; dead payloads may hold PHI)")] = False,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="default: LLMNER_REDIS_URL")] = None,
) -> None:
    """Inspect or tail the result, dead-letter or inbox stream (length, consumer groups, entries)."""
    if stream not in ("results", "dead", "inbox"):
        raise ConfigError(f"--stream must be results, dead or inbox, got {stream!r}")
    s = _settings_with_url(redis_url)
    from workers.connections import client

    with _redis_errors_in_one_line(s.redis_url):
        _show_stream(client(s), s, stream, count, follow, full)


def _show_stream(r, s, stream: str, count: int, follow: bool, full: bool) -> None:
    from workers.jobs import decode_fields

    key = {"results": s.results_stream, "dead": s.dead_stream, "inbox": s.inbox_stream}[stream]
    length = r.xlen(key)
    console.print(f"{key}: {length} entries")
    try:
        groups = r.xinfo_groups(key)
    except Exception:  # noqa: BLE001 - no such stream yet
        groups = []
    for g in groups:
        console.print(f"  group {g['name'].decode()}: pending {g['pending']}, lag {g.get('lag')}, "
                      f"last delivered {g['last-delivered-id'].decode()}")

    def show(eid: bytes, raw: dict) -> None:
        fields = decode_fields(raw)
        body = fields if full else _summary(stream, fields)
        if full and "record" in body:
            body = {**body, "record": orjson.loads(body["record"])}
        sys.stdout.write(orjson.dumps({"id": eid.decode(), **body}).decode() + "\n")
        sys.stdout.flush()

    last = "$"
    entries = list(reversed(r.xrevrange(key, count=count))) if count > 0 else []
    for eid, raw in entries:
        show(eid, raw)
        last = eid.decode()
    while follow:
        try:
            resp = r.xread({key: last}, block=1000, count=100)
        except KeyboardInterrupt:
            break
        for _, items in resp or []:
            for eid, raw in items:
                show(eid, raw)
                last = eid.decode()
        time.sleep(0)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("submit")(submit)
    app.command("results")(results)
