"""One interface for every symbolic tagging codec.

``encode(text, entities) -> target string`` (what the generator learns to write) and
``decode(output, text) -> DecodeResult`` (entities in ``text`` offsets + diagnostics).
``decode`` never raises on model output: whatever cannot be placed is counted in diagnostics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from llmner.doc import Entity

# Probability that the model wrote output[start:end]; None when unknown.
SpanConfidence = Callable[[int, int], float | None]


@dataclass(slots=True)
class Diagnostics:
    """Counts of what went wrong while encoding or decoding one text (all zero = clean)."""

    unbalanced_markers: int = 0     # an open without close or a close without open
    unknown_markers: int = 0        # marker-like strings that are not valid markers
    unknown_types: int = 0          # well-formed markers whose type is not in the schema
    inserted_chars: int = 0         # output characters with no counterpart in the source
    deleted_chars: int = 0          # source characters missing from the output copy
    unplaced_mentions: int = 0      # mentions whose surface could not be found in the source
    empty_mentions: int = 0         # mentions that covered no source character
    inexpressible_spans: int = 0    # encode: spans the format cannot express (e.g. crossing same-type spans)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(
            (self.unbalanced_markers, self.unknown_markers, self.unknown_types, self.inserted_chars,
             self.deleted_chars, self.unplaced_mentions, self.empty_mentions, self.inexpressible_spans)
        )

    def merge(self, other: Diagnostics) -> Diagnostics:
        out = Diagnostics()
        for name in self.__slots__:  # type: ignore[attr-defined]
            if name == "notes":
                out.notes = self.notes + other.notes
            else:
                setattr(out, name, getattr(self, name) + getattr(other, name))
        return out

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "notes"}  # type: ignore[attr-defined]


@dataclass(slots=True)
class DecodeResult:
    entities: list[Entity]
    diagnostics: Diagnostics


@dataclass(slots=True)
class EncodeResult:
    target: str
    diagnostics: Diagnostics


class Codec(ABC):
    """A symbolic tagging format. Subclasses are stateless and cheap to construct."""

    name: str = ""

    @abstractmethod
    def encode_with_report(self, text: str, entities: Sequence[Entity]) -> EncodeResult:
        """Target string plus what could not be expressed (reported, never silently dropped)."""

    def encode(self, text: str, entities: Sequence[Entity]) -> str:
        return self.encode_with_report(text, entities).target

    @abstractmethod
    def decode(self, output: str, text: str, types: Collection[str] | None = None,
               confidence: SpanConfidence | None = None) -> DecodeResult:
        """Entities over ``text`` from a (possibly broken) model ``output``; ``types`` = allowed types.

        ``confidence(start, end)`` is the model's probability of having written ``output[start:end]``
        (``TagGeneration.span_probability``); a codec that can point at the output characters that
        decided an entity sets the entity's ``generator_score`` from it, the others leave it None."""
