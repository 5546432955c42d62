"""Sentence splitting and tokenizer-aware chunking with exact offsets back to the document.

OWNED BY the codecs/chunking helper: the dataclass and signatures below are the contract used by
the pipeline and the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmner.doc import Document, Entity


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a document: ``text == document.text[start:end]``."""

    doc_id: str
    index: int
    start: int
    end: int
    text: str
    language: str = "en"

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "index": self.index, "start": self.start, "end": self.end,
                "text": self.text, "language": self.language}

    @classmethod
    def from_dict(cls, data: dict) -> "Chunk":
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    max_tokens: int = 256        # window size in tokenizer tokens (text only, prompt excluded)
    overlap_tokens: int = 32     # overlap between windows of an over-long sentence
    sentences_per_chunk: int = 1 # sentences packed per chunk while they fit in max_tokens


def chunk_document(
    doc: Document,
    config: ChunkingConfig = ChunkingConfig(),
    count_tokens: Callable[[str], int] | None = None,
) -> list[Chunk]:
    raise NotImplementedError


def merge_chunk_entities(chunks: Sequence[Chunk], per_chunk: Sequence[Sequence[Entity]], text: str) -> list[Entity]:
    """Entities in chunk offsets -> document offsets, overlaps deduped, nesting kept."""
    raise NotImplementedError
