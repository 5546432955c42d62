"""CoNLL / IOB2: one ``token<TAB>tag`` line per token (extra middle columns are ignored, the tag is the
last column), a blank line between sentences.

Text and offsets are rebuilt from the tokens: **one Document per sentence**, text = tokens joined by
single spaces, so token ``k`` starts at ``sum(len(t) + 1 for t in tokens[:k])``. Document markers
(``-DOCSTART-`` lines, and ``###MEDLINE:<id>`` lines of the JNLPBA abstract-boundary release) are not
tokens: they start a new source document, recorded in ``metadata["document_index"]`` (and
``metadata["document_id"]`` for MEDLINE ids) of the following sentences; the writer emits them again.

Tags: ``O``, ``B-T``, ``I-T``. An ``I-T`` that does not continue an entity of type ``T`` starts a new
one (the usual lenient IOB2 reading, as seqeval's default mode does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from llmner.data_processing.corpora._io import lines_of, read_text, write_text
from llmner.doc import Document, Entity
from llmner.errors import ValidationError

DOCSTART = "-DOCSTART-"
MEDLINE_PREFIX = "###MEDLINE"


def is_token(token: str) -> bool:
    """Non-empty and free of what would break the single-space join or the split into lines. Other Unicode
    spaces inside a token (GENIA has U+00A0 in "G\xa0+\xa0C") are kept as they are."""
    return bool(token) and " " not in token and "\t" not in token and "\n" not in token and "\r" not in token


def read_conll(path: str | Path, language: str = "en", id_prefix: str = "") -> list[Document]:
    """One Document per sentence, ids ``f"{id_prefix}{sentence_index}"``."""
    p = Path(path)
    docs: list[Document] = []
    tokens: list[str] = []
    tags: list[str] = []
    doc_index = -1
    doc_id: str | None = None
    has_markers = False

    def flush() -> None:
        if not tokens:
            return
        metadata: dict[str, object] = {"sentence_index": len(docs)}
        if has_markers:
            metadata["document_index"] = max(doc_index, 0)
            if doc_id is not None:
                metadata["document_id"] = doc_id
        docs.append(_sentence_document(f"{id_prefix}{len(docs)}", tokens, tags, language, metadata))
        tokens.clear()
        tags.clear()

    valid_tags: set[str] = {"O"}
    for lineno, line in enumerate(lines_of(read_text(p)), start=1):
        if not line or line.isspace():
            flush()
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        first = cols[0]
        if first[:1] in ("-", "#") and (first == DOCSTART or first.startswith(MEDLINE_PREFIX)):
            flush()
            has_markers = True
            doc_index += 1
            doc_id = first.split(":", 1)[1] if first.startswith(MEDLINE_PREFIX) and ":" in first else None
            continue
        if len(cols) < 2:
            raise ValidationError(f"{p}:{lineno}: expected 'token<TAB>tag', got {line[:60]!r}")
        token, tag = first, cols[-1].strip()
        if not is_token(token):
            raise ValidationError(f"{p}:{lineno}: token {token!r} is empty or contains a space or line break")
        if tag not in valid_tags:
            if not (len(tag) > 2 and tag[1] == "-" and tag[0] in "BI"):
                raise ValidationError(f"{p}:{lineno}: invalid IOB2 tag {tag!r} (expected O, B-TYPE or I-TYPE)")
            valid_tags.add(tag)
        tokens.append(token)
        tags.append(tag)
    flush()
    return docs


def _sentence_document(doc_id: str, tokens: list[str], tags: list[str], language: str,
                       metadata: dict[str, object]) -> Document:
    text = " ".join(tokens)
    entities: list[Entity] = []
    pos = 0
    open_start = open_end = -1
    open_type = ""
    for token, tag in zip(tokens, tags):
        start, end = pos, pos + len(token)
        pos = end + 1
        if tag.startswith("I-") and open_type == tag[2:]:
            open_end = end
            continue
        if open_type:
            entities.append(Entity(open_start, open_end, open_type, text[open_start:open_end]))
            open_type = ""
        if tag != "O":
            open_start, open_end, open_type = start, end, tag[2:]
    if open_type:
        entities.append(Entity(open_start, open_end, open_type, text[open_start:open_end]))
    return Document(id=doc_id, text=text, language=language, metadata=metadata, entities=entities)


def token_spans(doc: Document, fmt: str) -> list[tuple[int, int]]:
    """Character spans of the space-separated tokens; ValidationError unless text is tokens joined by single spaces."""
    if not doc.text:
        raise ValidationError(f"document {doc.id!r}: empty text cannot be written as {fmt}")
    spans = []
    pos = 0
    for token in doc.text.split(" "):
        if not is_token(token):
            raise ValidationError(
                f"document {doc.id!r}: {fmt} needs a text of tokens joined by single spaces (found {token!r} at {pos})")
        spans.append((pos, pos + len(token)))
        pos += len(token) + 1
    return spans


def entity_token_range(doc: Document, ent: Entity, starts: dict[int, int], ends: dict[int, int], fmt: str) -> tuple[int, int]:
    """Token range ``[first, last_exclusive)`` of an entity; ValidationError when it cuts a token."""
    if ent.start not in starts or ent.end not in ends:
        raise ValidationError(
            f"document {doc.id!r}: entity {doc.text[ent.start:ent.end]!r} [{ent.start}, {ent.end}) does not fall on token boundaries ({fmt})")
    return starts[ent.start], ends[ent.end] + 1


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def is_token_sentence(doc: Document) -> bool:
    """A sentence read from a token format (CoNLL, GENIA: ``metadata["sentence_index"]``) whose text is
    still tokens joined by single spaces."""
    return "sentence_index" in doc.metadata and bool(doc.text) and all(is_token(t) for t in doc.text.split(" "))


def tokenize_for_conll(doc: Document) -> list[list[tuple[int, int]]]:
    """Sentences of token spans for a free text: words and single punctuation marks, also cut at every
    entity boundary (so entities stay token-aligned), one sentence per line of the text. Whitespace is lost."""
    cuts = {e.start for e in doc.entities} | {e.end for e in doc.entities}
    sentences: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    pos = 0
    for line in doc.text.split("\n"):
        for m in _WORD.finditer(line):
            start, end = pos + m.start(), pos + m.end()
            inner = sorted(c for c in cuts if start < c < end)
            for a, b in zip([start, *inner], [*inner, end]):
                current.append((a, b))
        if current:
            sentences.append(current)
            current = []
        pos += len(line) + 1
    return sentences


def write_conll(docs: Iterable[Document], path: str | Path) -> None:
    """IOB2 lines with flat, token-aligned entities.

    A sentence read from a token format (``is_token_sentence``: what ``read_conll`` and the GENIA reader build)
    is written back token for token (reader -> writer -> reader is lossless, byte-identical on the corpus files). Any other
    text (an abstract from PubTator, BioC...) is tokenized by ``tokenize_for_conll`` and written as its own
    ``-DOCSTART-`` block, one sentence per text line; that direction keeps tokens and entities, not whitespace.
    """
    out: list[str] = []
    last_doc_index: object = None
    for doc in docs:
        if is_token_sentence(doc):
            doc_index = doc.metadata.get("document_index")
            if doc_index is not None and doc_index != last_doc_index:
                doc_id = doc.metadata.get("document_id")
                out.append(f"{MEDLINE_PREFIX}:{doc_id}" if doc_id is not None else f"{DOCSTART}\tO")
                out.append("")
            last_doc_index = doc_index
            sentences = [token_spans(doc, "CoNLL")]
        else:
            out.extend([f"{DOCSTART}\tO", ""])
            last_doc_index = None
            sentences = tokenize_for_conll(doc)
        spans = [span for sentence in sentences for span in sentence]
        starts = {s: i for i, (s, _) in enumerate(spans)}
        ends = {e: i for i, (_, e) in enumerate(spans)}
        tags = ["O"] * len(spans)
        for ent in sorted(doc.entities, key=lambda e: (e.start, -e.end)):
            first, last = entity_token_range(doc, ent, starts, ends, "CoNLL")
            if any(t != "O" for t in tags[first:last]):
                raise ValidationError(f"document {doc.id!r}: CoNLL/IOB2 cannot store nested or overlapping entities "
                                      f"({doc.text[ent.start:ent.end]!r} overlaps another)")
            tags[first] = f"B-{ent.type}"
            for k in range(first + 1, last):
                tags[k] = f"I-{ent.type}"
        k = 0
        for sentence in sentences:
            for s, e in sentence:
                out.append(f"{doc.text[s:e]}\t{tags[k]}")
                k += 1
            out.append("")
    write_text(path, "\n".join(out) + ("\n" if out else ""))
