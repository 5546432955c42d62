"""CBLUE JSON (CMeEE): a JSON list of ``{"text": ..., "entities": [{"start_idx", "end_idx", "type", "entity"}]}``
with an INCLUSIVE ``end_idx`` (our Entity.end = end_idx + 1). Language ``zh``; nested entities allowed.
The CMeEE test file has no ``entities`` key (unlabeled): its documents come back with no entities and
``metadata["labeled"] = False``. Records are Documents with ids ``f"{id_prefix}{index}"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from llmner.data_processing.corpora._io import (
    checked_entity,
    read_text,
    sort_entities,
    write_text,
)
from llmner.doc import Document
from llmner.errors import ValidationError


def read_cblue(path: str | Path, language: str = "zh", id_prefix: str = "") -> list[Document]:
    p = Path(path)
    try:
        records = orjson.loads(read_text(p))
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise ValidationError(f"{p}: expected a JSON list of records")
    docs = []
    for i, record in enumerate(records):
        where = f"{p}: record #{i}"
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValidationError(f"{where}: expected an object with a 'text' string")
        text = record["text"]
        labeled = "entities" in record
        entities = []
        for k, ent in enumerate(record.get("entities") or []):
            w = f"{where} entity #{k}"
            try:
                s, e, etype = ent["start_idx"], ent["end_idx"], ent["type"]
            except (KeyError, TypeError):
                raise ValidationError(f"{w}: needs 'start_idx', 'end_idx' (inclusive) and 'type'") from None
            if not isinstance(s, int) or not isinstance(e, int):
                raise ValidationError(f"{w}: start_idx and end_idx must be integers, got {s!r} and {e!r}")
            entities.append(checked_entity(text, s, e + 1, str(etype), w, surface=ent.get("entity")))
        metadata: dict[str, object] = {} if labeled else {"labeled": False}
        docs.append(Document(id=f"{id_prefix}{i}", text=text, language=language, metadata=metadata,
                             entities=sort_entities(entities)))
    return docs


def write_cblue(docs: Iterable[Document], path: str | Path) -> None:
    records = []
    for doc in docs:
        record: dict[str, object] = {"text": doc.text}
        if doc.metadata.get("labeled", True) or doc.entities:
            record["entities"] = [
                {"start_idx": e.start, "end_idx": e.end - 1, "type": e.type, "entity": doc.text[e.start : e.end]}
                for e in doc.entities
            ]
        records.append(record)
    write_text(path, orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
