"""A tokens-head selector proposes the spans it tags; the pipeline keeps those scored at a schema's
proposal threshold, marks them ``source="selector"``, and rescoring derives them from stored parts."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from llmner.bundle import BundleManifest
from llmner.decoding.consistency import ConsistencyConfig
from llmner.doc import Candidate, Document, Entity
from llmner.errors import ConfigError, ValidationError
from llmner.evaluation.predict import predict
from llmner.evaluation.rescore import rescore_records
from llmner.modeling.selector import (
    TOKEN_B,
    TOKEN_I,
    TOKEN_O,
    SelectorConfig,
    SelectorModel,
    TokenWindow,
    decode_spans,
)
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.runtime.base import (
    GeneratorRuntime,
    ProposalRequest,
    Proposals,
    SelectorRuntime,
    TagResult,
)
from llmner.runtime.onnx_selector import OnnxSelectorRuntime
from llmner.runtime.torch_selector import TorchSelectorRuntime
from llmner.schema import EntitySchema, EntityType
from llmner.testing import build_tiny_bert

SCHEMA = EntitySchema("toy", "en", (EntityType("Gene", "a gene or protein"), EntityType("Disease", "a disease")))


def one_hot(labels: list[int]) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[labels]


def test_decode_reads_b_then_i_and_runs_to_the_end_of_a_split_word():
    text = "BRCA1 mutations cause breast cancer."
    window = TokenWindow(text, 0, len(text), "Disease", "Disease")
    # pieces: "brca" "1" "mutations" "cause" "breast" "can" "cer" "." and one padding piece
    offsets = np.array([(0, 4), (4, 5), (6, 15), (16, 21), (22, 28), (29, 32), (32, 35), (35, 36), (0, 0)])
    labels = [TOKEN_B, TOKEN_O, TOKEN_O, TOKEN_O, TOKEN_B, TOKEN_I, TOKEN_O, TOKEN_O, TOKEN_B]
    spans = decode_spans(window, offsets, one_hot(labels))
    # "BRCA" runs on to "BRCA1" (same word); "breast can" runs on to "cancer"; padding opens nothing.
    assert [text[s:e] for s, e in spans] == ["BRCA1", "breast cancer"]
    # A window that starts inside the chunk reports chunk offsets.
    shifted = TokenWindow("xx " + text, 3, 3 + len(text), "Disease", "Disease")
    assert decode_spans(shifted, offsets, one_hot(labels)) == [(s + 3, e + 3) for s, e in spans]


def test_decode_never_runs_a_span_on_through_chinese_characters():
    """Each CJK character is a word of its own: a span the tagger closes after 高血 stays 高血, and one
    after 压 does not swallow the characters after it (there are no spaces to stop it)."""
    text = "患者高血压病史"
    window = TokenWindow(text, 0, len(text), "dis", "dis")
    offsets = np.array([(i, i + 1) for i in range(len(text))])
    labels = [TOKEN_O, TOKEN_O, TOKEN_B, TOKEN_I, TOKEN_I, TOKEN_O, TOKEN_O]
    assert [text[s:e] for s, e in decode_spans(window, offsets, one_hot(labels))] == ["高血压"]
    labels = [TOKEN_O, TOKEN_O, TOKEN_B, TOKEN_I, TOKEN_O, TOKEN_O, TOKEN_O]
    assert [text[s:e] for s, e in decode_spans(window, offsets, one_hot(labels))] == ["高血"]


@pytest.fixture(scope="module")
def tokens_selector(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("proposals")
    enc = build_tiny_bert(root / "enc", hidden=64, layers=2)
    model = SelectorModel.from_encoder(SelectorConfig(encoder=str(enc), head="tokens", trainable_layers=1,
                                                      save_dtype="float32", context_chars=40, model_id="sel-tokens"))
    with torch.no_grad():
        model.head[-1].weight.mul_(20.0)     # a spread of piece labels, so that some spans are tagged
    model.save_pretrained(root / "selector")
    return root / "selector"


def test_windows_cover_a_long_chunk(tokens_selector):
    featurizer = TorchSelectorRuntime.from_pretrained(tokens_selector).token_featurizer()
    text = " ".join(f"word{i}" for i in range(60))
    windows = featurizer.chunk_windows(text, "Gene", "a gene")
    assert len(windows) > 1 and all(w.right - w.left <= 80 for w in windows)
    covered = set().union(*(range(w.left, w.right) for w in windows))
    assert covered == set(range(len(text)))
    assert windows[0].prefix == "Gene: a gene"
    assert featurizer.chunk_windows("short text", "Gene", "") == [TokenWindow("short text", 0, 10, "Gene", "Gene")]


def test_torch_and_onnx_runtimes_propose_the_same_spans(tokens_selector, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    torch_rt = TorchSelectorRuntime.from_pretrained(tokens_selector)
    onnx_rt = OnnxSelectorRuntime(tokens_selector, device="cpu", variant="fp32")
    texts = ["BRCA1 mutations cause breast cancer in women.",
             " ".join(f"The p{i} protein binds DNA and causes a syndrome." for i in range(6))]
    requests = [ProposalRequest(t, (("Gene", "a gene"), ("Disease", "a disease"))) for t in texts]
    found = torch_rt.propose(requests).spans
    assert found == onnx_rt.propose(requests).spans
    assert sum(map(len, found)) > 0
    for text, cands in zip(texts, found):
        keys = [(c.start, c.end, c.type) for c in cands]
        assert len(keys) == len(set(keys))
        for c in cands:
            assert c.text == text and 0 <= c.start < c.end <= len(text) and c.text[c.start:c.end].strip() == c.text[c.start:c.end]
            assert c.definition == ("a gene" if c.type == "Gene" else "a disease")
    assert torch_rt.can_propose and onnx_rt.can_propose



@pytest.mark.parametrize("backend", ["onnx-int8", "torch"])
def test_candidates_are_read_off_the_rows_proposing_ran(tokens_selector, tmp_path, monkeypatch, backend):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    runtime = (OnnxSelectorRuntime(tokens_selector, device="cpu", variant="int8") if backend == "onnx-int8"
               else TorchSelectorRuntime.from_pretrained(tokens_selector))
    short = "BRCA1 mutations cause breast cancer."                   # within 2 * context_chars: one row per type
    long = " ".join(f"The p{i} protein binds DNA and causes a syndrome." for i in range(4))
    types = (("Gene", "a gene"), ("Disease", "a disease"))
    proposals = runtime.propose([ProposalRequest(short, types), ProposalRequest(long, types), ProposalRequest(short, types)])
    # A repeated chunk is read once: 2 rows for the short chunk, and the long chunk's windows.
    featurizer = runtime.token_featurizer()
    assert len(proposals.rows) == 2 + sum(len(featurizer.chunk_windows(long, t, d)) for t, d in types)
    assert proposals.spans[0] == proposals.spans[2]
    words = [(m.start(), m.end()) for m in re.finditer(r"\w+", short)] + [(0, 15), (22, 35)]
    candidates = [Candidate(short, s, e, t, d) for s, e in words for t, d in types]
    candidates += [Candidate(long, m.start(), m.end(), "Gene", "a gene") for m in re.finditer(r"p\d", long)]
    encoded: list[Candidate] = []
    plain_score = runtime.score

    def counting_score(cands):
        encoded.extend(cands)
        return plain_score(cands)

    want = runtime.score(candidates)
    monkeypatch.setattr(runtime, "score", counting_score)
    got = runtime.score_with_rows(candidates, proposals.rows)
    # Every candidate of the short chunk is read off its row; a long chunk's candidate window is its own.
    assert encoded and all(c.text == long for c in encoded)
    if backend == "onnx-int8":
        np.testing.assert_array_equal(got, want)      # each row is encoded alone either way: the same bits
    else:
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(want) > 0.01                      # the scores differ between candidates: the check can fail

class Generator(GeneratorRuntime):
    """Tags "cancer" as a disease, nothing else."""

    model_id = "gen"

    def tag(self, requests):
        return [TagResult([Entity(m.start(), m.end(), "Disease", "cancer") for m in re.finditer("cancer", r.text)], r.text)
                for r in requests]


class ProposingSelector(SelectorRuntime):
    """Proposes every "BRCA1" as a gene and every "cancer" as a disease; scores a gene 0.9 where the
    chunk mentions mutations and 0.6 elsewhere, a disease 0.7."""

    model_id = "proposing"
    threshold = 0.5

    def __init__(self) -> None:
        self.proposed: list[ProposalRequest] = []

    @property
    def can_propose(self) -> bool:
        return True

    def propose(self, requests):
        self.proposed += requests
        return Proposals([[Candidate(r.text, m.start(), m.end(), t, d) for t, d in r.types
                           for m in re.finditer("BRCA1" if t == "Gene" else "cancer", r.text)] for r in requests], {})

    def score(self, candidates):
        return np.array([0.7 if c.type == "Disease" else (0.9 if "mutations" in c.text else 0.6) for c in candidates],
                        dtype=np.float32)


DOCS = [Document("d1", "BRCA1 mutations cause cancer. BRCA1 was seen."), Document("d2", "No genes in this cancer note.")]


def pipeline(proposal: float | None, per_schema: dict | None = None, **config) -> Pipeline:
    pipe = Pipeline(Generator(), ProposingSelector(), PipelineConfig(consistency=ConsistencyConfig.off(), **config))
    pipe.add_schema(SCHEMA)
    pipe.proposal_threshold = proposal
    pipe.proposal_thresholds = per_schema or {}
    return pipe


def genes(pipe: Pipeline) -> list[tuple[str, float, str]]:
    out = []
    for doc in DOCS:
        doc = Document(doc.id, doc.text, metadata={"schema": "toy"})
        for record in pipe.process([doc]):
            out += [(e.text, round(e.score, 2), e.source) for e in record.entities if e.type == "Gene"]
    return out


def test_proposals_are_kept_at_the_schema_s_proposal_threshold():
    assert genes(pipeline(0.8)) == [("BRCA1", 0.9, "selector")]
    assert genes(pipeline(0.5)) == [("BRCA1", 0.9, "selector"), ("BRCA1", 0.6, "selector")]
    # Per schema: its own threshold wins over the global one; None there turns proposals off.
    assert genes(pipeline(0.8, {"toy": 0.5})) == [("BRCA1", 0.9, "selector"), ("BRCA1", 0.6, "selector")]
    assert genes(pipeline(0.5, {"toy": None})) == []
    assert genes(pipeline(None)) == [] and genes(pipeline(0.5, proposals=False)) == []


def test_the_generator_s_own_candidates_are_not_proposed_twice():
    pipe = pipeline(0.5)
    records = pipe.process([Document("d1", DOCS[0].text, metadata={"schema": "toy"})], select=False)
    diseases = [e for e in records[0].entities if e.type == "Disease"]
    assert [(e.text, e.source) for e in diseases] == [("cancer", "generator")]
    assert {e.source for e in records[0].entities if e.type == "Gene"} == {"selector"}
    as_dict = records[0].entities[0].to_dict()
    assert as_dict["source"] == "selector" and Entity.from_dict(as_dict).source == "selector"
    assert "source" not in diseases[0].to_dict()
    with pytest.raises(ValidationError, match="source"):
        Entity.from_dict({"start": 0, "end": 1, "type": "Gene", "source": "oracle"})


def test_a_span_head_selector_cannot_propose():
    class Scorer(SelectorRuntime):
        def score(self, candidates):
            return np.zeros(len(candidates), dtype=np.float32)

    assert not Scorer().can_propose
    with pytest.raises(ConfigError, match="tokens head"):
        Scorer().propose([ProposalRequest("text", (("Gene", ""),))])
    # The pipeline never asks a selector that cannot propose.
    pipe = Pipeline(Generator(), Scorer(), PipelineConfig(consistency=ConsistencyConfig.off()))
    pipe.proposal_threshold = 0.1
    assert pipe.proposal_threshold_for(SCHEMA) is None


def test_rescoring_stored_records_adds_the_proposals_a_rerun_adds():
    old = predict(pipeline(None), DOCS, SCHEMA)
    assert all(e.source == "generator" for r in old for e in r.entities)
    new_pipe = pipeline(0.5)
    rerun = predict(new_pipe, DOCS, SCHEMA)
    rescored, _ = rescore_records(new_pipe, DOCS, old, SCHEMA)
    for got, want in zip(rescored, rerun):
        key = lambda e: (e.start, e.end, e.type, e.source, round(e.score, 4))
        assert sorted(map(key, got.record.entities)) == sorted(map(key, want.entities))
        assert len(got.bounds) == len(got.record.entities)
    assert any(e.source == "selector" for r in rescored for e in r.record.entities)


def test_the_manifest_checks_proposal_thresholds():
    fields = BundleManifest().to_dict()
    assert BundleManifest.from_dict({**fields, "proposal_threshold": 0.8, "proposal_thresholds": {"a": None, "b": 0.7}})
    for bad in ({"proposal_threshold": 1.5}, {"proposal_threshold": True}, {"proposal_thresholds": {"a": "x"}}):
        with pytest.raises(ConfigError, match="proposal_threshold"):
            BundleManifest.from_dict({**fields, **bad})


def test_evaluation_scores_the_generator_alone_without_the_selector_s_spans():
    from llmner.evaluation.corpus_eval import evaluate_documents

    gold = [Document(d.id, d.text, entities=[Entity(m.start(), m.end(), "Gene", "BRCA1") for m in re.finditer("BRCA1", d.text)])
            for d in DOCS]
    result = evaluate_documents(pipeline(0.5), gold, SCHEMA, "toy", "dev")
    assert all(e.source == "generator" for d in result.alone for e in d.entities)
    assert result.without_selector.strict.recall == 0.0          # the generator tags no gene
    assert result.with_selector.strict.recall == 1.0             # the selector's own spans find both


class SpanGenerator(Generator):
    """Also tags "BRCA1 mutations" as one gene: the proposal "BRCA1" overlaps it."""

    def tag(self, requests):
        out = super().tag(requests)
        for request, result in zip(requests, out):
            result.entities += [Entity(m.start(), m.end(), "Gene", m.group()) for m in re.finditer("BRCA1 mutations", request.text)]
        return out


def test_the_overlap_rule_decides_between_a_proposal_and_a_candidate_of_its_type():
    def tagged(rule: str, per_schema: dict | None = None) -> list[tuple[str, str]]:
        pipe = pipeline(0.5)
        pipe.generator = SpanGenerator()
        pipe.proposal_overlap, pipe.proposal_overlaps = rule, per_schema or {}
        record = pipe.process([Document("d1", DOCS[0].text, metadata={"schema": "toy"})])[0]
        return sorted((e.text, e.source) for e in record.entities)

    cancer = ("cancer", "generator")     # another type: no rule touches it
    both = [("BRCA1", "selector"), ("BRCA1", "selector"), ("BRCA1 mutations", "generator"), cancer]
    assert tagged("both") == both
    # The second sentence's "BRCA1" overlaps no candidate: every rule keeps it.
    assert tagged("generator") == [("BRCA1", "selector"), ("BRCA1 mutations", "generator"), cancer]
    assert tagged("selector") == [("BRCA1", "selector"), ("BRCA1", "selector"), cancer]
    assert tagged("both", {"toy": "selector"}) == tagged("selector")     # the schema's own rule wins
    assert tagged("selector", {"other": "generator"}) == tagged("selector")


def test_resolving_overlaps_keeps_order_and_leaves_other_pairs_alone():
    from llmner.decoding.overlaps import resolve_proposal_overlaps

    gen_outer = Entity(0, 20, "Gene", "", source="generator")
    gen_inner = Entity(5, 10, "Gene", "", source="generator")      # the generator's own nesting
    gen_other_type = Entity(0, 20, "Disease", "", source="generator")
    proposal = Entity(3, 8, "Gene", "", source="selector")
    apart = Entity(30, 35, "Gene", "", source="selector")
    kept = [gen_outer, proposal, gen_inner, gen_other_type, apart]
    assert resolve_proposal_overlaps(kept, "both") == kept
    assert resolve_proposal_overlaps(kept, "selector") == [proposal, gen_other_type, apart]
    assert resolve_proposal_overlaps(kept, "generator") == [gen_outer, gen_inner, gen_other_type, apart]
    touching = [Entity(0, 3, "Gene", "", source="generator"), Entity(3, 8, "Gene", "", source="selector")]
    assert resolve_proposal_overlaps(touching, "selector") == touching     # adjacent is not overlapping
    with pytest.raises(ConfigError, match="one of both, generator, selector"):
        resolve_proposal_overlaps(kept, "longest")


def test_the_manifest_checks_overlap_rules_and_leaves_the_default_out():
    fields = BundleManifest().to_dict()
    assert "proposal_overlap" not in fields and "proposal_overlaps" not in fields   # old bundles keep their bytes
    manifest = BundleManifest.from_dict({**fields, "proposal_overlaps": {"bc5cdr": "selector", "linnaeus": "generator"}})
    assert manifest.to_dict()["proposal_overlaps"] == {"bc5cdr": "selector", "linnaeus": "generator"}
    for bad in ({"proposal_overlap": "longest"}, {"proposal_overlaps": {"a": "x"}}, {"proposal_overlaps": ["selector"]}):
        with pytest.raises(ConfigError, match="proposal_overlap"):
            BundleManifest.from_dict({**fields, **bad})


def test_rows_derived_from_stored_parts_select_with_the_overlap_rule(tmp_path):
    from llmner.evaluation.corpus_eval import evaluate_documents
    from llmner.evaluation.predict import predict_in_parts
    from llmner.evaluation.rescore import rescore_parts, undetermined_f1_range

    gold = [Document(d.id, d.text, entities=[Entity(m.start(), m.end(), "Gene", "BRCA1") for m in re.finditer("BRCA1", d.text)])
            for d in DOCS]
    old = pipeline(None)
    old.generator = SpanGenerator()
    predict_in_parts(old, gold, SCHEMA, tmp_path / "old.parts", part_documents=1)
    f1 = {}
    for rule in ("both", "selector"):
        new = pipeline(0.5)
        new.generator = SpanGenerator()
        new.proposal_overlaps = {"toy": rule}
        rescore_parts(new, gold, SCHEMA, tmp_path / "old.parts", tmp_path / f"{rule}.parts", part_documents=1)
        low, high = undetermined_f1_range(tmp_path / f"{rule}.parts", gold)
        f1[rule] = evaluate_documents(new, gold, SCHEMA, "toy", "dev").with_selector.strict.f1
        assert low == high == pytest.approx(f1[rule])       # the derived row selects as a rerun does
    assert f1["selector"] > f1["both"]       # "BRCA1 mutations" is a boundary error the proposal replaces


def test_judging_stored_candidates_gives_what_a_rerun_scores_and_proposes():
    from llmner.evaluation.rescore import judge_stored

    stored = predict(pipeline(None), DOCS, SCHEMA)          # the generator's candidates, unjudged
    new_pipe = pipeline(0.5)
    rerun = predict(new_pipe, DOCS, SCHEMA)                 # every candidate, scored, with the proposals
    key = lambda e: (e.start, e.end, e.type, e.source, round(e.score, 4))
    for doc, old, want in zip(DOCS, stored, rerun):
        unscored = [dataclasses.replace(e, score=None) for e in old.entities]
        got = judge_stored(new_pipe, doc, unscored, SCHEMA, propose=True)
        assert sorted(map(key, got)) == sorted(map(key, want.entities))
        assert all(e.source == "generator" for e in judge_stored(new_pipe, doc, unscored, SCHEMA))
    # A language the selector does not judge is left as it is, as the pipeline leaves it.
    new_pipe.config = dataclasses.replace(new_pipe.config, selector_languages=["zh"])
    assert judge_stored(new_pipe, DOCS[-1], unscored, SCHEMA, propose=True) == unscored


def test_selected_documents_are_what_the_pipeline_outputs_from_the_same_candidates():
    from llmner.evaluation.rescore import selected_documents

    stored = [Document(d.id, d.text, d.language, {}, r.entities)      # the generator's candidates, unjudged, as cached
              for d, r in zip(DOCS, predict(pipeline(None), DOCS, SCHEMA))]
    for proposal in (None, 0.5):
        pipe = pipeline(proposal)
        served = [r.entities for r in pipe.process([Document(d.id, d.text, metadata={"schema": "toy"}) for d in DOCS])]
        judged = selected_documents(pipe, DOCS, stored, SCHEMA)
        key = lambda e: (e.start, e.end, e.type, e.source, round(e.score, 4))
        assert [sorted(map(key, d.entities)) for d in judged] == [sorted(map(key, s)) for s in served]
        assert [(d.id, d.text) for d in judged] == [(d.id, d.text) for d in DOCS]
    assert any(e.source == "selector" for d in judged for e in d.entities)     # the proposals are selected too


def test_relabelling_gives_a_candidate_the_schema_type_the_selector_scores_highest():
    def tagged(relabel: bool, per_schema: dict | None = None) -> list[tuple[str, str, str, float]]:
        pipe = pipeline(None)
        pipe.relabel, pipe.relabel_schemas = relabel, per_schema or {}
        out = []
        for doc in DOCS:
            for record in pipe.process([Document(doc.id, doc.text, metadata={"schema": "toy"})], select=False):
                out += [(doc.id, e.text, e.type, round(e.score, 2)) for e in record.entities]
        return out

    plain = [("d1", "cancer", "Disease", 0.7), ("d2", "cancer", "Disease", 0.7)]
    assert tagged(False) == plain
    # In d1's first sentence the selector scores a gene 0.9, above the disease's 0.7; in d2 a gene gets 0.6.
    assert tagged(True) == [("d1", "cancer", "Gene", 0.9), ("d2", "cancer", "Disease", 0.7)]
    assert tagged(True, {"toy": False}) == plain and tagged(False, {"toy": True}) == tagged(True)
    # Stored scores cannot say which type a rerun would choose: deriving such a record is refused.
    pipe = pipeline(None)
    pipe.relabel = True
    with pytest.raises(ValidationError, match="relabels"):
        rescore_records(pipe, DOCS, predict(pipeline(None), DOCS, SCHEMA), SCHEMA)
    # A schema in a language the selector does not judge is never relabelled (nor refused).
    pipe.config = dataclasses.replace(pipe.config, selector_languages=["zh"])
    assert not pipe.relabels(SCHEMA)
    rescore_records(pipe, DOCS, predict(pipeline(None), DOCS, SCHEMA), SCHEMA)


class TwoTypeGenerator(Generator):
    """Tags "cancer" both as a disease and as a gene (the same span, two types)."""

    def tag(self, requests):
        out = super().tag(requests)
        for result in out:
            result.entities += [dataclasses.replace(e, type="Gene") for e in result.entities]
        return out


def test_relabelling_keeps_one_entity_per_span_and_type():
    from llmner.evaluation.rescore import judge_stored

    pipe = pipeline(None)
    pipe.generator, pipe.relabel = TwoTypeGenerator(), True
    doc = Document("d1", DOCS[0].text, metadata={"schema": "toy"})
    record = pipe.process([doc], select=False)[0]
    assert [(e.text, e.type, round(e.score, 2)) for e in record.entities] == [("cancer", "Gene", 0.9)]
    both = [Entity(22, 28, "Disease", "cancer"), Entity(22, 28, "Gene", "cancer")]     # judging stored ones alike
    assert [(e.type, round(e.score, 2)) for e in judge_stored(pipe, doc, both, SCHEMA)] == [("Gene", 0.9)]


def test_the_manifest_checks_relabel_settings_and_leaves_the_default_out():
    fields = BundleManifest().to_dict()
    assert "relabel" not in fields and "relabel_schemas" not in fields
    manifest = BundleManifest.from_dict({**fields, "relabel": True, "relabel_schemas": {"bc5cdr": False}})
    assert manifest.relabel and manifest.to_dict()["relabel_schemas"] == {"bc5cdr": False}
    for bad in ({"relabel": "yes"}, {"relabel_schemas": {"a": 1}}, {"relabel_schemas": ["a"]}):
        with pytest.raises(ConfigError, match="relabel"):
            BundleManifest.from_dict({**fields, **bad})


def test_is_cjk_agrees_with_berts_chinese_character_split():
    """``CJK_RANGES`` is what the selector's WordPiece tokenizer makes words of their own: BERT's normalizer
    spaces exactly those characters out (checked at every block edge, and just outside it)."""
    from tokenizers.normalizers import BertNormalizer

    from llmner.doc import is_cjk

    bert = BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    edges = [0x3400, 0x4DBF, 0x4E00, 0x9FFF, 0xF900, 0xFAFF, 0x20000, 0x2A6DF, 0x2A700, 0x2B73F, 0x2B740,
             0x2CEAF, 0x2F800, 0x2FA1F]
    points = sorted({p + d for p in edges for d in (-1, 0, 1)} | {ord("a"), ord("ぁ"), ord("1")})
    for cp in points:
        ch = chr(cp)
        assert is_cjk(ch) == (bert.normalize_str(ch) != ch), hex(cp)


class BoundaryGenerator(GeneratorRuntime):
    """Tags "cancer" as a disease and "BRCA1 mutations" as a gene (a boundary the corpus does not use)."""

    model_id = "boundary"

    def tag(self, requests):
        return [TagResult([Entity(m.start(), m.end(), t, m.group()) for t, pattern in (("Gene", "BRCA1 mutations"), ("Disease", "cancer"))
                           for m in re.finditer(pattern, r.text)], r.text) for r in requests]


def test_calibration_chooses_proposal_threshold_overlap_rule_and_selector_threshold_together(monkeypatch):
    from llmner.decoding.selection import SelectionRule
    from llmner.evaluation.calibration import (
        CalibrationConfig,
        calibrate,
        store_calibration,
    )

    # Gold: the gene where mutations are named ("BRCA1", not "BRCA1 mutations") and the disease. The
    # selector scores the generator's "BRCA1 mutations" 0.9 (no threshold of the grid cuts it), proposes
    # "BRCA1" at 0.9 there and 0.6 in the other sentence: only proposals from 0.7 whose span replaces
    # the candidate it overlaps (rule "selector") find exactly the gold.
    text = "BRCA1 mutations cause cancer. BRCA1 was seen."
    docs = [Document(f"d{i}", text, entities=[Entity(0, 5, "Gene", "BRCA1"), Entity(22, 28, "Disease", "cancer")])
            for i in range(12)]
    monkeypatch.setattr("llmner.data_processing.corpora.load_corpus", lambda corpus, split: docs)
    monkeypatch.setattr("llmner.data_processing.corpora.is_labeled", lambda corpus, split: True)
    monkeypatch.setattr("llmner.data_processing.corpora.corpus_schema", lambda corpus: SCHEMA)
    pipe = Pipeline(BoundaryGenerator(), ProposingSelector(), PipelineConfig(consistency=ConsistencyConfig.off()))
    config = CalibrationConfig(corpora=["toy"], sentences=1000, min_gold=0, min_candidates=1, bootstrap=50)
    (r,) = calibrate(pipe, config, log=lambda _: None)
    assert r.proposing and r.proposals == 24 and r.candidates == 24
    assert r.f1(r.default) == 0.5                                      # "BRCA1 mutations" wrong, "cancer" right
    assert r.plain == SelectionRule(0.5, 0.7, "both") and r.f1(r.plain) == pytest.approx(0.8)
    assert r.best == r.chosen == SelectionRule(0.5, 0.7, "selector") and r.f1(r.chosen) == 1.0
    assert r.f1(SelectionRule(0.5, 0.7, "generator")) == 0.5 and r.evidence == 1.0
    manifest = BundleManifest()
    store_calibration(manifest, [r])
    assert manifest.proposal_thresholds == {"toy": 0.7} and manifest.proposal_overlaps == {"toy": "selector"}
    assert manifest.proposal_threshold == 0.7 and manifest.selector_thresholds == {}
    # The pipeline, given the stored settings, keeps exactly what calibration scored.
    pipe.proposal_thresholds, pipe.proposal_overlaps = dict(manifest.proposal_thresholds), dict(manifest.proposal_overlaps)
    (record,) = pipe.process([Document("d", text, metadata={"schema": "toy"})])
    assert sorted((e.start, e.end, e.type) for e in record.entities) == [(0, 5, "Gene"), (22, 28, "Disease")]


def test_calibration_keeps_a_proposers_spans_from_each_rules_selector_threshold():
    """Under a schema a proposer proposes for, ``Pipeline.selection_rule`` keeps the proposer's spans from the
    schema's selector threshold: every rule calibration scores must keep them so too (it kept them all)."""
    from llmner.decoding.selection import SelectionRule
    from llmner.evaluation.calibration import CalibrationConfig, selection_rules

    config = CalibrationConfig(corpora=["toy"])
    rules, baseline = selection_rules(SelectionRule(0.2, reader_threshold=0.2), "selector", True, config, proposer=True)
    assert all(r.reader_threshold == r.threshold for r in rules) and set(baseline) <= set(rules)
    read = Entity(0, 5, "Disease", "tumor", score=0.3, source="reader")
    kept = {r.threshold: bool(r.select([read])) for r in rules if r.proposals is None}
    assert kept[0.2] and not kept[0.5]
    without, _ = selection_rules(SelectionRule(0.2), "selector", True, config)
    assert all(r.reader_threshold == 0.0 for r in without)
