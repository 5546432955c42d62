"""Selector model, negatives and training, on a tiny random BERT built in the test."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmner.doc import Candidate, Document, Entity
from llmner.errors import ConfigError, ValidationError
from llmner.evaluation.thresholds import best_threshold
from llmner.modeling.selector import SelectorConfig, SelectorModel, mark_candidate
from llmner.schema import EntitySchema, EntityType
from llmner.testing import build_tiny_bert
from llmner.training.negatives import (
    BOUNDARY_KINDS,
    NegativeConfig,
    boundary_negatives,
    build_negatives,
    tokenize,
    whole_tokens_in,
)
from llmner.training.selector import (
    SelectorTrainingConfig,
    average_selectors,
    first_per_schema,
    loss_for,
    train_selector,
)

SCHEMA = EntitySchema("test", "en", (EntityType("Disease", "a disease"), EntityType("Gene", "a gene or protein"),
                                     EntityType("Chemical", "a chemical")))


def doc(text: str, *spans: tuple[str, str], doc_id: str = "d") -> Document:
    d = Document(doc_id, text)
    pos = 0
    for surface, etype in spans:
        start = text.index(surface, pos if etype != "Gene" else 0)
        d.entities.append(d.span(start, start + len(surface), etype))
    return d.validate()


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


TEXTS = [
    doc("Patients with ovarian cancer, breast cancer and BRCA1 mutations were treated with cisplatin daily.",
        ("ovarian cancer", "Disease"), ("breast cancer", "Disease"), ("BRCA1", "Gene"), ("cisplatin", "Chemical")),
    doc("The APC gene product is lost in familial adenomatous polyposis and in colon tumours of mice.",
        ("APC gene product", "Gene"), ("familial adenomatous polyposis", "Disease"), ("colon tumours", "Disease"),
        doc_id="d2"),
]


# ---- negatives -------------------------------------------------------------------------------

words = st.lists(st.sampled_from(["cancer", "of", "the", "BRCA1", "(", ")", ",", "type-2", "gene", "腫"]), min_size=3, max_size=25)


@settings(max_examples=60, deadline=None)
@given(words=words, data=st.data())
def test_negatives_never_equal_gold_and_boundary_moves_are_exact(words, data):
    text = " ".join(words)
    toks = tokenize(text)
    # Gold spans aligned to tokens, possibly nested/overlapping, random types.
    golds = set()
    for _ in range(data.draw(st.integers(1, 4))):
        a = data.draw(st.integers(0, len(toks) - 1))
        b = data.draw(st.integers(a, min(len(toks) - 1, a + 4)))
        golds.add(Entity(toks[a][0], toks[b][1], data.draw(st.sampled_from(SCHEMA.type_names)), text[toks[a][0]:toks[b][1]]))
    d = Document("h", text, entities=sorted(golds))
    preds = [Entity(toks[0][0], toks[-1][1], "Disease"), *list(golds)[:1]]
    result = build_negatives(d, SCHEMA, NegativeConfig(per_mention=50, random_per_text=5), preds, random.Random(0))
    gold_keys = {g.key for g in golds}
    negs = [n for g in result.groups for n in g.negatives] + result.unattached
    assert negs, "every document with a gold mention yields negatives"
    assert not any(n.key in gold_keys for n in negs)
    assert len({n.key for n in negs}) == len(negs)
    for n in negs:
        span = text[n.start:n.end]
        assert span and span == span.strip()
    for group in result.groups:
        g = group.gold
        for n in group.negatives:
            if n.kind not in BOUNDARY_KINDS:
                continue
            assert 1 <= n.amount <= 3
            if n.kind == "extend_left":
                assert n.end == g.end and n.start < g.start and whole_tokens_in(text, n.start, g.start) == n.amount
            elif n.kind == "extend_right":
                assert n.start == g.start and n.end > g.end and whole_tokens_in(text, g.end, n.end) == n.amount
            elif n.kind == "shrink_left":
                assert n.end == g.end and n.start > g.start and whole_tokens_in(text, g.start, n.start) == n.amount
            else:
                assert n.start == g.start and n.end < g.end and whole_tokens_in(text, n.end, g.end) == n.amount


def test_boundary_negatives_split_punctuation():
    d = TEXTS[0]
    gold = d.entities[0]  # "ovarian cancer" followed by ","
    negs = {(n.kind, n.amount): d.text[n.start:n.end] for n in boundary_negatives(d.text, gold)}
    assert negs[("extend_right", 1)] == "ovarian cancer,"
    assert negs[("extend_right", 2)] == "ovarian cancer, breast"
    assert negs[("extend_left", 1)] == "with ovarian cancer"
    assert negs[("shrink_left", 1)] == "cancer"
    assert negs[("shrink_right", 1)] == "ovarian"
    assert ("shrink_left", 2) not in negs  # would be empty


def test_type_swaps_nesting_and_generator_false_positives():
    text = "The BRCA1 gene mutation causes disease."
    d = Document("n", text)
    outer = d.span(4, 23, "Disease")   # "BRCA1 gene mutation"
    inner = d.span(4, 9, "Gene")       # "BRCA1"
    d.entities = [outer, inner]
    fp = d.span(4, 14, "Gene")         # "BRCA1 gene": a generator boundary error
    res = build_negatives(d, SCHEMA, NegativeConfig(per_mention=50), [fp, inner])
    by_kind = {}
    for g in res.groups:
        for n in g.negatives:
            by_kind.setdefault(n.kind, set()).add(n.key)
    # The outer span with the inner type (a super-span of the inner) and vice versa.
    assert by_kind["nest_swap"] == {(4, 23, "Gene"), (4, 9, "Disease")}
    assert (4, 23, "Chemical") in by_kind["type_swap"]
    assert by_kind["generator"] == {(4, 14, "Gene")}   # the correct prediction is not a negative


def test_tokenize_cjk_characters_are_tokens():
    assert [("癌症患者")[s:e] for s, e in tokenize("癌症患者")] == ["癌", "症", "患", "者"]


# ---- model -------------------------------------------------------------------------------------

def test_mark_candidate_places_markers_around_span():
    c = Candidate("Patients with ovarian cancer, and more.", 14, 28, "Disease", "a disease")
    marked, s, e = mark_candidate(c, 240)
    assert marked[s:e] == "ovarian cancer"
    assert "[E] ovarian cancer [/E]," in marked
    long = Candidate("word " * 200 + "target" + " word" * 200, 1000, 1006, "Gene")
    marked, s, e = mark_candidate(long, 30)
    assert marked[s:e] == "target" and len(marked) < 80


def test_featurize_span_mask_covers_span_tokens(encoder_dir):
    model = SelectorModel.from_encoder(SelectorConfig(encoder=str(encoder_dir)))
    c = [Candidate("patients with ovarian cancer and breast cancer", 14, 28, "Disease", "a disease")]
    feats = model.featurize(c)
    toks = model.tokenizer.convert_ids_to_tokens(feats["input_ids"][0])
    assert [t for t, m in zip(toks, feats["span_mask"][0]) if m] == ["ovarian", "cancer"]
    assert set(feats) == {"input_ids", "attention_mask", "token_type_ids", "span_mask"}


def test_save_load_round_trip_keeps_threshold_scores_and_is_small(encoder_dir, tmp_path):
    cfg = SelectorConfig(encoder=str(encoder_dir), threshold=0.37, trainable_layers=1, model_id="sel-test")
    model = SelectorModel.from_encoder(cfg)
    model.round_to_save_dtype()
    cands = [Candidate(d.text, e.start, e.end, e.type, SCHEMA.definition(e.type)) for d in TEXTS for e in d.entities]
    before = model.score(cands)
    model.save_pretrained(tmp_path / "sel")
    loaded = SelectorModel.from_pretrained(tmp_path / "sel")
    assert loaded.threshold == pytest.approx(0.37)
    assert loaded.config.model_id == "sel-test"
    np.testing.assert_allclose(loaded.score(cands), before, atol=1e-6)
    # Only the top layer + head are stored, not the frozen encoder.
    saved = set(__import__("safetensors.torch", fromlist=["load_file"]).load_file(str(tmp_path / "sel/selector_weights.safetensors")))
    assert any(k.startswith("encoder.encoder.layer.1.") for k in saved)
    assert not any(k.startswith("encoder.encoder.layer.0.") or "embeddings" in k for k in saved)
    assert any(k.startswith("head.") for k in saved)


def test_load_rejects_a_different_base_encoder(encoder_dir, tmp_path):
    SelectorModel.from_encoder(SelectorConfig(encoder=str(encoder_dir))).save_pretrained(tmp_path / "sel")
    other = build_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(ConfigError, match="different base encoder"):
        SelectorModel.from_pretrained(tmp_path / "sel", encoder=str(other))


def test_config_validation():
    with pytest.raises(ConfigError):
        SelectorConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="unknown field"):
        SelectorConfig.from_dict({"bogus": 1})


# ---- training ------------------------------------------------------------------------------------

def test_loss_prefers_gold_first():
    import torch

    cfg = SelectorTrainingConfig()
    labels = torch.tensor([1.0, 0.0, 0.0])
    good, *_ = loss_for(torch.tensor([3.0, -3.0, -3.0]), labels, [3], cfg)
    bad, *_ = loss_for(torch.tensor([-3.0, 3.0, -3.0]), labels, [3], cfg)
    assert float(good) < 0.1 < float(bad)


def test_best_threshold_maximises_f1_and_counts_missing_gold():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.2], dtype=np.float32)
    labels = np.array([1, 1, 0, 1, 0], dtype=np.float32)
    thr, m = best_threshold(scores, labels)
    assert 0.2 < thr < 0.4 or 0.7 < thr < 0.8
    kept = scores >= thr
    tp = (labels[kept] == 1).sum()
    assert m["f1"] == pytest.approx(2 * tp / (kept.sum() + labels.sum()))
    _, m2 = best_threshold(scores, labels, total_gold=6)
    assert m2["recall"] <= 0.5


def test_training_learns_saves_threshold_and_resumes(encoder_dir, tmp_path):
    docs = TEXTS * 3
    docs = [Document(f"d{i}", d.text, entities=list(d.entities)) for i, d in enumerate(docs)]
    sel_cfg = SelectorConfig(encoder=str(encoder_dir), trainable_layers=1, model_id="sel-tiny")
    cfg = SelectorTrainingConfig(max_steps=6, groups_per_step=3, checkpoint_every=3, learning_rate=1e-3,
                                 head_learning_rate=1e-2, warmup_steps=1)
    out = tmp_path / "run"
    result = train_selector(docs, TEXTS, SCHEMA, out, sel_cfg, cfg, progress=False)
    assert result.steps == 6 and len(result.losses) == 6
    card = json.loads((out / "training_card.json").read_text())
    assert card["threshold"] == pytest.approx(result.threshold) and card["negatives_by_kind"]["extend_left"] > 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6] and [h["loss"] for h in history] == result.losses
    loaded = SelectorModel.from_pretrained(out)
    assert loaded.threshold == pytest.approx(result.threshold)
    assert (out / "checkpoints" / "step-000003").is_dir()
    # Resume from step 3 reproduces steps 4..6 exactly.
    cfg_resume = SelectorTrainingConfig(**{**cfg.to_dict(), "negatives": cfg.negatives})
    resumed = train_selector(docs, TEXTS, SCHEMA, out, sel_cfg, cfg_resume, resume=True, progress=False)
    assert len(resumed.losses) == 6
    assert SelectorModel.from_pretrained(out).config.save_dtype == "float16"   # not the checkpoint's fp32
    np.testing.assert_allclose(resumed.losses[3:], result.losses[3:], rtol=1e-4)


def test_training_fits_a_separable_signal(encoder_dir, tmp_path):
    """Gold spans vs their boundary shifts: after training, gold outranks its negatives on train data."""
    docs = [Document(f"d{i}", d.text, entities=list(d.entities)) for i, d in enumerate(TEXTS * 4)]
    cfg = SelectorTrainingConfig(max_steps=40, groups_per_step=4, checkpoint_every=0, learning_rate=2e-3,
                                 head_learning_rate=1e-2, warmup_steps=1, negatives=NegativeConfig(per_mention=4))
    result = train_selector(docs, TEXTS, SCHEMA, tmp_path / "fit",
                            SelectorConfig(encoder=str(encoder_dir), trainable_layers=2, dropout=0.0), cfg, progress=False)
    assert np.mean(result.losses[-5:]) < 0.85 * np.mean(result.losses[:5])
    print("dev", result.dev)
    assert result.dev["f1"] > 0.5


def test_one_selector_trains_on_several_corpora_with_their_own_schemas(encoder_dir, tmp_path, monkeypatch):
    """Documents name their schema in metadata; each candidate carries its own schema's definition."""
    other = EntitySchema("other", "en", (EntityType("Illness", "any illness of a patient"),))
    docs = [Document(f"a{i}", d.text, entities=list(d.entities), metadata={"schema": "test"}) for i, d in enumerate(TEXTS)]
    docs += [Document(f"b{i}", d.text, metadata={"schema": "other"},
                      entities=[Entity(e.start, e.end, "Illness", e.text) for e in d.entities if e.type == "Disease"])
             for i, d in enumerate(TEXTS)]
    seen: list[str] = []
    cfg = SelectorTrainingConfig(max_steps=2, groups_per_step=2, checkpoint_every=0, warmup_steps=1)
    sel_cfg = SelectorConfig(encoder=str(encoder_dir), trainable_layers=1)
    import llmner.training.selector as training

    real = training.candidate

    def spy(doc, schema, start, end, etype):
        seen.append(f"{schema.name}:{etype}")
        return real(doc, schema, start, end, etype)

    monkeypatch.setattr(training, "candidate", spy)
    result = train_selector(docs, docs[:2] + docs[-2:], {"test": SCHEMA, "other": other}, tmp_path / "multi",
                            sel_cfg, cfg, progress=False)
    monkeypatch.undo()
    assert result.steps == 2
    assert {"other:Illness", "test:Disease", "test:Gene"} <= set(seen)
    assert not any(s.startswith("other:") and not s.endswith("Illness") for s in seen)
    card = json.loads((tmp_path / "multi" / "training_card.json").read_text())
    assert card["schema"] == ["other", "test"]
    with pytest.raises(ValidationError, match="metadata.schema 'missing'"):
        train_selector([Document("x", "text", metadata={"schema": "missing"})], [], {"test": SCHEMA}, tmp_path / "bad",
                       sel_cfg, cfg, progress=False)
    with pytest.raises(ValidationError, match="not unique"):
        train_selector(docs[:1] * 2, [], {"test": SCHEMA}, tmp_path / "dup", sel_cfg, cfg, progress=False)


def test_first_per_schema_bounds_documents_and_characters_per_corpus() -> None:
    # Generator candidates cost per character: a character budget takes many short sentences of one
    # corpus and few abstracts of another, each corpus counted on its own.
    sentences = [Document(f"s{i}", "x" * 100, metadata={"schema": "genia"}) for i in range(10)]
    abstracts = [Document(f"a{i}", "y" * 1000, metadata={"schema": "ncbi"}) for i in range(5)]
    docs = [d for pair in zip(sentences, abstracts) for d in pair] + sentences[5:]
    chosen = first_per_schema(docs, None, max_chars=450)
    assert [d.id for d in chosen if d.metadata["schema"] == "genia"] == ["s0", "s1", "s2", "s3", "s4"]
    assert [d.id for d in chosen if d.metadata["schema"] == "ncbi"] == ["a0"]
    assert [d.id for d in first_per_schema(docs, 2, max_chars=450)] == ["s0", "a0", "s1"]
    assert first_per_schema(docs, None) == docs


# ---- the tokens head -----------------------------------------------------------------------------

def tokens_model(encoder_dir, **kw):
    return SelectorModel.from_encoder(SelectorConfig(encoder=str(encoder_dir), head="tokens", trainable_layers=1, **kw))


def test_tokens_head_shares_one_row_per_window_and_type(encoder_dir):
    model = tokens_model(encoder_dir)
    text = "patients with ovarian cancer and breast cancer"
    cands = [Candidate(text, 14, 28, "Disease", "a disease"), Candidate(text, 33, 46, "Disease", "a disease"),
             Candidate(text, 14, 21, "Gene", "a gene")]
    batch = model.featurize(cands)
    assert batch.rows.tolist() == [0, 0, 1] and [w.type for w in batch.windows] == ["Disease", "Gene"]
    toks = model.tokenizer.convert_ids_to_tokens(batch.inputs["input_ids"][0])
    pick = lambda m: [t for t, x in zip(toks, m) if x]
    assert pick(batch.first[0]) == ["ovarian"] and pick(batch.inner[0]) == ["cancer"] and pick(batch.after[0]) == ["and"]
    assert pick(batch.first[1]) == ["breast"] and pick(batch.after[1]) == []      # the window's last piece
    assert set(batch.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    # Targets: the gold mentions of the row's type, B on the first piece, I on the rest, -100 off the text.
    targets = batch.targets(by_window=[[(14, 28), (33, 46)], []])
    assert [t for t, y in zip(toks, targets[0]) if y == 1] == ["ovarian", "breast"]
    assert [t for t, y in zip(toks, targets[0]) if y == 2] == ["cancer", "cancer"]
    assert (targets[0][np.array(batch.inputs["token_type_ids"][0]) == 0] == -100).all()   # the type prefix
    assert set(targets[1][targets[1] != -100].tolist()) == {0}


def test_tokens_head_score_is_the_geometric_mean_of_its_pieces(encoder_dir):
    import torch

    model = tokens_model(encoder_dir).eval()
    p_o, p_b, p_i = 0.5, 0.3, 0.2      # the same O/B/I distribution on every piece
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.copy_(torch.log(torch.tensor([p_o, p_b, p_i])))
    text = "patients with ovarian cancer and breast cancer"
    cands = [Candidate(text, 14, 28, "Disease", "a disease"), Candidate(text, 33, 46, "Disease", "a disease")]
    got = model.score(cands)
    np.testing.assert_allclose(got, [(p_b * p_i * (1 - p_i)) ** (1 / 3), (p_b * p_i) ** (1 / 2)], rtol=1e-5)
    # The ONNX runtime's path (probabilities in, numpy out) gives the same numbers.
    batch = model.featurize(cands)
    with torch.no_grad():
        probs = model(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()})[1].numpy()
    np.testing.assert_allclose(batch.scores(probs), got, rtol=1e-5)


def test_tokens_head_round_trip_and_long_chunks(encoder_dir, tmp_path):
    model = tokens_model(encoder_dir, context_chars=40)
    model.round_to_save_dtype()
    long_text = "word " * 30 + "ovarian cancer" + " word" * 30
    cands = [Candidate(d.text, e.start, e.end, e.type, SCHEMA.definition(e.type)) for d in TEXTS for e in d.entities]
    cands.append(Candidate(long_text, 150, 164, "Disease", "a disease"))
    batch = model.featurize(cands)
    window = batch.windows[batch.rows[-1]]
    assert window.right - window.left < len(long_text) and long_text[window.left : window.right].count("ovarian cancer") == 1
    before = model.score(cands)
    assert before.shape == (len(cands),) and ((before > 0) & (before < 1)).all()
    model.save_pretrained(tmp_path / "sel")
    loaded = SelectorModel.from_pretrained(tmp_path / "sel")
    assert loaded.config.head == "tokens"
    np.testing.assert_allclose(loaded.score(cands), before, atol=1e-6)


def test_selector_head_is_validated():
    with pytest.raises(ConfigError, match="head"):
        SelectorConfig(head="crf")


def test_token_passes_cover_every_sentence_type_and_group():
    from llmner.testing import tiny_bert_tokenizer
    from llmner.training.negatives import build_negatives
    from llmner.training.selector import token_passes

    tok = tiny_bert_tokenizer()
    d = doc("Ovarian cancer was seen. BRCA1 was mutated in breast cancer.", ("Ovarian cancer", "Disease"),
            ("BRCA1", "Gene"), ("breast cancer", "Disease"))
    item = build_negatives(d, SCHEMA, NegativeConfig(per_mention=6))
    passes = token_passes([item], SCHEMA, tok, 64, 160, seed=3)
    by = {(p.window.text, p.window.type): p for p in passes}
    first, second = "Ovarian cancer was seen.", "BRCA1 was mutated in breast cancer."
    # Each sentence is read for its own types and one type it does not mention.
    assert {t for s, t in by if s == first} >= {"Disease"} and len({t for s, t in by if s == first}) == 2
    assert {t for s, t in by if s == second} >= {"Disease", "Gene"} and len({t for s, t in by if s == second}) == 3
    assert by[(second, "Disease")].gold == ((21, 34),) and by[(second, "Gene")].gold == ((0, 5),)
    absent = next(p for (s, t), p in by.items() if s == first and t != "Disease")
    assert absent.gold == () and absent.groups == ()
    for p in passes:   # groups: the gold span first, then negatives of the pass's type inside the sentence
        for group in p.groups:
            assert group[0] in p.gold and len(group) > 1
            assert all(0 <= s < e <= len(p.window.text) and (s, e) not in p.gold for s, e in group[1:])
    assert p.window.prefix.startswith(p.window.type + ": ")


def test_tokens_head_training_learns_and_resumes(encoder_dir, tmp_path):
    docs = [Document(f"d{i}", d.text, entities=list(d.entities)) for i, d in enumerate(TEXTS * 4)]
    sel_cfg = SelectorConfig(encoder=str(encoder_dir), head="tokens", trainable_layers=2, dropout=0.0, max_length=64)
    cfg = SelectorTrainingConfig(max_steps=60, passes_per_step=4, checkpoint_every=30, learning_rate=2e-3,
                                 head_learning_rate=1e-2, warmup_steps=1, negatives=NegativeConfig(per_mention=4))
    out = tmp_path / "tokens"
    result = train_selector(docs, TEXTS, SCHEMA, out, sel_cfg, cfg, progress=False)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"token_ce", "nce"} <= set(history[0]) and len(history) == 60
    assert np.mean(result.losses[-10:]) < 0.8 * np.mean(result.losses[:10])
    card = json.loads((out / "training_card.json").read_text())
    assert card["token_passes"] > 0 and card["selector_config"]["head"] == "tokens"
    # A gold mention outranks its boundary shift on the training texts (type conditioning is beyond
    # what this tiny encoder learns in 60 steps: the packaged-encoder probe showed it).
    model = SelectorModel.from_pretrained(out)
    text = TEXTS[0].text
    gold = Candidate(text, 14, 28, "Disease", SCHEMA.definition("Disease"))
    shifted = Candidate(text, 22, 28, "Disease", SCHEMA.definition("Disease"))
    g, s = model.score([gold, shifted])
    assert g > s
    resumed = train_selector(docs, TEXTS, SCHEMA, out, sel_cfg, cfg, resume=True, progress=False)
    np.testing.assert_allclose(resumed.losses[30:], result.losses[30:], rtol=1e-4)


def test_a_saved_selector_trains_further_from_its_own_weights(encoder_dir, tmp_path):
    docs = [Document(f"d{i}", d.text, entities=list(d.entities)) for i, d in enumerate(TEXTS * 4)]
    sel_cfg = SelectorConfig(encoder=str(encoder_dir), head="tokens", trainable_layers=2, dropout=0.0, max_length=64)
    cfg = SelectorTrainingConfig(max_steps=30, passes_per_step=4, checkpoint_every=30, learning_rate=2e-3,
                                 head_learning_rate=1e-2, warmup_steps=1, negatives=NegativeConfig(per_mention=4))
    first = train_selector(docs, TEXTS, SCHEMA, tmp_path / "first", sel_cfg, cfg, progress=False)
    again = train_selector(docs, TEXTS, SCHEMA, tmp_path / "again", sel_cfg, cfg, progress=False, init_from=tmp_path / "first")
    # Continued, its first step (before any update) starts from the trained weights, far below the first
    # run's first step (a fresh head, the same data and seed).
    assert again.losses[0] < 0.7 * first.losses[0]
    card = json.loads((tmp_path / "again" / "training_card.json").read_text())
    assert card["initialised_from"] == str(tmp_path / "first")
    with pytest.raises(ConfigError, match="trainable_layers"):
        train_selector(docs, TEXTS, SCHEMA, tmp_path / "bad", dataclasses.replace(sel_cfg, trainable_layers=1), cfg,
                       progress=False, init_from=tmp_path / "first")


def test_token_passes_show_paraphrased_namings_never_held_out_ones():
    from llmner.data_processing.corpora import corpus_schema
    from llmner.testing import tiny_bert_tokenizer
    from llmner.training.negatives import build_negatives
    from llmner.training.selector import token_passes
    from llmner.type_namings import load_type_namings

    tok = tiny_bert_tokenizer()
    schema = corpus_schema("bc5cdr")
    docs = [doc(f"Cisplatin caused nephrotoxicity in patient {i}. No drug was given.", ("Cisplatin", "Chemical"),
                ("nephrotoxicity", "Disease")) for i in range(12)]
    items = [build_negatives(Document(f"d{i}", d.text, entities=list(d.entities)), schema, NegativeConfig(per_mention=4))
             for i, d in enumerate(docs)]
    plain = token_passes(items, schema, tok, 64, 160, seed=3)
    varied = token_passes(items, schema, tok, 64, 160, seed=3, paraphrase_rate=1.0)
    assert token_passes(items, schema, tok, 64, 160, seed=3, paraphrase_rate=1.0) == varied       # seeded
    assert [(p.window.text, p.gold, p.groups) for p in plain] == [(p.window.text, p.gold, p.groups) for p in varied]
    namings = load_type_namings()
    allowed = {(n.name, n.definition) for t in schema.type_names for n in namings.concept_of("bc5cdr", t).namings}
    held_out = {(n.name, n.definition) for t in schema.type_names for n in namings.concept_of("bc5cdr", t).held_out}
    shown = {(p.window.type, p.definition) for p in varied}
    assert shown <= allowed and not shown & held_out and len(shown) > 2       # several namings, none held out
    assert all(p.window.prefix.startswith(p.window.type + ": ") for p in varied)
    assert {p.window.type for p in plain} == set(schema.type_names)


def test_added_characters_train_rows_of_their_own_and_round_trip(encoder_dir, tmp_path):
    """Characters the base vocabulary reads as [UNK] (Chinese for MiniLM) join it with trained rows; the
    base rows stay the base encoder's, the saved file holds only the added rows, and ONNX agrees."""
    from llmner.modeling.selector import ADDED_ROWS, WEIGHTS_NAME
    from llmner.modeling.selector_export import build_variants, check_parity

    zh = EntitySchema("zh_test", "zh", (EntityType("dis", "疾病"), EntityType("dru", "药物")))
    text = "患者有高血压，服用氨氯地平。"
    docs = [doc(text, ("高血压", "dis"), ("氨氯地平", "dru"), doc_id=f"z{i}") for i in range(4)]
    base = SelectorModel.from_encoder(SelectorConfig(encoder=str(encoder_dir), head="tokens", trainable_layers=1, max_length=64))
    unknown = {c for c in text if base.tokenizer.tokenize(c) == [base.tokenizer.unk_token]}
    assert len(unknown) >= 8
    cfg = SelectorTrainingConfig(max_steps=8, passes_per_step=2, checkpoint_every=8, warmup_steps=1,
                                 add_characters_min_count=4, negatives=NegativeConfig(per_mention=2))
    sel_cfg = SelectorConfig(encoder=str(encoder_dir), head="tokens", trainable_layers=1, max_length=64)
    train_selector(docs, docs[:1], zh, tmp_path / "zh", sel_cfg, cfg, progress=False)

    model = SelectorModel.from_pretrained(tmp_path / "zh")
    assert set(model.config.added_pieces) == unknown
    n_base = base.encoder.get_input_embeddings().num_embeddings
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert model.tokenizer.unk_token_id not in ids and max(ids) >= n_base
    rows = model.encoder.get_input_embeddings().weight.detach()
    assert torch.equal(rows[:n_base], base.encoder.get_input_embeddings().weight.detach())
    unk_row = rows[model.tokenizer.unk_token_id]
    assert all(not torch.allclose(rows[i], unk_row) for i in range(n_base, rows.shape[0]))   # they learned
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "zh" / WEIGHTS_NAME))
    assert saved[ADDED_ROWS].shape == (len(unknown), rows.shape[1])
    assert "encoder.embeddings.word_embeddings.weight" not in saved
    onnx = build_variants(model, tmp_path / "onnx", ("fp32",))["fp32"]
    assert check_parity(model, onnx).ok
    from llmner.runtime.onnx_selector import OnnxSelectorRuntime

    served = OnnxSelectorRuntime(tmp_path / "zh", device="cpu", variant="fp32", cache_dir=tmp_path / "cache")
    candidates = [Candidate(text, 3, 6, "dis", "疾病"), Candidate(text, 9, 13, "dru", "药物")]
    np.testing.assert_allclose(served.score(candidates), model.score(candidates), atol=1e-4)


def test_average_of_selectors_is_their_element_wise_mean_and_loads(encoder_dir, tmp_path):
    a, b = tokens_model(encoder_dir, model_id="a"), tokens_model(encoder_dir, model_id="b")
    b.load_state_dict(a.state_dict())      # b: a moved by known amounts, so the mean is known
    with torch.no_grad():
        for p in b.head.parameters():
            p.add_(1.0)
        b.encoder.encoder.layer[-1].output.dense.bias.sub_(0.5)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    (tmp_path / "a" / "training_card.json").write_text(json.dumps({"steps": 30, "schema": "ncbi_disease"}))
    out = average_selectors([tmp_path / "a", tmp_path / "b"], tmp_path / "mean", "mean-of-a-b")
    mean = SelectorModel.from_pretrained(out)
    saved = [SelectorModel.from_pretrained(tmp_path / n).trainable_state_dict() for n in ("a", "b")]
    for name, tensor in mean.trainable_state_dict().items():
        expected = (saved[0][name] + saved[1][name]) / 2
        # encoder layers are stored in fp16, as every selector's
        torch.testing.assert_close(tensor, expected, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(mean.head[-1].bias, a.head[-1].bias + 0.5)
    assert mean.config.model_id == "mean-of-a-b" and mean.config.threshold == a.config.threshold
    card = json.loads((out / "training_card.json").read_text())
    assert [x["model_id"] for x in card["averaged_from"]] == ["a", "b"] and card["averaged_from"][0]["steps"] == 30
    text = "patients with ovarian cancer"
    assert mean.score([Candidate(text, 14, 28, "Disease", "a disease")]).shape == (1,)
    # Selectors of different architectures are not averaged; nor is one selector alone.
    tokens_model(encoder_dir, max_length=64).save_pretrained(tmp_path / "short")
    with pytest.raises(ConfigError, match="max_length"):
        average_selectors([tmp_path / "a", tmp_path / "short"], tmp_path / "bad", "bad")
    with pytest.raises(ConfigError, match="at least two"):
        average_selectors([tmp_path / "a"], tmp_path / "bad", "bad")
    # The command line writes the same selector.
    from typer.testing import CliRunner

    from llmner.cli.main import app

    done = CliRunner().invoke(app, ["train", "average-selectors", str(tmp_path / "a"), str(tmp_path / "b"),
                                    "-o", str(tmp_path / "cli"), "--model-id", "mean-of-a-b"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cli" / "selector_weights.safetensors").read_bytes() == (out / "selector_weights.safetensors").read_bytes()
