"""Runtime interfaces: what the pipeline (and through it the CLI and the workers) calls.

One base interface per stage, several backends behind it (PyTorch, ONNX Runtime), in the GLiNER
style. All offsets are relative to the chunk text handed in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llmner.codecs.base import Diagnostics
from llmner.doc import Candidate, ChunkEntities
from llmner.schema import EntitySchema


@dataclass(frozen=True, slots=True)
class TagRequest:
    """One chunk to tag with one schema."""

    text: str
    schema: EntitySchema
    open_bias: float = 0.0      # logit bonus for opening a tag (constrained decoding; the schema's calibrated one)


@dataclass(slots=True)
class TagResult:
    entities: ChunkEntities                 # chunk frame, surface text filled in, score None,
                                            # generator_score where the codec can set it
    output: str                             # the raw generated string
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    forward_passes: int = 0
    output_tokens: int = 0


class GeneratorRuntime(ABC):
    """Rewrites chunks with symbolic tags and decodes them into candidate entities."""

    model_id: str = ""

    @abstractmethod
    def tag(self, requests: Sequence[TagRequest]) -> list[TagResult]:
        """Tag a batch; the result for a request does not depend on the batch it came in."""


class SelectorRuntime(ABC):
    """Scores candidates: probability that (span, type) is right."""

    model_id: str = ""
    threshold: float = 0.5

    @abstractmethod
    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """float32 probabilities, one per candidate, in order."""
