"""BioC XML and BioC JSON through the ``bioc`` package (BC5CDR ships XML besides PubTator). Both
serializations hold the same collection; everything below applies to both.

Passages are placed at their ``offset`` in one document text, gaps filled with spaces (BC5CDR: title at
0, abstract at len(title) + 1, the same text as the PubTator reader builds). Passage boundaries and types
go to ``metadata["passages"]`` as ``[offset, length, type]`` so that the writer restores them.

Annotations: ``infons["type"]`` is the entity type and the first of ``ID_INFON_KEYS`` present is the
normalized id. BC5CDR adds, for each composite mention ("Ocular and auditory toxicity"), one extra
annotation per component marked ``CompositeRole=IndividualMention``, usually discontinuous; these are
skipped so that the mentions equal the PubTator reference counts. Any other annotation with several
locations cannot be an Entity (contiguous spans only): it is skipped and counted in
``metadata["discontinuous_skipped"]``. Relations go to ``metadata["relations"]`` as
``[infons["relation"], other infon values in order...]`` (BC5CDR: ``["CID", chemical, disease]``, as in PubTator).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import bioc
from bioc import biocjson, biocxml

from llmner.data_processing.corpora._io import (
    checked_entity,
    require_file,
    sort_entities,
    unique_id,
)
from llmner.doc import Document, Entity
from llmner.errors import ValidationError

# Characters XML 1.0 cannot carry (most C0 controls, lone surrogates, U+FFFE/U+FFFF).
_XML_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Predictions: the selector probability of an annotation, and the model ids of a document
# (``model.generator``, ``model.selector``...), read back into Entity.score and metadata["model_ids"].
SCORE_INFON = "score"
GENERATOR_SCORE_INFON = "generator_score"   # the generator's own probability of the entity's tags
MODEL_INFON_PREFIX = "model."

ID_INFON_KEYS = ("identifier", "MESH", "Identifier", "NCBI Gene", "NCBI Taxonomy", "normalized_id")


def read_bioc(path: str | Path, language: str = "en") -> list[Document]:
    """Documents of a BioC XML file."""
    return _read_collection(path, biocxml.load, "BioC XML", language)


def read_bioc_json(path: str | Path, language: str = "en") -> list[Document]:
    """Documents of a BioC JSON file."""
    return _read_collection(path, biocjson.load, "BioC JSON", language)


def _read_collection(path: str | Path, load: Callable[[IO[str]], bioc.BioCCollection], what: str,
                     language: str) -> list[Document]:
    p = require_file(path)
    try:
        with open(p, encoding="utf-8") as fh:
            collection = load(fh)
    except (SyntaxError, ValueError, KeyError, AttributeError, TypeError) as exc:  # lxml XMLSyntaxError is a SyntaxError (json's is a ValueError); bioc raises the rest on missing elements
        raise ValidationError(f"{p}: not a readable {what} file ({type(exc).__name__}: {exc})") from None
    seen: dict[str, int] = {}
    return [_read_document(p, d, language, seen) for d in collection.documents]


def _read_document(p: Path, bdoc: bioc.BioCDocument, language: str, seen: dict[str, int]) -> Document:
    where = f"{p}: document {bdoc.id!r}"
    pieces: list[str] = []
    length = 0
    passages_meta: list[list[object]] = []
    annotations: list[tuple[str, bioc.BioCAnnotation]] = []
    for k, passage in enumerate(bdoc.passages):
        ptext = passage.text
        if ptext is None:  # passage given as sentences only
            ptext = ""
            for sent in passage.sentences:
                rel = sent.offset - passage.offset
                if rel < len(ptext):
                    raise ValidationError(f"{where}: sentence at offset {sent.offset} overlaps the previous one")
                ptext += " " * (rel - len(ptext)) + (sent.text or "")
                annotations.extend((f"{where} passage #{k}", a) for a in sent.annotations)
        if passage.offset < length:
            raise ValidationError(f"{where}: passage #{k} at offset {passage.offset} overlaps the previous passage (ends at {length})")
        pieces.append(" " * (passage.offset - length))
        pieces.append(ptext)
        length = passage.offset + len(ptext)
        passages_meta.append([passage.offset, len(ptext), passage.infons.get("type", "")])
        annotations.extend((f"{where} passage #{k}", a) for a in passage.annotations)
    text = "".join(pieces)
    entities: list[Entity] = []
    skipped = 0
    for ann_where, ann in annotations:
        if ann.infons.get("CompositeRole") == "IndividualMention":
            continue
        w = f"{ann_where} annotation {ann.id!r}"
        if len(ann.locations) != 1:
            skipped += 1
            continue
        loc = ann.locations[0]
        etype = ann.infons.get("type")
        if not etype:
            raise ValidationError(f"{w}: no 'type' infon")
        norm = next((ann.infons[k] for k in ID_INFON_KEYS if k in ann.infons), None)
        entity = checked_entity(text, loc.offset, loc.offset + loc.length, etype, w, surface=ann.text, normalized_id=norm)
        if SCORE_INFON in ann.infons:
            entity = dataclasses.replace(entity, score=_parse_score(ann.infons[SCORE_INFON], w))
        if GENERATOR_SCORE_INFON in ann.infons:
            entity = dataclasses.replace(entity, generator_score=_parse_score(ann.infons[GENERATOR_SCORE_INFON], w))
        entities.append(entity)
    metadata: dict[str, object] = {"passages": passages_meta}
    model_ids = {k.removeprefix(MODEL_INFON_PREFIX): v for k, v in bdoc.infons.items() if k.startswith(MODEL_INFON_PREFIX)}
    if model_ids:
        metadata["model_ids"] = model_ids
    relations = []
    for rel in bdoc.relations + [r for passage in bdoc.passages for r in passage.relations]:
        relations.append([rel.infons.get("relation", "")] + [v for k, v in rel.infons.items() if k != "relation"])
    if relations:
        metadata["relations"] = relations
    if skipped:
        metadata["discontinuous_skipped"] = skipped
    return Document(id=unique_id(str(bdoc.id), seen), text=text, language=language, metadata=metadata,
                    entities=sort_entities(entities))


def _passage_layout(doc: Document) -> list[tuple[int, int, str]]:
    """The passages of ``metadata["passages"]`` when they tile the text (gaps are spaces), else one passage."""
    layout = doc.metadata.get("passages")
    whole = [(0, len(doc.text), "")]
    if not isinstance(layout, list) or not layout:
        return whole
    pos = 0
    out = []
    for item in layout:
        if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], int) and isinstance(item[1], int)):
            return whole
        offset, length, ptype = item
        if offset < pos or doc.text[pos:offset].strip(" "):
            return whole
        out.append((offset, length, str(ptype)))
        pos = offset + length
    if pos != len(doc.text) or any(o + n > len(doc.text) for o, n, _ in out):
        return whole
    return out


def write_bioc(docs: Iterable[Document], path: str | Path) -> None:
    """BioC XML."""
    _write_collection(_collection(docs), path, biocxml.dump)


def write_bioc_json(docs: Iterable[Document], path: str | Path) -> None:
    """BioC JSON."""
    _write_collection(_collection(docs), path, biocjson.dump)


def _write_collection(collection: bioc.BioCCollection, path: str | Path,
                      dump: Callable[[bioc.BioCCollection, IO[str]], None]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        dump(collection, fh)


def _collection(docs: Iterable[Document]) -> bioc.BioCCollection:
    collection = bioc.BioCCollection()
    collection.source = "llmner"
    for doc in docs:
        bad = _XML_INVALID.search(doc.text) or _XML_INVALID.search(doc.id)
        if bad:
            raise ValidationError(f"document {doc.id!r}: BioC XML cannot store the character {bad.group()!r} (use jsonl)")
        bdoc = bioc.BioCDocument()
        bdoc.id = doc.id
        for stage, model_id in sorted(dict(doc.metadata.get("model_ids") or {}).items()):
            bdoc.infons[f"{MODEL_INFON_PREFIX}{stage}"] = str(model_id)
        passages = []
        for offset, length, ptype in _passage_layout(doc):
            passage = bioc.BioCPassage()
            passage.offset = offset
            passage.text = doc.text[offset : offset + length]
            if ptype:
                passage.infons["type"] = ptype
            passages.append(passage)
            bdoc.add_passage(passage)
        for i, ent in enumerate(doc.entities):
            ann = bioc.BioCAnnotation()
            ann.id = str(i)
            ann.infons["type"] = ent.type
            if ent.normalized_id is not None:
                ann.infons["identifier"] = ent.normalized_id
            if ent.score is not None:
                ann.infons[SCORE_INFON] = f"{ent.score:.4f}"
            if ent.generator_score is not None:
                ann.infons[GENERATOR_SCORE_INFON] = f"{ent.generator_score:.4f}"
            ann.add_location(bioc.BioCLocation(ent.start, ent.end - ent.start))
            ann.text = doc.text[ent.start : ent.end]
            # The annotation lives in the passage where it starts.
            owner = next(ps for ps in reversed(passages) if ps.offset <= ent.start) if passages else None
            (owner or passages[0]).add_annotation(ann)
        for j, rel in enumerate(doc.metadata.get("relations", [])):
            brel = bioc.BioCRelation()
            brel.id = f"R{j}"
            brel.infons["relation"] = str(rel[0])
            for k, value in enumerate(rel[1:], start=1):
                brel.infons[f"arg{k}"] = str(value)
            bdoc.add_relation(brel)
        collection.add_document(bdoc)
    return collection


def _parse_score(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"{where}: score infon must be a number, got {value!r}") from None
