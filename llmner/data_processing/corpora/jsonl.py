"""llmner's own JSONL: one ``Document.to_dict()`` object per line (lossless for everything a Document holds);
and result records (``ResultRecord.to_dict()``, one per line), the output of ``llmner run``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from llmner.data_processing.corpora._io import lines_of, read_text, write_text
from llmner.doc import Document, ResultRecord
from llmner.errors import ValidationError


def read_jsonl(path: str | Path) -> list[Document]:
    return [doc for doc in _parsed_lines(path, Document.from_json) if doc is not None]


def _parsed_lines(path: str | Path, parse: Callable[[str], Document | None]) -> list[Document | None]:
    """``parse`` of every non-blank line; an error names the file and line."""
    p = Path(path)
    out = []
    for lineno, line in enumerate(lines_of(read_text(p)), start=1):
        if not line.strip():
            continue
        try:
            out.append(parse(line))
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"{p}:{lineno}: not valid JSON ({exc})") from None
        except ValidationError as exc:
            raise ValidationError(f"{p}:{lineno}: {exc}") from None
    return out


def write_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    # orjson escapes \n and \r inside strings, so each document stays on one line (readers split at \n only).
    write_text(path, "".join(doc.to_json().decode() + "\n" for doc in docs))


def read_result_records(path: str | Path) -> list[Document]:
    """The predicted documents of a file of result records (``llmner run``'s output, the results
    stream's ``record`` field). A record carries no note text: each document's text is empty, its
    entities keep their offsets into the note, and ``llmner eval`` scores them by document id. The
    error lines ``llmner run`` writes for rejected notes (``{"document_id", "error", "reason"}``)
    hold no prediction and are skipped."""
    def parse(line: str) -> Document | None:
        data = orjson.loads(line)
        if isinstance(data, dict) and "error" in data and "schema_version" not in data:
            return None
        return ResultRecord.from_dict(data).to_document("")

    return [doc for doc in _parsed_lines(path, parse) if doc is not None]


def write_result_records(docs: Iterable[Document], path: str | Path) -> None:
    """Result records of predicted documents (the inverse of ``read_result_records``; no text)."""
    lines = []
    for doc in docs:
        metadata = dict(doc.metadata)
        record = ResultRecord(document_id=doc.id, entities=list(doc.entities), model_ids=metadata.pop("model_ids", {}),
                              timings_ms=metadata.pop("timings_ms", {}), chunk_count=metadata.pop("chunk_count", 0),
                              language=doc.language, metadata=metadata)
        lines.append(record.to_json().decode() + "\n")
    write_text(path, "".join(lines))
