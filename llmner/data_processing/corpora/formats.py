"""Every file format by name: a reader ``(path) -> list[Document]`` and a writer ``(docs, path) -> None``.

``llmner convert`` and any code that takes a ``--format`` go through ``read_documents`` / ``write_documents``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from llmner.data_processing.corpora.bc2gm import read_bc2gm, write_bc2gm
from llmner.data_processing.corpora.bioc_xml import read_bioc, write_bioc
from llmner.data_processing.corpora.brat import read_brat, write_brat
from llmner.data_processing.corpora.cblue import read_cblue, write_cblue
from llmner.data_processing.corpora.conll import read_conll, write_conll
from llmner.data_processing.corpora.genia import read_genia_jsonl, write_genia_jsonl
from llmner.data_processing.corpora.jsonl import read_jsonl, write_jsonl
from llmner.data_processing.corpora.pubtator import read_pubtator, write_pubtator
from llmner.doc import Document
from llmner.errors import ValidationError


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
        Format("bioc", read_bioc, write_bioc, "BioC XML"),
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


def read_documents(path: str | Path, fmt: str) -> list[Document]:
    return get_format(fmt).reader(path)


def write_documents(docs: Iterable[Document], path: str | Path, fmt: str) -> None:
    get_format(fmt).writer(list(docs), path)
