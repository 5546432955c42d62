"""Judge stored predictions with another selector, without running the generator again.

A report row over a whole test split costs hours of generation on a CPU, and the selector is the
cheap part of a bundle: ``rescore_records`` gives the records another pipeline's selector would have
produced from the same generator output. Evaluation keeps every candidate (``predict`` with
``select=False``), so the records hold all of them; each is scored again in its own chunk's context,
as ``Pipeline.score_chunks`` scores it.

One thing is not stored: which entities document-level consistency added
(``llmner.decoding.consistency``). A copy carries the scores of the highest-scored entity of its string,
so in a stored record it is one of a cluster of same-string entities with identical scores, and which
member of that cluster the generator found is not recorded. Its new score is the maximum over the
string's generator-found entities, that member included. The point estimate takes the cluster's first
member in document order as the found one; each entity also gets the interval its new score must lie
in whichever member it was (``RescoredRecord.bounds``), and ``undetermined`` counts the entities whose
keep decision at a threshold the interval leaves open. Zero means the rescored records select exactly
what a rerun of the generator with the new bundle would (a score is a function of its candidate alone:
the int8 ONNX selector scores row by row, ``OnnxSelectorRuntime.score_row_by_row``).

Under a schema with a proposal threshold (``Pipeline.proposal_threshold_for``) the selector's own spans
are added as the pipeline adds them: per chunk, those the stored candidates in that chunk do not already
hold, with exact scores, and a row selects them under the schema's overlap rule as a rerun does
(``Pipeline.selection``). What a rerun would add beyond them is not derived: consistency's copies of a
proposed string elsewhere in the document.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmner.decoding.overlaps import with_proposer_spans
from llmner.decoding.selection import SelectionRule
from llmner.doc import (
    Candidate,
    Chunk,
    Document,
    Entity,
    ResultRecord,
    one_per_key,
)
from llmner.errors import DataNotFoundError, ValidationError
from llmner.evaluation.reports import cached_row, files_fingerprint, store_row
from llmner.runtime.base import Proposals
from llmner.schema import EntitySchema

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline


# What a bundle's candidates depend on besides the generator's files: the manifest fields that change
# what is generated, merged or judged. Thresholds are not among them: they are applied when scoring.
GENERATION_FIELDS = ("codec", "decoding_mode", "sentences_per_chunk", "open_bias", "prompt_schemas", "consistency")


def same_generation(source: Path, target: Path) -> list[str]:
    """How two bundles differ in what their generators produce (empty: ``target`` may rescore
    ``source``'s stored records): the generator directory's files and the ``GENERATION_FIELDS``."""
    from llmner.bundle import GENERATOR_DIR, load_manifest

    differences = []
    a, b = load_manifest(source).to_dict(), load_manifest(target).to_dict()
    differences += [f"{name}: {a[name]!r} != {b[name]!r}" for name in GENERATION_FIELDS if a[name] != b[name]]
    # Records keep every candidate, judged or not, so a target may judge languages the source did not
    # (their entities are scored afresh); not the reverse (its stored scores would be read as judgements).
    judged_a, judged_b = a["selector_languages"], b["selector_languages"]
    if judged_b and (not judged_a or not set(judged_a) <= set(judged_b)):
        differences.append(f"selector_languages: {judged_b!r} leaves out languages {judged_a!r} judged")

    def files(root: Path) -> list[Path]:
        return sorted(p for p in (root / GENERATOR_DIR).rglob("*") if p.is_file())

    if files_fingerprint(files(source), root=source) != files_fingerprint(files(target), root=target):
        differences.append(f"the files under {GENERATOR_DIR}/ differ")
    return differences


@dataclass(slots=True)
class RescoredRecord:
    """A record as the new selector scores it, and for each of its entities (same order) the interval
    its score lies in (``(score, score)`` when it is exact; ``None`` for entities the selector does not
    judge)."""

    record: ResultRecord
    bounds: list[tuple[float, float] | None]

    def undetermined(self, keeps_at: Callable[[Entity], float | None]) -> int:
        """Entities whose keep decision the interval leaves open at the threshold ``keeps_at`` gives
        each (None: not decided by a selector score)."""
        count = 0
        for entity, bound in zip(self.record.entities, self.bounds):
            threshold = keeps_at(entity)
            if bound is not None and threshold is not None and bound[0] < threshold <= bound[1]:
                count += 1
        return count


def _containing(chunk_spans: Sequence[tuple[int, int]], entity: Entity) -> list[int]:
    return [i for i, (a, b) in enumerate(chunk_spans) if a <= entity.start and entity.end <= b]


@dataclass(frozen=True, slots=True)
class ChunkCandidates:
    """One chunk of a document, the stored entities (document frame) that lie in it, and the same
    entities as the selector's candidates (chunk frame), in order."""

    chunk: Chunk
    entities: list[Entity]
    candidates: list[Candidate]


def chunk_candidates(pipe: Pipeline, doc: Document, entities: Sequence[Entity], schema: EntitySchema) -> list[ChunkCandidates]:
    """Each chunk of ``doc`` under ``pipe``'s chunking with the stored ``entities`` inside it, as the
    pipeline hands them to its selector (an entity in several chunks is in each)."""
    out = []
    for chunk in pipe.chunk(doc.without_annotations()):
        inside = [e for e in entities if chunk.start <= e.start and e.end <= chunk.end]
        out.append(ChunkCandidates(chunk, inside, [Candidate(chunk.text, e.start - chunk.start, e.end - chunk.start, e.type,
                                                             schema.definition(e.type)) for e in inside]))
    return out


def judge_stored(pipe: Pipeline, doc: Document, entities: Sequence[Entity], schema: EntitySchema,
                 propose: bool = False) -> list[Entity]:
    """``entities`` (``doc``'s stored generator candidates, document frame) scored by ``pipe``'s selector in
    their chunks as ``Pipeline.score_chunks`` scores them (an entity in several chunks: its best score),
    and with ``propose`` the selector's own spans in each chunk, scored (``source="selector"``). Nothing
    is dropped: ``pipe.selection`` or a threshold grid decides what is kept. A document in a language the
    selector does not judge (``selector_languages``) is returned as it is, as the pipeline leaves it."""
    if pipe.selector is None:
        raise ValidationError("judging stored candidates needs a pipeline with a selector")
    languages = pipe.config.selector_languages
    if languages and doc.language not in languages:
        return list(entities)
    parts = chunk_candidates(pipe, doc, entities, schema)
    found = (pipe.selector_spans([p.chunk.text for p in parts], [schema] * len(parts),
                                 [{(c.start, c.end, c.type) for c in p.candidates} for p in parts])
             if propose else Proposals([[] for _ in parts], {}))
    relabel = schema if pipe.relabels(schema) else None
    offered = (pipe.proposer_spans([p.chunk.text for p in parts], [schema] * len(parts)) if pipe.proposes(schema)
               else [[] for _ in parts])
    best: dict[int, tuple[float, str]] = {}
    proposed: list[Entity] = []
    for part, new, spans in zip(parts, found.spans, offered, strict=True):
        # The proposer's spans join as the pipeline adds them (with_proposer_spans, chunk frame).
        merged = with_proposer_spans([Entity(c.start, c.end, c.type) for c in part.candidates]
                                     + [Entity(c.start, c.end, c.type, source="selector") for c in new], spans)
        added = merged[len(part.candidates):]          # the selector's proposals (some now theirs both), then the reader's
        read = [Candidate(part.chunk.text, e.start, e.end, e.type, schema.definition(e.type)) for e in added[len(new):]]
        judged = pipe.judge_candidates(part.candidates + new + read, found.rows,
                                       [relabel] * len(part.candidates) + [None] * (len(new) + len(read)))
        for entity, (etype, score) in zip(part.entities, judged[: len(part.candidates)]):
            best[id(entity)] = max(best.get(id(entity), (-1.0, etype)), (score, etype))
        proposed += [Entity(part.chunk.start + e.start, part.chunk.start + e.end, e.type,
                            doc.text[part.chunk.start + e.start : part.chunk.start + e.end], score=score, source=e.source)
                     for e, (_, score) in zip(added, judged[len(part.candidates):], strict=True)]
    out = [dataclasses.replace(e, score=best[id(e)][0], type=best[id(e)][1]) if id(e) in best else e for e in entities]
    return one_per_key(out + proposed)


def selected_documents(pipe: Pipeline, docs: Sequence[Document], predicted: Sequence[Document],
                       schema: EntitySchema) -> list[Document]:
    """What ``pipe`` would output from stored generator predictions (``predicted``, one per document of
    ``docs``): each document's candidates judged by its selector (``judge_stored``, with the selector's own
    spans where the schema has a proposal threshold) and kept by its selection rule. Comparing generators
    this way compares them as the shipped pipeline would use them."""
    propose = pipe.proposal_threshold_for(schema) is not None
    return [Document(p.id, p.text, p.language, {}, pipe.selection(judge_stored(pipe, doc, p.entities, schema, propose), schema))
            for doc, p in zip(docs, predicted, strict=True)]


def _clusters(entities: Sequence[Entity]) -> list[list[int]]:
    """Groups of entity indices that consistency may have copied one of: per string of a single type,
    the entities that share the top (score, generator_score), when there are two or more."""
    by_string: dict[str, list[int]] = {}
    for i, e in enumerate(entities):
        by_string.setdefault(e.text, []).append(i)
    out = []
    for members in by_string.values():
        if len(members) < 2 or len({entities[i].type for i in members}) != 1:
            continue
        rank = {i: (entities[i].score if entities[i].score is not None else -1.0,
                    entities[i].generator_score if entities[i].generator_score is not None else -1.0) for i in members}
        top = max(rank.values())
        cluster = [i for i in members if rank[i] == top]
        if len(cluster) > 1:
            out.append(cluster)
    return out


def rescore_records(pipe: Pipeline, docs: Sequence[Document], records: Sequence[ResultRecord],
                    schema: EntitySchema) -> tuple[list[RescoredRecord], float]:
    """``records`` (every candidate kept, as ``predict`` stores them) of ``docs`` with ``pipe``'s selector
    scores, and the seconds the selector took. ``schema`` is the one the records were tagged under.
    Entities the pipeline's selector does not judge (its ``selector_languages``) keep their stored scores;
    those it judges are scored whether or not the records' pipeline judged them (a record keeps every
    candidate of an unjudged language, with no score)."""
    if pipe.selector is None:
        raise ValidationError("rescoring needs a pipeline with a selector")
    if pipe.relabels(schema):
        raise ValidationError(f"the pipeline relabels candidates under {schema.name!r}: a relabelled record is not derived "
                              "from stored scores; predict it again")
    if len(docs) != len(records):
        raise ValidationError(f"{len(docs)} documents but {len(records)} records")
    languages = pipe.config.selector_languages
    candidates: list[Candidate] = []
    owners: list[tuple[int, int]] = []          # (record, entity) of each candidate
    spans_per_doc: list[list[tuple[int, int]]] = []
    for r, (doc, record) in enumerate(zip(docs, records)):
        if doc.id != record.document_id:
            raise ValidationError(f"record {r} is of document {record.document_id!r}, not {doc.id!r}")
        chunks = pipe.chunk(doc)
        spans_per_doc.append([(c.start, c.end) for c in chunks])
        if languages and record.language not in languages:
            continue
        for k, entity in enumerate(record.entities):
            for ci in _containing(spans_per_doc[-1], entity):
                chunk = chunks[ci]
                candidates.append(Candidate(chunk.text, entity.start - chunk.start, entity.end - chunk.start,
                                            entity.type, schema.definition(entity.type)))
                owners.append((r, k))
    started = time.perf_counter()
    # Proposed first, as the pipeline does, so that the candidates are read off the rows proposing ran.
    proposing = pipe.proposal_threshold_for(schema) is not None
    where, proposals = _proposals(pipe, docs, records, schema) if proposing else ([], Proposals([], {}))
    scores = pipe.selector.score_with_rows(candidates, proposals.rows) if candidates else []
    seconds = time.perf_counter() - started

    # An entity's own score: the highest over the chunks that hold it (the merge keeps the highest when
    # several chunks found it), within the interval of all of them.
    own: dict[tuple[int, int], list[float]] = {}
    for owner, score in zip(owners, scores):
        own.setdefault(owner, []).append(float(score))
    out = []
    for r, record in enumerate(records):
        entities = list(record.entities)
        point: list[float | None] = [None] * len(entities)
        bounds: list[tuple[float, float] | None] = [None] * len(entities)
        for k in range(len(entities)):
            values = own.get((r, k))
            if values:
                point[k], bounds[k] = max(values), (min(values), max(values))
        for cluster in _clusters(entities):
            scored = [k for k in cluster if point[k] is not None]
            if not scored:
                continue
            others = [k for k in range(len(entities)) if entities[k].text == entities[cluster[0]].text
                      and k not in cluster and point[k] is not None]
            best_other = max((point[k] for k in others), default=-1.0)
            found = scored[0]    # the point estimate's choice of the generator-found member
            copy_point = max(point[found], best_other)
            low = min(bounds[k][0] for k in scored)
            high = max([bounds[k][1] for k in scored] + [bounds[k][1] for k in others])
            for k in cluster:
                point[k] = point[found] if k == found else copy_point
                bounds[k] = (low, high)
        judged = not languages or record.language in languages
        for k, e in enumerate(entities):
            if judged and point[k] is None:
                # The generator finds entities inside chunks, and only consistency's copies (clustered
                # above) can lie elsewhere: these records were chunked differently from ``pipe``.
                raise ValidationError(f"document {record.document_id!r}: entity [{e.start}, {e.end}) {e.type} lies in "
                                      "no chunk of this pipeline's chunking; the records were made with another")
        rescored = [dataclasses.replace(e, score=p) if p is not None else e for e, p in zip(entities, point)]
        new = dataclasses.replace(record, entities=rescored, model_ids=dict(pipe.model_ids))
        out.append(RescoredRecord(new, bounds))
    if proposing:
        started = time.perf_counter()
        _add_proposals(pipe, docs, out, where, proposals)
        seconds += time.perf_counter() - started
    if pipe.proposes(schema):
        started = time.perf_counter()
        _add_proposer_spans(pipe, docs, out, schema, proposals.rows)
        seconds += time.perf_counter() - started
    return out, seconds


def _add_proposer_spans(pipe: Pipeline, docs: Sequence[Document], rescored: list[RescoredRecord],
                        schema: EntitySchema, rows: Any) -> None:
    """Add to each judged record the proposer's spans as ``Pipeline.score_chunks`` adds them
    (``with_proposer_spans``): per chunk, those the stored candidates do not hold, a selector proposal of the
    same span becoming theirs both, the rest scored by the selector (exact scores). The proposer
    reads every chunk again (its spans are not stored)."""
    assert pipe.selector is not None
    languages = pipe.config.selector_languages
    where = [(r, chunk) for r, doc in enumerate(docs) if not languages or rescored[r].record.language in languages
             for chunk in pipe.chunk(doc)]
    offered = pipe.proposer_spans([chunk.text for _, chunk in where], [schema] * len(where))
    new: list[tuple[int, Entity]] = []
    candidates: list[Candidate] = []
    for (r, chunk), spans in zip(where, offered, strict=True):
        entities = rescored[r].record.entities
        inside = [i for i, e in enumerate(entities) if chunk.start <= e.start and e.end <= chunk.end]
        merged = with_proposer_spans([entities[i].shifted(-chunk.start) for i in inside], spans)
        for i, e in zip(inside, merged):
            if e.source != entities[i].source:      # a selector proposal the proposer proposed too
                entities[i] = dataclasses.replace(entities[i], source=e.source)
        for e in merged[len(inside):]:
            candidates.append(Candidate(chunk.text, e.start, e.end, e.type, schema.definition(e.type)))
            new.append((r, e.shifted(chunk.start)))
    scores = pipe.selector.score_with_rows(candidates, rows) if candidates else []
    for (r, entity), score in zip(new, scores):
        rescored[r].record.entities.append(dataclasses.replace(entity, score=float(score)))
        rescored[r].bounds.append((float(score), float(score)))


def _proposals(pipe: Pipeline, docs: Sequence[Document], records: Sequence[ResultRecord],
               schema: EntitySchema) -> tuple[list[tuple[int, Chunk]], Proposals]:
    """The selector's own spans in every judged chunk, less the records' entities, as ``Pipeline.score_chunks``
    proposes them: (record, chunk) of each chunk proposed in, and what was found there."""
    languages = pipe.config.selector_languages
    where: list[tuple[int, Chunk]] = []
    for r, (doc, record) in enumerate(zip(docs, records)):
        if not languages or record.language in languages:
            where += [(r, chunk) for chunk in pipe.chunk(doc)]
    existing = [{(e.start - chunk.start, e.end - chunk.start, e.type) for e in records[r].entities
                 if chunk.start <= e.start and e.end <= chunk.end} for r, chunk in where]
    return where, pipe.selector_spans([chunk.text for _, chunk in where], [schema] * len(where), existing)


def _add_proposals(pipe: Pipeline, docs: Sequence[Document], rescored: list[RescoredRecord],
                   where: Sequence[tuple[int, Chunk]], proposals: Proposals) -> None:
    """Append to each judged record the selector's own spans (``_proposals``), scored as the pipeline
    scores them (exact scores)."""
    assert pipe.selector is not None
    new: list[tuple[int, Entity]] = []
    candidates: list[Candidate] = []
    for (r, chunk), spans in zip(where, proposals.spans, strict=True):
        for c in spans:
            candidates.append(c)
            new.append((r, Entity(chunk.start + c.start, chunk.start + c.end, c.type,
                                  docs[r].text[chunk.start + c.start : chunk.start + c.end], source="selector")))
    scores = pipe.selector.score_with_rows(candidates, proposals.rows) if candidates else []
    best: dict[tuple[int, int, int, str], float] = {}
    for (r, entity), score in zip(new, scores):
        key = (r, *entity.key)
        best[key] = max(best.get(key, -1.0), float(score))
    for (r, entity) in new:
        key = (r, *entity.key)
        if key in best:
            value = best.pop(key)
            rescored[r].record.entities.append(dataclasses.replace(entity, score=value))
            rescored[r].bounds.append((value, value))


def rescore_parts(pipe: Pipeline, docs: Sequence[Document], schema: EntitySchema, source_dir: Path,
                  target_dir: Path, part_documents: int = 100) -> dict[str, Any]:
    """Fill ``target_dir`` with the parts ``predict_in_parts`` would store for ``pipe`` from the complete
    parts of another pipeline with the same generator in ``source_dir`` (``rescore_records`` on each).
    A part's seconds are its source's with the old selector's time (the records' ``select`` timings)
    replaced by the new selector's. Returns what the derivation found: documents, entities,
    ``undetermined`` at ``pipe``'s threshold of ``schema`` (0: exact) and the new selector's seconds;
    also stored as ``rescored.json`` beside the parts."""
    pipe.add_schema(schema)
    threshold = pipe.threshold_for(schema)
    summary: dict[str, Any] = {"source": source_dir.name, "documents": 0, "entities": 0, "undetermined": 0,
                               "threshold": threshold, "proposal_threshold": pipe.proposal_threshold_for(schema),
                               "proposal_overlap": pipe.proposal_overlap_for(schema),
                               "proposed": 0, "selector_seconds": 0.0, "replaced_selector_seconds": 0.0}
    for start in range(0, len(docs), part_documents):
        part = docs[start : start + part_documents]
        name = f"part-{start:07d}.json"
        stored = cached_row(source_dir / name)
        ids = [d.id for d in part]
        if stored is None or stored["document_ids"] != ids:
            raise DataNotFoundError(f"{source_dir / name} is missing or holds other documents: the source row is not complete")
        records = [ResultRecord.from_dict(r) for r in stored["records"]]
        rescored, seconds = rescore_records(pipe, part, records, schema)
        old_select = sum(r.timings_ms.get("select", 0.0) for r in records) / 1000
        summary["documents"] += len(part)
        summary["entities"] += sum(len(r.entities) for r in records)
        summary["undetermined"] += sum(r.undetermined(lambda e: threshold if e.score is not None and e.source == "generator"
                                                      else None) for r in rescored)
        summary["proposed"] += sum(e.source == "selector" for r in rescored for e in r.record.entities)
        summary["selector_seconds"] += seconds
        summary["replaced_selector_seconds"] += old_select
        store_row(target_dir / name, {"document_ids": ids, "seconds": float(stored["seconds"]) - old_select + seconds,
                                      "records": [r.record.to_dict() for r in rescored],
                                      "score_bounds": [r.bounds for r in rescored]})
    store_row(target_dir / "rescored.json", summary)
    return summary


def undetermined_f1_range(parts_dir: Path, gold: Sequence[Document]) -> tuple[float, float]:
    """Strict micro F1 of the parts ``rescore_parts`` wrote for ``gold`` (its threshold), with every
    keep decision the stored records leave open dropped, and with every one kept: how far the unrecorded
    consistency copies can move the row's F1 either way (the same value twice when nothing is open)."""
    from llmner.evaluation.scorer import score

    summary = cached_row(parts_dir / "rescored.json")
    threshold = float(summary["threshold"])
    proposal = summary.get("proposal_threshold")
    # Reader spans in a derived record are a proposer's (a schema the reader tags is never derived): kept as
    # the generator's candidates are, where no kept entity of their type overlaps them (SelectionRule.select).
    selection = SelectionRule(threshold, proposal, summary.get("proposal_overlap", "both"), reader_threshold=threshold)
    by_id = {d.id: d for d in gold}
    variants: tuple[list[Document], list[Document]] = ([], [])
    ordered = []
    for path in sorted(parts_dir.glob("part-*.json")):
        part = cached_row(path)
        for data, bounds in zip(part["records"], part["score_bounds"]):
            record = ResultRecord.from_dict(data)
            doc = by_id[record.document_id]
            ordered.append(doc)
            sure, open_ = [], []
            for entity, bound in zip(record.entities, bounds):
                # A proposal's score is exact; a candidate's is open when its interval straddles the threshold.
                if entity.source != "selector" and bound is not None and bound[0] < threshold <= bound[1]:
                    open_.append(dataclasses.replace(entity, score=bound[1]))   # kept: its highest possible score
                elif selection.keeps(entity):
                    sure.append(entity)
            for variant, entities in zip(variants, (sure, sure + open_)):
                predicted = record.to_document(doc.text)
                predicted.entities = selection.select(entities)
                variant.append(predicted)
    low, high = (score(ordered, v).strict.f1 for v in variants)
    return min(low, high), max(low, high)
