"""BioCreative II Gene Mention original format: ``<name>.in`` with one ``<sentence-id> <text>`` per line,
``GENE.eval`` with ``<sentence-id>|<start> <end>|<mention>`` and ``ALTGENE.eval`` (acceptable alternative
boundaries, same layout). Offsets count NON-WHITESPACE characters of the sentence, end inclusive
("14 33|alkaline phosphatases" in "Comparison with alkaline phosphatases ...").

One Document per sentence (id = sentence id, text = the sentence). Mentions get ``entity_type``
(default ``GENE``, the BC2GM schema type). The mention column is ignored, as the official evaluation
does: the offsets are the annotation (4 lines of the training files disagree with their own mention
text, e.g. "translation upstream factor" at offsets that include a preceding "/"). ALTGENE spans go to ``metadata["alternatives"]`` as
``[start, end]`` character offsets (end exclusive), used by the official evaluation to accept variants.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmner.data_processing.corpora._io import (
    checked_entity,
    lines_of,
    read_text,
    sort_entities,
    unique_id,
    write_text,
)
from llmner.doc import Document
from llmner.errors import DataNotFoundError, ValidationError

WRITTEN_NAME = "sentences.in"


def _input_file(path: Path) -> Path:
    if path.is_dir():
        candidates = sorted(path.glob("*.in"))
        if len(candidates) != 1:
            raise ValidationError(f"{path}: expected exactly one .in sentence file, found {len(candidates)}")
        return candidates[0]
    if not path.exists():
        raise DataNotFoundError(f"BC2GM input not found: {path}")
    return path


def _char_offsets(text: str) -> list[int]:
    """Character index of each non-whitespace character."""
    return [i for i, ch in enumerate(text) if not ch.isspace()]


def _read_eval(path: Path, texts: dict[str, str], index: dict[str, list[int]]) -> dict[str, list[tuple[int, int, str, str]]]:
    out: dict[str, list[tuple[int, int, str, str]]] = {}
    if not path.is_file():
        return out
    for lineno, line in enumerate(lines_of(read_text(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        parts = line.split("|", 2)
        if len(parts) != 3 or len(parts[1].split(" ")) != 2:
            raise ValidationError(f"{where}: expected '<sentence-id>|<start> <end>|<mention>', got {line[:60]!r}")
        sid, offsets, mention = parts
        if sid not in texts:
            raise ValidationError(f"{where}: unknown sentence id {sid!r}")
        first, last = (int(x) if x.isdigit() else -1 for x in offsets.split(" "))
        positions = index[sid]
        if not (0 <= first <= last < len(positions)):
            raise ValidationError(f"{where}: non-space offsets {offsets!r} out of range for a sentence of {len(positions)} non-space characters")
        start, end = positions[first], positions[last] + 1
        out.setdefault(sid, []).append((start, end, mention, where))
    return out


def read_bc2gm(path: str | Path, entity_type: str = "GENE", language: str = "en") -> list[Document]:
    """A directory with one ``.in`` file plus ``GENE.eval`` / ``ALTGENE.eval``, or the ``.in`` file itself."""
    in_file = _input_file(Path(path))
    order: list[str] = []
    texts: dict[str, str] = {}
    for lineno, line in enumerate(lines_of(read_text(in_file)), start=1):
        if not line.strip():
            continue
        sid, sep, text = line.partition(" ")
        if not sep or not sid:
            raise ValidationError(f"{in_file}:{lineno}: expected '<sentence-id> <text>', got {line[:60]!r}")
        if sid in texts:
            raise ValidationError(f"{in_file}:{lineno}: sentence id {sid!r} repeated")
        order.append(sid)
        texts[sid] = text
    index = {sid: _char_offsets(text) for sid, text in texts.items()}
    genes = _read_eval(in_file.parent / "GENE.eval", texts, index)
    alternatives = _read_eval(in_file.parent / "ALTGENE.eval", texts, index)
    docs = []
    seen: dict[str, int] = {}
    for sid in order:
        text = texts[sid]
        entities = []
        for start, end, _mention, where in genes.get(sid, []):
            entities.append(checked_entity(text, start, end, entity_type, where))
        metadata: dict[str, object] = {}
        if sid in alternatives:
            metadata["alternatives"] = [[s, e] for s, e, _, _ in alternatives[sid]]
        docs.append(Document(id=unique_id(sid, seen), text=text, language=language, metadata=metadata,
                             entities=sort_entities(entities)))
    return docs


def write_bc2gm(docs: Iterable[Document], directory: str | Path) -> None:
    """``sentences.in`` + ``GENE.eval`` (+ ``ALTGENE.eval`` when documents carry alternatives) in ``directory``.
    The format has no entity types: documents may use only one."""
    out_dir = Path(directory)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"{out_dir}: BC2GM output must be a directory")
    sentences, genes, alts = [], [], []
    types: set[str] = set()

    def nonspace(doc: Document, start: int, end: int) -> str:
        text = doc.text
        if start >= end or text[start].isspace() or text[end - 1].isspace():
            raise ValidationError(f"document {doc.id!r}: BC2GM cannot store a mention that starts or ends with whitespace ({text[start:end]!r})")
        before = sum(1 for ch in text[:start] if not ch.isspace())
        inside = sum(1 for ch in text[start:end] if not ch.isspace())
        return f"{before} {before + inside - 1}"

    for doc in docs:
        if not doc.id or any(ch.isspace() or ch == "|" for ch in doc.id):
            raise ValidationError(f"document {doc.id!r}: BC2GM sentence ids cannot contain whitespace or '|'")
        if "\n" in doc.text or "\r" in doc.text:
            raise ValidationError(f"document {doc.id!r}: BC2GM sentences are one line (found a line break)")
        sentences.append(f"{doc.id} {doc.text}")
        for ent in doc.entities:
            types.add(ent.type)
            genes.append(f"{doc.id}|{nonspace(doc, ent.start, ent.end)}|{doc.text[ent.start:ent.end]}")
        for start, end in doc.metadata.get("alternatives", []):
            alts.append(f"{doc.id}|{nonspace(doc, start, end)}|{doc.text[start:end]}")
    if len(types) > 1:
        raise ValidationError(f"BC2GM stores one entity type, got {', '.join(sorted(types))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / WRITTEN_NAME, "".join(s + "\n" for s in sentences))
    write_text(out_dir / "GENE.eval", "".join(s + "\n" for s in genes))
    if alts:
        write_text(out_dir / "ALTGENE.eval", "".join(s + "\n" for s in alts))
