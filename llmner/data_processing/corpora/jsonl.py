"""llmner's own JSONL: one ``Document.to_dict()`` object per line (lossless for everything a Document holds)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmner.data_processing.corpora._io import lines_of, read_text, write_text
from llmner.doc import Document
from llmner.errors import ValidationError


def read_jsonl(path: str | Path) -> list[Document]:
    p = Path(path)
    docs = []
    for lineno, line in enumerate(lines_of(read_text(p)), start=1):
        if not line.strip():
            continue
        try:
            docs.append(Document.from_json(line))
        except ValidationError as exc:
            raise ValidationError(f"{p}:{lineno}: {exc}") from None
    return docs


def write_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    # orjson escapes \n and \r inside strings, so each document stays on one line (readers split at \n only).
    write_text(path, "".join(doc.to_json().decode() + "\n" for doc in docs))
