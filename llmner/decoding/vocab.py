"""The bytes each token writes, for any tokenizer, plus a byte trie over them (built once per tokenizer).

Constrained decoding matches tokens against the remaining target as BYTES: a byte-level BPE token may
hold half of a UTF-8 character (CJK), a sentencepiece token may be a byte-fallback ``<0xE4>``, and a
token may straddle a tag boundary (`` <``). Three decoder families are handled explicitly:
byte-level BPE (GPT-2 style ``Ġ``), sentencepiece/metaspace (``▁`` + ``<0xNN>`` byte fallback), and
WordPiece-like tokenizers through ``decode`` as a fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode (printable stand-ins for the 256 bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _decoder_kinds(tokenizer: Any) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.decoder is None:
        return set()
    text = repr(backend.decoder) + repr(getattr(backend, "pre_tokenizer", None))
    kinds = set()
    if "ByteLevel" in text:
        kinds.add("bytelevel")
    if "Metaspace" in text or "▁" in text:
        kinds.add("metaspace")
    if "ByteFallback" in text:
        kinds.add("bytefallback")
    return kinds


def token_bytes_table(tokenizer: Any) -> list[bytes | None]:
    """bytes written by each token id; None for special tokens (never allowed while copying)."""
    size = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for tid, tok in added.items():
        if getattr(tok, "special", False):
            special.add(int(tid))
    kinds = _decoder_kinds(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    table: list[bytes | None] = []
    if "bytelevel" in kinds:
        dec = _byte_decoder()
        for tid, piece in enumerate(pieces):
            if tid in special or piece is None:
                table.append(None)
            elif tid in added:  # added non-special tokens are stored as plain text
                table.append(piece.encode("utf-8"))
            else:
                try:
                    table.append(bytes(dec[c] for c in piece))
                except KeyError:
                    table.append(piece.encode("utf-8"))
        return table
    if "metaspace" in kinds or "bytefallback" in kinds:
        for tid, piece in enumerate(pieces):
            if tid in special or piece is None:
                table.append(None)
                continue
            m = _BYTE_FALLBACK.match(piece)
            table.append(bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode("utf-8"))
        return table
    for tid in range(size):
        if tid in special:
            table.append(None)
        else:
            text = tokenizer.decode([tid], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            table.append(None if "\ufffd" in text else text.encode("utf-8"))
    return table


@dataclass(slots=True)
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # tokens whose bytes end exactly here


@dataclass(slots=True)
class TokenVocab:
    """Per-tokenizer precomputation: token bytes, a byte trie, EOS ids."""

    token_bytes: list[bytes | None]
    root: TrieNode
    eos_ids: tuple[int, ...]
    pad_id: int

    @classmethod
    def build(cls, tokenizer: Any, eos_ids: tuple[int, ...] | None = None) -> TokenVocab:
        table = token_bytes_table(tokenizer)
        root = TrieNode()
        for tid, bs in enumerate(table):
            if not bs:
                continue
            node = root
            for b in bs:
                nxt = node.children.get(b)
                if nxt is None:
                    nxt = node.children[b] = TrieNode()
                node = nxt
            node.ids.append(tid)
        if eos_ids is None:
            eos_ids = (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
        return cls(table, root, tuple(eos_ids), int(pad))


_VOCAB_CACHE: dict[int, tuple[Any, TokenVocab]] = {}


def vocab_for(tokenizer: Any, eos_ids: tuple[int, ...] | None = None) -> TokenVocab:
    """Build once per tokenizer object (keyed by identity; the tokenizer is kept alive with it)."""
    key = id(tokenizer)
    hit = _VOCAB_CACHE.get(key)
    if hit is not None and hit[0] is tokenizer and (eos_ids is None or hit[1].eos_ids == tuple(eos_ids)):
        return hit[1]
    vocab = TokenVocab.build(tokenizer, eos_ids)
    if len(_VOCAB_CACHE) >= 8:  # tests build many tokenizers; a process serves one or two
        _VOCAB_CACHE.pop(next(iter(_VOCAB_CACHE)))
    _VOCAB_CACHE[key] = (tokenizer, vocab)
    return vocab
