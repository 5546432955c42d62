"""The data model every component reads and writes: documents, chunks, entities, candidates, results.

Offsets are Python string indices (Unicode code points), end exclusive. Every span has a frame, the
text its offsets index:

- a ``Document``'s entities, a ``ResultRecord``'s entities and a ``Chunk``'s ``start``/``end`` are in
  the document frame (``Document.text``);
- the chunk-level stages (generation, selector scoring, selection) work in the chunk frame
  (``Chunk.text``): their results are typed ``ChunkEntities``, and a ``Candidate`` carries the chunk
  text its offsets index. ``llmner.data_processing.chunking.merge_chunk_entities`` is the one place
  that moves entities from the chunk frame to the document frame.

Nested and overlapping entities are allowed; an entity is identified by (start, end, type).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmner.errors import ValidationError

RESULT_SCHEMA_VERSION = 1
LANGUAGES = ("en", "zh")
# Gold annotations a corpus reader keeps in metadata besides the entities; not part of a prediction.
ANNOTATION_METADATA_KEYS = ("relations", "individual_mentions", "discontinuous_skipped")
DOCUMENT_FIELDS = frozenset({"id", "text", "language", "metadata", "entities"})
RESULT_FIELDS = frozenset({"schema_version", "document_id", "language", "entities", "model_ids", "timings_ms",
                           "chunk_count", "metadata"})


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    """A typed mention ``text[start:end]`` of the text of its frame (a document's, or a chunk's in
    ``ChunkEntities``; see the module docstring).

    ``score`` is the selector's probability when one ran (``None`` otherwise); ``generator_score`` is
    the generator's own probability of the tags that made the entity (its open and close markers,
    type included), set by codecs that can locate them (the inline codec) -- the only confidence of
    entities in languages the selector does not judge; ``normalized_id``
    holds a database identifier as a CURIE (``MESH:D009203``, ``OMIM:...``, ``NCBITaxon:9606``) when the
    corpus provides one or a normalizer linked the entity; ``normalized_score`` is the normalizer's
    confidence, set whenever one ran (so ``normalized_score`` set with ``normalized_id`` None is NIL).
    """

    start: int
    end: int
    type: str
    text: str = ""
    score: float | None = field(default=None, compare=False)
    normalized_id: str | None = field(default=None, compare=False)
    normalized_score: float | None = field(default=None, compare=False)
    generator_score: float | None = field(default=None, compare=False)
    source: str = field(default="generator", compare=False)   # who proposed it: "generator", "selector"
                                                             # (a tokens-head selector's own span), "reader"
                                                             # (llmner.modeling.reader: the schemas it tags, or a
                                                             # proposer's span) or "selector+reader" (both)

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.type)

    def shifted(self, offset: int) -> Entity:
        return dataclasses.replace(self, start=self.start + offset, end=self.end + offset)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "type": self.type, "text": self.text}
        if self.score is not None:
            out["score"] = self.score
        if self.generator_score is not None:
            out["generator_score"] = self.generator_score
        if self.normalized_id is not None:
            out["normalized_id"] = self.normalized_id
        if self.normalized_score is not None:
            out["normalized_score"] = self.normalized_score
        if self.source != "generator":
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "entity") -> Entity:
        _reject_unknown(data, {"start", "end", "type", "text", "score", "generator_score", "normalized_id",
                                 "normalized_score", "source"}, where)
        for name in ("start", "end", "type"):
            if name not in data:
                raise ValidationError(f"{where}: missing field '{name}'")
        start, end, etype = data["start"], data["end"], data["type"]
        if not isinstance(start, int) or isinstance(start, bool) or not isinstance(end, int) or isinstance(end, bool):
            raise ValidationError(f"{where}: start and end must be integers, got {start!r} and {end!r}")
        if not isinstance(etype, str) or not etype:
            raise ValidationError(f"{where}: type must be a non-empty string, got {etype!r}")
        numbers: dict[str, float | None] = {}
        for name in ("score", "generator_score", "normalized_score"):
            value = data.get(name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ValidationError(f"{where}: {name} must be a number, got {value!r}")
            numbers[name] = None if value is None else float(value)
        return cls(
            start=start,
            end=end,
            type=etype,
            text=str(data.get("text", "")),
            score=numbers["score"],
            generator_score=numbers["generator_score"],
            normalized_id=data.get("normalized_id"),
            normalized_score=numbers["normalized_score"],
            source=_source(data.get("source", "generator"), where),
        )


# "selector+reader": a span the selector proposed and a bundle's proposer (a reader) proposed too.
SELECTOR_AND_READER = "selector+reader"
ENTITY_SOURCES = ("generator", "selector", "reader", SELECTOR_AND_READER)


def _source(value: object, where: str) -> str:
    if value not in ENTITY_SOURCES:
        raise ValidationError(f"{where}: source must be one of {', '.join(ENTITY_SOURCES)}, got {value!r}")
    return str(value)


# The entities of one chunk, in that chunk's frame (offsets into ``Chunk.text``): what the
# chunk-level stages return and what ``merge_chunk_entities`` takes.
ChunkEntities = list[Entity]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a document: ``text == document.text[start:end]`` (``start``/``end`` in the document
    frame); made by ``llmner.data_processing.chunking.chunk_document``."""

    doc_id: str
    index: int
    start: int
    end: int
    text: str
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "index": self.index, "start": self.start, "end": self.end,
                "text": self.text, "language": self.language}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (span, type) proposal for the selector to score: ``text[start:end]``, where ``text`` is the
    chunk text the span was found in (the chunk frame), with the type's one-line ``definition``."""

    text: str
    start: int
    end: int
    type: str
    definition: str = ""


def one_per_key(entities: Sequence[Entity]) -> list[Entity]:
    """One entity per (start, end, type): the highest-scored, the earliest on ties (relabelling can give
    two candidates of a span the same type, or a generator candidate a proposal's); order kept."""
    best: dict[tuple[int, int, str], Entity] = {}
    for e in entities:
        kept = best.get(e.key)
        if kept is None or (e.score or 0.0) > (kept.score or 0.0):
            best[e.key] = e
    return [e for e in entities if best[e.key] is e]


@dataclass(slots=True)
class Document:
    """A text to tag, with optional gold ``entities`` (readers) or predictions (pipeline)."""

    id: str
    text: str
    language: str = "en"
    metadata: dict[str, Any] = field(default_factory=dict)
    entities: list[Entity] = field(default_factory=list)

    def span(self, start: int, end: int, type: str, **kwargs: Any) -> Entity:
        """Create an entity over ``text[start:end]`` with its surface text filled in."""
        return Entity(start, end, type, self.text[start:end], **kwargs)

    def without_annotations(self) -> Document:
        """A copy with no gold annotations (entities, relations...): the input of a prediction."""
        metadata = {k: v for k, v in self.metadata.items() if k not in ANNOTATION_METADATA_KEYS}
        return Document(self.id, self.text, self.language, metadata, [])

    def validate(self) -> Document:
        """Raise ValidationError naming the first problem; return self when valid."""
        validate_document(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "language": self.language}
        if self.metadata:
            out["metadata"] = self.metadata
        out["entities"] = [e.to_dict() for e in self.entities]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], validate: bool = True) -> Document:
        """A document from its dict form. Fields besides ``DOCUMENT_FIELDS`` (a producer's own, such as
        ``"mrn"``) are kept in ``metadata`` and so travel to the result record."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"document must be a JSON object, got {type(data).__name__}")
        if "id" not in data:
            raise ValidationError("document: missing field 'id'")
        if "text" not in data:
            raise ValidationError(f"document {data['id']!r}: missing field 'text'")
        doc_id = data["id"]
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
            raise ValidationError(f"document: id must be a non-empty string, got {doc_id!r}")
        where = f"document {str(doc_id)!r}"
        if not isinstance(data["text"], str):
            raise ValidationError(f"{where}: text must be a string, got {type(data['text']).__name__}")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValidationError(f"{where}: metadata must be an object")
        extra = {k: v for k, v in data.items() if k not in DOCUMENT_FIELDS}
        clash = sorted(set(extra) & set(metadata))
        if clash:
            raise ValidationError(f"{where}: field(s) {', '.join(map(repr, clash))} given both at the top level and in metadata")
        metadata = {**metadata, **extra}
        raw_entities = data.get("entities") or []
        if not isinstance(raw_entities, list):
            raise ValidationError(f"{where}: entities must be a list")
        doc = cls(
            id=str(doc_id),
            text=data["text"],
            language=data.get("language", "en"),
            metadata=dict(metadata),
            entities=[Entity.from_dict(e, f"{where} entity #{i}") for i, e in enumerate(raw_entities)],
        )
        if validate:
            validate_document(doc)
        return doc

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, payload: bytes | str, validate: bool = True) -> Document:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"document is not valid JSON: {exc}") from None
        return cls.from_dict(data, validate=validate)


# Han ideographs, the blocks BERT's pre-tokenizer makes words of their own (CJK unified, extension A,
# compatibility, extensions B-E and compatibility supplement): each is a word of its own to chunking, BERT's
# pre-tokenizer and the selector's span decoding.
CJK_RANGES = ("\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
              "\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f")
_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a Han ideograph (``CJK_RANGES``)."""
    return _CJK_CHAR.match(ch) is not None


def guess_language(text: str) -> str | None:
    """The language a text's letters are written in: ``zh`` when at least 30% of them are Han
    characters, ``en`` when they are Latin, None without letters (or in another script)."""
    han = latin = 0
    for ch in text:
        if is_cjk(ch):
            han += 1
        elif ch.isascii() and ch.isalpha():
            latin += 1
    if han and han >= 0.3 * (han + latin):
        return "zh"
    return "en" if latin else None


def validate_entity(entity: Entity, text: str, where: str = "entity") -> None:
    if not (0 <= entity.start < entity.end <= len(text)):
        raise ValidationError(
            f"{where}: offsets [{entity.start}, {entity.end}) out of range for a text of {len(text)} characters"
        )
    if entity.text and text[entity.start : entity.end] != entity.text:
        raise ValidationError(
            f"{where}: surface text {entity.text!r} does not match text[{entity.start}:{entity.end}]"
            f" = {text[entity.start:entity.end]!r}"
        )


def validate_document(doc: Document) -> None:
    where = f"document {doc.id!r}"
    if not isinstance(doc.text, str):
        raise ValidationError(f"{where}: text must be a string")
    if doc.language not in LANGUAGES:
        raise ValidationError(f"{where}: unknown language {doc.language!r} (expected one of {', '.join(LANGUAGES)})")
    for i, ent in enumerate(doc.entities):
        validate_entity(ent, doc.text, f"{where} entity #{i} ({ent.type})")


def dedupe_entities(entities: Iterable[Entity]) -> list[Entity]:
    """Sorted unique entities by (start, end, type); among duplicates the highest score wins (then
    the highest generator score)."""
    best: dict[tuple[int, int, str], Entity] = {}
    for ent in entities:
        prev = best.get(ent.key)
        if prev is None or (ent.score or 0.0, ent.generator_score or 0.0) > (prev.score or 0.0, prev.generator_score or 0.0):
            best[ent.key] = ent
    return sorted(best.values(), key=lambda e: (e.start, -e.end, e.type))


@dataclass(slots=True)
class ResultRecord:
    """What the pipeline and the workers publish for one document (versioned)."""

    document_id: str
    entities: list[Entity]
    model_ids: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    chunk_count: int = 0
    language: str = "en"
    schema_version: int = RESULT_SCHEMA_VERSION
    # The input document's metadata (a producer's own fields such as "mrn" included), passed through.
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "document_id": self.document_id,
            "language": self.language,
            "entities": [e.to_dict() for e in self.entities],
            "model_ids": self.model_ids,
            "timings_ms": self.timings_ms,
            "chunk_count": self.chunk_count,
        }
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        if not isinstance(data, Mapping):
            raise ValidationError(f"result must be a JSON object, got {type(data).__name__}")
        _reject_unknown(data, RESULT_FIELDS, "result")
        if "document_id" not in data:
            raise ValidationError("result: missing field 'document_id'")
        version = data.get("schema_version")
        if version != RESULT_SCHEMA_VERSION:
            raise ValidationError(f"result: unsupported schema_version {version!r} (expected {RESULT_SCHEMA_VERSION})")
        return cls(
            document_id=str(data["document_id"]),
            entities=[Entity.from_dict(e, f"result entity #{i}") for i, e in enumerate(data.get("entities", []))],
            model_ids=dict(data.get("model_ids", {})),
            timings_ms=dict(data.get("timings_ms", {})),
            chunk_count=int(data.get("chunk_count", 0)),
            language=data.get("language", "en"),
            schema_version=version,
            metadata=dict(data.get("metadata") or {}),
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> ResultRecord:
        return cls.from_dict(orjson.loads(payload))

    def to_document(self, text: str) -> Document:
        """The predicted document: ``text`` is the note's (a record does not carry it); the model ids,
        timings and chunk count join the passed-through metadata."""
        metadata = {**self.metadata, "model_ids": dict(self.model_ids), "timings_ms": dict(self.timings_ms),
                    "chunk_count": self.chunk_count}
        return Document(id=self.document_id, text=text, language=self.language, metadata=metadata,
                        entities=list(self.entities))


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def entity_keys(entities: Sequence[Entity]) -> set[tuple[int, int, str]]:
    return {e.key for e in entities}
