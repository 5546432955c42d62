"""Pipeline end to end: chunk -> generate -> select -> merge, with tiny models (no files shipped)."""

from __future__ import annotations

import json
import re
from dataclasses import replace as dataclasses_replace

import numpy as np
import pytest

from llmner.bundle import BundleManifest, load_manifest
from llmner.data_processing.chunking import ChunkingConfig
from llmner.decoding.selection import SelectionRule
from llmner.doc import Document, Entity
from llmner.errors import ConfigError, DataNotFoundError
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.runtime.base import GeneratorRuntime, SelectorRuntime, TagResult
from llmner.runtime.torch_selector import TorchSelectorRuntime
from llmner.schema import get_schema

LEXICON = {"breast cancer": "Disease", "BRCA1": "Gene", "cisplatin": "Chemical", "mice": "Species", "HeLa": "CellLine",
           "cancer": "Disease"}


class LexiconGenerator(GeneratorRuntime):
    """A deterministic generator double: tags every lexicon word in the chunk (chunk offsets)."""

    model_id = "lexicon-v1"

    def __init__(self):
        self.calls = []

    def tag(self, requests):
        self.calls.append(len(requests))
        out = []
        for req in requests:
            ents = []
            for surface, etype in LEXICON.items():
                for m in re.finditer(re.escape(surface), req.text):
                    if etype in req.schema:
                        ents.append(Entity(m.start(), m.end(), etype, surface))
            out.append(TagResult(ents, req.text))
        return out


class LengthSelector(SelectorRuntime):
    """Scores by span length (longer = likelier): a transparent selector for checking the filter."""

    model_id = "length-v1"
    threshold = 0.5

    def score(self, candidates):
        return np.array([min(1.0, (c.end - c.start) / 10) for c in candidates], dtype=np.float32)


TEXT = ("BRCA1 mutations cause breast cancer in women. Cisplatin was given to mice. "
        "HeLa cells were treated with cisplatin, and breast cancer cells died. ") * 3


def gold_hits(text):
    hits = set()
    for surface, etype in LEXICON.items():
        for m in re.finditer(re.escape(surface), text):
            hits.add((m.start(), m.end(), etype))
    return hits


def test_entities_come_back_in_document_offsets_across_chunks():
    gen = LexiconGenerator()
    pipe = Pipeline(gen, None, PipelineConfig(chunking=ChunkingConfig(max_tokens=12, overlap_tokens=4)))
    docs = [Document("a", TEXT), Document("b", "No entities here at all."), Document("c", "HeLa and mice.")]
    records = pipe.process(docs)
    assert gen.calls and gen.calls[0] > 3   # one batched call across documents and chunks
    assert [r.document_id for r in records] == ["a", "b", "c"]
    assert records[0].chunk_count > 3
    for doc, rec in zip(docs, records):
        assert {e.key for e in rec.entities} == gold_hits(doc.text)
        for e in rec.entities:
            assert e.text == doc.text[e.start:e.end] and e.score is None
    assert records[0].model_ids == {"generator": "lexicon-v1"}
    assert set(records[0].timings_ms) >= {"chunk", "generate", "select", "merge"}


def test_selector_drops_low_scores_and_attaches_scores():
    pipe = Pipeline(LexiconGenerator(), LengthSelector())
    rec = pipe.process([Document("a", TEXT)])[0]
    kept = {e.key for e in rec.entities}
    expected = {k for k in gold_hits(TEXT) if (k[1] - k[0]) / 10 >= 0.5}
    assert kept == expected and kept    # "mice" (0.4) dropped, "cisplatin" (0.9) kept
    assert all(e.score == pytest.approx(min(1.0, (e.end - e.start) / 10)) for e in rec.entities)
    assert rec.model_ids == {"generator": "lexicon-v1", "selector": "length-v1"}
    # score_chunks keeps everything (for evaluation), select applies the threshold.
    chunks = pipe.chunk(Document("a", TEXT))
    scored = pipe.score_chunks(chunks)
    assert sum(map(len, scored)) > sum(map(len, pipe.select(scored)))
    # Chunk-level stages answer in the chunk frame: offsets into chunk.text.
    assert any(c.start > 0 and ents for c, ents in zip(chunks, scored))
    assert all(e.text == c.text[e.start:e.end] for c, ents in zip(chunks, scored) for e in ents)


def test_selector_judges_only_its_languages_and_keeps_the_rest_unscored():
    zh = Document("z", "患者患有breast cancer。", language="zh", metadata={"schema": "biomedical_en"})
    en = Document("e", "mice and breast cancer", metadata={"schema": "biomedical_en"})
    everything = Pipeline(LexiconGenerator(), LengthSelector()).process([zh, en])
    assert all(e.score is not None for r in everything for e in r.entities)
    only_en = Pipeline(LexiconGenerator(), LengthSelector(), PipelineConfig(selector_languages=("en",)))
    rec_zh, rec_en = only_en.process([zh, en])
    assert rec_zh.entities and all(e.score is None for e in rec_zh.entities)
    assert "mice" not in [e.text for e in rec_en.entities] and rec_en.entities      # judged: "mice" (0.4) dropped
    assert all(e.score is not None for e in rec_en.entities)


def test_per_schema_thresholds_override_the_global_one_for_their_schema_only():
    pipe = Pipeline(LexiconGenerator(), LengthSelector())
    pipe.thresholds = {"ncbi_disease": 0.95}        # calibrated: only very long Disease spans survive
    disease = Document("d", TEXT, metadata={"schema": "ncbi_disease"})
    other = Document("o", TEXT, metadata={"schema": "biomedical_en"})
    rec_d, rec_o = pipe.process([disease, other])
    assert {e.text for e in rec_d.entities} == {"breast cancer"}          # 1.0 >= 0.95; "cancer" (0.6) dropped
    assert "cancer" in {e.text for e in rec_o.entities}                   # global 0.5 for the other schema
    assert pipe.threshold_for("ncbi_disease") == 0.95 and pipe.threshold_for("biomedical_en") == 0.5
    assert pipe.threshold_for(None) == 0.5 and pipe.threshold_for(get_schema("ncbi_disease")) == 0.95
    chunks = pipe.chunk(disease)
    via_chunks = pipe.infer_chunks(chunks, get_schema("ncbi_disease"))
    assert {e.text for ents in via_chunks for e in ents} == {"breast cancer"}
    with pytest.raises(ConfigError, match="2 chunks but 1 schemas"):
        pipe.select([[], []], ["ncbi_disease"])


def test_manifest_per_schema_thresholds_are_validated(tmp_path):
    (tmp_path / "generator").mkdir()
    base = {**BundleManifest(has_selector=False).to_dict()}
    (tmp_path / "bundle.json").write_text(json.dumps({**base, "selector_thresholds": {"genia": 1.5}}))
    with pytest.raises(ConfigError, match=r"selector_thresholds\['genia'\] must be a number in \[0, 1\]"):
        load_manifest(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({**base, "selector_thresholds": ["genia"]}))
    with pytest.raises(ConfigError, match="must map schema names"):
        load_manifest(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({**base, "selector_thresholds": {"genia": 0.2}}))
    assert load_manifest(tmp_path).selector_thresholds == {"genia": 0.2}


def _gold_docs(text: str, n: int, prefix: str = "d") -> list[Document]:
    """``n`` copies of ``text`` whose gold mentions are the lexicon hits of 7+ characters."""
    return [Document(f"{prefix}{i}", text, entities=[Entity(s, e, t, text[s:e]) for s, e, t in sorted(gold_hits(text)) if e - s >= 7])
            for i in range(n)]


def test_calibration_picks_the_best_threshold_per_schema_on_dev(monkeypatch):
    from llmner.evaluation import calibration
    from llmner.evaluation.calibration import (
        CalibrationConfig,
        calibrate,
        store_calibration,
    )

    # Of BC5CDR's types the generator proposes "breast cancer" (score 1.0), "cisplatin" (0.9) and
    # "cancer" (0.6, wrong) in every document: the best cut of the grid is 0.7, and every resample's
    # choice beats the global 0.5 on the documents it left out.
    docs = _gold_docs(TEXT, 12)
    monkeypatch.setattr("llmner.data_processing.corpora.load_corpus", lambda corpus, split: docs)
    monkeypatch.setattr("llmner.data_processing.corpora.is_labeled", lambda corpus, split: True)
    pipe = Pipeline(LexiconGenerator(), LengthSelector())
    config = CalibrationConfig(corpora=["bc5cdr"], sentences=1000, min_gold=0, min_candidates=5, bootstrap=50)
    results = calibrate(pipe, config, log=lambda _: None)
    (r,) = results
    assert r.schema == "bc5cdr" and r.judge == "selector" and r.documents == 12 and r.candidates > 5
    assert not r.proposing and r.proposals == 0                  # a span-head selector proposes nothing
    assert r.default == SelectionRule(0.5) and r.plain == r.default   # no proposals: the baseline is the global cut
    assert r.evidence == 1.0 and r.oob_gain > 0
    assert r.chosen == r.best == SelectionRule(0.7)
    assert r.f1(r.chosen) == 1.0 > r.f1(r.default)
    manifest = BundleManifest(selector_thresholds={"genia": 0.3, "bc5cdr": 0.4})
    store_calibration(manifest, results)
    assert manifest.selector_thresholds == {"genia": 0.3, "bc5cdr": 0.7}    # other schemas' settings stay
    assert manifest.proposal_thresholds == {} and manifest.proposal_threshold is None
    few = calibrate(pipe, CalibrationConfig(corpora=["bc5cdr"], sentences=2, min_gold=0, min_candidates=10_000), log=lambda _: None)
    assert few[0].chosen == few[0].best == few[0].default and few[0].evidence is None
    store_calibration(manifest, few)
    assert manifest.selector_thresholds == {"genia": 0.3}                   # back to the global threshold
    # Without a selector the generator's own scores judge (the lexicon double has none: all kept).
    (unjudged,) = calibrate(Pipeline(LexiconGenerator(), None), config, log=lambda _: None)
    assert unjudged.judge == "generator" and unjudged.candidates == 0 and unjudged.chosen == unjudged.default
    with pytest.raises(calibration.ValidationError, match="at least one corpus"):
        CalibrationConfig(corpora=[])
    with pytest.raises(calibration.ValidationError, match=r"min_evidence must be in \[0, 1\], got 1.5"):
        CalibrationConfig(corpora=["bc5cdr"], min_evidence=1.5)
    with pytest.raises(calibration.ValidationError, match="bootstrap must be >= 1"):
        CalibrationConfig(corpora=["bc5cdr"], bootstrap=0)
    with pytest.raises(calibration.ValidationError, match="selector_grid must hold values in"):
        CalibrationConfig(corpora=["bc5cdr"], selector_grid=(0.5, 1.5))


class RecallLimitedGenerator(LexiconGenerator):
    """A double whose recall grows with the bonus for opening a tag: "breast cancer" always,
    "cisplatin" (right) from a bonus of 1, "cancer" inside "breast cancer" (wrong) from 2."""

    def tag(self, requests):
        out = []
        for req, res in zip(requests, super().tag(requests)):
            allowed = {"breast cancer"} | ({"cisplatin"} if req.open_bias >= 1 else set()) | ({"cancer"} if req.open_bias >= 2 else set())
            out.append(TagResult([e for e in res.entities if e.text in allowed], res.output))
        return out


def test_open_bias_calibration_stores_the_dev_best_bonus_when_it_holds_out_of_bag(monkeypatch):
    from llmner.evaluation.calibration import CalibrationConfig, calibrate_open_bias

    docs = _gold_docs(TEXT, 12)           # gold: "breast cancer" and "cisplatin"
    monkeypatch.setattr("llmner.data_processing.corpora.load_corpus", lambda corpus, split: docs)
    monkeypatch.setattr("llmner.data_processing.corpora.is_labeled", lambda corpus, split: True)
    pipe = Pipeline(RecallLimitedGenerator(), None)
    pipe.open_biases = {"genia": 0.3}
    config = CalibrationConfig(corpora=["bc5cdr"], sentences=1000, min_gold=0, bootstrap=50)
    r = calibrate_open_bias(pipe, "bc5cdr", config, [2.0, 1.0])
    assert list(r.f1_by_bias) == [0.0, 1.0, 2.0] and r.f1_by_bias[1.0] == 1.0
    assert r.f1_by_bias[0.0] < 1.0 and r.f1_by_bias[2.0] < 1.0
    assert r.best_bias == 1.0 and r.evidence == 1.0 and r.oob_gain > 0 and r.open_bias == 1.0
    assert r.schema == "bc5cdr" and r.documents == 12 and r.to_dict()["f1_by_bias"]["1.0"] == 1.0
    assert pipe.open_biases == {"genia": 0.3}          # the pipeline's own biases are left as they were
    # A bonus of 2 finds cisplatin but adds as many wrong "cancer"s: F1 0.75 against 0.8, nothing stored.
    worse = calibrate_open_bias(pipe, "bc5cdr", config, [2.0])
    assert worse.f1_by_bias == pytest.approx({0.0: 0.8, 2.0: 0.75})
    assert worse.best_bias == 0.0 and worse.open_bias == 0.0 and worse.evidence == 0.0


class ScoredLexiconGenerator(LexiconGenerator):
    """The lexicon double with a generator score per entity (span length / 10, like LengthSelector)."""

    def tag(self, requests):
        return [TagResult([dataclasses_replace(e, generator_score=min(1.0, (e.end - e.start) / 10)) for e in r.entities],
                          r.output) for r in super().tag(requests)]


def test_generator_scores_judge_the_languages_the_selector_does_not(monkeypatch):
    from llmner.evaluation.calibration import (
        CalibrationConfig,
        calibrate,
        store_calibration,
    )

    docs = _gold_docs(TEXT, 12)
    monkeypatch.setattr("llmner.data_processing.corpora.load_corpus", lambda corpus, split: docs)
    monkeypatch.setattr("llmner.data_processing.corpora.is_labeled", lambda corpus, split: True)
    # The selector judges only Chinese here, so BC5CDR's English candidates are judged by their
    # generator scores, against keeping them all.
    pipe = Pipeline(ScoredLexiconGenerator(), LengthSelector(), PipelineConfig(selector_languages=("zh",)))
    config = CalibrationConfig(corpora=["bc5cdr"], sentences=1000, min_gold=0, min_candidates=5, bootstrap=50)
    (r,) = calibrate(pipe, config, log=lambda _: None)
    assert r.judge == "generator" and r.default.generator_threshold is None and r.f1(r.default) < 1.0
    assert r.chosen.generator_threshold == 0.7 and r.f1(r.chosen) == 1.0 and r.evidence == 1.0
    manifest = BundleManifest()
    store_calibration(manifest, [r])
    assert manifest.generator_thresholds == {"bc5cdr": 0.7} and manifest.selector_thresholds == {}
    # The pipeline applies it to unjudged candidates of that schema only, and never to judged ones.
    doc = Document("d", TEXT, metadata={"schema": "bc5cdr"})
    before = {e.text for e in pipe.process([doc])[0].entities}
    pipe.generator_thresholds = dict(manifest.generator_thresholds)
    (rec,) = pipe.process([doc])
    assert "cancer" in before and {e.text for e in rec.entities} == {"breast cancer", "cisplatin"}
    assert all(e.score is None and e.generator_score >= 0.7 for e in rec.entities)
    judged = Pipeline(ScoredLexiconGenerator(), LengthSelector())
    judged.generator_thresholds = {"bc5cdr": 0.99}
    assert "cisplatin" in {e.text for e in judged.process([doc])[0].entities}      # selector 0.9 >= 0.5


def test_calibration_keeps_the_global_threshold_when_one_document_decides(monkeypatch):
    from llmner.evaluation.calibration import CalibrationConfig, calibrate

    # Eleven documents whose candidates are all right (cisplatin, 0.9) and one where "cancer" (0.6)
    # is wrong: on all of dev a cut above 0.6 wins, but no resample shows it carrying over. One that
    # draws the noisy document chooses 0.7 and leaves out only clean documents, where every cut ties;
    # one that leaves it out sees only clean documents, where every cut ties, and keeps the global one.
    clean = "Patients were given cisplatin. The cisplatin dose was low. "
    docs = _gold_docs(clean, 11, "c") + _gold_docs(TEXT, 1, "noisy")
    assert "cancer" not in clean and len(docs[0].entities) == 2
    monkeypatch.setattr("llmner.data_processing.corpora.load_corpus", lambda corpus, split: docs)
    monkeypatch.setattr("llmner.data_processing.corpora.is_labeled", lambda corpus, split: True)
    pipe = Pipeline(LexiconGenerator(), LengthSelector())
    config = CalibrationConfig(corpora=["bc5cdr"], sentences=1000, min_gold=0, min_candidates=5, bootstrap=200)
    (r,) = calibrate(pipe, config, log=lambda _: None)
    assert r.documents == 12 and r.best == SelectionRule(0.7) and r.f1(r.best) > r.f1(r.default)
    assert r.evidence == 0.0 and r.chosen == r.default
    # min_evidence 0 takes the dev-best rule whatever the resamples say.
    (always,) = calibrate(pipe, dataclasses_replace(config, min_evidence=0.0), log=lambda _: None)
    assert always.chosen == r.best


def test_calibrate_cli_writes_thresholds_the_pipeline_then_uses(tiny_bundle, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from llmner.cli.main import app

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    runner = CliRunner()
    # --min-evidence 0: the out-of-bag gate is tested above; here the write/read-back path. --min-gold 1:
    # one dev abstract (the default, 40 gold mentions, takes about eight, each decoded at every bias).
    result = runner.invoke(app, ["calibrate", str(bundle), "--corpus", "ncbi_disease", "--sentences", "2", "--min-gold", "1",
                                 "--min-candidates", "1", "--selector-backend", "torch", "--min-evidence", "0",
                                 "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(bundle)
    card = json.loads((bundle / "calibration.json").read_text())
    (entry,) = card["schemas"]
    assert entry["schema"] == "ncbi_disease" and entry["documents"] >= 1 and entry["judge"] == "selector"
    assert card["min_evidence"] == 0 and card["bootstrap"] == 20 and "evidence" in entry
    # The seeded tiny generator proposes candidates here; with --min-evidence 0 the dev-best rule is stored.
    assert entry["candidates"] > 0 and entry["chosen"] == entry["best"]
    chosen, default = SelectionRule(**entry["chosen"]), SelectionRule(**entry["default"])
    assert manifest.generator_thresholds == {}
    assert manifest.selector_thresholds == ({} if chosen.threshold == default.threshold else {"ncbi_disease": chosen.threshold})
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="torch"))
    assert pipe.selection_rule("ncbi_disease") == chosen
    assert pipe.threshold_for("bc5cdr") == pipe.threshold            # uncalibrated schema: the global one
    # An explicit threshold in the config overrides the calibrated ones.
    forced = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="torch", selector_threshold=0.9))
    assert forced.threshold_for("ncbi_disease") == 0.9
    # --candidates: the same documents' stored candidates give the same calibration without generating.
    from llmner.data_processing.corpora import load_corpus
    from llmner.evaluation.predict import PredictionCache, predict, predicted_documents
    from llmner.evaluation.subsets import leading_documents

    docs, _ = leading_documents(load_corpus("ncbi_disease", "dev"), 2, 1, from_end=True)
    live = Pipeline.from_bundle(tiny_bundle, PipelineConfig(selector_backend="torch"))
    cache = PredictionCache(tmp_path / "candidates", key={"model": "tiny"})
    cache.put("ncbi_disease", "own", predicted_documents(docs, predict(live, docs, get_schema("ncbi_disease"))))
    shutil.copytree(tiny_bundle, tmp_path / "again")
    result = runner.invoke(app, ["calibrate", str(tmp_path / "again"), "--corpus", "ncbi_disease", "--min-candidates", "1",
                                 "--selector-backend", "torch", "--min-evidence", "0", "--bootstrap", "20",
                                 "--candidates", str(tmp_path / "candidates")])
    assert result.exit_code == 0, result.output
    (stored,) = json.loads((tmp_path / "again" / "calibration.json").read_text())["schemas"]
    assert stored == entry
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "again"), "--corpus", "bc5cdr",
                                  "--candidates", str(tmp_path / "candidates")])
    assert missing.exit_code != 0 and "holds no bc5cdr.own.jsonl" in str(missing.exception)
    bad = runner.invoke(app, ["calibrate", str(bundle), "--corpus", "nope"])
    assert bad.exit_code != 0 and "unknown corpus nope" in str(bad.exception)
    # --open-bias-grid: the bonus is chosen first and written beside the thresholds.
    result = runner.invoke(app, ["calibrate", str(bundle), "--corpus", "ncbi_disease", "--sentences", "2", "--min-gold", "1",
                                 "--min-candidates", "1", "--selector-backend", "torch", "--min-evidence", "0",
                                 "--bootstrap", "20", "--open-bias-grid", "1,30"])
    assert result.exit_code == 0, result.output
    (bias,) = json.loads((bundle / "calibration.json").read_text())["open_bias"]
    assert set(bias["f1_by_bias"]) == {"0.0", "1.0", "30.0"} and bias["open_bias"] == bias["best_bias"]
    assert load_manifest(bundle).open_bias == ({"ncbi_disease": bias["open_bias"]} if bias["open_bias"] else {})
    bad_grid = runner.invoke(app, ["calibrate", str(bundle), "--corpus", "ncbi_disease", "--open-bias-grid", "1,x"])
    assert bad_grid.exit_code != 0 and "expected numbers separated by commas" in str(bad_grid.exception)


def test_schema_from_metadata_and_language_default():
    pipe = Pipeline(LexiconGenerator(), None)
    assert pipe.schema_for(Document("x", "t")).name == "biomedical_en"
    assert pipe.schema_for(Document("x", "t", language="zh")).name == "cmeee"
    doc = Document("x", TEXT, metadata={"schema": "ncbi_disease"})
    assert pipe.schema_for(doc).name == "ncbi_disease"
    rec = pipe.process([doc])[0]
    assert {e.type for e in rec.entities} == {"Disease"}    # the schema restricts the types
    with pytest.raises(ConfigError):
        PipelineConfig(selector_backend="tensorrt")


def test_biomedical_default_schema_has_the_six_types():
    schema = get_schema("biomedical_en")
    assert schema.type_names == ("Disease", "Chemical", "Gene", "Species", "CellType", "CellLine")
    assert all(len(t.definition) > 40 for t in schema.types)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A real bundle: a tiny Llama generator (GeneratorModel, LoRA) + a tiny BERT selector."""
    from llmner.testing import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "bundle", selector_threshold=0.3)


def test_pipeline_from_bundle_with_tiny_generator_and_selector(tiny_bundle):
    assert load_manifest(tiny_bundle).selector_threshold == 0.0
    cfg = PipelineConfig(selector_backend="torch", chunking=ChunkingConfig(max_tokens=24, overlap_tokens=4))
    pipe = Pipeline.from_bundle(tiny_bundle, cfg)
    assert isinstance(pipe.selector, TorchSelectorRuntime) and pipe.threshold == 0.0
    assert pipe.model_ids == {"generator": "gen-tiny", "selector": "sel-tiny", "bundle": "tiny"}
    docs = [Document("a", "BRCA1 is mutated in breast cancer. Cisplatin inhibits tumour growth in mice."),
            Document("b", "HeLa cells were treated.", metadata={"schema": "ncbi_disease"})]
    records = pipe.process(docs)
    chunks = pipe.chunk(docs[0])
    direct = pipe.assemble(docs[0], chunks, pipe.infer_chunks(chunks, pipe.schema_for(docs[0])))
    assert [e.key for e in direct.entities] == [e.key for e in records[0].entities]
    for doc, rec in zip(docs, records):
        schema = pipe.schema_for(doc)
        for e in rec.entities:   # whatever the random generator tagged: exact offsets, known types, scored
            assert e.text == doc.text[e.start:e.end] and 0 <= e.start < e.end <= len(doc.text)
            assert e.type in schema and e.score is not None and 0.0 <= e.score <= 1.0
            assert e.text == e.text.strip()   # whitespace at span edges is trimmed, blank spans dropped
    assert any(r.entities for r in records)   # the random generator does tag something
    # Threshold 1.0 drops every scored candidate.
    strict = Pipeline.from_bundle(tiny_bundle, PipelineConfig(selector_backend="torch", selector_threshold=1.0))
    assert all(not r.entities or all(e.score >= 1.0 for e in r.entities) for r in strict.process(docs))


def test_from_bundle_leaves_the_callers_config_as_passed(tiny_bundle, tmp_path):
    import shutil

    from llmner.bundle import write_manifest

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    manifest.default_schemas, manifest.selector_languages = {"en": "ncbi_disease"}, ["en"]
    write_manifest(bundle, manifest)
    cfg = PipelineConfig(selector_backend="torch")
    pipe = Pipeline.from_bundle(bundle, cfg)
    assert pipe.config.default_schemas["en"] == "ncbi_disease" and pipe.config.selector_languages == ("en",)
    assert cfg.default_schemas["en"] == "biomedical_en" and cfg.selector_languages is None


def test_open_bias_per_schema_from_the_bundle_and_the_configs_override(tiny_bundle, tmp_path):
    """Each chunk's request carries its schema's calibrated bonus for opening a tag; the config's
    value, when set, applies to every schema."""
    import shutil

    from llmner.bundle import write_manifest

    class Recording(LexiconGenerator):
        def tag(self, requests):
            self.biases = [(r.schema.name, r.open_bias) for r in requests]
            return super().tag(requests)

    gen = Recording()
    pipe = Pipeline(gen, None)
    pipe.open_biases = {"ncbi_disease": 1.5}
    pipe.process([Document("a", TEXT, metadata={"schema": "ncbi_disease"}), Document("b", TEXT, metadata={"schema": "bc5cdr"})])
    assert set(gen.biases) == {("ncbi_disease", 1.5), ("bc5cdr", 0.0)}
    forced = Pipeline(gen, None, PipelineConfig(open_bias=-0.5))
    forced.open_biases = {"ncbi_disease": 1.5}
    forced.process([Document("a", TEXT, metadata={"schema": "ncbi_disease"})])
    assert set(gen.biases) == {("ncbi_disease", -0.5)}
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    manifest.open_bias = {"cmeee": 1.0}
    write_manifest(bundle, manifest)
    assert Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none")).open_biases == {"cmeee": 1.0}
    (bundle / "bundle.json").write_text(json.dumps({**manifest.to_dict(), "open_bias": {"cmeee": "high"}}))
    with pytest.raises(ConfigError, match="open_bias must map schema names to numbers"):
        load_manifest(bundle)


def test_bundle_sentences_per_chunk_sets_the_pipelines_chunking_unless_the_caller_chose(tiny_bundle, tmp_path):
    """A generator trained on chunks of several sentences is served on chunks of as many."""
    import shutil

    from llmner.bundle import write_manifest

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    manifest.sentences_per_chunk = 4
    write_manifest(bundle, manifest)
    assert load_manifest(bundle).sentences_per_chunk == 4
    assert Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none")).config.chunking.sentences_per_chunk == 4
    own = PipelineConfig(selector_backend="none", chunking=ChunkingConfig(max_tokens=64))
    assert Pipeline.from_bundle(bundle, own).config.chunking == ChunkingConfig(max_tokens=64)
    text = "APC causes cancer. BRCA1 too. So does TP53. And KRAS."
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none"))
    assert [c.text for c in pipe.chunk(Document("d", text))] == [text]
    (bundle / "bundle.json").write_text(json.dumps({**manifest.to_dict(), "sentences_per_chunk": 0}))
    with pytest.raises(ConfigError, match="sentences_per_chunk must be an integer >= 1"):
        load_manifest(bundle)


def test_from_bundle_puts_a_training_checkpoints_adapter_in_place_of_the_generators(tiny_bundle, tmp_path,
                                                                                     monkeypatch):
    """``generator_adapter``: the bundle with a checkpoint's LoRA weights (how benchmarks/schemas.py and
    benchmarks/ablation.py score a run's checkpoints on the shipped generator)."""
    import shutil
    import sys
    from pathlib import Path

    import torch

    from llmner import bundle as bundle_module
    from llmner.bundle import GENERATOR_DIR
    from llmner.modeling.generator import GeneratorModel
    from llmner.training.checkpoint import save_checkpoint

    def lora(pipe: Pipeline) -> dict:
        return {k: v for k, v in pipe.generator.tag_generator.model.state_dict().items() if "lora_" in k}

    def folded(pipe: Pipeline) -> dict:
        """The generator's weights with any adapter folded in (pipelines merge it by default)."""
        return {k: v for k, v in pipe.generator.tag_generator.model.state_dict().items() if "proj" in k}

    # A checkpoint as a training run writes one: the bundle's generator, its LoRA weights moved.
    trained = GeneratorModel.from_pretrained(tiny_bundle / GENERATOR_DIR)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in trained.model.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.5)
    checkpoint = save_checkpoint(tmp_path / "run" / "checkpoints", 7, trained.model, {})
    want = {k: v for k, v in trained.model.state_dict().items() if "lora_" in k}
    want_folded = {k: v for k, v in trained.merged_model().state_dict().items() if "proj" in k}

    # fp32: the weights are compared exactly (bf16 matrix multiplies store them in bf16)
    cfg = PipelineConfig(selector_backend="none", normalize=False, merge_adapter=False, generator_precision="fp32")
    stock = lora(Pipeline.from_bundle(tiny_bundle, cfg))
    grafted = Pipeline.from_bundle(tiny_bundle, cfg, generator_adapter=checkpoint)
    assert stock.keys() == want.keys() == lora(grafted).keys()
    assert all(torch.equal(lora(grafted)[k], want[k]) for k in want)
    assert not all(torch.equal(stock[k], want[k]) for k in want)
    assert grafted.model_ids["generator"] == f"gen-tiny + {checkpoint}"
    docs = [Document("a", "BRCA1 is mutated in breast cancer.")]
    assert len(grafted.process(docs)) == 1

    # None: the default bundle, as benchmarks/ablation.py loads it; benchmarks/schemas.py's loader.
    monkeypatch.setattr(bundle_module, "default_bundle_path", lambda: Path(tiny_bundle))
    assert all(torch.equal(v, want[k]) for k, v in lora(Pipeline.from_bundle(None, cfg, generator_adapter=checkpoint)).items())
    # Merged (the default): no LoRA layers left, the checkpoint's weights folded into the projections.
    merged = Pipeline.from_bundle(None, PipelineConfig(selector_backend="none", normalize=False, generator_precision="fp32"),
                                  generator_adapter=checkpoint)
    assert not lora(merged) and folded(merged).keys() == want_folded.keys()
    assert all(torch.allclose(v, want_folded[k], atol=1e-6) for k, v in folded(merged).items())
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("schemas", None)
    from schemas import build_pipeline

    threads = torch.get_num_threads()
    try:
        pipe, name = build_pipeline(str(tiny_bundle), str(checkpoint), threads=1, precision="fp32")
    finally:
        torch.set_num_threads(threads)
    assert name == f"{Path(tiny_bundle).name} + {checkpoint}" and pipe.model_ids["generator"] == name
    assert pipe.selector is None and pipe.normalizer is None and pipe.generator.mode == "speculative"
    assert folded(pipe).keys() == want_folded.keys()
    assert all(torch.allclose(v, want_folded[k], atol=1e-6) for k, v in folded(pipe).items())

    # An adapter of another shape, a directory without one, and no bundle to put it in are refused.
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    config_file = other / "adapter" / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "r": 3}))
    with pytest.raises(ConfigError, match="r=3"):
        Pipeline.from_bundle(tiny_bundle, cfg, generator_adapter=other)
    with pytest.raises(DataNotFoundError, match="adapter_model.safetensors"):
        Pipeline.from_bundle(tiny_bundle, cfg, generator_adapter=tmp_path / "nowhere")
    monkeypatch.setattr(bundle_module, "default_bundle_path", lambda: None)
    with pytest.raises(ConfigError, match="no model bundle"):
        Pipeline.from_bundle(None, cfg, generator_adapter=checkpoint)


def test_bundle_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="not a model bundle"):
        load_manifest(tmp_path)
    (tmp_path / "generator").mkdir()
    (tmp_path / "bundle.json").write_text(json.dumps({**BundleManifest().to_dict(), "format_version": 9}))
    with pytest.raises(ConfigError, match="format_version"):
        load_manifest(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps(BundleManifest().to_dict()))
    with pytest.raises(DataNotFoundError, match="selector"):
        load_manifest(tmp_path)


# ---- CLI and corpus evaluation --------------------------------------------------------------------

def test_tag_cli_writes_jsonl_and_bioc_with_scores_and_model_ids(tiny_bundle, tmp_path):
    from typer.testing import CliRunner

    from llmner.cli.main import app
    from llmner.data_processing.corpora import read_jsonl

    src = tmp_path / "notes.txt"
    src.write_text("BRCA1 is mutated in breast cancer.\nCisplatin inhibits tumour growth in mice.\n")
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["tag", str(src), "--lines", "--output", str(out), "--model", str(tiny_bundle),
                              "--selector-backend", "torch"])
    assert res.exit_code == 0, res.output
    docs = read_jsonl(out)
    assert [d.id for d in docs] == ["notes-1", "notes-2"]
    assert all(d.metadata["model_ids"]["selector"] == "sel-tiny" for d in docs)
    assert any(d.entities for d in docs)
    for d in docs:
        for e in d.entities:
            assert e.text == d.text[e.start:e.end] and e.score is not None
    xml = tmp_path / "out.xml"
    res = runner.invoke(app, ["tag", str(out), "--output", str(xml), "--model", str(tiny_bundle), "--selector-backend", "torch"])
    assert res.exit_code == 0, res.output
    content = xml.read_text()
    assert 'key="model.selector">sel-tiny<' in content and 'key="score"' in content
    res = runner.invoke(app, ["tag", str(src), "--output", str(tmp_path / "x.jsonl"), "--format", "yaml"])
    assert res.exit_code != 0


class SurfaceGenerator(GeneratorRuntime):
    """Tags every occurrence of known surfaces (Disease) and the same span extended by one word (a
    boundary error): a generator double with known true and false positives."""

    model_id = "surface-v1"

    def __init__(self, surfaces):
        self.surfaces = sorted(surfaces, key=len, reverse=True)

    def tag(self, requests):
        out = []
        for req in requests:
            ents = []
            for surface in self.surfaces:
                for m in re.finditer(re.escape(surface), req.text):
                    ents.append(Entity(m.start(), m.end(), "Disease", surface))
                    nxt = re.match(r"\s+\w+", req.text[m.end():])
                    if nxt:
                        ents.append(Entity(m.start(), m.end() + nxt.end(), "Disease"))
            out.append(TagResult(ents, req.text))
        return out


class SurfaceSelector(SelectorRuntime):
    model_id = "surface-sel"
    threshold = 0.5

    def __init__(self, surfaces):
        self.surfaces = set(surfaces)

    def score(self, candidates):
        return np.array([0.9 if c.text[c.start:c.end] in self.surfaces else 0.1 for c in candidates], dtype=np.float32)


def test_corpus_evaluation_scores_with_and_without_selector():
    from rich.console import Console

    from llmner.cli.evaluate import print_corpus_evaluation
    from llmner.data_processing.corpora import corpus_schema, data_dir, load_corpus
    from llmner.evaluation.corpus_eval import evaluate_documents, labeled_documents

    if not (data_dir() / "ncbi_disease").is_dir():
        pytest.skip("NCBI-Disease not available")
    gold = load_corpus("ncbi_disease", "dev")[:3]
    surfaces = {e.text for d in gold for e in d.entities}
    pipe = Pipeline(SurfaceGenerator(surfaces), SurfaceSelector(surfaces))
    done = []
    evaluation = evaluate_documents(pipe, labeled_documents("ncbi_disease", "dev", limit=3), corpus_schema("ncbi_disease"),
                                    "ncbi_disease", "dev", batch_documents=2, on_batch=done.append)
    assert done == [2, 3] and [d.id for d in evaluation.alone] == [d.id for d in gold]
    result = evaluation.to_dict()
    assert result["documents"] == 3
    alone, with_sel = result["without_selector"], result["with_selector"]
    effect = result["selector_effect"]
    assert alone["predicted_entities"] > with_sel["predicted_entities"] > 0
    assert sum(len(d.entities) for d in evaluation.selected) == with_sel["predicted_entities"]
    assert effect["dropped_candidates"] == alone["predicted_entities"] - with_sel["predicted_entities"]
    # The selector removed only boundary errors: precision up, recall unchanged.
    assert effect["precision"] > 0 and effect["recall"] == 0 and effect["dropped_true_positives"] == 0
    assert with_sel["strict"]["micro"]["recall"] > 0.5
    console = Console(record=True, width=140)
    print_corpus_evaluation(evaluation, console)
    text = console.export_text()
    assert "generator alone" in text and "selector effect" in text and "Disease" in text


def test_corpus_evaluation_in_parts_resumes_from_stored_parts(tmp_path):
    """A whole split takes hours: parts are stored as they finish, and a rerun reads them back instead
    of predicting again, with the same scores as one uninterrupted pass."""
    from llmner.data_processing.corpora import corpus_schema, data_dir, load_corpus
    from llmner.evaluation.corpus_eval import evaluate_documents

    if not (data_dir() / "ncbi_disease").is_dir():
        pytest.skip("NCBI-Disease not available")
    gold = load_corpus("ncbi_disease", "dev")[:5]
    surfaces = {e.text for d in gold for e in d.entities}
    schema = corpus_schema("ncbi_disease")
    whole = evaluate_documents(Pipeline(SurfaceGenerator(surfaces), SurfaceSelector(surfaces)), gold, schema,
                               "ncbi_disease", "dev")
    parts = tmp_path / "parts"
    first = evaluate_documents(Pipeline(SurfaceGenerator(surfaces), SurfaceSelector(surfaces)), gold[:3], schema,
                               "ncbi_disease", "dev", parts_dir=parts, part_documents=2)
    assert sorted(p.name for p in parts.iterdir()) == ["part-0000000.json", "part-0000002.json"]
    # An interrupted run: the first part is kept; the second held only 1 document then and is redone.

    class CountingGenerator(SurfaceGenerator):
        calls = 0

        def tag(self, requests):
            CountingGenerator.calls += len(requests)
            return super().tag(requests)

    pipe = Pipeline(CountingGenerator(surfaces), SurfaceSelector(surfaces))
    resumed = evaluate_documents(pipe, gold, schema, "ncbi_disease", "dev", parts_dir=parts, part_documents=2)
    assert 0 < CountingGenerator.calls < sum(len(pipe.chunk(d)) for d in gold)   # part 1 read back, parts 2-3 predicted
    assert resumed.to_dict()["without_selector"] == whole.to_dict()["without_selector"]
    assert resumed.to_dict()["with_selector"] == whole.to_dict()["with_selector"]
    assert [d.entities for d in resumed.alone[:3]] == [d.entities for d in first.alone]


def test_parts_filled_from_both_ends_give_one_pass_records_in_document_order(tmp_path):
    """Two processes share a split: one goes forward, one from the end. Each reads back what the other
    stored, and both return the records in document order, the same as one uninterrupted pass."""
    from llmner.data_processing.corpora import corpus_schema, data_dir, load_corpus
    from llmner.evaluation.predict import predict, predict_in_parts

    if not (data_dir() / "ncbi_disease").is_dir():
        pytest.skip("NCBI-Disease not available")
    docs = load_corpus("ncbi_disease", "dev")[:5]
    surfaces = {e.text for d in docs for e in d.entities}
    schema = corpus_schema("ncbi_disease")

    class OrderRecordingGenerator(SurfaceGenerator):
        def __init__(self, surfaces):
            super().__init__(surfaces)
            self.first_chunks: list[str] = []

        def tag(self, requests):
            self.first_chunks.append(requests[0].text)
            return super().tag(requests)

    def outputs(records):
        return [(r.document_id, r.to_dict()["entities"]) for r in records]

    whole = outputs(predict(Pipeline(SurfaceGenerator(surfaces)), docs, schema))
    parts = tmp_path / "parts"
    backward_gen = OrderRecordingGenerator(surfaces)
    backward, _ = predict_in_parts(Pipeline(backward_gen), docs, schema, parts, part_documents=2, from_end=True)
    assert backward_gen.first_chunks[0] in docs[4].text   # it began with the last part
    assert outputs(backward) == whole
    # As if the backward process had stored only its first part (the last documents) when the forward
    # one started:
    (parts / "part-0000000.json").unlink()
    (parts / "part-0000002.json").unlink()
    forward_gen = OrderRecordingGenerator(surfaces)
    forward, _ = predict_in_parts(Pipeline(forward_gen), docs, schema, parts, part_documents=2)
    assert not any(c in docs[4].text for c in forward_gen.first_chunks)   # the last part was read back
    assert outputs(forward) == whole


def test_a_merged_adapter_tags_as_the_unmerged_one(tiny_bundle, tmp_path):
    """``merge_adapter`` (the default) folds the LoRA into the weights: the same entities, faster."""
    import torch

    from llmner.bundle import GENERATOR_DIR
    from llmner.modeling.generator import GeneratorModel
    from llmner.training.checkpoint import save_checkpoint

    trained = GeneratorModel.from_pretrained(tiny_bundle / GENERATOR_DIR)
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in trained.model.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.5)   # an adapter that changes the output
    checkpoint = save_checkpoint(tmp_path / "run" / "checkpoints", 3, trained.model, {})
    texts = ["BRCA1 is mutated in breast cancer.", "Aspirin reduced fever in mice with influenza.",
             "IL-2 gene expression in T cells requires NF-kappa B."]
    outputs = {}
    for merge in (False, True):
        # fp32: folding the adapter in changes fp32 rounding only; bf16 would round the two differently
        pipe = Pipeline.from_bundle(tiny_bundle, PipelineConfig(selector_backend="none", normalize=False, merge_adapter=merge,
                                                                generator_precision="fp32"),
                                    generator_adapter=checkpoint)
        outputs[merge] = [[(e.start, e.end, e.type) for e in d.entities] for d in pipe.pipe(texts)]
    assert outputs[True] == outputs[False] and any(outputs[True])


def test_a_schema_prompted_under_another_naming_reports_its_own_type_names(tiny_bundle, tmp_path):
    """prompt_schemas: the generator sees the prompted schema's names; entities come out under the requested
    schema's names; thresholds and biases are those calibrated on the prompted schema."""
    import shutil

    from llmner.bundle import write_manifest
    from llmner.schema import EntitySchema, EntityType

    codes = EntitySchema("codes", "en", (EntityType("dis", "disease code"), EntityType("chem", "chemical code")))
    readable = EntitySchema("readable", "en", (EntityType("Disease", "a disease", ("dis",)),
                                               EntityType("Drug", "a drug or chemical", ("chem",))))

    class CodeTagger(LexiconGenerator):
        def tag(self, requests):
            self.seen = [(r.schema.name, r.open_bias) for r in requests]
            out = []
            for req in requests:
                ents = [Entity(m.start(), m.end(), code, m.group()) for surface, code in
                        (("breast cancer", "dis"), ("cisplatin", "chem")) for m in re.finditer(surface, req.text)
                        if code in req.schema]
                out.append(TagResult(ents, req.text))
            return out

    class Definitions(LengthSelector):
        def score(self, candidates):
            self.definitions = {c.type: c.definition for c in candidates}
            return super().score(candidates)

    gen, selector = CodeTagger(), Definitions()
    pipe = Pipeline(gen, selector)
    pipe.add_schema(codes)
    pipe.add_schema(readable)
    pipe.prompt_schemas = {"readable": "codes"}
    pipe.open_biases, pipe.thresholds = {"codes": 0.7}, {"codes": 0.95}
    (record,) = pipe.process([Document("a", "breast cancer; cisplatin", metadata={"schema": "readable"})])
    assert gen.seen == [("codes", 0.7)]
    assert selector.definitions == {"Disease": "a disease", "Drug": "a drug or chemical"}
    assert [(e.text, e.type) for e in record.entities] == [("breast cancer", "Disease")]   # cisplatin 0.9 < 0.95
    assert pipe.threshold_for("readable") == 0.95 and pipe.open_bias_for(readable) == 0.7
    (as_codes,) = pipe.process([Document("b", "breast cancer", metadata={"schema": "codes"})])
    assert [e.type for e in as_codes.entities] == ["dis"]          # asked for the codes: codes come out

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    manifest.prompt_schemas = {"clinical_zh": "cmeee"}
    write_manifest(bundle, manifest)
    assert Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none")).prompt_schemas == {"clinical_zh": "cmeee"}
    manifest.prompt_schemas = {"clinical_zh": "bc5cdr"}
    write_manifest(bundle, manifest)
    with pytest.raises(ConfigError, match="different languages"):      # refused at load, not on the first note
        Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="none"))
    (bundle / "bundle.json").write_text(json.dumps({**manifest.to_dict(), "prompt_schemas": {"clinical_zh": 3}}))
    with pytest.raises(ConfigError, match="prompt_schemas must map schema names"):
        load_manifest(bundle)


def test_choice_evidence_compares_two_ways_of_choosing_out_of_bag():
    import numpy as np

    from llmner.evaluation.calibration import best_option, choice_evidence

    rows = 30
    plain = np.tile([3.0, 2.0, 2.0], (rows, 1))           # (tp, fp, fn) per document
    better = np.tile([4.0, 1.0, 1.0], (rows, 1))
    same = plain.copy()
    counts = {"plain": plain, "better": better, "same": same}
    assert best_option(counts, ["plain", "same"], np.arange(rows)) == "plain"          # ties: the earliest
    assert choice_evidence(counts, ["plain", "better"], ["plain"], 50) == (1.0, pytest.approx(0.2))
    assert choice_evidence(counts, ["plain", "same"], ["plain"], 50) == (0.0, 0.0)      # a tie never wins
    # A better option on half the documents only, worse on the rest: the choice is rarely better out of bag.
    mixed = np.vstack([np.tile([5.0, 0.0, 0.0], (rows // 2, 1)), np.tile([0.0, 5.0, 5.0], (rows - rows // 2, 1))])
    share, gain = choice_evidence({"plain": plain, "mixed": mixed}, ["plain", "mixed"], ["plain"], 200)
    assert share < 0.8 and gain < 0.05
