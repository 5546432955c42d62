"""The quality report machinery (benchmarks/quality.py, benchmarks/peer_baseline.py, benchmarks/mixture.py and
the evaluation subsets and intervals they share) on tiny random models.

The peer baseline trains a tiny random BERT token classifier for a few steps; the report runs end to
end on two corpora (a few sentences each) with the tiny bundle, then again from its row cache.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mixture
import peer_baseline
import quality

from llmner.data_processing.corpora import load_corpus
from llmner.doc import Entity
from llmner.errors import ValidationError
from llmner.evaluation.bootstrap import paired_bootstrap_difference
from llmner.evaluation.subsets import count_sentences, evaluation_subset, spread_documents


def tiny_tagger(labels: list[str], seed: int = 0):
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from llmner.testing import tiny_bert_tokenizer

    tokenizer = tiny_bert_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(seed)
    return BertForTokenClassification(config), tokenizer


def test_evaluation_subset_takes_first_documents_until_sentences_and_mentions() -> None:
    docs = load_corpus("linnaeus", "test")
    plain = evaluation_subset("linnaeus", 3)
    assert [d.id for d in plain.documents] == [d.id for d in docs[:3]] and plain.sentences == 3
    dense = evaluation_subset("linnaeus", 3, min_gold=5)
    assert dense.gold_mentions >= 5 > sum(len(d.entities) for d in dense.documents[:-1])
    assert [d.id for d in dense.documents] == [d.id for d in docs[: len(dense.documents)]]
    ncbi = evaluation_subset("ncbi_disease", 15)   # abstracts: whole documents until 15 sentences
    assert ncbi.split == "test" and ncbi.sentences >= 15 > ncbi.sentences - count_sentences(ncbi.documents[-1])


def test_evaluation_subset_from_end_takes_the_last_documents_in_split_order() -> None:
    docs = load_corpus("cmeee", "dev")
    tail = evaluation_subset("cmeee", 3, split="dev", from_end=True)
    assert [d.id for d in tail.documents] == [d.id for d in docs[-len(tail.documents):]]
    head = evaluation_subset("cmeee", 100, split="dev")
    assert not {d.id for d in tail.documents} & {d.id for d in head.documents}


def test_spread_documents_take_evenly_spaced_runs_across_the_split() -> None:
    docs = load_corpus("linnaeus", "dev")   # one document per sentence, 17 articles in order
    chosen, sentences = spread_documents(docs, 40, 4)
    index = {d.id: i for i, d in enumerate(docs)}
    positions = [index[d.id] for d in chosen]
    assert sentences == len(chosen) == 40 and positions == sorted(positions)
    assert [positions[i * 10] for i in range(4)] == [r * len(docs) // 4 for r in range(4)]
    assert all(positions[i * 10 + 9] - positions[i * 10] == 9 for i in range(4))
    with pytest.raises(ValidationError):
        spread_documents(docs, 40, 0)


def test_outermost_entities_keeps_outer_and_earlier() -> None:
    outer, inner = Entity(0, 20, "protein"), Entity(5, 10, "DNA")
    a, crossing = Entity(30, 40, "RNA"), Entity(35, 45, "RNA")
    assert peer_baseline.outermost_entities([inner, crossing, outer, a]) == [outer, a]


def test_bio_targets_decode_back_to_the_gold_spans() -> None:
    labels = peer_baseline.bio_labels(["Disease", "Chemical"])
    model, tokenizer = tiny_tagger(labels)
    text = "Mutations of BRCA1 cause breast cancer and ovarian cancer (OC)."
    gold = [Entity(25, 38, "Disease"), Entity(43, 57, "Disease"), Entity(13, 18, "Chemical")]
    chunk = peer_baseline.TrainingChunk(text, gold)
    enc = peer_baseline.encode_batch([text], tokenizer, 64)
    targets = peer_baseline.bio_targets(enc, [chunk], model.config.label2id)[0]
    word_ids, spans = peer_baseline.word_spans(enc, 0)
    tags = [labels[t] for t in targets if t != peer_baseline.IGNORE]
    offsets = [spans[w] for i, w in enumerate(word_ids) if targets[i] != peer_baseline.IGNORE]
    decoded = peer_baseline.decode_bio(tags, offsets, text)
    assert sorted(e.key for e in decoded) == sorted(e.key for e in gold)
    assert all(isinstance(e.start, int) and isinstance(e.end, int) for e in decoded)


def test_peer_baseline_trains_and_scores_a_tiny_tagger(tmp_path: Path) -> None:
    labels = peer_baseline.bio_labels(["Disease"])
    model, tokenizer = tiny_tagger(labels)
    config = peer_baseline.PeerConfig(max_train_sentences=12, epochs=2, batch_size=4, lr=1e-3, max_tokens=64)
    stats = peer_baseline.TrainingStats()
    chunks = peer_baseline.training_chunks(load_corpus("ncbi_disease", "train")[:3], tokenizer, config, stats)
    assert len(chunks) == 12 and stats.chunks > 12 and stats.mentions == sum(len(c.entities) for c in chunks)
    history = peer_baseline.train_tagger(model, tokenizer, chunks, config, stats, log=lambda _: None)
    assert len(history) == 6 and all(math.isfinite(h["loss"]) for h in history)
    target = peer_baseline.save_peer_model(model, tokenizer, tmp_path / "ncbi_disease",
                                           {"corpus": "ncbi_disease", "config": {"max_tokens": 64}, "train_seconds": 1.0},
                                           history)
    subset = evaluation_subset("ncbi_disease", 3)
    result = peer_baseline.evaluate_peer(target, subset)
    micro = result["report"]["strict"]["micro"]
    assert result["documents"] == len(subset.documents) == 1 and result["gold_mentions"] > 0
    assert result["sentences"] == count_sentences(subset.documents[0]) >= 3
    assert 0.0 <= micro["precision"] <= 1.0 and 0.0 <= micro["recall"] <= 1.0
    assert micro["tp"] + micro["fn"] == result["gold_mentions"]
    assert result["documents_per_second"] > 0 and len(result["per_document"]) == 1


def test_train_documents_restrict_the_peer_to_every_chunk_of_the_listed_documents(tmp_path: Path) -> None:
    docs = load_corpus("ncbi_disease", "train")[:6]
    listed = tmp_path / "trained_documents.json"
    listed.write_text(json.dumps({"documents": {"ncbi_disease": [docs[4].id, docs[1].id]}, "counts": {}}))
    chosen = peer_baseline.TrainDocuments.read(listed)
    assert [d.id for d in chosen.select("ncbi_disease", docs)] == [docs[1].id, docs[4].id]   # split order
    assert chosen.card("ncbi_disease", 593) == {"file": str(listed), "sha256": chosen.sha256, "documents": 2,
                                                "split_documents": 593}
    bare = tmp_path / "bare.json"   # a bare {corpus: [ids]} mapping reads the same
    bare.write_text(json.dumps({"ncbi_disease": [docs[1].id]}))
    assert peer_baseline.TrainDocuments.read(bare).documents == {"ncbi_disease": [docs[1].id]}
    with pytest.raises(ValueError, match="lists no documents for bc5cdr"):
        chosen.select("bc5cdr", docs)
    with pytest.raises(ValueError, match="not in its training split"):
        chosen.select("ncbi_disease", docs[:3])

    _, tokenizer = tiny_tagger(peer_baseline.bio_labels(["Disease"]))
    config = peer_baseline.PeerConfig(max_train_sentences=None, max_tokens=64)
    stats = peer_baseline.TrainingStats()
    chunks = peer_baseline.training_chunks(chosen.select("ncbi_disease", docs), tokenizer, config, stats)
    every = [c for d in (docs[1], docs[4]) for c in peer_baseline.document_chunks(d, tokenizer, 64)]
    assert [c.text for c in chunks] == [c.text for c in every] and stats.documents == 2 == len({d.id for d in (docs[1], docs[4])})
    with pytest.raises(SystemExit):   # a document list takes all their chunks: no sample size beside it
        peer_baseline.main(["--corpus", "ncbi_disease", "--train-documents", str(listed), "--max-train-sentences", "10",
                            "--output", str(tmp_path / "peer")])


def test_describe_peer_states_how_each_peer_was_trained() -> None:
    def card(corpus: str, chunks: int, listed: int | None = None, sample: int | None = None) -> dict:
        out = {"corpus": corpus, "config": {"max_train_sentences": sample, "epochs": 1.0, "batch_size": 16, "lr": 5e-4},
               "stats": {"chunks_used": chunks}, "train_seconds": 10.0, "torch_threads": 1}
        if listed is not None:
            out["train_documents"] = {"file": "docs.json", "sha256": "x", "documents": listed, "split_documents": 593}
        return out

    equal = quality.describe_peer([card("ncbi_disease", 4000, listed=585), card("s800", 2000, listed=541)])
    assert equal.startswith("trained on every chunk of the training documents listed in `docs.json`")
    assert "NCBI-Disease 585 of 593" in equal and "6,000 training chunks in all, 1.0 epochs" in equal
    assert quality.describe_peer([card("ncbi_disease", 5000)]).startswith("trained on every chunk of the training split (full data)")
    assert quality.describe_peer([card("ncbi_disease", 1000, sample=1000)]).startswith(
        "trained on a seeded sample of up to 1000 training chunks per corpus")
    assert quality.describe_peer([]) is None


def test_report_table_and_summary_show_the_full_data_peer_as_reference_columns() -> None:
    def prf(f1: float) -> dict:
        return {"precision": f1, "recall": f1, "f1": f1, "tp": 1, "fp": 0, "fn": 0}

    def row(corpus: str, ours: float, peer: float, reference: float | None) -> dict:
        return {"label": f"{corpus} test", "corpus": corpus, "split": "test", "scope": "all", "kind": "main",
                "documents": 3, "sentences": 20, "gold_mentions": 30, "llmner_alone": prf(ours), "llmner_selector": None,
                "llmner_f1_ci": (ours - 0.1, ours + 0.1), "llmner_shipped": prf(ours), "llmner_rate": None,
                "peer": prf(peer), "peer_f1_ci": None, "peer_rate": None, "published": None,
                "llmner_minus_peer_ci": (-0.05, 0.2), "reference_peer": prf(reference) if reference is not None else None,
                "reference_peer_rate": {"documents_per_second": 12.5, "sentences_per_second": 80.0, "seconds": 1.0}
                if reference is not None else None}

    rows = [row("genia", 0.6, 0.5, 0.7), row("s800", 0.5, 0.4, 0.45)]
    table = quality.markdown_table(rows, "peer, equal data").splitlines()
    header = [h.strip() for h in table[0].strip("|").split("|")]
    assert header[6:11] == ["peer, equal data P / R / F1", "peer, equal data F1 95% CI", "peer, equal data docs/s (sents/s)",
                            "peer, full data P / R / F1", "peer, full data docs/s (sents/s)"]
    assert header[-1] == "published F1" and len(header) == len(quality.MD_HEADER) + 2
    first = [c.strip() for c in table[2].strip("|").split("|")]
    assert len(first) == len(header) and first[9] == "70.0 / 70.0 / 70.0" and first[10] == "12.50 (80.0)"
    summary = quality.comparison_summary(rows)
    assert summary.startswith("llmner (shipped configuration) above the peer baseline on 2 of 2 corpora")
    assert summary.endswith("llmner above it on 1 of 2 corpora (S800). llmner − full-data peer F1, points: "
                            "GENIA (nested) -10.0; S800 +5.0.")
    # Without a full-data peer the table and the summary are as before.
    plain = [row("genia", 0.6, 0.5, None)]
    assert quality.markdown_table(plain).splitlines()[0] == "| " + " | ".join(quality.MD_HEADER) + " |"
    assert "full data" not in quality.comparison_summary(plain)


def test_quality_report_end_to_end_and_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from llmner.testing import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "bundle")
    model, tokenizer = tiny_tagger(peer_baseline.bio_labels(["Disease"]))
    peer_dir = tmp_path / "peer"
    peer_baseline.save_peer_model(model, tokenizer, peer_dir / "ncbi_disease",
                                  {"corpus": "ncbi_disease", "config": {"max_tokens": 64, "epochs": 1}, "train_seconds": 2.0},
                                  [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    full_dir = tmp_path / "peer_full"   # the full-data reference peer (another model: another row cache key)
    model, tokenizer = tiny_tagger(peer_baseline.bio_labels(["Disease"]), seed=1)
    peer_baseline.save_peer_model(model, tokenizer, full_dir / "ncbi_disease",
                                  {"corpus": "ncbi_disease", "config": {"max_tokens": 64, "epochs": 1, "max_train_sentences": None},
                                   "stats": {"chunks_used": 40}, "train_seconds": 3.0},
                                  [{"step": 1, "loss": 1.2}, {"step": 2, "loss": 0.7}])
    out = tmp_path / "out"
    argv = ["--bundle", str(bundle), "--zero-shot-bundle", str(bundle), "--peer-dir", str(peer_dir),
            "--reference-peer-dir", str(full_dir),
            "--corpus", "ncbi_disease", "--corpus", "bc5cdr", "--sentences", "2", "--selector-backend", "torch",
            "--bootstrap", "50", "--work-dir", str(tmp_path / "work"), "--output-dir", str(out)]
    assert quality.main(argv) == 0
    printed = capsys.readouterr().out

    rows = json.loads((out / "quality.json").read_text())["rows"]
    assert [r["label"] for r in rows] == [
        "NCBI-Disease test", "BC5CDR test (Chemical)", "BC5CDR test (Disease)", "BC5CDR test (overall)",
        "NCBI-Disease test, free decoding", "NCBI-Disease test, zero-shot (bundle b, trained without it)"]
    by_label = {r["label"]: r for r in rows}
    for r in rows:
        assert r["documents"] == 1 and r["gold_mentions"] > 0
        for cell in (r["llmner_alone"], r["llmner_selector"]):
            assert 0.0 <= cell["precision"] <= 1.0 and 0.0 <= cell["recall"] <= 1.0 and 0.0 <= cell["f1"] <= 1.0
        assert r["llmner_rate"]["documents_per_second"] > 0
        assert r["label"] in printed
    bc5 = [by_label[f"BC5CDR test ({s})"] for s in ("Chemical", "Disease", "overall")]
    assert bc5[0]["gold_mentions"] + bc5[1]["gold_mentions"] == bc5[2]["gold_mentions"]
    assert by_label["NCBI-Disease test"]["peer"] is not None and by_label["BC5CDR test (overall)"]["peer"] is None
    assert by_label["NCBI-Disease test"]["reference_peer"] is not None and by_label["NCBI-Disease test"]["reference_peer_rate"]
    assert by_label["BC5CDR test (overall)"]["reference_peer"] is None
    assert by_label["NCBI-Disease test"]["published"] == ["BioBERT", 89.7]
    assert by_label["BC5CDR test (Chemical)"]["published"] == ["PubMedBERT", 93.3]
    assert by_label["NCBI-Disease test, zero-shot (bundle b, trained without it)"]["published"][1] == 69.15
    md = (out / "quality.md").read_text()
    assert "| NCBI-Disease test |" in md and "89.70 (BioBERT)" in md
    assert "| peer, full data P / R / F1 |" in md and "trained on every chunk of the training split (full data)" in md
    for png in ("quality_f1.png", "quality_training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun reads every row from the cache: no pipeline is built, nothing is scored again.
    monkeypatch.setattr(quality, "run_llmner", lambda *a, **k: pytest.fail("llmner row recomputed"))
    monkeypatch.setattr(quality, "run_peer", lambda *a, **k: pytest.fail("peer row recomputed"))
    assert quality.main(argv) == 0
    assert json.loads((out / "quality.json").read_text())["rows"] == rows

    # Without the peer models and bundle (b), an earlier report's cells for them are carried over, marked.
    later = tmp_path / "later"
    argv_later = ["--bundle", str(bundle), "--corpus", "ncbi_disease", "--corpus", "bc5cdr", "--sentences", "2",
                  "--selector-backend", "torch", "--bootstrap", "50", "--work-dir", str(tmp_path / "work"),
                  "--output-dir", str(later), "--carry-over", str(out / "quality.json")]
    assert quality.main(argv_later) == 0
    carried = json.loads((later / "quality.json").read_text())["rows"]
    assert [r["label"] for r in carried] == [r["label"] for r in rows]
    by_label_later = {r["label"]: r for r in carried}
    zero_shot = "NCBI-Disease test, zero-shot (bundle b, trained without it)"
    assert by_label_later[zero_shot]["carried"] == ["llmner"]
    assert by_label_later[zero_shot]["llmner_alone"] == by_label[zero_shot]["llmner_alone"]
    assert by_label_later["NCBI-Disease test"]["peer"] == by_label["NCBI-Disease test"]["peer"]
    assert by_label_later["NCBI-Disease test"]["carried"] == ["peer", "reference_peer"]
    assert by_label_later["NCBI-Disease test"]["reference_peer"] == by_label["NCBI-Disease test"]["reference_peer"]
    assert "carried" not in by_label_later["BC5CDR test (overall)"]
    md_later = (later / "quality.md").read_text()
    assert "zero-shot (bundle b, trained without it) †" in md_later and "† carried over unchanged" in md_later


def test_paired_difference_interval_and_the_summary_that_reads_it() -> None:
    # Ten documents; "good" finds every gold mention, "poor" half of them with as many false positives.
    good = [{"all": [2, 0, 0]} for _ in range(10)]
    poor = [{"all": [1, 1, 1]} for _ in range(10)]
    lo, hi = paired_bootstrap_difference(good, poor, "all", samples=200)
    assert lo == hi == pytest.approx(0.5)                        # every resample: 1.0 - 0.5
    assert paired_bootstrap_difference(good, good, "all", samples=200) == (0.0, 0.0)
    assert paired_bootstrap_difference(good, poor[:9], "all") is None          # not the same documents
    assert paired_bootstrap_difference(good[:1], poor[:1], "all") is None      # nothing to resample
    # Mixed: the two systems trade documents, so the interval holds 0.
    mixed_a = [{"all": [2, 0, 0]} if i % 2 else {"all": [0, 2, 2]} for i in range(10)]
    mixed_b = [{"all": [0, 2, 2]} if i % 2 else {"all": [2, 0, 0]} for i in range(10)]
    lo, hi = paired_bootstrap_difference(mixed_a, mixed_b, "all", samples=500)
    assert lo < 0 < hi

    def row(corpus: str, ours: float, peer: float, ci: tuple[float, float] | None) -> dict:
        return {"kind": "main", "scope": "all", "corpus": corpus, "llmner_shipped": {"f1": ours}, "peer": {"f1": peer},
                "llmner_minus_peer_ci": ci}

    summary = quality.comparison_summary([row("genia", 0.4, 0.2, (0.1, 0.3)), row("bc2gm", 0.2, 0.5, (-0.4, -0.2)),
                                          row("s800", 0.27, 0.17, (-0.05, 0.25))])
    assert summary.startswith("llmner (shipped configuration) above the peer baseline on 2 of 3 corpora: GENIA (nested), S800.")
    assert "llmner above on GENIA (nested); peer above on BC2GM; the interval holds 0 on S800." in summary
    assert "GENIA (nested) +20.0 (+10.0 to +30.0)" in summary
    assert quality.comparison_summary([row("genia", 0.4, 0.2, None)]).endswith("on 1 of 1 corpora: GENIA (nested).")


def test_mixture_ablation_scores_candidates_pairs_them_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from llmner.testing import build_tiny_bundle

    first, second = build_tiny_bundle(tmp_path / "first"), build_tiny_bundle(tmp_path / "second")
    out = tmp_path / "out"
    argv = ["--candidate", f"t2={first}", "--candidate", f"t5={second}", "--reference", "t2", "--corpus", "ncbi_disease",
            "--corpus", "genia", "--sentences", "2", "--min-gold", "1", "--bootstrap", "50",
            "--work-dir", str(tmp_path / "work"), "--output-dir", str(out)]
    assert mixture.main(argv) == 0
    result = json.loads((out / "mixture.json").read_text())
    assert result["reference"] == "t2" and result["best"] in ("t2", "t5") and result["corpora"] == ["ncbi_disease", "genia"]
    for name in ("t2", "t5"):
        cand = result["candidates"][name]
        f1s = [cand["per_corpus"][c]["f1"] for c in ("ncbi_disease", "genia")]
        assert cand["macro_f1"] == pytest.approx(sum(f1s) / 2)
        assert cand["macro_f1_ci"][0] <= cand["macro_f1_ci"][1] and cand["sentences_per_second"] > 0
        for c in ("ncbi_disease", "genia"):   # every gold mention is a tp or an fn
            gold = evaluation_subset(c, 2, split="dev", min_gold=1, from_end=True).gold_mentions
            assert cand["per_corpus"][c]["tp"] + cand["per_corpus"][c]["fn"] == gold
    assert result["candidates"]["t2"]["diff_ci"] == [0.0, 0.0]   # the reference against itself, paired
    md = (out / "mixture.md").read_text()
    assert "| t2 |" in md and "| t5 |" in md and "Highest macro F1" in md
    assert "t2" in capsys.readouterr().out

    # A rerun reads every row from the cache.
    monkeypatch.setattr(mixture, "run_candidate", lambda *a, **k: pytest.fail("row recomputed"))
    assert mixture.main(argv) == 0
    assert json.loads((out / "mixture.json").read_text())["candidates"] == result["candidates"]


def test_mixture_ablation_names_a_bad_candidate(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected NAME=BUNDLE_DIR"):
        mixture.main(["--candidate", "nobundle"])
    with pytest.raises(SystemExit, match="is not a bundle"):
        mixture.main(["--candidate", f"x={tmp_path}"])


def test_named_settings_take_yaml_values_and_lists() -> None:
    from llmner.evaluation.reports import named_settings

    assert named_settings("with_btc:seed=19,corpora=[ncbi_disease,btc],entity_free_ratio=0.2") == (
        "with_btc", {"seed": 19, "corpora": ["ncbi_disease", "btc"], "entity_free_ratio": 0.2})
    assert named_settings("merged:") == ("merged", {})
    assert named_settings("unmerged:merge_adapter=false") == ("unmerged", {"merge_adapter": False})


def test_bundle_fingerprint_follows_content_not_location(tmp_path):
    """A row cache committed in git must stay valid in another checkout: the key is the bundle's
    content, not where it lies."""
    import shutil

    from llmner.evaluation.reports import bundle_fingerprint

    first = tmp_path / "a" / "bundle"
    (first / "generator").mkdir(parents=True)
    (first / "bundle.json").write_text('{"name": "x"}')
    (first / "generator" / "training_card.json").write_text('{"steps": 2880}')
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, moved)
    assert bundle_fingerprint(first) == bundle_fingerprint(moved)
    (moved / "generator" / "training_card.json").write_text('{"steps": 3000}')
    assert bundle_fingerprint(first) != bundle_fingerprint(moved)


def test_onnx_rows_are_keyed_on_the_export_recipe_that_scored_them(tmp_path, monkeypatch):
    """A new ONNX export recipe scores anew (session 29's 7-bit weights), so its rows get a new key;
    rows of the torch backend keep the bundle's plain fingerprint."""
    import llmner.runtime.onnx_selector as onnx_selector
    from llmner.evaluation.reports import bundle_fingerprint, served_fingerprint

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text('{"name": "x"}')
    plain = bundle_fingerprint(bundle)
    monkeypatch.setattr(onnx_selector, "EXPORT_VERSION", "2")
    assert served_fingerprint(bundle, "onnx") == f"{plain}-onnx2"
    monkeypatch.setattr(onnx_selector, "EXPORT_VERSION", "3")
    assert served_fingerprint(bundle, "onnx") == f"{plain}-onnx3"
    assert served_fingerprint(bundle, "torch") == plain


def test_peers_only_caches_peer_rows_that_a_later_report_reads_without_the_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from llmner.testing import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "bundle")
    model, tokenizer = tiny_tagger(peer_baseline.bio_labels(["Disease"]))
    peer_dir = tmp_path / "peer"
    peer_baseline.save_peer_model(model, tokenizer, peer_dir / "ncbi_disease",
                                  {"corpus": "ncbi_disease", "config": {"max_tokens": 64, "epochs": 1}, "train_seconds": 2.0},
                                  [{"step": 1, "loss": 1.0}])
    common = ["--bundle", str(bundle), "--corpus", "ncbi_disease", "--sentences", "2", "--selector-backend", "torch",
              "--bootstrap", "20", "--work-dir", str(tmp_path / "work")]
    monkeypatch.setattr(quality, "run_llmner", lambda *a, **k: pytest.fail("peers-only ran llmner"))
    assert quality.main(common + ["--peer-dir", str(peer_dir), "--peers-only", "--output-dir", str(tmp_path / "none")]) == 0
    assert "peer ncbi_disease: strict F1" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()

    # The weights are gone; the card and config (kept in git) still name the cached row.
    kept = tmp_path / "kept" / "ncbi_disease"
    kept.mkdir(parents=True)
    for name in (peer_baseline.PEER_CARD, "config.json"):
        shutil.copy(peer_dir / "ncbi_disease" / name, kept / name)
    monkeypatch.undo()
    monkeypatch.setattr(quality, "run_peer", lambda *a, **k: pytest.fail("peer row recomputed"))
    assert quality.main(common + ["--peer-dir", str(kept.parent), "--output-dir", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "quality.json").read_text())["rows"]
    assert rows[0]["peer"] is not None
