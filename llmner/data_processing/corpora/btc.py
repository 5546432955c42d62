"""The Broad Twitter Corpus (BTC, CoNLL release): English tweets tagged PER / ORG / LOC, IOB2.

A general-domain auxiliary corpus (GERBERA-style multi-task training beside the biomedical sets),
not an evaluation target. Two quirks of its CoNLL files (``../shared/data/btc/README.md``) are
repaired here so that a tweet reads as a tweet:

- an @handle is two tokens, ``@`` and ``handle``, each tagged ``B-X``; read strictly, the lone ``@``
  would be a one-token mention of its own. ``@`` is joined to the token after it (``@SportsCenter``),
  which keeps the ``@``'s tag when it has one (else the handle's), so an @-mention is one mention:
  the README's merged counts (train 7,364, dev 1,126, test 2,996 mentions);
- lines with an empty token (``\\tO``: dev 3, test 2) are skipped; a token holding spaces (137
  trailing ones, ``MH17 ``, and a few inside, ``ke s``) is read as its words, the first keeping the
  tag and the others continuing it.

Tags become readable type names (``PER`` -> ``Person``...), the names of ``llmner/schemas/btc.json``.
"""

from __future__ import annotations

from pathlib import Path

from llmner.data_processing.corpora._io import lines_of, read_text
from llmner.data_processing.corpora.conll import _sentence_document
from llmner.doc import Document
from llmner.errors import ValidationError

BTC_TYPES = {"PER": "Person", "ORG": "Organization", "LOC": "Location"}


def read_btc(path: str | Path, id_prefix: str = "") -> list[Document]:
    """One Document per tweet, ids ``f"{id_prefix}{tweet_index}"``, text = tokens joined by spaces."""
    p = Path(path)
    docs: list[Document] = []
    block: list[tuple[str, str]] = []

    def flush() -> None:
        if block:
            tokens, tags = _join_handles(block)
            docs.append(_sentence_document(f"{id_prefix}{len(docs)}", tokens, tags, "en", {"sentence_index": len(docs)}))
            block.clear()

    for lineno, line in enumerate(lines_of(read_text(p)), start=1):
        if not line or line.isspace():
            flush()
            continue
        token, sep, tag = line.partition("\t")
        if not sep:
            raise ValidationError(f"{p}:{lineno}: expected 'token<TAB>tag', got {line[:60]!r}")
        tag = tag.strip()
        if tag != "O" and not (tag[:2] in ("B-", "I-") and tag[2:] in BTC_TYPES):
            raise ValidationError(f"{p}:{lineno}: invalid tag {tag!r} (expected O, B-/I-PER, ORG or LOC)")
        tag = tag if tag == "O" else tag[:2] + BTC_TYPES[tag[2:]]
        # A token with spaces ('MH17 ', 'ke s') is its words; an empty one ('\tO') is no token.
        for k, word in enumerate(token.split()):
            block.append((word, tag if k == 0 or tag == "O" else "I-" + tag[2:]))
    flush()
    return docs


def _join_handles(block: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    tokens: list[str] = []
    tags: list[str] = []
    i = 0
    while i < len(block):
        token, tag = block[i]
        if token == "@" and i + 1 < len(block):
            handle, handle_tag = block[i + 1]
            token, tag = "@" + handle, tag if tag != "O" else handle_tag
            i += 1
        tokens.append(token)
        tags.append(tag)
        i += 1
    return tokens, tags


__all__ = ["BTC_TYPES", "read_btc"]
