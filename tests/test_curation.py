"""IFD curation (BioSelectTune hybrid superfiltering) with a tiny random Llama."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_generator import disease_docs, ncbi, quiet, tiny_base, train_config

from llmner.codecs import get_codec
from llmner.errors import ConfigError
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.schema import get_schema
from llmner.testing import tiny_causal_tokenizer, tiny_llama
from llmner.training.curation import (
    CurationConfig,
    ScoredExample,
    curate,
    quantiles,
    score_examples,
    select,
)
from llmner.training.examples import ExampleConfig, text_examples, tokenize_example
from llmner.training.generator import read_curated_ids, train_generator


def _direct_mean_nll(model, ids: list[int], first: int) -> float:
    """-mean log p(ids[t] | ids[:t]) for t >= first, one unpadded sequence, one token at a time."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    terms = [-torch.log_softmax(logits[t - 1], dim=-1)[ids[t]].item() for t in range(max(first, 1), len(ids))]
    return sum(terms) / len(terms)


def test_ifd_matches_a_direct_computation_in_batches() -> None:
    tokenizer = tiny_causal_tokenizer()
    model = tiny_llama(tokenizer, hidden=32)
    builder, schema = PromptBuilder(PromptConfig(definitions="none")), get_schema("ncbi_disease")
    texts = text_examples(disease_docs(5), "ncbi_disease", get_codec("inline"),
                          ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0))
    pairs = [(t, tokenize_example(t, tokenizer, builder, schema)) for t in texts]
    scored = score_examples(model, tokenizer, pairs, batch_size=3)        # mixed lengths: padded batches
    assert [s.id for s in scored] == [t.id for t in texts]
    for s, (_, tok) in zip(scored, pairs):
        conditional = _direct_mean_nll(model, list(tok.input_ids), tok.prompt_length)
        answer = list(tok.input_ids[tok.prompt_length :])
        alone = _direct_mean_nll(model, answer, 0)
        assert s.nll_conditional == pytest.approx(conditional, abs=1e-4)
        assert s.nll_answer == pytest.approx(alone, abs=1e-4)
        assert s.ifd == pytest.approx(math.exp(conditional) / math.exp(alone), rel=1e-3)
        assert s.answer_tokens == len(answer)
    one_by_one = score_examples(model, tokenizer, pairs, batch_size=1)
    assert [s.ifd for s in one_by_one] == pytest.approx([s.ifd for s in scored], rel=1e-4)


def _scored(name: str, ifd: float | None, entities: bool = True, corpus: str = "c") -> ScoredExample:
    # nll_answer = 0 makes IFD = exp(nll_conditional): a hand-chosen IFD.
    return ScoredExample(name, corpus, name, 0, entities, None if ifd is None else math.log(ifd), 0.0, 5)


def test_selection_drops_ifd_at_least_one_keeps_top_k_and_every_entity_free_example() -> None:
    scored = [_scored("a", 0.9), _scored("b", 0.2), _scored("c", 1.0), _scored("d", 1.7), _scored("e", 0.5),
              _scored("f", 0.7), _scored("g", None), _scored("free1", 1.4, entities=False),
              _scored("free2", 0.1, entities=False)]
    sel = select(scored, keep_percent=50)
    assert {s.id for s in sel.dropped_ifd_ge_1} == {"c", "d"}
    assert [s.id for s in sel.unscorable] == ["g"]
    # Valid: a .9, f .7, e .5, b .2 -> top 50 % = a, f.
    assert [s.id for s in sel.kept] == ["a", "f", "free1", "free2"]          # input order kept
    assert {s.id for s in sel.dropped_below_top} == {"e", "b"}
    summary = sel.summary
    assert summary["kept"] == 4 and summary["kept_with_entities"] == 2 and summary["kept_entity_free"] == 2
    assert summary["dropped_ifd_ge_1"] == 2 and summary["ifd_threshold"] == pytest.approx(0.7)
    assert summary["ifd_quantiles_with_entities"]["q50"] == pytest.approx((0.7 + 0.9) / 2)  # all 6 scored
    # Rounding up: 3 valid examples at 50 % keep 2.
    assert len([s for s in select(scored[:3] + scored[4:5], 50).kept if s.has_entities]) == 2
    assert len([s for s in select(scored, 100).kept if s.has_entities]) == 4
    with pytest.raises(ConfigError):
        select(scored, 0)


def test_per_corpus_ranking_keeps_every_corpus_share_and_pooled_does_not() -> None:
    # Corpus "hard" has high IFDs throughout, "easy" low ones: pooled, "easy" loses every example.
    scored = ([_scored(f"h{i}", 0.5 + i / 100, corpus="hard") for i in range(4)]
              + [_scored(f"e{i}", 0.01 + i / 100, corpus="easy") for i in range(4)])
    per_corpus = select(scored, keep_percent=50)
    assert {s.id for s in per_corpus.kept} == {"h3", "h2", "e3", "e2"}
    assert per_corpus.summary["per_corpus"] == {"hard": {"examples": 4, "with_entities": 4, "kept": 2},
                                                "easy": {"examples": 4, "with_entities": 4, "kept": 2}}
    assert per_corpus.summary["per_corpus_ranking"] is True
    pooled = select(scored, keep_percent=50, per_corpus=False)
    assert {s.id for s in pooled.kept} == {"h0", "h1", "h2", "h3"} and pooled.summary["per_corpus_ranking"] is False


def test_curate_selects_again_from_a_scores_file_without_scoring(tmp_path: Path) -> None:
    scored = ([_scored(f"h{i}", 0.5 + i / 100, corpus="hard") for i in range(4)]
              + [_scored(f"e{i}", 0.01 + i / 100, corpus="easy") for i in range(4)])
    scores = tmp_path / "run.scores.jsonl"
    scores.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in scored))
    result = curate(CurationConfig(output=str(tmp_path / "again.jsonl"), keep_percent=25, from_scores=str(scores)),
                    scorer=("no model", "needed"), log=quiet)
    assert sorted(read_curated_ids(result.subset_path)) == ["e3", "h3"]
    only_easy = curate(CurationConfig(corpora=["easy"], output=str(tmp_path / "easy.jsonl"), keep_percent=50,
                                      from_scores=str(scores)), log=quiet)
    assert sorted(read_curated_ids(only_easy.subset_path)) == ["e2", "e3"]
    scores.write_text('{"id": "x"}\n')
    with pytest.raises(ConfigError, match="line 1: expected a JSON object with id, corpus"):
        curate(CurationConfig(output=str(tmp_path / "bad.jsonl"), from_scores=str(scores)), log=quiet)
    with pytest.raises(ConfigError, match="scores file not found"):
        curate(CurationConfig(output=str(tmp_path / "bad.jsonl"), from_scores=str(tmp_path / "none.jsonl")), log=quiet)


def test_quantiles_match_numpy() -> None:
    values = [0.3, 1.2, 0.05, 0.8, 0.81, 0.4, 2.0]
    q = quantiles(values)
    points = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    assert list(q.values()) == pytest.approx(list(np.quantile(values, points)))
    assert quantiles([]) is None


def test_curate_writes_subset_scores_summary_and_training_accepts_it(tmp_path: Path) -> None:
    cfg = CurationConfig(corpora=["ncbi_disease"], output=str(tmp_path / "subset.jsonl"), keep_percent=50,
                         batch_size=4, definitions="none", chunk_max_tokens=0)
    result = curate(cfg, corpora=ncbi(), scorer=tiny_base(), progress=False, log=quiet)
    rows = [json.loads(line) for line in result.subset_path.read_text().splitlines()]
    scores = [json.loads(line) for line in result.scores_path.read_text().splitlines()]
    summary = json.loads(result.summary_path.read_text())
    assert len(scores) == len(disease_docs()) and {"id", "corpus", "doc_id", "ifd", "has_entities"} <= set(rows[0])
    free = [r for r in scores if not r["has_entities"]]
    assert all(r["id"] in {x["id"] for x in rows} for r in free)
    valid = [r for r in scores if r["has_entities"] and r["ifd"] < 1]
    assert summary["kept_with_entities"] == math.ceil(len(valid) / 2) == len(rows) - len(free)
    assert summary["kept"] == len(rows) and summary["config"]["keep_percent"] == 50
    top = sorted(valid, key=lambda r: -r["ifd"])[: summary["kept_with_entities"]]
    assert {r["id"] for r in top} == {r["id"] for r in rows if r["has_entities"]}
    # The generator trains on exactly the selected examples.
    train = train_generator(train_config(tmp_path, steps=2, curated=str(result.subset_path),
                                         definitions="none"), corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert train.card["corpora"]["ncbi_disease"]["examples"] == len(read_curated_ids(result.subset_path)) == len(rows)
