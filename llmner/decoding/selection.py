"""What selection keeps of one schema's candidates: one rule, read by the pipeline and by calibration.

A bundle stores per schema the settings that decide which candidates stay (``BundleManifest``:
``selector_threshold[s]``, ``generator_thresholds``, ``proposal_threshold[s]``, ``proposal_overlap[s]``).
``Pipeline.selection_rule`` gathers a schema's settings into a ``SelectionRule``; calibration
(``llmner.evaluation.calibration``) scores alternative rules on dev candidates with the same ``select``,
so what is chosen there is exactly what the pipeline then does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from llmner.decoding.overlaps import (
    check_overlap_rule,
    resolve_proposal_overlaps,
    yield_to,
)
from llmner.doc import SELECTOR_AND_READER, Entity


@dataclass(frozen=True, slots=True)
class SelectionRule:
    threshold: float                         # a generator candidate the selector scored: kept from this score
    proposals: float | None = None           # the selector's own spans: kept from this score (None: none kept)
    overlap: str = "both"                    # a kept proposal against kept candidates of its type (overlaps)
    generator_threshold: float | None = None # a candidate the selector did not score: kept from this generator
                                             # score (None: always kept)
    reader_threshold: float = 0.0            # the reader's spans (source "reader"): kept from this span score

    def __post_init__(self) -> None:
        check_overlap_rule(self.overlap)

    def keeps(self, entity: Entity) -> bool:
        """Whether ``entity`` passes its own threshold (before the overlap rules)."""
        if entity.source == "selector":
            return self._proposal_kept(entity)
        if entity.source == "reader":
            return entity.score is None or entity.score >= self.reader_threshold
        if entity.source == SELECTOR_AND_READER:
            return self._proposal_kept(entity) or (entity.score is not None and entity.score >= self.reader_threshold)
        if entity.score is not None:
            return entity.score >= self.threshold
        cut = self.generator_threshold
        return cut is None or entity.generator_score is None or entity.generator_score >= cut

    def _proposal_kept(self, entity: Entity) -> bool:
        return self.proposals is not None and entity.score is not None and entity.score >= self.proposals

    def select(self, entities: Sequence[Entity]) -> list[Entity]:
        """What stays of one chunk's or one document's candidates (any one frame; order kept): the
        generator's candidates and the selector's proposals under the overlap rule, then the reader's spans
        that overlap none of those of their type (a proposer's span fills only a place left empty). A span
        both the selector and the proposer proposed is a proposal where it reaches the proposal threshold,
        and a reader's span otherwise."""
        kept = [e for e in entities if self.keeps(e)]
        if not any(e.source in ("reader", SELECTOR_AND_READER) for e in kept):
            return resolve_proposal_overlaps(kept, self.overlap)
        read = [e.source == "reader" or (e.source == SELECTOR_AND_READER and not self._proposal_kept(e)) for e in kept]
        # Proposed by both and kept as a proposal: it meets the candidates as the selector's proposals do.
        first = [(i, dataclasses.replace(e, source="selector") if e.source == SELECTOR_AND_READER else e)
                 for i, e in enumerate(kept) if not read[i]]
        chosen = {id(e) for e in resolve_proposal_overlaps([e for _, e in first], self.overlap)}
        stay = {i for i, e in first if id(e) in chosen}
        reads = [(i, e) for i, e in enumerate(kept) if read[i]]
        filled = {id(e) for e in yield_to([e for _, e in reads], [kept[i] for i in stay])}
        stay |= {i for i, e in reads if id(e) in filled}
        return [kept[i] for i in sorted(stay)]

__all__ = ["SelectionRule"]
