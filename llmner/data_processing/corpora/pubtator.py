"""PubTator: ``PMID|t|title``, ``PMID|a|abstract``, then one tab-separated line per mention
``PMID  start  end  mention  type  id[  individual mentions]`` and relation lines ``PMID  REL  id1  id2``;
a blank line ends a document. Used by NCBI-Disease (original release) and BC5CDR.

The document text is ``title + " " + abstract`` (the offsets in the files count that way; an empty
abstract adds no space); the title length is kept in ``metadata["title_length"]`` so that the writer
can split it again. The writer always writes both lines; a text without a known title is all title.
Relation lines go to ``metadata["relations"]`` as ``[type, id1, id2]``; the 7th column of composite
mentions (BC5CDR, "Ocular toxicity|auditory toxicity") goes to ``metadata["individual_mentions"]``
as ``[start, end, type, value]``. Both are written back, so reader -> writer -> reader is lossless.
An identifier column holding ``-1`` (BC5CDR: no MeSH id) is kept verbatim.

This parser is the project's own, not ``bioc.pubtator``: the library drops the individual-mention
column, prints malformed lines instead of raising, and merges documents not separated by a blank
line (tests/test_bioc_library_gaps.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from llmner.data_processing.corpora._io import (
    checked_entity,
    lines_of,
    parse_int,
    read_text,
    sort_entities,
    unique_id,
    write_text,
)
from llmner.doc import Document
from llmner.errors import ValidationError

# NCBI-Disease annotates four classes of disease mention; for NER they are all one type.
NCBI_DISEASE_CLASSES: Mapping[str, str] = {
    "SpecificDisease": "Disease",
    "DiseaseClass": "Disease",
    "Modifier": "Disease",
    "CompositeMention": "Disease",
}


def read_pubtator(path: str | Path, type_map: Mapping[str, str] | None = None, language: str = "en") -> list[Document]:
    """Documents of a PubTator file; ``type_map`` renames entity classes (unmapped ones are kept)."""
    p = Path(path)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    lines = lines_of(read_text(p))
    i = 0
    n = len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        doc, i = _read_one(p, lines, i, type_map or {}, language, seen)
        docs.append(doc)
    return docs


def _read_one(p: Path, lines: list[str], i: int, type_map: Mapping[str, str], language: str,
              seen: dict[str, int]) -> tuple[Document, int]:
    title_line = lines[i]
    parts = title_line.split("|", 2)
    if len(parts) != 3 or parts[1] != "t":
        raise ValidationError(f"{p}:{i + 1}: expected 'PMID|t|title', got {title_line[:60]!r}")
    pmid, title = parts[0], parts[2]
    text = title
    i += 1
    if i < len(lines) and lines[i].startswith(f"{pmid}|a|"):
        abstract = lines[i][len(pmid) + 3 :]
        if abstract:   # an empty abstract line (a title-only document) adds no separating space
            text = f"{title} {abstract}"
        i += 1
    entities = []
    relations: list[list[str]] = []
    extras: list[list[object]] = []
    while i < len(lines) and lines[i].strip():
        where = f"{p}:{i + 1}"
        if "\t" not in lines[i] and "|t|" in lines[i]:
            break  # the next document starts without a blank line in between
        cols = lines[i].split("\t")
        if cols[0] != pmid:
            raise ValidationError(f"{where}: line belongs to document {cols[0]!r} inside document {pmid!r} (missing blank line?)")
        if len(cols) == 4:
            relations.append(cols[1:4])
        elif len(cols) in (6, 7):
            start = parse_int(cols[1], where, "start offset")
            end = parse_int(cols[2], where, "end offset")
            etype = type_map.get(cols[4], cols[4])
            entities.append(checked_entity(text, start, end, etype, where, surface=cols[3], normalized_id=cols[5]))
            if len(cols) == 7:
                extras.append([start, end, etype, cols[6]])
        elif len(cols) == 5:
            start = parse_int(cols[1], where, "start offset")
            end = parse_int(cols[2], where, "end offset")
            entities.append(checked_entity(text, start, end, type_map.get(cols[4], cols[4]), where, surface=cols[3]))
        else:
            raise ValidationError(f"{where}: expected 6 tab-separated fields (PMID start end mention type id), got {len(cols)}")
        i += 1
    metadata: dict[str, object] = {"title_length": len(title)}
    if relations:
        metadata["relations"] = relations
    if extras:
        metadata["individual_mentions"] = extras
    doc = Document(id=unique_id(pmid, seen), text=text, language=language, metadata=metadata,
                   entities=sort_entities(entities))
    return doc, i


def write_pubtator(docs: Iterable[Document], path: str | Path) -> None:
    """Write documents as PubTator. Texts must be single-line (PubTator has no escape for newlines)."""
    out: list[str] = []
    for doc in docs:
        if "\n" in doc.text or "\r" in doc.text:
            raise ValidationError(f"document {doc.id!r}: PubTator cannot store a text with line breaks (use jsonl or bioc)")
        if "|" in doc.id or "\t" in doc.id:
            raise ValidationError(f"document {doc.id!r}: PubTator ids cannot contain '|' or tabs")
        title_length = doc.metadata.get("title_length")
        if not isinstance(title_length, int) or not (title_length == len(doc.text) or
                                                     (0 <= title_length < len(doc.text) and doc.text[title_length] == " ")):
            title_length = len(doc.text)
        out.append(f"{doc.id}|t|{doc.text[:title_length]}")
        # Always an abstract line (empty for a title-only text): PubTator tools expect the pair.
        out.append(f"{doc.id}|a|{doc.text[title_length + 1:]}")
        extras = {(s, e, t): v for s, e, t, v in doc.metadata.get("individual_mentions", [])}
        for ent in doc.entities:
            surface = doc.text[ent.start : ent.end]
            if "\t" in surface:
                raise ValidationError(f"document {doc.id!r}: mention {surface!r} contains a tab")
            cols = [doc.id, str(ent.start), str(ent.end), surface, ent.type]
            extra = extras.get(ent.key)
            # A normalized entity always has the identifier column (empty for NIL: the normalizer ran, found nothing).
            if ent.normalized_id is not None or ent.normalized_score is not None or extra is not None:
                cols.append(ent.normalized_id or "")
            if extra is not None:
                cols.append(str(extra))
            out.append("\t".join(cols))
        for rel in doc.metadata.get("relations", []):
            out.append("\t".join([doc.id, *map(str, rel)]))
        out.append("")
    write_text(path, "\n".join(out) + ("\n" if out else ""))
