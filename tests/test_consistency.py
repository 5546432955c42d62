"""Document-level consistency (``llmner.decoding.consistency.propagate``): abbreviations take their
long form's type, recurrences of a tagged string are tagged, and nothing the model tagged changes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from llmner.data_processing.chunking import ChunkingConfig
from llmner.decoding.consistency import ConsistencyConfig, propagate
from llmner.doc import Document, Entity
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.runtime.base import GeneratorRuntime, SelectorRuntime, TagResult


def ent(text: str, surface: str, type_: str, nth: int = 0, **scores: float) -> Entity:
    start = -1
    for _ in range(nth + 1):
        start = text.index(surface, start + 1)
    return Entity(start, start + len(surface), type_, surface, **scores)


def spans(text: str, entities: list[Entity]) -> list[tuple[str, str]]:
    return [(text[e.start : e.end], e.type) for e in entities]


EVERY = ConsistencyConfig(abbreviations=True, repeats=True, min_share=0.0)   # both steps, every tagged string

TEXT = ("Wilson disease (WD) is a copper storage disorder. Patients with WD carry ATP7B mutations. "
        "ATP7B is a copper transporter; WDR and SWD are not WD.")


def test_short_form_takes_the_long_forms_type_and_then_every_occurrence() -> None:
    wilson = ent(TEXT, "Wilson disease", "Disease", score=0.9, generator_score=0.8)
    out = propagate(TEXT, [wilson], EVERY)
    assert spans(TEXT, out) == [("Wilson disease", "Disease"), ("WD", "Disease"), ("WD", "Disease"), ("WD", "Disease")]
    # "WDR" and "SWD" hold "WD" inside a longer word: not tagged.
    assert all(TEXT[e.start - 1] in " (" for e in out[1:])
    copies = out[1:]
    assert all(e.score == 0.9 and e.generator_score == 0.8 for e in copies)
    assert out[0] is wilson


def test_a_tagged_string_is_tagged_where_it_recurs_with_the_best_sources_scores() -> None:
    first = ent(TEXT, "ATP7B", "Gene", score=0.4)
    out = propagate(TEXT, [first], EVERY)
    assert spans(TEXT, out) == [("ATP7B", "Gene"), ("ATP7B", "Gene")]
    assert out[1].score == 0.4 and out[1].normalized_id is None


def test_ambiguous_strings_and_occupied_places_are_left_alone() -> None:
    text = "APC mutations cause APC. The APC gene and APC protein."
    both = [ent(text, "APC", "Gene"), ent(text, "APC", "Disease", nth=1)]
    assert propagate(text, both, EVERY) == sorted(both, key=lambda e: (e.start, e.end))
    # An occurrence inside an entity already there keeps the model's reading.
    gene = ent(text, "APC gene", "Gene")
    out = propagate(text, [ent(text, "APC", "Disease"), gene], EVERY)
    assert ("APC", "Disease") in spans(text, out) and gene in out
    assert not any(e.start == gene.start and e.end == 32 for e in out)
    assert len([e for e in out if e.start >= gene.start and e.end <= gene.end and e is not gene]) == 0


def test_each_step_can_be_switched_off_and_short_strings_never_propagate() -> None:
    wilson = ent(TEXT, "Wilson disease", "Disease")
    only_abbrev = propagate(TEXT, [wilson], ConsistencyConfig(abbreviations=True, repeats=False))
    assert spans(TEXT, only_abbrev) == [("Wilson disease", "Disease"), ("WD", "Disease")]
    assert propagate(TEXT, [wilson], ConsistencyConfig.off()) == [wilson]
    text = "A and B; A again."
    assert len(propagate(text, [Entity(0, 1, "Gene", "A")], EVERY)) == 1


def test_chinese_text_needs_no_word_boundaries_and_offsets_stay_exact() -> None:
    text = "患者有高血压，既往高血压病史，服用氨氯地平。"
    out = propagate(text, [ent(text, "高血压", "dis")])   # the default: tagged at 1 of 2 places, share 0.5
    assert spans(text, out) == [("高血压", "dis"), ("高血压", "dis")]
    assert all(text[e.start : e.end] == e.text for e in out)


def test_no_entities_no_change() -> None:
    assert propagate(TEXT, []) == []


class FirstSentenceGenerator(GeneratorRuntime):
    """A generator double that tags "Wilson disease" only in the chunk holding it: the short form and
    the recurrences in other chunks are left for the consistency step."""

    model_id = "first-v1"

    def tag(self, requests):
        out = []
        for req in requests:
            at = req.text.find("Wilson disease")
            ents = [Entity(at, at + 14, "Disease", "Wilson disease")] if at >= 0 else []
            out.append(TagResult(ents, req.text))
        return out


def test_the_pipeline_applies_the_steps_it_is_configured_with() -> None:
    doc = Document("d", TEXT)
    chunking = ChunkingConfig(max_tokens=12, overlap_tokens=0)
    off = Pipeline(FirstSentenceGenerator(), None, PipelineConfig(chunking=chunking))
    assert spans(TEXT, off.process([doc])[0].entities) == [("Wilson disease", "Disease")]
    on = Pipeline(FirstSentenceGenerator(), None, PipelineConfig(chunking=chunking, consistency=EVERY))
    assert [t for t, _ in spans(TEXT, on.process([doc])[0].entities)] == ["Wilson disease", "WD", "WD", "WD"]


def test_a_bundle_names_its_steps_and_a_config_overrides_them(tmp_path) -> None:
    from llmner.bundle import MANIFEST_NAME, BundleManifest
    from llmner.errors import ConfigError
    from llmner.testing import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "b")
    assert Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none")).consistency == ConsistencyConfig.off()
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    (bundle / MANIFEST_NAME).write_text(json.dumps({**manifest, "consistency": ConsistencyConfig().to_dict()}))
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none"))
    assert pipe.consistency == ConsistencyConfig() and pipe.consistency.repeats and pipe.consistency.min_share == 0.5
    forced = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none", consistency=ConsistencyConfig.off()))
    assert not forced.consistency.enabled()
    for bad in (["repeats"], {"everything": True}, {"min_share": 2}):
        with pytest.raises(ConfigError, match="consistency"):
            BundleManifest.from_dict({**manifest, "consistency": bad})


def test_a_minimum_share_keeps_a_one_off_slip_from_spreading() -> None:
    text = "BRCA1 carriers. BRCA1 testing. BRCA1 and BRCA2. Wilson disease and Wilson disease again. Wilson disease."
    slip = ent(text, "BRCA1", "Disease")
    twice = [ent(text, "Wilson disease", "Disease"), ent(text, "Wilson disease", "Disease", nth=1)]
    out = propagate(text, [slip, *twice])    # the default: share 0.5
    # "BRCA1": tagged at 1 of 3 places, below the share: left as the model wrote it; "Wilson disease":
    # tagged at 2 of 3, so its third occurrence is tagged too.
    assert spans(text, out).count(("BRCA1", "Disease")) == 1
    assert spans(text, out).count(("Wilson disease", "Disease")) == 3
    assert spans(text, propagate(text, [slip], EVERY)).count(("BRCA1", "Disease")) == 3


def test_propagating_stored_candidates_equals_predicting_with_the_step() -> None:
    """What benchmarks/campaign/derive_consistency_parts.py relies on: the step only post-processes the
    merged candidates, so applying it to a run without it gives the run with it."""

    class Scores(SelectorRuntime):
        model_id = "by-length"

        def score(self, candidates):
            return np.array([len(c.text[c.start:c.end]) / 20 for c in candidates], dtype=np.float32)

    text = "Wilson disease is rare. Wilson disease (WD) again. Wilson disease; WD. Not WDR."
    config = PipelineConfig(chunking=ChunkingConfig(max_tokens=8, overlap_tokens=0))
    off = Pipeline(FirstSentenceGenerator(), Scores(), config)
    on = Pipeline(FirstSentenceGenerator(), Scores(), dataclasses.replace(config, consistency=EVERY))
    doc = Document("d", text)
    with_step = on.process([doc], select=False)[0]
    without = off.process([doc], select=False)[0]
    derived = propagate(text, without.entities, EVERY)
    assert [(e.key, e.score) for e in derived] == [(e.key, e.score) for e in with_step.entities]
    assert len(derived) > len(without.entities)
