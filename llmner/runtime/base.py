"""Runtime interfaces: what the pipeline (and through it the CLI and the workers) calls.

One base interface per stage, several backends behind it (PyTorch, ONNX Runtime), in the GLiNER
style. All offsets are relative to the chunk text handed in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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


RowProbabilities = tuple[np.ndarray, np.ndarray]
"""One tokens-head row's pieces: character offsets in its window ([pieces, 2]) and O/B/I probabilities ([pieces, 3])."""


@dataclass(slots=True)
class Proposals:
    """What ``SelectorRuntime.propose`` found: each request's spans, and the rows it read them from, by
    window (for ``score_with_rows``)."""

    spans: list[list[Candidate]]
    rows: dict[TokenWindow, RowProbabilities]


class SelectorRuntime(ABC):
    """Scores candidates: probability that (span, type) is right. A tokens-head selector can also
    propose candidates (``propose``); the pipeline scores them like any other, with ``score_with_rows``
    over the rows proposing read."""

    model_id: str = ""
    threshold: float = 0.5

    @abstractmethod
    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """float32 probabilities, one per candidate, in order."""

    def token_featurizer(self) -> TokenFeaturizer | None:
        """The tokens head's featurizer, or None when this selector cannot tag (the span head)."""
        return None

    def token_probabilities(self, windows: Sequence[TokenWindow]) -> list[RowProbabilities]:
        """Each row's pieces, in order."""
        raise ConfigError(CANNOT_PROPOSE)

    @property
    def can_propose(self) -> bool:
        return self.token_featurizer() is not None

    def propose(self, requests: Sequence[ProposalRequest]) -> Proposals:
        """The spans the tagger finds in each chunk, per type, as unscored candidates (chunk frame, in
        order of type then position, each once), with the rows it ran to find them."""
        featurizer = self.token_featurizer()
        if featurizer is None:
            raise ConfigError(CANNOT_PROPOSE)
        per_request = [[(window, definition) for name, definition in request.types
                        for window in featurizer.chunk_windows(request.text, name, definition)] for request in requests]
        windows = list(dict.fromkeys(w for pairs in per_request for w, _ in pairs))    # a repeated chunk is read once
        rows = dict(zip(windows, self.token_probabilities(windows), strict=True)) if windows else {}
        decoded = {window: decode_spans(window, *rows[window]) for window in windows}
        spans = []
        for request, pairs in zip(requests, per_request, strict=True):
            found: dict[tuple[int, int, str], str] = {}
            for window, definition in pairs:
                for start, end in decoded[window]:
                    found.setdefault((start, end, window.type), definition)
            spans.append([Candidate(request.text, s, e, t, d) for (s, e, t), d in found.items()])
        return Proposals(spans, rows)

    def score_with_rows(self, candidates: Sequence[Candidate], rows: Mapping[TokenWindow, RowProbabilities]) -> np.ndarray:
        """``score``, but a candidate whose window is one of ``rows`` (those ``propose`` ran) is read off
        that row instead of being encoded again. In a chunk of up to ``2 * context_chars`` characters every
        candidate's window is the whole chunk, the row ``propose`` read for its type, so proposing costs no
        encoder pass beyond it. The same scores as ``score`` where a row is encoded alone (the int8 graph,
        row by row), and equal up to float rounding of the padding otherwise."""
        featurizer = self.token_featurizer()
        if featurizer is None or not rows:
            return self.score(candidates)
        out = np.zeros(len(candidates), dtype=np.float32)
        known: dict[TokenWindow, list[int]] = {}
        fresh: list[int] = []
        for i, candidate in enumerate(candidates):
            window = featurizer.window(candidate)
            if window in rows:
                known.setdefault(window, []).append(i)
            else:
                fresh.append(i)
        if fresh:
            out[fresh] = self.score([candidates[i] for i in fresh])
        for window, idx in known.items():
            offsets, probs = rows[window]
            out[idx] = featurizer.placed([candidates[i] for i in idx], window, offsets).scores(probs[None])
        return out

