"""Rescoring stored predictions with another selector gives what a rerun of the generator would."""

from __future__ import annotations

import re

import numpy as np
import pytest

from llmner.decoding.consistency import ConsistencyConfig
from llmner.doc import Document, Entity
from llmner.errors import DataNotFoundError, ValidationError
from llmner.evaluation.predict import predict, predict_in_parts
from llmner.evaluation.rescore import rescore_parts, rescore_records
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.runtime.base import GeneratorRuntime, SelectorRuntime, TagResult
from llmner.schema import EntitySchema, EntityType

SCHEMA = EntitySchema("toy", "en", (EntityType("Gene", "a gene or protein"), EntityType("Disease", "a disease")))


class ContextGenerator(GeneratorRuntime):
    """Tags "cancer" everywhere, and "BRCA1" only in sentences that say "mutations": a string the model
    finds at some of its places, which consistency then copies to the others."""

    model_id = "context-gen"

    def tag(self, requests):
        out = []
        for req in requests:
            ents = [Entity(m.start(), m.end(), "Disease", "cancer") for m in re.finditer("cancer", req.text)]
            if "mutations" in req.text:
                ents += [Entity(m.start(), m.end(), "Gene", "BRCA1") for m in re.finditer("BRCA1", req.text)]
            out.append(TagResult(ents, req.text))
        return out


class ScoringGenerator(ContextGenerator):
    """As ContextGenerator, with the generator's own probability of each tag (a different one at each
    place, as a real model's): unscored records tell consistency's copies from found entities by it."""

    def tag(self, requests):
        out = super().tag(requests)
        for result in out:
            result.entities = [Entity(e.start, e.end, e.type, e.text, generator_score=0.5 + (e.start % 40) / 100)
                               for e in result.entities]
        return out


class FailingGenerator(GeneratorRuntime):
    model_id = "context-gen"

    def tag(self, requests):
        raise AssertionError("the generator must not run when parts are derived")


class ContextSelector(SelectorRuntime):
    """A score that depends on the chunk and the span (so two places of a string score differently)."""

    threshold = 0.5

    def __init__(self, model_id: str, salt: int) -> None:
        self.model_id = model_id
        self.salt = salt

    def score(self, candidates):
        return np.array([((len(c.text) * self.salt + c.start * 7 + len(c.definition)) % 89) / 89 for c in candidates],
                        dtype=np.float32)


DOCS = [
    # Found at the first two places, copied to the third: the cluster's first member is a found one.
    Document("found-first", "BRCA1 mutations cause cancer. Some BRCA1 mutations were found. Later, BRCA1 was seen."),
    # Copied to the first place: the point estimate may be off, the interval holds the truth.
    Document("copy-first", "We saw BRCA1 then. BRCA1 mutations cause cancer. These BRCA1 mutations recur."),
    Document("plain", "Nothing but cancer here, and cancer again."),
]


def pipeline(selector: SelectorRuntime, generator: GeneratorRuntime | None = None, threshold: float = 0.5) -> Pipeline:
    pipe = Pipeline(generator or ContextGenerator(), selector,
                    PipelineConfig(consistency=ConsistencyConfig(), selector_threshold=threshold))
    pipe.add_schema(SCHEMA)
    return pipe


def scores(record):
    return {(e.start, e.end, e.type): e.score for e in record.entities}


def test_rescored_records_hold_the_rerun_scores_where_the_found_member_comes_first():
    old = predict(pipeline(ContextSelector("sel-a", 3)), DOCS, SCHEMA)
    new_pipe = pipeline(ContextSelector("sel-b", 11))
    rerun = predict(new_pipe, DOCS, SCHEMA)
    rescored, seconds = rescore_records(new_pipe, DOCS, old, SCHEMA)
    assert seconds >= 0
    copied = [e for e in rerun[0].entities if e.type == "Gene"]
    assert len(copied) == 3   # consistency added the third BRCA1
    for got, want in zip(rescored, rerun):
        assert [e.key for e in got.record.entities] == [e.key for e in want.entities]
        assert got.record.model_ids == want.model_ids
        for entity, bound in zip(got.record.entities, got.bounds):
            truth = scores(want)[entity.key]
            assert bound[0] - 1e-6 <= truth <= bound[1] + 1e-6
    assert scores(rescored[0].record) == pytest.approx(scores(rerun[0]))
    assert scores(rescored[2].record) == pytest.approx(scores(rerun[2]))
    for bound in rescored[2].bounds:   # no string was copied: every score is exact
        assert bound[0] == bound[1]


def test_records_of_a_language_the_source_did_not_judge_are_judged_as_a_rerun_would():
    """A source that judged no English (its records keep every candidate, unscored) rescored by a selector
    that judges English: the records a rerun of the generator would give."""
    unjudged = Pipeline(ScoringGenerator(), ContextSelector("sel-a", 3),
                        PipelineConfig(consistency=ConsistencyConfig(), selector_threshold=0.5, selector_languages=("zh",)))
    unjudged.add_schema(SCHEMA)
    old = predict(unjudged, DOCS, SCHEMA)
    assert all(e.score is None for r in old for e in r.entities)
    new_pipe = pipeline(ContextSelector("sel-b", 11), ScoringGenerator())
    rerun = predict(new_pipe, DOCS, SCHEMA)
    rescored, _ = rescore_records(new_pipe, DOCS, old, SCHEMA)
    for got, want in zip(rescored, rerun):
        assert [e.key for e in got.record.entities] == [e.key for e in want.entities]
        for entity, bound in zip(got.record.entities, got.bounds):
            assert bound is not None and bound[0] - 1e-6 <= scores(want)[entity.key] <= bound[1] + 1e-6
    assert scores(rescored[2].record) == pytest.approx(scores(rerun[2]))


def test_undetermined_counts_the_keep_decisions_an_interval_leaves_open():
    old = predict(pipeline(ContextSelector("sel-a", 3)), DOCS, SCHEMA)
    new_pipe = pipeline(ContextSelector("sel-b", 11))
    rescored, _ = rescore_records(new_pipe, DOCS, old, SCHEMA)
    open_bounds = [b for r in rescored for b in r.bounds if b[0] < b[1]]
    assert open_bounds
    low, high = open_bounds[0]
    inside = (low + high) / 2
    assert sum(r.undetermined(lambda e: inside) for r in rescored) >= 1
    above = max(b[1] for b in open_bounds) + 1e-3
    assert sum(r.undetermined(lambda e: above) for r in rescored) == 0
    assert sum(r.undetermined(lambda e: None) for r in rescored) == 0


def test_records_chunked_otherwise_are_refused():
    old = predict(pipeline(ContextSelector("sel-a", 3)), DOCS, SCHEMA)
    moved = [r for r in old]
    entity = moved[2].entities[0]
    moved[2].entities[0] = Entity(entity.start, len(DOCS[2].text) + 5, entity.type, "x", score=0.4)
    with pytest.raises(ValidationError, match="no chunk"):
        rescore_records(pipeline(ContextSelector("sel-b", 11)), DOCS, moved, SCHEMA)
    with pytest.raises(ValidationError, match="records"):
        rescore_records(pipeline(ContextSelector("sel-b", 11)), DOCS[:2], old, SCHEMA)


def test_derived_parts_are_read_back_as_the_new_pipeline_s_own(tmp_path):
    source, target = tmp_path / "old.parts", tmp_path / "new.parts"
    old_records, old_seconds = predict_in_parts(pipeline(ContextSelector("sel-a", 3)), DOCS, SCHEMA, source, part_documents=2)
    new_pipe = pipeline(ContextSelector("sel-b", 11), threshold=0.4)
    summary = rescore_parts(new_pipe, DOCS, SCHEMA, source, target, part_documents=2)
    assert summary["documents"] == 3 and summary["entities"] == sum(len(r.entities) for r in old_records)
    assert summary["threshold"] == 0.4 and summary["undetermined"] >= 0
    assert (target / "rescored.json").is_file()
    # The new pipeline resumes from the derived parts without generating anything.
    derived, seconds = predict_in_parts(pipeline(ContextSelector("sel-b", 11), FailingGenerator()), DOCS, SCHEMA, target,
                                        part_documents=2)
    rerun = predict(new_pipe, DOCS, SCHEMA)
    assert [r.document_id for r in derived] == [d.id for d in DOCS]
    assert scores(derived[0]) == pytest.approx(scores(rerun[0]))
    expected = old_seconds - summary["replaced_selector_seconds"] + summary["selector_seconds"]
    assert seconds == pytest.approx(expected)
    (source / "part-0000002.json").unlink()
    with pytest.raises(DataNotFoundError, match="not complete"):
        rescore_parts(new_pipe, DOCS, SCHEMA, source, tmp_path / "other.parts", part_documents=2)


def test_bundles_that_generate_alike_may_rescore_each_other(tmp_path):
    import json
    import shutil

    from llmner.bundle import default_bundle_path, load_manifest
    from llmner.evaluation.rescore import same_generation

    shipped = default_bundle_path()
    if shipped is None:
        pytest.skip("no default bundle installed")
    source, target = tmp_path / "a", tmp_path / "b"
    for root in (source, target):
        (root / "generator").mkdir(parents=True)
        (root / "selector").mkdir()
        (root / "reader").mkdir()      # the shipped bundle.json names reader_schemas
        for entry in load_manifest(shipped).proposers:     # and proposers
            (root / entry.directory).mkdir(parents=True)
        shutil.copy(shipped / "bundle.json", root / "bundle.json")
        (root / "generator" / "adapter.bin").write_bytes(b"weights")
    manifest = json.loads((target / "bundle.json").read_text())
    manifest["selector_thresholds"] = {"ncbi_disease": 0.3}   # applied when scoring: no difference
    (target / "bundle.json").write_text(json.dumps(manifest))
    assert same_generation(source, target) == []
    manifest["open_bias"] = {"cmeee": 2.0}
    (target / "bundle.json").write_text(json.dumps(manifest))
    (target / "generator" / "adapter.bin").write_bytes(b"other weights")
    differences = same_generation(source, target)
    assert len(differences) == 2 and differences[0].startswith("open_bias")
    # A target may judge more languages than the source (it scores their stored candidates), not fewer.
    manifest = json.loads((source / "bundle.json").read_text())
    (target / "generator" / "adapter.bin").write_bytes(b"weights")
    for judged_a, judged_b, alike in ((["en"], ["en", "zh"], True), (["en", "zh"], ["en"], False), (None, ["en"], False)):
        manifest["selector_languages"] = judged_a
        (source / "bundle.json").write_text(json.dumps(manifest))
        (target / "bundle.json").write_text(json.dumps({**manifest, "selector_languages": judged_b}))
        assert (same_generation(source, target) == []) is alike


def test_the_f1_range_spans_the_open_keep_decisions(tmp_path):
    from llmner.evaluation.rescore import undetermined_f1_range

    gold = [Document(d.id, d.text, entities=[Entity(m.start(), m.end(), "Gene", "BRCA1")
                                             for m in re.finditer("BRCA1", d.text)]) for d in DOCS]
    source, target = tmp_path / "old.parts", tmp_path / "new.parts"
    predict_in_parts(pipeline(ContextSelector("sel-a", 3)), gold, SCHEMA, source, part_documents=2)
    new_pipe = pipeline(ContextSelector("sel-b", 11), threshold=0.0)
    assert rescore_parts(new_pipe, gold, SCHEMA, source, target, part_documents=2)["undetermined"] == 0
    low, high = undetermined_f1_range(target, gold)
    assert low == high > 0    # nothing open: one value, every candidate kept at threshold 0
    # A proposer's span that overlaps a kept entity of its type yields to it, as the pipeline's selection has it.
    import json as _json

    part = min(target.glob("part-*.json"))
    data = _json.loads(part.read_text())
    record, bounds = data["records"][0], data["score_bounds"][0]
    first = next(e for e in record["entities"] if e["type"] == "Gene")
    record["entities"].append({**first, "start": first["start"], "end": first["end"] + 1, "text": first["text"] + "x",
                               "score": 0.99, "source": "reader"})
    bounds.append([0.99, 0.99])
    part.write_text(_json.dumps(data))
    assert undetermined_f1_range(target, gold) == (low, high)
    opened = pipeline(ContextSelector("sel-b", 11), threshold=0.5)
    rescored, _ = rescore_records(opened, gold, predict(pipeline(ContextSelector("sel-a", 3)), gold, SCHEMA), SCHEMA)
    middle = next((b[0] + b[1]) / 2 for r in rescored for b in r.bounds if b and b[0] < b[1])
    summary = rescore_parts(pipeline(ContextSelector("sel-b", 11), threshold=middle), gold, SCHEMA, source,
                            tmp_path / "open.parts", part_documents=2)
    assert summary["undetermined"] >= 1
    low, high = undetermined_f1_range(tmp_path / "open.parts", gold)
    assert 0 <= low < high <= 1


def test_chunk_candidates_hand_each_stored_entity_to_the_selector_in_its_chunk():
    from llmner.evaluation.rescore import chunk_candidates

    pipe = pipeline(ContextSelector("sel-a", 3))
    pipe.consistency = ConsistencyConfig.off()      # every entity then carries its own score, not a copy's
    record = predict(pipe, DOCS[:1], SCHEMA)[0]
    parts = chunk_candidates(pipe, DOCS[0], record.entities, SCHEMA)
    assert len(parts) > 1 and [p.chunk for p in parts] == pipe.chunk(DOCS[0])
    assert sorted(e.key for p in parts for e in p.entities) == sorted(e.key for e in record.entities)
    for part in parts:
        for entity, cand in zip(part.entities, part.candidates, strict=True):
            assert part.chunk.start + cand.start == entity.start and cand.text[cand.start:cand.end] == entity.text
            assert cand.definition == SCHEMA.definition(entity.type)
    # The pipeline's own scores are the selector's on these candidates.
    got = {e.key: float(s) for p in parts for e, s in zip(p.entities, pipe.selector.score(p.candidates))}
    assert got == pytest.approx(scores(record))
