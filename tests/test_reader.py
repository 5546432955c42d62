"""The reader (llmner.modeling.reader): decoding, save/load, long texts, training and its place in the
pipeline, on tiny random models."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from llmner.bundle import BundleManifest, load_manifest
from llmner.decoding.selection import SelectionRule
from llmner.doc import Document, Entity
from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling.reader import Reader, decode_character_spans
from llmner.testing import build_tiny_bundle, build_tiny_reader


def _probs(labels: list[list[int]], sure: float = 0.9) -> np.ndarray:
    """(chars, types, 3) probabilities putting ``sure`` on each given label."""
    out = np.full((len(labels), len(labels[0]), 3), (1 - sure) / 2)
    for c, row in enumerate(labels):
        for k, label in enumerate(row):
            out[c, k, label] = sure
    return out


def test_decode_character_spans_nested_types_adjacent_spans_and_scores():
    text = "abcdef"
    # type A: B I O B B I -> [0,2) [3,4) [4,6); type B: I I I I O O (an I after O opens) -> [0,4)
    probs = _probs([[1, 2], [2, 2], [0, 2], [1, 2], [1, 0], [2, 0]])
    found = decode_character_spans(text, probs, ["A", "B"])
    assert [(e.start, e.end, e.type) for e in found] == [(0, 4, "B"), (0, 2, "A"), (3, 4, "A"), (4, 6, "A")]
    assert all(e.source == "reader" and e.text == text[e.start : e.end] for e in found)
    # [0,2) of A: P(B)=0.9 at 0, P(I)=0.9 at 1, 1 - P(I)=0.95 at 2
    first_a = next(e for e in found if e.key == (0, 2, "A"))
    assert first_a.score == pytest.approx(math.exp((math.log(0.9) * 2 + math.log(0.95)) / 3), abs=1e-5)
    # a span at the end of the text has no "after" factor
    assert next(e for e in found if e.key == (4, 6, "A")).score == pytest.approx(0.9, abs=1e-5)


def test_decode_character_spans_nothing_when_all_outside():
    assert decode_character_spans("abc", _probs([[0], [0], [0]]), ["A"]) == []


@pytest.fixture(scope="module")
def tiny_reader_dir(tmp_path_factory):
    return build_tiny_reader(tmp_path_factory.mktemp("reader") / "reader", ["dis", "dru"])


def test_read_gives_entities_in_the_text_frame_and_round_trips(tiny_reader_dir, tmp_path):
    reader = Reader.from_pretrained(tiny_reader_dir, device="cpu")
    texts = ["患者有高血压病史，服用氨氯地平。", "IL-2 activates T cells.", ""]
    first = reader.read(texts)
    assert len(first) == 3 and first[2] == []
    assert any(first[0]) or any(first[1])          # a random head tags something on these
    for text, entities in zip(texts, first):
        for e in entities:
            assert e.text == text[e.start : e.end] and e.type in ("dis", "dru") and e.source == "reader"
            assert 0.0 <= e.score <= 1.0
    reader.save_pretrained(tmp_path / "again")
    assert Reader.from_pretrained(tmp_path / "again", device="cpu").read(texts) == first
    # fp16 weights: half the bytes, the same spans here (scores within rounding)
    reader.save_pretrained(tmp_path / "half", half=True)
    half = Reader.from_pretrained(tmp_path / "half", device="cpu").read(texts)
    assert [[e.key for e in x] for x in half] == [[e.key for e in x] for x in first]
    full_bytes = (tmp_path / "again" / "reader_head.safetensors").stat().st_size
    assert (tmp_path / "half" / "reader_head.safetensors").stat().st_size < 0.6 * full_bytes


def test_long_texts_are_read_in_windows_that_cover_every_character(tiny_reader_dir):
    reader = Reader.from_pretrained(tiny_reader_dir, device="cpu")
    text = "患者有高血压病史，服用氨氯地平。" * 12 + " IL-2 activates T cells." * 6
    assert len(reader.encoder.windows(text, reader.config.max_tokens)) > 1
    [tokens] = reader.token_features([text])
    covered = np.zeros(len(text), bool)
    for a, b in tokens.offsets:
        covered[a:b] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    assert (np.diff(tokens.offsets[:, 0]) >= 0).all()
    assert tokens.features.shape == (len(tokens.offsets), reader.config.hidden_size)
    [entities] = reader.read([text])
    assert all(e.text == text[e.start : e.end] for e in entities)


def test_a_reader_directory_is_checked(tmp_path, tiny_reader_dir):
    with pytest.raises(DataNotFoundError):
        Reader.from_pretrained(tmp_path)
    config = json.loads((tiny_reader_dir / "reader_config.json").read_text())
    (tmp_path / "reader_config.json").write_text(json.dumps({**config, "types": []}))
    with pytest.raises(ConfigError, match="types"):
        Reader.from_pretrained(tmp_path)


def _toy_corpus(n: int, seed: int) -> list[Document]:
    """Sentences where 氨氯地平 / 二甲双胍 are drugs and 高血压 / 糖尿病 diseases, in varied frames."""
    import random

    rng = random.Random(seed)
    frames = ["患者有{d}病史，服用{m}。", "{d}患者，长期口服{m}治疗。", "因{d}就诊，予{m}。", "既往{d}，规律服用{m}，无不适。"]
    docs = []
    for i in range(n):
        d, m = rng.choice(["高血压", "糖尿病"]), rng.choice(["氨氯地平", "二甲双胍"])
        frame = rng.choice(frames)
        text = frame.format(d=d, m=m)
        ds, ms = text.index(d), text.index(m)
        docs.append(Document(f"t{i}", text, "zh", {}, [Entity(ds, ds + len(d), "dis", d), Entity(ms, ms + len(m), "dru", m)]))
    return docs


def test_training_learns_a_toy_corpus_resumes_and_writes_its_run(tmp_path):
    from llmner.modeling.reader import FrozenEncoder, ReaderConfig
    from llmner.training.reader import ReaderTrainingConfig, train_reader

    base = build_tiny_reader(tmp_path / "seed", ["dis", "dru"]).parent / "seed-base"
    encoder = FrozenEncoder(str(base), device="cpu")
    read: list[str] = []
    layer_states = encoder.layer_states
    encoder.layer_states = lambda texts, *a: (read.extend(texts), layer_states(texts, *a))[1]
    logs: list[str] = []
    config = ReaderTrainingConfig(reader=ReaderConfig(base_model=str(base), layers=[1, 2], projection=16, char_dim=8, lstm=16),
                                  epochs=12, batch_size=8, lr=1e-2, statistics_records=20,
                                  hold_out_every=10)
    reader = train_reader(_toy_corpus(80, 0), _toy_corpus(20, 1), config, tmp_path / "run", encoder=encoder, log=logs.append)
    # Every record is read by the LM once: the statistics' sample (the first 20) is not read again for its features.
    assert len(read) == 80 + 20
    card = json.loads((tmp_path / "run" / "training_card.json").read_text())
    assert card["trained_records"] == 72 and card["held_out_records"] == 8 and card["types"] == ["dis", "dru"]
    assert len(card["dev_f1_by_epoch"]) == 12 and card["dev_f1_by_epoch"][-1] >= 90.0
    held = json.loads((tmp_path / "run" / "held_out.json").read_text())
    assert len(held) == 8 and all("entities" in r for r in held)
    assert card["threshold_on_held_out"] in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    [found] = Reader.from_pretrained(tmp_path / "run" / "reader", encoder=encoder).read(["既往糖尿病，规律服用二甲双胍。"])
    assert {(e.text, e.type) for e in found} == {("糖尿病", "dis"), ("二甲双胍", "dru")}
    assert reader.config.types == ["dis", "dru"]
    # A second call finds the features and the finished schedule: nothing is read or trained again.
    logs.clear()
    train_reader(_toy_corpus(80, 0), _toy_corpus(20, 1), config, tmp_path / "run", encoder=encoder, log=logs.append)
    assert not any("records read" in line or "statistics" in line for line in logs)
    assert any("resumed" in line for line in logs)


def test_selection_keeps_reader_spans_from_the_reader_threshold():
    rule = SelectionRule(threshold=0.9, reader_threshold=0.5)
    kept = rule.select([Entity(0, 2, "dis", score=0.6, source="reader"), Entity(3, 4, "dis", score=0.4, source="reader"),
                        Entity(5, 6, "dis", score=0.6)])
    assert [e.start for e in kept] == [0]


def test_manifest_reader_fields_are_checked_and_left_out_while_unset():
    assert "reader_schemas" not in BundleManifest().to_dict()
    data = BundleManifest(reader_schemas=["cmeee"], reader_threshold=0.3).to_dict()
    assert BundleManifest.from_dict(data).reader_schemas == ["cmeee"]
    with pytest.raises(ConfigError, match="reader_threshold"):
        BundleManifest.from_dict({**data, "reader_threshold": 2})
    with pytest.raises(ConfigError, match="reader_schemas"):
        BundleManifest.from_dict({**data, "reader_schemas": "cmeee"})


def test_pipeline_hands_the_readers_schema_to_the_reader_and_the_rest_to_the_generator(tmp_path):
    from llmner.pipeline import Pipeline, PipelineConfig

    root = build_tiny_bundle(tmp_path / "bundle", reader_schema="cmeee")
    assert load_manifest(root).reader_schemas == ["cmeee"]
    pipe = Pipeline.from_bundle(root, PipelineConfig(selector_backend="torch"))
    assert pipe.model_ids["reader"] == "reader-tiny"
    zh = Document("z", "患者有高血压病史，服用氨氯地平。", "zh", {"schema": "cmeee"})
    en = Document("e", "IL-2 activates T cells in BRCA1 carriers.", "en", {"schema": "biomedical_en"})
    records = pipe.process([zh, en])
    assert records[0].entities and all(e.source == "reader" for e in records[0].entities)
    assert all(e.source != "reader" for e in records[1].entities)
    assert "read" in pipe.last_timings_ms
    # The reader's output is the pipeline's output for its schema: nothing judged, nothing added.
    direct = pipe.reader.read([zh.text])[0]
    assert {e.key for e in records[0].entities} == {e.key for e in direct}
    # Turned off, the generator tags that schema too.
    off = Pipeline.from_bundle(root, PipelineConfig(selector_backend="torch", reader=False))
    assert off.reader is None and all(e.source != "reader" for e in off.process([zh])[0].entities)


def test_a_bundle_naming_reader_schemas_needs_its_reader(tmp_path):
    root = build_tiny_bundle(tmp_path / "bundle")
    manifest = json.loads((root / "bundle.json").read_text())
    (root / "bundle.json").write_text(json.dumps({**manifest, "reader_schemas": ["cmeee"]}))
    with pytest.raises(DataNotFoundError, match="reader"):
        load_manifest(root)


def test_threshold_table_and_choice():
    from llmner.training.reader import choose_threshold, threshold_table

    gold = [Document("a", "abcdef", "zh", {}, [Entity(0, 2, "dis"), Entity(3, 5, "dru")])]
    predicted = [[Entity(0, 2, "dis", score=0.9, source="reader"), Entity(3, 5, "dru", score=0.35, source="reader"),
                  Entity(2, 3, "dis", score=0.25, source="reader")]]
    table = threshold_table(gold, predicted, grid=(0.0, 0.3, 0.5))
    assert [round(r["f1"], 3) for r in table] == [0.8, 1.0, 0.667]
    assert choose_threshold(table) == 0.3


# ---- the proposer: a reader whose spans join the generator's candidates ----------------------------------

def test_proposer_spans_join_the_candidates_once():
    from llmner.decoding.overlaps import with_proposer_spans

    generated = [Entity(0, 4, "Disease", generator_score=0.9), Entity(10, 14, "Disease", score=0.3, source="selector")]
    spans = [Entity(0, 4, "Disease", source="reader"), Entity(10, 14, "Disease", source="reader"),
             Entity(20, 25, "Disease", source="reader"), Entity(20, 25, "Disease", source="reader")]
    out = with_proposer_spans(generated, spans)
    assert [(e.key, e.source, e.score) for e in out] == [
        ((0, 4, "Disease"), "generator", None),            # the generator's own: not added again
        ((10, 14, "Disease"), "selector+reader", 0.3),     # the selector's proposal: theirs both, its score kept
        ((20, 25, "Disease"), "reader", None)]             # new: unscored, the selector judges it


def test_selection_drops_a_proposer_span_where_a_kept_entity_of_its_type_is():
    rule = SelectionRule(threshold=0.5, proposals=0.9, reader_threshold=0.5)
    entities = [Entity(0, 10, "Disease", score=0.8),                     # kept candidate
                Entity(5, 12, "Disease", score=0.9, source="reader"),    # overlaps it: goes
                Entity(5, 12, "Chemical", score=0.9, source="reader"),   # another type: stays
                Entity(20, 25, "Disease", score=0.6, source="reader"),   # an empty place: stays
                Entity(30, 35, "Disease", score=0.4, source="reader"),   # below the threshold: goes
                Entity(40, 45, "Disease", score=0.3),                    # dropped candidate ...
                Entity(41, 45, "Disease", score=0.7, source="reader"),   # ... leaves its place to the reader
                # Proposed by both: a proposal from the proposal threshold (kept beside an overlapping
                # candidate under "both") ...
                Entity(50, 60, "Disease", score=0.8), Entity(52, 60, "Disease", score=0.95, source="selector+reader"),
                # ... else a reader's span: kept from the reader threshold where nothing else is
                Entity(70, 75, "Disease", score=0.6, source="selector+reader"),
                Entity(80, 90, "Disease", score=0.8), Entity(82, 90, "Disease", score=0.6, source="selector+reader")]
    assert [e.key for e in rule.select(entities)] == [(0, 10, "Disease"), (5, 12, "Chemical"), (20, 25, "Disease"),
                                                      (41, 45, "Disease"), (50, 60, "Disease"), (52, 60, "Disease"),
                                                      (70, 75, "Disease"), (80, 90, "Disease")]
    assert SelectionRule(threshold=0.5, reader_threshold=0.5).select([Entity(0, 4, "Disease", score=0.6, source="selector+reader")])


def test_manifest_proposer_fields_are_checked(tmp_path):
    from llmner.bundle import ProposerEntry

    assert "proposers" not in BundleManifest().to_dict()
    data = BundleManifest(proposers=[ProposerEntry("proposers/bc5cdr", "r", ["bc5cdr"], 0.7)]).to_dict()
    assert BundleManifest.from_dict(data).proposers == [ProposerEntry("proposers/bc5cdr", "r", ["bc5cdr"], 0.7)]
    entry = data["proposers"][0]
    for bad, match in (({**entry, "threshold": -1}, "threshold"), ({**entry, "schemas": []}, "schemas"),
                       ({**entry, "directory": "../elsewhere"}, "folder of the bundle"),
                       ({**entry, "directory": "selector"}, "folder of the bundle"), ({"schemas": ["x"]}, "directory")):
        with pytest.raises(ConfigError, match=match):
            BundleManifest.from_dict({**data, "proposers": [bad]})
    with pytest.raises(ConfigError, match="both read"):
        BundleManifest.from_dict({**data, "reader_schemas": ["bc5cdr"]})
    with pytest.raises(ConfigError, match="more than one proposer"):
        BundleManifest.from_dict({**data, "proposers": [entry, {**entry, "directory": "proposers/other"}]})
    # A session-39 bundle's one proposer (proposer_* fields, in proposer/) reads as its one entry.
    legacy = {**BundleManifest().to_dict(), "proposer_id": "r", "proposer_schemas": ["bc5cdr"], "proposer_threshold": 0.7}
    assert BundleManifest.from_dict(legacy).proposers == [ProposerEntry("proposer", "r", ["bc5cdr"], 0.7)]
    with pytest.raises(ConfigError, match="together"):
        BundleManifest.from_dict({**legacy, "proposers": data["proposers"]})


def test_pipeline_adds_the_proposers_spans_under_its_schema_judged_by_the_selector(tmp_path):
    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.rescore import judge_stored
    from llmner.pipeline import Pipeline, PipelineConfig

    root = build_tiny_bundle(tmp_path / "bundle", reader_schema="cmeee", proposer_schemas=["bc5cdr", "ncbi_disease"])
    manifest = load_manifest(root)
    assert [(e.directory, e.schemas) for e in manifest.proposers] == [("proposers/bc5cdr", ["bc5cdr"]),
                                                                      ("proposers/ncbi_disease", ["ncbi_disease"])]
    assert all((root / "proposers" / name / "reader_config.json").is_file() for name in ("bc5cdr", "ncbi_disease"))
    pipe = Pipeline.from_bundle(root, PipelineConfig(selector_backend="torch"))
    assert pipe.model_ids["proposer"] == "proposer-tiny-bc5cdr+proposer-tiny-ncbi_disease"
    # One proposer per schema, each its own head, every reader on one frozen LM.
    ncbi, bc5 = pipe.proposer_for("ncbi_disease"), pipe.proposer_for("bc5cdr")
    assert ncbi is not None and bc5 is not None and ncbi.reader is not bc5.reader
    assert ncbi.reader.encoder is bc5.reader.encoder is not pipe.reader.encoder    # the reader's LM is another
    assert pipe.proposer_for("biomedical_en") is None
    both = pipe.proposer_spans(["Cisplatin caused nephrotoxicity."] * 2,
                               [corpus_schema("bc5cdr"), corpus_schema("ncbi_disease")])
    assert both[0] == pipe.proposer_spans(["Cisplatin caused nephrotoxicity."], [corpus_schema("bc5cdr")])[0]
    assert {e.type for e in both[1]} <= {"Disease"}
    text = "Cisplatin caused nephrotoxicity and ototoxicity in BRCA1 carriers with breast cancer."
    own = Document("b", text, "en", {"schema": "bc5cdr"})
    other = Document("g", text, "en", {"schema": "biomedical_en"})
    chunks = pipe.chunk(own)
    scored = pipe.score_chunks(chunks, corpus_schema("bc5cdr"))
    offered = pipe.proposer_spans([c.text for c in chunks], [corpus_schema("bc5cdr")] * len(chunks))
    assert any(offered), "a random head proposes something here"
    readers = [e for chunk in scored for e in chunk if e.source in ("reader", "selector+reader")]
    assert readers and all(e.score is not None and e.type in ("Chemical", "Disease") for e in readers)
    # Every span it offered is a candidate now, whoever proposed it first.
    assert all({e.key for e in spans} <= {e.key for e in chunk} for spans, chunk in zip(offered, scored))
    # Not under a schema it does not propose for.
    assert all(e.source != "reader" for e in pipe.process([other])[0].entities)
    # Stored candidates judged again (calibration, report rows) see the same spans with the same scores.
    assert len(chunks) == 1 and chunks[0].start == 0         # one sentence: the chunk frame is the document's
    generated = [dataclasses.replace(e, score=None) for e in scored[0] if e.source == "generator"]
    again = judge_stored(pipe, own, generated, corpus_schema("bc5cdr"))
    assert {(e.key, round(e.score, 5)) for e in again if e.source in ("reader", "selector+reader")} == \
        {(e.key, round(e.score, 5)) for e in readers}
    off = Pipeline.from_bundle(root, PipelineConfig(selector_backend="torch", proposer=False))
    assert off.proposers == [] and all(e.source != "reader" for e in off.process([own])[0].entities)
