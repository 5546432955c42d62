"""Task payloads, in one place: how a producer encodes a note into an ingest message, and how the
ingest worker decodes and checks it.

An ingest message is ``(items, submitted_at)``; each item is ``[payload, encoding]``: the note's
JSON as UTF-8 text, or base64 when its bytes are not UTF-8 (the inbox bridge sends every payload
that way), so that malformed input reaches the dead stream as it was sent. The document itself
is checked by :meth:`llmner.doc.Document.from_dict`; this module adds only what a worker must
refuse besides: oversized payloads, ids that would corrupt logs, notes with nothing to tag, and
schemas that are not built in. Any problem raises :class:`Rejected`, whose code and reason go to
the dead stream.
"""

from __future__ import annotations

import base64
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from llmner.doc import LANGUAGES, Document
from llmner.errors import ConfigError, ValidationError

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

# What Celery logs and task events show instead of a note (PHI never reaches them).
REDACTED = "<redacted: note payload>"
MAX_ITEMS = 1000  # items per ingest message (the client sends 32)

DocumentLike = Document | Mapping[str, Any] | str | bytes

# C0 controls except tab, newline and carriage return; DEL; C1 controls. Replaced by spaces, not
# removed, so that entity offsets still point into the note as it was sent.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Codes whose payload cannot name a document id (it is not JSON, or not read at all).
_NO_DOCUMENT_ID = ("not_utf8", "not_json", "invalid_message", "too_large")


class Rejected(Exception):
    """A malformed input: ``code`` names the class, ``reason`` is one line for the dead stream."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason


# -- encoding (producers) -----------------------------------------------------------------------

def encode_payload(payload: bytes | str) -> tuple[str, str]:
    """(text, encoding) for a payload that must survive JSON: UTF-8 text as is, other bytes base64."""
    if isinstance(payload, str):
        return payload, "utf-8"
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def encode_item(doc: DocumentLike) -> list[str]:
    """``[payload, encoding]`` of one note; validation happens in the worker, so that malformed
    input reaches the dead stream."""
    if isinstance(doc, Document):
        raw: bytes | str = orjson.dumps({"id": doc.id, "text": doc.text, "language": doc.language,
                                         **({"metadata": doc.metadata} if doc.metadata else {})})
    elif isinstance(doc, Mapping):
        raw = orjson.dumps(dict(doc))
    elif isinstance(doc, (str, bytes)):
        raw = doc
    else:
        raise TypeError(f"submit expects a Document, a mapping or a JSON string, got {type(doc).__name__}")
    text, encoding = encode_payload(raw)
    return [text, encoding]


def encode_inbox_item(payload: bytes) -> list[str]:
    """``[payload, encoding]`` of an inbox entry's bytes, base64 whatever they hold (the worker decides)."""
    return [base64.b64encode(payload).decode("ascii"), "base64"]


# -- decoding (the ingest worker) ---------------------------------------------------------------

def parse_ingest_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any], float | None]:
    """``(items, submitted_at)`` of an ingest message, or Rejected (the whole message is malformed)."""
    kwargs = dict(kwargs)
    submitted_at = kwargs.pop("submitted_at", None)
    items = kwargs.pop("items", None)
    rest = list(args)
    if items is None and rest:
        items = rest.pop(0)
    if rest and submitted_at is None:
        submitted_at = rest.pop(0)
    if rest or kwargs:
        raise Rejected("invalid_message", f"ingest takes (items, submitted_at); got {len(args)} arguments "
                                          f"and keywords {sorted(map(str, kwargs))[:5]}")
    if not isinstance(items, list) or not items:
        raise Rejected("invalid_message", f"ingest items must be a non-empty list, got {type(items).__name__}")
    if len(items) > MAX_ITEMS:
        raise Rejected("invalid_message", f"ingest message has {len(items)} items; the limit is {MAX_ITEMS}")
    if submitted_at is not None and (isinstance(submitted_at, bool) or not isinstance(submitted_at, (int, float))
                                     or not math.isfinite(submitted_at)):
        raise Rejected("invalid_message", "ingest submitted_at must be a number (Unix time)")
    return items, submitted_at


def parse_item(item: Any) -> tuple[str, str]:
    """``[payload, encoding]`` (encoding utf-8 or base64), or Rejected."""
    if not isinstance(item, list) or not 1 <= len(item) <= 2 or not all(isinstance(x, str) for x in item):
        raise Rejected("invalid_message", "an ingest item must be [payload, encoding] with two strings, "
                                          f"got {type(item).__name__}")
    payload, encoding = (item[0], item[1]) if len(item) == 2 else (item[0], "utf-8")
    if encoding not in ("utf-8", "base64"):
        raise Rejected("invalid_message", f"unknown payload encoding {encoding[:40]!r}")
    return payload, encoding


def decode_text(payload: str, encoding: str) -> str:
    """The note's JSON text of a payload, or Rejected (not base64, not UTF-8)."""
    if encoding == "utf-8":
        return payload
    if encoding != "base64":
        raise Rejected("invalid_message", f"unknown payload encoding {encoding[:40]!r}")
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:
        raise Rejected("not_json", "payload is not valid base64 (inbox bridge bug)") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", f"payload is not UTF-8 (invalid byte at offset {exc.start})") from None


def parse_document(payload: str, encoding: str, pipeline: Pipeline, max_chars: int, max_id_chars: int = 256) -> Document:
    """The document in a submitted payload, or Rejected naming the first problem."""
    text = decode_text(payload, encoding)
    # A JSON-escaped note can be longer than its text; this bound only stops absurd payloads early.
    if len(text) > 6 * max_chars + 65536:
        raise Rejected("too_large", f"payload of {len(text)} characters exceeds the limit ({max_chars} characters of text)")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"payload is not valid JSON: {str(exc)[:200]}") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "entities"}  # gold entities are not needed to tag
        if isinstance(data.get("text"), str):
            data["text"] = _CONTROL.sub(" ", data["text"])
    try:
        doc = Document.from_dict(data)
    except ValidationError as exc:
        raise Rejected(_refusal_code(data), str(exc)) from None
    check_id(doc.id, max_id_chars)
    if len(doc.text) > max_chars:
        raise Rejected("too_large", f"document text has {len(doc.text)} characters; the limit is {max_chars} (LLMNER_MAX_DOC_CHARS)")
    if not doc.text.strip():
        raise Rejected("empty_text", "document text is empty")
    if not has_visible_text(doc.text):
        raise Rejected("empty_text", "document text has no visible characters (only spaces, controls or "
                                     "zero-width characters)")
    check_schema(doc, pipeline)
    return doc


def _refusal_code(data: Any) -> str:
    """The dead-stream code of a payload that :meth:`Document.from_dict` refused (its message is the
    reason): the class of the problem, for operators who count them."""
    if not isinstance(data, dict):
        return "not_json"
    if "id" not in data or "text" not in data:
        return "missing_field"
    if data.get("language", "en") not in LANGUAGES:
        return "unknown_language"
    return "invalid_document"


def check_id(doc_id: str, max_chars: int) -> None:
    """Rejected when a document id is too long, blank, or holds characters that would corrupt a log line."""
    if len(doc_id) > max_chars:
        raise Rejected("invalid_id", f"document id has {len(doc_id)} characters; the limit is {max_chars} "
                                     "(LLMNER_MAX_ID_CHARS)")
    bad = next((c for c in doc_id if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise Rejected("invalid_id", f"document id contains the control or format character U+{ord(bad):04X}")
    if not doc_id.strip():
        raise Rejected("invalid_id", "document id is blank")


def has_visible_text(text: str) -> bool:
    """Letters, digits, punctuation or symbols: not only spaces, controls or zero-width characters."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in text)


def check_schema(doc: Document, pipeline: Pipeline) -> None:
    """Rejected unless the document's schema is built in (a payload must not make the worker read
    files by path) and the pipeline can tag it."""
    schema = doc.metadata.get("schema")
    if schema is not None:
        from llmner.schema import builtin_schema_names

        known = builtin_schema_names()
        if not isinstance(schema, str) or schema not in known:
            raise Rejected("unknown_schema", f"unknown schema {str(schema)[:80]!r} (built-in schemas: {', '.join(known)})")
    try:
        pipeline.schema_for(doc)
    except (ValidationError, ConfigError) as exc:
        raise Rejected("unknown_schema", str(exc)) from None


# -- what the dead stream keeps of a rejected payload -------------------------------------------

def original_payload(payload: bytes | str, encoding: str) -> bytes | str:
    """The payload as the producer sent it (base64 undone where it decodes)."""
    if encoding == "base64" and isinstance(payload, str):
        try:
            return base64.b64decode(payload)
        except ValueError:
            return payload
    return payload


def document_id_in(payload: bytes | str, code: str) -> str:
    """The ``id`` a rejected payload names, or "" (not JSON, not an object, or rejected before it was read)."""
    if code in _NO_DOCUMENT_ID:
        return ""
    try:
        return str(orjson.loads(payload).get("id", ""))
    except Exception:  # noqa: BLE001 - any malformed payload simply names no id
        return ""


def message_payload(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """A whole malformed task message as JSON, for its dead letter."""
    return orjson.dumps({"args": args, "kwargs": kwargs}, default=str)
