"""The synonym encoder of the normalizer's neighbour step: pairs from a dictionary, contrastive
training, save/load, step 4 as the encoder neighbour or as a reranker of the n-gram shortlist, and a
normalizer folder that ships the encoder. Tiny random BERTs built here; never the packaged models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llmner.doc import Document
from llmner.normalization import (
    Dictionary,
    DictionaryConfig,
    DictionaryNormalizer,
    NormalizerSpec,
    TypeSpec,
    load_normalizer,
    save_normalizer,
)
from llmner.training.synonym_encoder import (
    CARD_NAME,
    _batches,
    sample_pairs,
    synonym_groups,
    train_synonym_encoder,
)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

MI = "MESH:D009203"
BC = "MESH:D001943"


def dictionary() -> Dictionary:
    d = Dictionary()
    d.update([(MI, "Myocardial Infarction"), (MI, "heart attack"), (MI, "cardiac infarction"),
              (BC, "Breast Neoplasms"), (BC, "breast tumour"), ("MESH:D003920", "Diabetes Mellitus"),
              ("MESH:D001943|MESH:D010051", "breast and ovarian cancer"), ("MESH:D006333", "Heart Failure"),
              ("MESH:D006333", "HEART FAILURE"), ("MESH:C000001", "50-78-2")])
    d.add("MI attack", MI, 2)
    return d


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from llmner.testing import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_synonym_groups_keep_identifiers_with_two_usable_names_and_mark_priority_names():
    groups = synonym_groups(dictionary(), priority=["MI  attack"])
    assert set(groups) == {MI, BC}      # composite, single-name, case-only and digit-only names give no pair
    names, prio = groups[MI]
    assert prio == ["MI attack"] and names[0] == "MI attack" and len(names) == 4
    capped = synonym_groups(dictionary(), max_names=2)
    assert all(len(n) == 2 for n, _ in capped.values())


def test_sample_pairs_are_synonyms_and_batches_hold_distinct_identifiers():
    groups = synonym_groups(dictionary(), priority=["MI attack"])
    pairs = sample_pairs(groups, 9, seed=1)
    assert len(pairs) == 9
    for curie, a, b in pairs:
        assert a != b and a in groups[curie][0] and b in groups[curie][0]
    for batch in _batches(pairs, 4):
        ids = [p[0] for p in batch]
        assert len(ids) == len(set(ids)) and len(batch) >= 2
    assert sample_pairs(groups, 9, seed=1) == pairs     # seeded


def test_training_pulls_synonyms_together_and_saves_a_loadable_encoder(tiny_encoder, tmp_path):
    from llmner.normalization.encoder import Encoder

    groups = synonym_groups(dictionary())
    pairs = sample_pairs(groups, 40 * 2, seed=0)
    before = Encoder(str(tiny_encoder))
    out = tmp_path / "enc"
    report = train_synonym_encoder(pairs, str(tiny_encoder), out, batch_size=2, learning_rate=3e-3, seed=0, dtype="float16")
    assert report.steps == 40 and report.pairs == 80 and report.losses[-1] < report.losses[0]
    assert (out / "config.json").is_file() and (out / CARD_NAME).is_file()
    assert json.loads((out / CARD_NAME).read_text())["dtype"] == "float16"
    after = Encoder(str(out))
    assert next(after.model.parameters()).dtype == torch.float32     # a float16 save is read as float32

    def margin(enc):
        v = enc.encode(["Myocardial Infarction", "heart attack", "Breast Neoplasms", "breast tumour"])
        return (v[0] @ v[1] + v[2] @ v[3]) - (v[0] @ v[3] + v[2] @ v[1])

    assert margin(after) > margin(before)


def test_encoder_memo_keeps_names_not_queries(tiny_encoder):
    from llmner.normalization.encoder import Encoder

    enc = Encoder(str(tiny_encoder))
    names = enc.encode(["heart attack", "Myocardial Infarction"])
    assert names.shape == (2, 32) and np.allclose(np.linalg.norm(names, axis=1), 1.0, atol=1e-5)
    q = enc.encode(["a query", "heart attack"], memo=False)
    assert set(enc._memo) == {"heart attack", "Myocardial Infarction"} and np.allclose(q[1], names[0])
    assert enc.encoded == 3


def test_encoder_and_rerank_neighbours_link_above_their_threshold_and_answer_nil_below(tiny_encoder):
    doc = Document("d", "A myocardal infarctoin case.")
    ents = [doc.span(2, 22, "Disease")]          # a misspelling: no name step links it
    assert ents[0].text == "myocardal infarctoin"
    for neighbour in ("encoder", "rerank"):
        loose = DictionaryNormalizer(dictionary(), DictionaryConfig(neighbour=neighbour, encoder=str(tiny_encoder),
                                                                    ngram_threshold=0.0, rerank_k=3)).warm()
        link = loose.link(ents, doc)[0]
        assert link.method == neighbour and link.curie is not None and 0.0 < link.score <= 1.0001
        strict = DictionaryNormalizer(dictionary(), DictionaryConfig(neighbour=neighbour, encoder=str(tiny_encoder),
                                                                     ngram_threshold=1.0))
        assert strict.link(ents, doc)[0].is_nil


def test_rerank_chooses_within_the_ngram_shortlist(tiny_encoder):
    norm = DictionaryNormalizer(dictionary(), DictionaryConfig(neighbour="rerank", encoder=str(tiny_encoder), rerank_k=2))
    short = norm.shortlists(["myocardial infarctions", "zzzz"], 2)
    assert short[0][0] == ("Myocardial Infarction", MI) and len(short[0]) == 2 and short[1] == []
    (curie, _), (none, score) = norm.nearest(["myocardial infarctions", "zzzz"])
    assert curie in {c for _, c in short[0]} and none is None and score == 0.0


def test_a_normalizer_folder_ships_its_encoder(tiny_encoder, tmp_path):
    shutil.copytree(tiny_encoder, tmp_path / "norm" / "encoder")
    spec = NormalizerSpec(types={"Disease": TypeSpec(neighbour="rerank", encoder="encoder", ngram_threshold=0.0)})
    save_normalizer(tmp_path / "norm", {"Disease": dictionary()}, spec)
    loaded = load_normalizer(tmp_path / "norm")
    inner = loaded.by_type["Disease"]
    assert inner.config.encoder == str(tmp_path / "norm" / "encoder") and inner.config.neighbour == "rerank"
    doc = Document("d", "A myocardal infarctoin case.")
    assert loaded.link([doc.span(2, 22, "Disease")], doc)[0].method == "rerank"
    # An old spec without the field still loads with the packaged default (not loaded until used).
    assert TypeSpec().config().encoder == "packaged:minilm"


def test_encoder_neighbour_keeps_the_names_embeddings_between_loads(tiny_encoder, tmp_path, monkeypatch):
    import llmner.normalization.encoder as encoder_module

    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMNER_NORMALIZER_EMBEDDINGS", raising=False)
    monkeypatch.setattr(encoder_module, "_SHARED", {})
    shutil.copytree(tiny_encoder, tmp_path / "norm" / "encoder")
    spec = NormalizerSpec(types={"Disease": TypeSpec(neighbour="encoder", encoder="encoder", ngram_threshold=0.0)})
    save_normalizer(tmp_path / "norm", {"Disease": dictionary()}, spec)
    first = load_normalizer(tmp_path / "norm").by_type["Disease"]
    files = list((tmp_path / "cache" / "normalizer-embeddings").glob("*.npy"))
    assert len(files) == 1 and not first._encoded.cached
    monkeypatch.setattr(encoder_module, "_SHARED", {})          # a new process: no memo
    second = load_normalizer(tmp_path / "norm").by_type["Disease"]
    assert second._encoded.cached and second._encoded.encoder.encoded == 0
    assert np.allclose(first._encoded.matrix, second._encoded.matrix)
    doc = Document("d", "A myocardal infarctoin case.")
    ents = [doc.span(2, 22, "Disease")]
    assert first.link(ents, doc) == second.link(ents, doc) and second.link(ents, doc)[0].method == "encoder"


def encoder_normalizer_folder(tiny_encoder, root):
    """A normalizer folder whose Disease step 4 encodes every name with the tiny encoder it ships."""
    shutil.copytree(tiny_encoder, root / "encoder")
    spec = NormalizerSpec(types={"Disease": TypeSpec(neighbour="encoder", encoder="encoder", ngram_threshold=0.0)})
    return save_normalizer(root, {"Disease": dictionary()}, spec)


def test_llmner_normalizer_embeddings_names_the_embeddings_directory(tiny_encoder, tmp_path, monkeypatch):
    import llmner.normalization.encoder as encoder_module
    from llmner.normalization.store import embeddings_dir

    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMNER_NORMALIZER_EMBEDDINGS", raising=False)
    assert embeddings_dir() == tmp_path / "cache" / "normalizer-embeddings"     # unset: as before
    monkeypatch.setenv("LLMNER_NORMALIZER_EMBEDDINGS", str(tmp_path / "baked"))
    assert embeddings_dir() == tmp_path / "baked"
    monkeypatch.setattr(encoder_module, "_SHARED", {})
    norm = encoder_normalizer_folder(tiny_encoder, tmp_path / "norm")
    index = load_normalizer(norm).by_type["Disease"]._encoded
    assert index.file is not None and index.file.parent == tmp_path / "baked" and index.file.is_file()
    assert not (tmp_path / "cache").exists()
    monkeypatch.setattr(encoder_module, "_SHARED", {})
    assert load_normalizer(norm).by_type["Disease"]._encoded.cached


def test_an_unwritable_embeddings_directory_costs_the_next_start_not_this_one(tiny_encoder, tmp_path, monkeypatch, caplog):
    import llmner.normalization.encoder as encoder_module

    (tmp_path / "a-file").write_text("")    # a directory below a file cannot be made, even by root
    monkeypatch.setenv("LLMNER_NORMALIZER_EMBEDDINGS", str(tmp_path / "a-file" / "embeddings"))
    monkeypatch.setattr(encoder_module, "_SHARED", {})
    loaded = load_normalizer(encoder_normalizer_folder(tiny_encoder, tmp_path / "norm"))
    assert not loaded.by_type["Disease"]._encoded.cached and "not kept" in caplog.text
    doc = Document("d", "A myocardal infarctoin case.")
    assert loaded.link([doc.span(2, 22, "Disease")], doc)[0].method == "encoder"


def test_normalizer_warm_stores_the_embeddings_a_fresh_start_reads(tiny_encoder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import llmner.bundle as bundle_module
    import llmner.normalization.encoder as encoder_module
    from llmner.cli.main import app

    monkeypatch.setenv("LLMNER_NORMALIZER_EMBEDDINGS", str(tmp_path / "baked"))
    monkeypatch.setattr(encoder_module, "_SHARED", {})
    bundle = tmp_path / "bundle"
    encoder_normalizer_folder(tiny_encoder, bundle / "normalizer")
    monkeypatch.setattr(bundle_module, "default_bundle_path", lambda: bundle)
    res = CliRunner().invoke(app, ["normalizer", "warm"])          # no argument: the default bundle
    assert res.exit_code == 0, res.output
    (file,) = (tmp_path / "baked").glob("*.npy")
    names = len({n.casefold() for n in dictionary().names})     # one row per case-folded name
    assert res.stdout == "" and f"Disease: {names} names encoded in" in res.stderr and str(file) in res.stderr
    monkeypatch.setattr(encoder_module, "_SHARED", {})            # a fresh worker
    index = load_normalizer(bundle / "normalizer").by_type["Disease"]._encoded
    assert index.cached and index.encoder.encoded == 0 and index.file == file
    again = CliRunner().invoke(app, ["normalizer", "warm", str(bundle)])
    assert again.exit_code == 0 and "already stored" in again.stderr


def test_normalizer_warm_of_an_ngram_normalizer_stores_nothing_and_of_no_normalizer_fails(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmner.cli.main import app

    monkeypatch.setenv("LLMNER_NORMALIZER_EMBEDDINGS", str(tmp_path / "baked"))
    save_normalizer(tmp_path / "norm", {"Disease": dictionary()}, NormalizerSpec(types={"Disease": TypeSpec()}))
    res = CliRunner().invoke(app, ["normalizer", "warm", str(tmp_path / "norm")])
    assert res.exit_code == 0 and "nothing to store" in res.stderr and not (tmp_path / "baked").exists()
    res = CliRunner().invoke(app, ["normalizer", "warm", str(tmp_path)])
    assert res.exit_code != 0 and "has no normalizer" in str(res.exception)


def test_normalizer_build_cli_ships_an_encoder_for_one_type(tiny_encoder, tmp_path):
    from corpora_helpers import shared_data
    from typer.testing import CliRunner

    from llmner.cli.main import app

    shared_data()   # skips without ../shared/data
    out = tmp_path / "n"
    res = CliRunner().invoke(app, ["normalizer", "build", "--corpus", "ncbi_disease", "--split", "dev", "-o", str(out),
                                   "--neighbour", "Disease=rerank", "--encoder", str(tiny_encoder), "--threshold", "0.8"])
    assert res.exit_code == 0, res.output
    assert (out / "encoder" / "config.json").is_file()
    spec = json.loads((out / "normalizer.json").read_text())["types"]["Disease"]
    assert (spec["neighbour"], spec["encoder"], spec["ngram_threshold"]) == ("rerank", "encoder", 0.8)
    res = CliRunner().invoke(app, ["normalizer", "build", "--corpus", "ncbi_disease", "--split", "dev", "-o", str(out),
                                   "--neighbour", "Disease=sapbert"])
    assert res.exit_code != 0 and "sapbert" in str(res.exception)
