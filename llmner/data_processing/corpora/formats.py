"""Every file format by name: a reader ``(path) -> list[Document]`` and a writer ``(docs, path) -> None``;
``guess_format``, the one format guesser of every command's input (from the content), and
``guess_output_format``, the one for an output file (from its extension: it does not exist yet).

Every command that reads documents goes through ``read_documents`` (format given, or guessed from the
content) and every writer through ``write_documents``; the writers write everything their format can
hold (scores, identifiers, model ids) themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from llmner.data_processing.corpora.bc2gm import read_bc2gm, write_bc2gm
from llmner.data_processing.corpora.bioc_xml import (
    read_bioc,
    read_bioc_json,
    write_bioc,
    write_bioc_json,
)
from llmner.data_processing.corpora.brat import read_brat, write_brat
from llmner.data_processing.corpora.cblue import read_cblue, write_cblue
from llmner.data_processing.corpora.conll import read_conll, write_conll
from llmner.data_processing.corpora.genia import read_genia_jsonl, write_genia_jsonl
from llmner.data_processing.corpora.jsonl import (
    read_jsonl,
    read_result_records,
    write_jsonl,
    write_result_records,
)
from llmner.data_processing.corpora.pubtator import read_pubtator, write_pubtator
from llmner.doc import Document
from llmner.errors import DataNotFoundError, ValidationError


@dataclass(frozen=True)
class Format:
    name: str
    reader: Callable[..., list[Document]]
    writer: Callable[[Iterable[Document], str | Path], None]
    description: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("jsonl", read_jsonl, write_jsonl, "llmner JSONL, one Document per line (lossless)"),
        Format("pubtator", read_pubtator, write_pubtator, "PubTator title/abstract + tab-separated mentions"),
        Format("records", read_result_records, write_result_records,
               "result records, one per line (llmner run; no note text: readable for scoring)"),
        Format("bioc", read_bioc, write_bioc, "BioC XML"),
        Format("bioc_json", read_bioc_json, write_bioc_json, "BioC JSON"),
        Format("brat", read_brat, write_brat, "BRAT standoff directory (.txt + .ann per document)"),
        Format("conll", read_conll, write_conll, "CoNLL/IOB2 token<TAB>tag, one Document per sentence"),
        Format("genia", read_genia_jsonl, write_genia_jsonl, "GENIA nested JSONL with token offsets"),
        Format("cblue", read_cblue, write_cblue, "CBLUE JSON (CMeEE), inclusive end_idx, Chinese"),
        Format("bc2gm", read_bc2gm, write_bc2gm, "BioCreative II GM directory: .in sentences + GENE.eval (non-space offsets)"),
    )
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ValidationError(f"unknown format {name!r} (known: {', '.join(FORMATS)})") from None


def read_documents(path: str | Path, fmt: str | None = None) -> list[Document]:
    """The documents of ``path`` in format ``fmt`` (None: ``guess_format``). Raises when the path
    is missing, holds plain text (no format to read) or holds no document."""
    p = Path(path)
    name = fmt or guess_format(p)
    if name == PLAIN_TEXT:
        raise ValidationError(f"{p} is plain text, not one of the document formats ({', '.join(FORMATS)}); pass --format")
    docs = get_format(name).reader(p)
    if not docs:
        raise ValidationError(f"{p}: no documents in it ({name}); nothing to do")
    return docs


def write_documents(docs: Iterable[Document], path: str | Path, fmt: str) -> None:
    get_format(fmt).writer(list(docs), path)


def check_writable(docs: Iterable[Document], fmt: str) -> None:
    """Raise now, not after tagging, when format ``fmt`` cannot hold these documents (PubTator and
    line breaks, XML and control characters...): a dry run of the writer."""
    write_documents(docs, os.devnull, fmt)


# ---- format guessing --------------------------------------------------------------------------------

PLAIN_TEXT = "text"   # what guess_format says of a file in none of FORMATS (``llmner tag`` tags it as is)
_SNIFF_BYTES = 1 << 16
_PUBTATOR_TITLE = re.compile(r"[^\t|]+\|[ta]\|")
_CONLL_LINE = re.compile(r"\S+(?:[\t ]\S+)*[\t ](?:O|[BIES]-\S+)")
# An output file's format from its extension, when none is given.
_OUTPUT_EXTENSIONS = {".xml": "bioc", ".bioc": "bioc", ".json": "bioc_json", ".pubtator": "pubtator"}
# The extension decides only when the content says nothing more (e.g. a single-line file).
_EXTENSIONS = {".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc", ".jsonl": "jsonl", ".tsv": "conll",
               ".conll": "conll", ".iob": "conll", ".iob2": "conll", ".bio": "conll"}


def guess_format(path: str | Path) -> str:
    """The format of ``path`` from its content (PubTator ``PMID|t|`` lines, BioC XML or JSON, llmner
    JSONL documents or result records, GENIA JSONL, CBLUE JSON, CoNLL, a BRAT or BC2GM directory);
    ``PLAIN_TEXT`` when none matches. Raises when the path is missing or empty: nothing to do."""
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"input not found: {p}")
    if p.is_dir():
        return _guess_directory(p)
    with open(p, "rb") as fh:
        head_bytes = fh.read(_SNIFF_BYTES)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head_bytes) - 4:   # not a multi-byte character cut at the sniffing limit
            raise ValidationError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        head = head_bytes[: exc.start].decode("utf-8")
    head = head.lstrip("\ufeff")
    lines = [line.rstrip("\r") for line in head.split("\n") if line.strip()]
    if not lines:
        raise ValidationError(f"{p} is empty: nothing to do")
    first = lines[0].lstrip()
    if first.startswith("<"):
        if "<collection" in head:
            return "bioc"
        raise ValidationError(f"{p}: XML, but not a BioC collection (no <collection> element)")
    if _PUBTATOR_TITLE.match(first):
        return "pubtator"
    if first.startswith("["):
        return "cblue"
    if first.startswith("{"):
        return _guess_json(p, first, head)
    if len(lines) > 1 and all(_CONLL_LINE.fullmatch(line) or line.startswith("-DOCSTART-") for line in lines[:50]):
        return "conll"
    return _EXTENSIONS.get(p.suffix.lower(), PLAIN_TEXT)


def guess_output_format(path: str | Path, default: str) -> str:
    """The format to write ``path`` in: BioC XML for ``.xml`` / ``.bioc``, BioC JSON for ``.json``,
    PubTator for ``.pubtator``, else ``default`` (a command's own: documents or result records)."""
    return _OUTPUT_EXTENSIONS.get(Path(path).suffix.lower(), default)


def _guess_json(p: Path, first: str, head: str) -> str:
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        record = None   # a pretty-printed JSON document: BioC JSON is the one such format
    if not isinstance(record, dict):
        if '"documents"' in head:
            return "bioc_json"
        raise ValidationError(f"{p}: JSON, but neither JSONL documents nor BioC JSON")
    keys = set(record)
    if "document_id" in keys:
        return "records"
    if "documents" in keys:
        return "bioc_json"
    if "tokens" in keys:
        return "genia"
    if {"id", "text"} <= keys:
        return "jsonl"
    raise ValidationError(f"{p}: JSON lines of unknown schema (fields {', '.join(sorted(keys))}); expected llmner "
                          "documents {id, text, ...}, result records {document_id, entities, ...} or GENIA {tokens, entities}")


def _guess_directory(p: Path) -> str:
    names = [f.name for f in p.iterdir() if not f.name.startswith(".")]
    if not names:
        raise ValidationError(f"{p} is an empty directory: nothing to do")
    if any(n.endswith(".ann") for n in names):
        return "brat"
    if "GENE.eval" in names or any(n.endswith(".in") for n in names):
        return "bc2gm"
    raise ValidationError(f"{p}: a directory, but neither BRAT (.txt + .ann) nor BC2GM (.in + GENE.eval)")
