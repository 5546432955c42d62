"""Shared helpers of the corpus readers and writers: file access with clear errors, id bookkeeping."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmner.doc import Document, Entity
from llmner.errors import DataNotFoundError, ValidationError


def require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"corpus file not found: {p}")
    return p


def read_text(path: str | Path) -> str:
    p = require_file(path)
    try:
        # newline="" keeps "\r\n" and lone "\r" as they are, so character offsets stay exact.
        with open(p, encoding="utf-8", newline="") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{p}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def lines_of(text: str) -> list[str]:
    """Lines split at "\n" only (one trailing "\r" dropped). ``str.splitlines`` would also split at
    U+0085, U+2028, form feeds... which can sit inside a title, a token or a JSON string."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def write_text(path: str | Path, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def parse_int(value: str, where: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"{where}: {what} must be an integer, got {value!r}") from None


def checked_entity(doc_text: str, start: int, end: int, etype: str, where: str,
                   surface: str | None = None, normalized_id: str | None = None) -> Entity:
    """An entity over ``doc_text[start:end]``; ValidationError naming ``where`` when offsets or surface are wrong."""
    if not (0 <= start < end <= len(doc_text)):
        raise ValidationError(f"{where}: offsets [{start}, {end}) out of range for a text of {len(doc_text)} characters")
    actual = doc_text[start:end]
    # Offsets win over the mention column when they differ only by surrounding whitespace
    # (NCBI-Disease train, PMID 10923035, lists '... " plus "  ' with two trailing spaces).
    if surface is not None and surface != actual and surface.strip() != actual.strip():
        raise ValidationError(f"{where}: mention {surface!r} does not match text[{start}:{end}] = {actual!r}")
    if not etype:
        raise ValidationError(f"{where}: empty entity type")
    return Entity(start, end, etype, actual, normalized_id=normalized_id)


def unique_id(doc_id: str, seen: dict[str, int]) -> str:
    """``doc_id`` the first time, ``doc_id-dupN`` for the N-th repeat (e.g. PMID 8528200 in NCBI-Disease train)."""
    count = seen.get(doc_id, 0) + 1
    seen[doc_id] = count
    return doc_id if count == 1 else f"{doc_id}-dup{count}"


def sort_entities(entities: Iterable[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e.start, -e.end, e.type))


def check_language(docs: Iterable[Document]) -> None:
    for doc in docs:
        doc.validate()
