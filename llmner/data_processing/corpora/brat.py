"""BRAT standoff: ``<id>.txt`` (the text) + ``<id>.ann`` with ``T<n>\\t<type> <start> <end>\\t<mention>`` lines
and normalization lines ``N<n>\\tReference T<n> <db:id>[\\t<name>]`` (S800: ``Taxonomy:710190``).

The document id is the file stem. Discontinuous T lines (``start end;start end``) cannot be an Entity:
they are skipped and counted in ``metadata["discontinuous_skipped"]``. Relation, event, attribute and
note lines (R, E, A, M, #, *) carry no entity and are ignored. Line breaks and tabs inside a mention are
written as spaces in its T line (as brat does); offsets win when reading it back.

This parser is the project's own, not ``bioc.brat``: the library ignores N (normalization) lines and
reads "\r\n" texts as "\n", which shifts every later offset (tests/test_bioc_library_gaps.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from llmner.data_processing.corpora._io import (
    checked_entity,
    lines_of,
    parse_int,
    read_text,
    sort_entities,
    write_text,
)
from llmner.doc import Document, Entity
from llmner.errors import DataNotFoundError, ValidationError

# A T line is tab-separated and one line long: tabs and line breaks of a mention are written as spaces.
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


def read_brat(path: str | Path, ids: Sequence[str] | None = None, language: str = "en") -> list[Document]:
    """A directory of .txt/.ann pairs (all of them sorted by id, or ``ids`` in that order) or one .txt/.ann file."""
    p = Path(path)
    if p.is_dir():
        stems = list(ids) if ids is not None else sorted(f.stem for f in p.glob("*.ann"))
        return [read_brat_document(p / f"{stem}.txt", p / f"{stem}.ann", language) for stem in stems]
    if p.suffix in (".txt", ".ann"):
        return [read_brat_document(p.with_suffix(".txt"), p.with_suffix(".ann"), language)]
    if not p.exists():
        raise DataNotFoundError(f"BRAT input not found: {p}")
    raise ValidationError(f"{p}: expected a directory of .txt/.ann pairs or a .txt/.ann file")


def read_brat_document(txt_path: Path, ann_path: Path, language: str = "en") -> Document:
    text = read_text(txt_path)
    ann_text = read_text(ann_path)
    entities: dict[str, Entity] = {}
    norms: dict[str, str] = {}
    skipped = 0
    for lineno, line in enumerate(lines_of(ann_text), start=1):
        where = f"{ann_path}:{lineno}"
        if not line.strip():
            continue
        if line.startswith("T"):
            cols = line.split("\t", 2)
            fields = cols[1].split(" ") if len(cols) >= 2 else []
            if len(cols) < 3 or len(fields) < 3:
                raise ValidationError(f"{where}: expected 'T<n><TAB><type> <start> <end><TAB><mention>', got {line[:60]!r}")
            if ";" in cols[1]:
                skipped += 1
                continue
            etype = fields[0]
            start = parse_int(fields[1], where, "start offset")
            end = parse_int(fields[2], where, "end offset")
            if len(fields) != 3:
                raise ValidationError(f"{where}: expected '<type> <start> <end>', got {cols[1]!r}")
            ent = checked_entity(text, start, end, etype, where)
            if cols[2] != ent.text and cols[2] != ent.text.translate(_LINE_BREAKS):
                raise ValidationError(f"{where}: mention {cols[2]!r} does not match text[{start}:{end}] = {ent.text!r}")
            entities[cols[0]] = ent
        elif line.startswith("N"):
            cols = line.split("\t")
            fields = cols[1].split(" ") if len(cols) >= 2 else []
            if len(fields) != 3:
                raise ValidationError(f"{where}: expected 'N<n><TAB>Reference T<m> <db:id>', got {line[:60]!r}")
            norms[fields[1]] = fields[2]
    for ref in norms:
        if ref not in entities:
            raise ValidationError(f"{ann_path}: normalization refers to unknown annotation {ref!r}")
    out = [Entity(e.start, e.end, e.type, e.text, normalized_id=norms.get(tid)) for tid, e in entities.items()]
    metadata: dict[str, object] = {"discontinuous_skipped": skipped} if skipped else {}
    return Document(id=txt_path.stem, text=text, language=language, metadata=metadata, entities=sort_entities(out))


def write_brat(docs: Iterable[Document], directory: str | Path) -> None:
    """One ``<id>.txt`` + ``<id>.ann`` per document in ``directory``."""
    out_dir = Path(directory)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"{out_dir}: BRAT output must be a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        if not doc.id or "/" in doc.id or "\\" in doc.id or doc.id in (".", ".."):
            raise ValidationError(f"document {doc.id!r}: id cannot be used as a BRAT file name")
        lines = []
        for i, ent in enumerate(doc.entities, start=1):
            if " " in ent.type or "\t" in ent.type:
                raise ValidationError(f"document {doc.id!r}: BRAT types cannot contain spaces ({ent.type!r})")
            surface = doc.text[ent.start : ent.end].translate(_LINE_BREAKS)
            lines.append(f"T{i}\t{ent.type} {ent.start} {ent.end}\t{surface}")
            if ent.normalized_id is not None:
                if not ent.normalized_id or any(c.isspace() for c in ent.normalized_id):
                    raise ValidationError(f"document {doc.id!r}: BRAT normalized ids cannot be empty or contain whitespace ({ent.normalized_id!r})")
                lines.append(f"N{i}\tReference T{i} {ent.normalized_id}")
        write_text(out_dir / f"{doc.id}.txt", doc.text)
        write_text(out_dir / f"{doc.id}.ann", "".join(line + "\n" for line in lines))
