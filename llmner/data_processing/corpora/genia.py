"""GENIA nested JSONL (``genia/cased_jsonl``): one sentence per line,
``{"tokens": [...], "entities": [{"start": s, "end": e_exclusive, "type": t}], "case_restored": bool}``
with token offsets.

One Document per sentence: text = tokens joined by single spaces, token spans -> character offsets.
Entities listed twice with the same (start, end, type) are kept once (31 sentences of the Lu & Roth
data repeat a span: 21 / 8 / 4 extra entities in train / dev / test, which the README's entity counts
include). ``case_restored`` is kept in the metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from llmner.data_processing.corpora._io import (
    lines_of,
    read_text,
    sort_entities,
    write_text,
)
from llmner.data_processing.corpora.conll import (
    entity_token_range,
    is_token,
    token_spans,
)
from llmner.doc import Document, Entity
from llmner.errors import ValidationError

_KEYS = {"tokens", "entities", "case_restored"}


def read_genia_jsonl(path: str | Path, language: str = "en", id_prefix: str = "") -> list[Document]:
    p = Path(path)
    docs: list[Document] = []
    for lineno, line in enumerate(lines_of(read_text(p)), start=1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or "tokens" not in record:
            raise ValidationError(f"{where}: expected an object with 'tokens' and 'entities'")
        unknown = set(record) - _KEYS
        if unknown:
            raise ValidationError(f"{where}: unknown field(s) {sorted(unknown)}")
        tokens = record["tokens"]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and is_token(t) for t in tokens):
            raise ValidationError(f"{where}: 'tokens' must be a non-empty list of non-empty strings without spaces, tabs or line breaks")
        starts = []
        pos = 0
        for t in tokens:
            starts.append(pos)
            pos += len(t) + 1
        text = " ".join(tokens)
        seen: set[tuple[int, int, str]] = set()
        entities: list[Entity] = []
        for k, ent in enumerate(record.get("entities") or []):
            try:
                s, e, etype = ent["start"], ent["end"], ent["type"]
            except (KeyError, TypeError):
                raise ValidationError(f"{where}: entity #{k} needs 'start', 'end' (exclusive) and 'type'") from None
            if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(tokens)):
                raise ValidationError(f"{where}: entity #{k} token span [{s}, {e}) out of range for {len(tokens)} tokens")
            if not isinstance(etype, str) or not etype:
                raise ValidationError(f"{where}: entity #{k} has no type")
            key = (s, e, etype)
            if key in seen:
                continue
            seen.add(key)
            cs, ce = starts[s], starts[e - 1] + len(tokens[e - 1])
            entities.append(Entity(cs, ce, etype, text[cs:ce]))
        metadata: dict[str, object] = {"sentence_index": len(docs)}
        if "case_restored" in record:
            metadata["case_restored"] = bool(record["case_restored"])
        docs.append(Document(id=f"{id_prefix}{len(docs)}", text=text, language=language, metadata=metadata,
                             entities=sort_entities(entities)))
    return docs


def write_genia_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    """Space-tokenized documents with token-aligned (possibly nested) entities, one JSON object per line."""
    lines: list[bytes] = []
    for doc in docs:
        spans = token_spans(doc, "GENIA JSONL")
        starts = {s: i for i, (s, _) in enumerate(spans)}
        ends = {e: i for i, (_, e) in enumerate(spans)}
        record: dict[str, object] = {"tokens": [doc.text[s:e] for s, e in spans], "entities": []}
        for ent in doc.entities:
            first, last = entity_token_range(doc, ent, starts, ends, "GENIA JSONL")
            record["entities"].append({"start": first, "end": last, "type": ent.type})  # type: ignore[union-attr]
        if "case_restored" in doc.metadata:
            record["case_restored"] = bool(doc.metadata["case_restored"])
        lines.append(orjson.dumps(record))
    write_text(path, "".join(line.decode() + "\n" for line in lines))
