"""Plain text as documents: what ``llmner tag`` reads when ``guess_format`` finds none of the document
formats (``PLAIN_TEXT``)."""

from __future__ import annotations

from pathlib import Path

from llmner.data_processing.corpora._io import lines_of, read_text
from llmner.doc import Document, guess_language
from llmner.errors import ValidationError


def read_plain_text(path: str | Path, one_per_line: bool = False, language: str | None = None) -> list[Document]:
    """The whole file as one document (id: the file's stem), or one document per non-blank line (id:
    ``<stem>-<line number>``). Each is in ``language`` when given, else in the language its script
    shows (``en`` when it shows none). Raises when the file holds no text."""
    p = Path(path)
    text = read_text(p)
    pieces = ([(f"{p.stem}-{i}", line) for i, line in enumerate(lines_of(text), 1)] if one_per_line
              else [(p.stem, text)])
    docs = [Document(doc_id, piece, language or guess_language(piece) or "en")
            for doc_id, piece in pieces if piece.strip()]
    if not docs:
        raise ValidationError(f"{p}: no text in it; nothing to do")
    return docs
