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
from llmner.errors import ConfigError
from llmner.modeling.selector import TokenFeaturizer, TokenWindow, decode_spans
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


CANNOT_PROPOSE = "this selector only scores candidates (span head): proposing spans needs the tokens head"


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """One chunk in which a tokens-head selector looks for spans of each type: (name, definition)."""

    text: str
    types: tuple[tuple[str, str], ...]


class SelectorRuntime(ABC):
    """Scores candidates: probability that (span, type) is right. A tokens-head selector can also
    propose candidates (``propose``); the pipeline scores them with ``score`` like any other."""

    model_id: str = ""
    threshold: float = 0.5

    @abstractmethod
    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """float32 probabilities, one per candidate, in order."""

    def token_featurizer(self) -> TokenFeaturizer | None:
        """The tokens head's featurizer, or None when this selector cannot tag (the span head)."""
        return None

    def token_probabilities(self, windows: Sequence[TokenWindow]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each row's pieces: character offsets in its window ([pieces, 2]) and O/B/I probabilities ([pieces, 3])."""
        raise ConfigError(CANNOT_PROPOSE)

    @property
    def can_propose(self) -> bool:
        return self.token_featurizer() is not None

    def propose(self, requests: Sequence[ProposalRequest]) -> list[list[Candidate]]:
        """The spans the tagger finds in each chunk, per type, as unscored candidates (chunk frame, in
        order of type then position, each once)."""
        featurizer = self.token_featurizer()
        if featurizer is None:
            raise ConfigError(CANNOT_PROPOSE)
        rows: list[TokenWindow] = []
        owners: list[tuple[int, str]] = []
        for r, request in enumerate(requests):
            for name, definition in request.types:
                for window in featurizer.chunk_windows(request.text, name, definition):
                    rows.append(window)
                    owners.append((r, definition))
        found: list[dict[tuple[int, int, str], str]] = [{} for _ in requests]
        if rows:
            for window, (r, definition), (offsets, probs) in zip(rows, owners, self.token_probabilities(rows), strict=True):
                for start, end in decode_spans(window, offsets, probs):
                    found[r].setdefault((start, end, window.type), definition)
        return [[Candidate(request.text, s, e, t, d) for (s, e, t), d in spans.items()]
                for request, spans in zip(requests, found, strict=True)]
