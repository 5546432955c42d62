"""Generator training: examples and masks, temperature sampling, LoRA steps, bundle round trip,
exact resume, training card. Tiny random Llama from llmner/testing.py (seconds, no files)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from llmner.codecs import get_codec
from llmner.doc import Document, Entity
from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling.generator import (
    GeneratorConfig,
    GeneratorModel,
    merged_weights_dir,
)
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.schema import get_schema
from llmner.testing import tiny_causal_tokenizer, tiny_llama
from llmner.training.card import documents_sha256
from llmner.training.checkpoint import HISTORY_NAME
from llmner.training.examples import (
    IGNORE_INDEX,
    ExampleConfig,
    ExampleStats,
    collate,
    text_examples,
    tokenize_example,
    tokenize_examples,
)
from llmner.training.generator import (
    CorpusData,
    GeneratorTrainingConfig,
    batch_loss_sum,
    build_example_pools,
    drawn_documents,
    evaluate_loss,
    generator_size,
    read_curated_ids,
    resume_config,
    train_generator,
)
from llmner.training.sampling import TemperatureSampler, temperature_probabilities

DISEASES = ["breast cancer", "ovarian cancer", "leukemia", "type 2 diabetes", "hemophilia A", "colorectal adenomas"]
GENES = ["BRCA1", "APC", "the p53 gene", "insulin", "cyclin D1"]


def disease_docs(n: int = 12, free_every: int = 3) -> list[Document]:
    """Sentences with one Disease mention each; every ``free_every``-th has none."""
    docs = []
    for i in range(n):
        gene, disease = GENES[i % len(GENES)], DISEASES[i % len(DISEASES)]
        if free_every and i % free_every == free_every - 1:
            docs.append(Document(f"d{i}", f"{gene.capitalize()} is expressed in macrophages."))
            continue
        text = f"{gene.capitalize()} is associated with {disease}."
        start = text.index(disease)
        docs.append(Document(f"d{i}", text, entities=[Entity(start, start + len(disease), "Disease", disease)]))
    return docs


def tiny_base(seed: int = 0):
    tokenizer = tiny_causal_tokenizer()
    return tiny_llama(tokenizer, seed=seed, hidden=32), tokenizer


def train_config(tmp_path: Path, **overrides) -> GeneratorTrainingConfig:
    values = {"corpora": ["ncbi_disease"], "output": str(tmp_path / "bundle"), "base_model": str(tmp_path / "base"),
              "steps": 4, "batch_size": 2, "grad_accum": 1, "lr": 5e-3, "warmup_steps": 1, "lora_r": 4, "lora_alpha": 8,
              "lora_dropout": 0.0, "definitions": "none", "chunk_max_tokens": 0, "entity_free_ratio": -1.0,
              "checkpoint_every": 0, "seed": 0, "device": "cpu",
              # The equivalence tests compare runs to 1e-5: plain fp32, whatever the CPU (bf16 has its own test).
              "precision": "fp32"}
    values.update(overrides)
    return GeneratorTrainingConfig(**values)


def ncbi(docs: list[Document] | None = None) -> list[CorpusData]:
    return [CorpusData("ncbi_disease", docs if docs is not None else disease_docs(), get_schema("ncbi_disease"))]


def quiet(_: str) -> None:
    pass


# -- examples ---------------------------------------------------------------------------------

def test_prompt_tokens_are_masked_exactly() -> None:
    tokenizer = tiny_causal_tokenizer()
    builder, schema = PromptBuilder(PromptConfig(definitions="compact")), get_schema("ncbi_disease")
    example = text_examples(disease_docs(1), "ncbi_disease", get_codec("inline"), ExampleConfig(chunk_max_tokens=0))[0]
    tokenized = tokenize_example(example, tokenizer, builder, schema)
    prompt_ids = tokenizer(builder.prompt(tokenizer, example.text, schema), add_special_tokens=False)["input_ids"]
    n = tokenized.prompt_length
    assert n == len(prompt_ids) and list(tokenized.input_ids[:n]) == prompt_ids
    assert all(label == IGNORE_INDEX for label in tokenized.labels[:n])
    assert list(tokenized.labels[n:]) == list(tokenized.input_ids[n:])
    assert tokenized.labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(tokenized.input_ids[n:-1]) == example.target
    assert "<Disease>breast cancer</Disease>" in example.target
    # Padding adds no supervised position.
    short = tokenize_example(text_examples([Document("s", "APC.")], "ncbi_disease", get_codec("inline"),
                                           ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0))[0], tokenizer, builder, schema)
    batch = collate([tokenized, short], tokenizer.pad_token_id)
    assert int((batch.labels != IGNORE_INDEX).sum()) == tokenized.target_tokens + short.target_tokens
    assert int(batch.attention_mask.sum()) == len(tokenized) + len(short)


def test_over_long_examples_are_skipped_and_counted_never_truncated() -> None:
    tokenizer = tiny_causal_tokenizer()
    builder, schema = PromptBuilder(PromptConfig(definitions="none")), get_schema("ncbi_disease")
    docs = disease_docs(6, free_every=0) + [Document("long", "APC is associated with leukemia. " * 40)]
    examples = text_examples(docs, "ncbi_disease", get_codec("inline"), ExampleConfig(chunk_max_tokens=0))
    lengths = [len(tokenize_example(e, tokenizer, builder, schema)) for e in examples]
    limit = sorted(lengths)[-2]
    stats = ExampleStats()
    kept = tokenize_examples(examples, tokenizer, builder, schema, limit, stats)
    assert stats.skipped_too_long == 1 and len(kept) == len(examples) - 1
    assert sorted(len(k) for k in kept) == sorted(lengths)[:-1]


def test_entity_free_ratio_and_curated_subset() -> None:
    codec = get_codec("inline")
    docs = disease_docs(30, free_every=2)   # 15 with a mention, 15 without
    keep_all = text_examples(docs, "c", codec, ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0))
    assert sum(not e.has_entities for e in keep_all) == 15
    stats = ExampleStats()
    some = text_examples(docs, "c", codec, ExampleConfig(entity_free_ratio=0.2, chunk_max_tokens=0, seed=3), stats)
    assert stats.with_entities == 15 and stats.entity_free_available == 15 and stats.entity_free_kept == 3
    assert sum(not e.has_entities for e in some) == 3 and sum(e.has_entities for e in some) == 15
    again = text_examples(docs, "c", codec, ExampleConfig(entity_free_ratio=0.2, chunk_max_tokens=0, seed=3))
    assert [e.id for e in again] == [e.id for e in some]                      # seeded
    assert [e.id for e in some] == [e.id for e in keep_all if e.id in {x.id for x in some}]  # document order
    wanted = {keep_all[0].id, keep_all[1].id}
    stats = ExampleStats()
    curated = text_examples(docs, "c", codec, ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0), stats,
                            keep_ids=wanted)
    assert {e.id for e in curated} == wanted and stats.not_in_curated_subset == len(keep_all) - 2


def test_sentences_per_chunk_packs_consecutive_sentences_into_one_example() -> None:
    text = "APC causes colon cancer. Nothing here. BRCA1 and breast cancer. Also ovarian cancer."
    ents = [Entity(text.index(m), text.index(m) + len(m), "Disease", m)
            for m in ("colon cancer", "breast cancer", "ovarian cancer")]
    doc = Document("d", text, entities=ents)
    codec = get_codec("inline")
    single = text_examples([doc], "c", codec, ExampleConfig(entity_free_ratio=-1))
    assert len(single) == 4 and sum(e.has_entities for e in single) == 3
    packed = text_examples([doc], "c", codec, ExampleConfig(entity_free_ratio=-1, sentences_per_chunk=2))
    assert [e.text for e in packed] == ["APC causes colon cancer. Nothing here.", "BRCA1 and breast cancer. Also ovarian cancer."]
    for e in packed:                     # offsets are the chunk's: every entity still spells its mention
        assert all(e.text[x.start : x.end] == x.text for x in e.entities)
    assert [x.text for e in packed for x in e.entities] == ["colon cancer", "breast cancer", "ovarian cancer"]
    with pytest.raises(ConfigError, match="sentences_per_chunk"):
        ExampleConfig(sentences_per_chunk=0)


def test_chunk_entities_are_shifted_and_crossing_chunks_counted() -> None:
    from llmner.training.examples import _chunk_entities

    ents = [Entity(5, 10, "Disease"), Entity(18, 25, "Disease"), Entity(30, 33, "Disease")]
    inside, crossing = _chunk_entities(ents, 0, 20)
    assert inside == [Entity(5, 10, "Disease")] and crossing == 1
    inside, crossing = _chunk_entities(ents, 26, 40)
    assert inside == [Entity(4, 7, "Disease")] and crossing == 0


# -- sampling ---------------------------------------------------------------------------------

def test_temperature_probabilities_follow_n_to_the_one_over_t() -> None:
    sizes = {"big": 900, "small": 100}
    assert temperature_probabilities(sizes, 1.0) == pytest.approx({"big": 0.9, "small": 0.1})
    assert temperature_probabilities(sizes, 2.0) == pytest.approx({"big": 30 / 40, "small": 10 / 40})
    assert temperature_probabilities(sizes, 1e9) == pytest.approx({"big": 0.5, "small": 0.5})
    assert "empty" not in temperature_probabilities({**sizes, "empty": 0}, 1.0)
    with pytest.raises(ConfigError):
        temperature_probabilities(sizes, 0.0)


def test_corpus_weights_raise_one_corpus_share_and_are_part_of_the_stream() -> None:
    sizes = {"big": 900, "small": 100}
    # p ∝ w · n^(1/T): at T=2 the small corpus gets 10/40; weight 3 gives it 30/60.
    assert temperature_probabilities(sizes, 2.0, {"small": 3.0}) == pytest.approx({"big": 0.5, "small": 0.5})
    assert temperature_probabilities(sizes, 2.0, {}) == temperature_probabilities(sizes, 2.0)
    for bad in ({"unknown": 2.0}, {"small": 0.0}):
        with pytest.raises(ConfigError):
            temperature_probabilities(sizes, 2.0, bad)
    weighted = TemperatureSampler(sizes, 2.0, seed=7, corpus_weights={"small": 3.0})
    counts = Counter(name for name, _ in weighted.take(10000))
    assert abs(counts["small"] / 10000 - 0.5) < 0.02
    # A checkpoint remembers its weights: resuming under other weights is refused (a new stage instead);
    # a checkpoint written before weights existed resumes an unweighted run.
    with pytest.raises(ConfigError, match="weights"):
        TemperatureSampler(sizes, 2.0, seed=7).load_state_dict(weighted.state_dict())
    plain = TemperatureSampler(sizes, 2.0, seed=7)
    plain.take(50)
    old_state = {k: v for k, v in plain.state_dict().items() if k != "corpus_weights"}
    resumed = TemperatureSampler(sizes, 2.0, seed=7)
    resumed.load_state_dict(old_state)
    assert resumed.take(20) == plain.take(20)


def test_sampler_proportions_passes_seed_and_resume() -> None:
    sizes = {"a": 400, "b": 100, "c": 25}
    sampler = TemperatureSampler(sizes, temperature=2.0, seed=7)
    draws = sampler.take(20000)
    counts = Counter(name for name, _ in draws)
    for name, p in sampler.probabilities.items():
        assert abs(counts[name] / 20000 - p) < 0.015, (name, counts[name], p)
    # Within a corpus, each pass visits every example exactly once.
    c_indices = [i for name, i in draws if name == "c"]
    for k in range(len(c_indices) // 25):
        assert sorted(c_indices[25 * k : 25 * (k + 1)]) == list(range(25))
    assert c_indices[:25] != c_indices[25:50]                                  # a new order per pass
    assert TemperatureSampler(sizes, 2.0, seed=7).take(500) == draws[:500]     # seeded
    assert TemperatureSampler(sizes, 2.0, seed=8).take(500) != draws[:500]
    resumed = TemperatureSampler(sizes, 2.0, seed=7)
    half = TemperatureSampler(sizes, 2.0, seed=7)
    half.take(1234)
    resumed.load_state_dict(json.loads(json.dumps(half.state_dict())))
    assert resumed.take(300) == draws[1234:1534]
    with pytest.raises(ConfigError):
        TemperatureSampler({"a": 10}, 2.0, seed=7).load_state_dict(half.state_dict())


def test_batch_sampler_draws_one_corpus_per_batch_in_proportion_and_resumes() -> None:
    sizes = {"a": 400, "b": 100, "c": 25}
    sampler = TemperatureSampler(sizes, temperature=1.0, seed=3)
    batches = [sampler.next_batch(4) for _ in range(3000)]
    counts = Counter(name for name, _ in batches)
    for name, p in sampler.probabilities.items():
        assert abs(counts[name] / 3000 - p) < 0.03, (name, counts[name], p)
    c_indices = [i for name, idx in batches if name == "c" for i in idx]
    assert sorted(c_indices[:25]) == list(range(25))                            # passes still visit each once
    half = TemperatureSampler(sizes, 1.0, seed=3)
    for _ in range(777):
        half.next_batch(4)
    resumed = TemperatureSampler(sizes, 1.0, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(half.state_dict())))
    assert [resumed.next_batch(4) for _ in range(50)] == batches[777:827]
    with pytest.raises(ConfigError, match="batch size changed"):
        resumed.next_batch(5)


# -- training ---------------------------------------------------------------------------------

def _examples_for(generator: GeneratorModel, docs: list[Document]):
    examples = text_examples(docs, "ncbi_disease", get_codec("inline"), ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0))
    return {"ncbi_disease": tokenize_examples(examples, generator.tokenizer, generator.prompt_builder,
                                              get_schema("ncbi_disease"), 4096)}


def test_lora_steps_lower_the_loss_and_only_the_adapter_changes(tmp_path: Path) -> None:
    model, tokenizer = tiny_base()
    base_weights = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = train_config(tmp_path, steps=16, batch_size=4, lr=1e-2)
    # Loss of the same examples under the untouched base (LoRA B starts at zero = the base).
    probe = GeneratorModel.from_base(cfg.generator_config(), [get_schema("ncbi_disease")], base=tiny_base())
    pools = _examples_for(probe, disease_docs())
    before = evaluate_loss(probe.model, pools, tokenizer.pad_token_id, 8, "cpu")
    result = train_generator(cfg, corpora=ncbi(), base=(model, tokenizer), progress=False, log=quiet)
    after = evaluate_loss(result.model.model, pools, tokenizer.pad_token_id, 8, "cpu")
    assert result.finished and result.steps == cfg.steps and len(result.losses) == cfg.steps
    assert after < 0.7 * before, (before, after)
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    merged = result.model.merged_model().state_dict()
    changed = [k for k in base_weights if not torch.equal(base_weights[k], merged[k])]
    assert changed and all(any(p in k for p in cfg.target_modules) for k in changed)


def test_bf16_matmuls_train_the_fp32_adapter_and_the_history_says_so(tmp_path: Path) -> None:
    model, tokenizer = tiny_base()
    cfg = train_config(tmp_path, steps=16, batch_size=4, lr=1e-2, precision="bf16")
    probe = GeneratorModel.from_base(cfg.generator_config(), [get_schema("ncbi_disease")], base=tiny_base())
    pools = _examples_for(probe, disease_docs())
    before = evaluate_loss(probe.model, pools, tokenizer.pad_token_id, 8, "cpu")
    result = train_generator(cfg, corpora=ncbi(), base=(model, tokenizer), progress=False, log=quiet)
    after = evaluate_loss(result.model.model, pools, tokenizer.pad_token_id, 8, "cpu")
    assert result.finished and after < 0.7 * before, (before, after)
    history = [json.loads(line) for line in (Path(cfg.output) / HISTORY_NAME).read_text().splitlines()]
    assert history and all(h["bf16"] for h in history)
    lora = {k: v for k, v in result.model.model.state_dict().items() if "lora_" in k}
    assert lora and all(v.dtype == torch.float32 for v in lora.values())   # the weights the optimizer keeps
    fp32 = train_generator(train_config(tmp_path / "fp32", steps=1), corpora=ncbi(), base=tiny_base(), progress=False,
                           log=quiet)
    with pytest.raises(ConfigError, match="unknown precision"):
        train_config(tmp_path, precision="fp16")
    assert [json.loads(line)["bf16"] for line in (Path(fp32.output) / HISTORY_NAME).read_text().splitlines()] == [False]


def test_gradient_accumulation_equals_the_larger_batch(tmp_path: Path) -> None:
    # The schema variant is drawn per micro-batch: keep the corpus schema so both runs see the same targets.
    one = train_generator(train_config(tmp_path / "one", steps=2, batch_size=4, grad_accum=1, vary_schema=False),
                          corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    two = train_generator(train_config(tmp_path / "two", steps=2, batch_size=2, grad_accum=2, vary_schema=False),
                          corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert one.losses == pytest.approx(two.losses, rel=1e-5)
    w1 = {k: v for k, v in one.model.model.state_dict().items() if "lora_" in k}
    w2 = {k: v for k, v in two.model.model.state_dict().items() if "lora_" in k}
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)


def test_shared_prompt_prefix_gives_the_same_loss_and_gradients() -> None:
    generator = GeneratorModel.from_base(GeneratorConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0,
                                                         prompt=PromptConfig(definitions="compact")),
                                         [get_schema("ncbi_disease")], base=tiny_base())
    model = generator.model
    for name, p in model.named_parameters():           # non-zero LoRA B so the adapter matters
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    examples = _examples_for(generator, disease_docs(5))["ncbi_disease"]
    assert len({len(e) for e in examples}) > 1, "rows of different lengths exercise the padding"
    from llmner.training.generator import shared_prefix_length

    assert shared_prefix_length(examples) >= min(e.prompt_length for e in examples) // 2

    def loss_and_grads(share: bool, supervised_only: bool = False):
        model.zero_grad()
        loss = batch_loss_sum(model, examples, generator.tokenizer.pad_token_id, "cpu", share_prefix=share,
                              supervised_logits_only=supervised_only)
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full_loss, full_grads = loss_and_grads(False)
    for share, supervised_only in ((True, False), (False, True), (True, True)):
        loss, grads = loss_and_grads(share, supervised_only)
        assert loss == pytest.approx(full_loss, rel=1e-5), (share, supervised_only)
        for name, grad in full_grads.items():
            assert torch.allclose(grads[name], grad, rtol=1e-4, atol=1e-6), (name, share, supervised_only)


def test_frozen_weights_held_in_bf16_give_the_same_bf16_loss_and_gradients() -> None:
    from llmner.modeling.precision import frozen_weights_in

    torch.manual_seed(0)
    generator = _generator_with_active_adapter()
    model = generator.model
    examples = _examples_for(generator, disease_docs(5))["ncbi_disease"]
    base = {n: p for n, p in model.named_parameters() if "base_layer" in n}
    assert base and all(p.dtype == torch.float32 and not p.requires_grad for p in base.values())

    def loss_and_grads():
        model.zero_grad()
        loss = batch_loss_sum(model, examples, generator.tokenizer.pad_token_id, "cpu", use_bf16=True,
                              share_prefix=True, supervised_logits_only=True)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    cast_loss, cast_grads = loss_and_grads()
    with frozen_weights_in(model, torch.bfloat16) as swapped:
        assert swapped == len(base)    # every projection's base weight; no LoRA weight, embeddings or head
        held = dict(model.named_parameters())
        assert all(held[n].dtype == torch.bfloat16 for n in base)
        assert all(p.dtype == torch.float32 for n, p in held.items() if "lora_" in n or "base_layer" not in n)
        held_loss, held_grads = loss_and_grads()
    assert torch.equal(held_loss, cast_loss)
    assert held_grads.keys() == cast_grads.keys() and all(torch.equal(held_grads[n], cast_grads[n]) for n in cast_grads)
    assert all(model.get_parameter(n) is p for n, p in base.items())    # the fp32 originals are back
    with frozen_weights_in(model, None) as swapped:
        assert swapped == 0


def _generator_with_active_adapter() -> GeneratorModel:
    """A tiny generator whose LoRA B is non-zero, so that the adapter changes the outputs."""
    generator = GeneratorModel.from_base(GeneratorConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0),
                                         [get_schema("ncbi_disease")], base=tiny_base())
    for name, p in generator.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return generator


def test_length_segments_cut_padding_and_keep_the_loss_and_gradients() -> None:
    from llmner.training.generator import length_segments

    generator = _generator_with_active_adapter()
    model = generator.model
    docs = disease_docs(6)
    docs.append(Document("long", " ".join(d.text for d in docs * 3), "en", {}, []))   # one long row among short ones
    examples = _examples_for(generator, docs)["ncbi_disease"]
    segments = length_segments(examples)
    assert len(segments) > 1 and sorted(e.id for s in segments for e in s) == sorted(e.id for e in examples)
    assert sum(len(s) * max(map(len, s)) for s in segments) < len(examples) * max(map(len, examples))
    assert length_segments(examples[:1]) == [examples[:1]]
    pad = generator.tokenizer.pad_token_id

    def loss_and_grads(groups):
        model.zero_grad()
        total = 0.0
        for g in groups:
            loss = batch_loss_sum(model, g, pad, "cpu", supervised_logits_only=True)
            loss.backward()
            total += float(loss.detach())
        return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    whole_loss, whole = loss_and_grads([examples])
    seg_loss, seg = loss_and_grads(segments)
    assert seg_loss == pytest.approx(whole_loss, rel=1e-5)
    for n, g in whole.items():
        assert torch.allclose(seg[n], g, rtol=1e-4, atol=1e-5 * float(g.abs().max())), n   # summed loss: large grads


def test_frozen_lower_layers_get_no_gradient_and_upper_layers_do() -> None:
    from llmner.training.generator import freeze_lower_layers

    generator = _generator_with_active_adapter()
    model = generator.model
    assert freeze_lower_layers(model, 1) > 0
    examples = _examples_for(generator, disease_docs(3))["ncbi_disease"]
    batch_loss_sum(model, examples, generator.tokenizer.pad_token_id, "cpu", supervised_logits_only=True).backward()
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert all(p.grad is None and not p.requires_grad for n, p in lora.items() if ".layers.0." in n)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora.items() if ".layers.1." in n)


def _save_base(tmp_path: Path, seed: int = 0) -> Path:
    model, tokenizer = tiny_base(seed)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_save_then_load_reproduces_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base_dir = _save_base(tmp_path)
    cfg = train_config(tmp_path, steps=3)
    result = train_generator(cfg, corpora=ncbi(), progress=False, log=quiet)   # base loaded from the local dir
    bundle = Path(cfg.output)
    assert (bundle / "adapter" / "adapter_model.safetensors").is_file()
    assert not any(p.name == "model.safetensors" for p in bundle.rglob("*")), "the bundle must not hold base weights"
    loaded = GeneratorModel.from_pretrained(bundle)
    assert loaded.config == result.model.config and loaded.config.base_model == str(base_dir)
    assert loaded.schema("ncbi_disease") == get_schema("ncbi_disease")
    assert loaded.card["steps"] == 3
    text = "APC is associated with leukemia."
    ids = loaded.tokenizer(loaded.prompt_builder.prompt(loaded.tokenizer, text, get_schema("ncbi_disease")),
                           return_tensors="pt", add_special_tokens=False)["input_ids"]
    result.model.model.eval()
    with torch.no_grad():
        expected = result.model.model(input_ids=ids).logits
        got = loaded.model(input_ids=ids).logits
        base_only = tiny_base()[0](input_ids=ids).logits
    assert torch.equal(expected, got)
    assert not torch.allclose(got, base_only, atol=1e-4), "the adapter must change the outputs"
    # Merged export: plain transformers weights, same outputs without peft.
    from transformers import AutoModelForCausalLM

    merged_dir = loaded.save_merged(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, got, atol=1e-5)
    # Built once into the user cache, then reused.
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    cached = merged_weights_dir(bundle)
    assert cached.is_relative_to(tmp_path / "cache") and (cached / "config.json").is_file()
    stamp = (cached / "config.json").stat().st_mtime_ns
    assert merged_weights_dir(bundle) == cached and (cached / "config.json").stat().st_mtime_ns == stamp
    with torch.no_grad():
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(cached)(input_ids=ids).logits, got, atol=1e-5)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    common = {"steps": 6, "checkpoint_every": 2, "lora_dropout": 0.1, "batch_size": 2, "grad_accum": 2}
    full = train_generator(train_config(tmp_path / "full", **common), corpora=ncbi(), base=tiny_base(),
                           progress=False, log=quiet)
    cut = train_config(tmp_path / "cut", stop_after=3, **common)
    first = train_generator(cut, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert not first.finished and first.steps == 3
    saved = resume_config(cut.output)          # what `--resume --output DIR` alone continues with
    assert saved == replace(cut, stop_after=None)
    assert (Path(cut.output) / "checkpoints" / "step-000003").is_dir()
    assert not (Path(cut.output) / "generator_config.json").exists()
    with pytest.raises(ConfigError, match="lr"):
        train_generator(train_config(tmp_path / "cut", resume=True, **{**common, "lr": 1e-3}), corpora=ncbi(),
                        base=tiny_base(), progress=False, log=quiet)
    # As in a fresh process: the same base weights, RNG state elsewhere (restored from the checkpoint).
    torch.manual_seed(1234)
    second = train_generator(train_config(tmp_path / "cut", resume=True, **common), corpora=ncbi(),
                             base=tiny_base(), progress=False, log=quiet)
    assert second.finished and second.steps == 6
    assert not (Path(cut.output) / "checkpoints").exists(), "a finished run drops its checkpoints"
    assert second.losses == full.losses
    w_full = {k: v for k, v in full.model.model.state_dict().items() if "lora_" in k}
    w_cut = {k: v for k, v in second.model.model.state_dict().items() if "lora_" in k}
    assert w_full.keys() == w_cut.keys() and all(torch.equal(w_full[k], w_cut[k]) for k in w_full)


@pytest.mark.parametrize("batch_per_corpus", [True, False])
def test_drawn_documents_replays_the_examples_a_run_trained_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               batch_per_corpus: bool) -> None:
    """The replay (no model) names the source documents of exactly the examples the trainer rendered,
    with an over-long example dropped from the pool and entity-free examples subsampled."""
    import llmner.training.generator as trainer

    long_doc = Document("long", "APC is associated with leukemia. " * 40,
                        entities=[Entity(23, 31, "Disease", "leukemia")])
    cdr = [Document(f"c{i}", d.text, entities=d.entities) for i, d in enumerate(disease_docs(9, free_every=2))]
    corpora = [*ncbi([*disease_docs(10), long_doc]), CorpusData("bc5cdr", cdr, get_schema("bc5cdr"))]
    config = train_config(tmp_path, corpora=["ncbi_disease", "bc5cdr"], steps=5, batch_size=3, grad_accum=2,
                          entity_free_ratio=0.25, max_length=400, batch_per_corpus=batch_per_corpus, seed=4)
    rendered: Counter[tuple[str, str]] = Counter()
    real_render = trainer.render_examples

    def spy(examples, *args, **kwargs):
        rendered.update((e.corpus, e.doc_id) for e in examples)
        return real_render(examples, *args, **kwargs)

    monkeypatch.setattr(trainer, "render_examples", spy)
    train_generator(config, corpora=corpora, base=tiny_base(), progress=False, log=quiet)

    pools = build_example_pools(config, corpora, tiny_causal_tokenizer(), PromptBuilder(config.generator_config().prompt),
                                log=quiet)
    assert pools.stats["ncbi_disease"].skipped_too_long == 1 and "long" not in {e.doc_id for e in pools.texts["ncbi_disease"]}
    assert pools.stats["ncbi_disease"].entity_free_kept < pools.stats["ncbi_disease"].entity_free_available
    replayed = drawn_documents(config, pools, config.steps)
    assert set(replayed) == {"ncbi_disease", "bc5cdr"}
    assert Counter({(c, d): n for c, docs in replayed.items() for d, n in docs.items()}) == rendered
    assert sum(rendered.values()) == config.steps * config.grad_accum * config.batch_size


def test_portable_checkpoint_resumes_on_a_fresh_machine_with_a_fresh_optimizer(tmp_path: Path) -> None:
    from llmner.training.checkpoint import export_portable, latest_checkpoint

    common = {"steps": 5, "checkpoint_every": 2, "batch_size": 2}
    cut = train_config(tmp_path / "run", stop_after=2, **common)
    first = train_generator(cut, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    portable = export_portable(latest_checkpoint(Path(cut.output) / "checkpoints"), tmp_path / "committed" / "step-2")
    files = sorted(p.relative_to(portable).as_posix() for p in portable.rglob("*") if p.is_file())
    assert {"portable_state.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= set(files)
    assert not any(f.endswith(".pt") for f in files)          # no optimizer, no pickle
    # Another output directory (a fresh clone): the settings come from the portable checkpoint.
    saved = resume_config(tmp_path / "elsewhere", portable)
    assert saved is not None and saved.lr == cut.lr and saved.steps == 5
    resumed_cfg = replace(saved, output=str(tmp_path / "elsewhere"), resume=True, resume_from=str(portable))
    logs: list[str] = []
    second = train_generator(resumed_cfg, corpora=ncbi(), base=tiny_base(), progress=False, log=logs.append)
    assert second.finished and second.steps == 5
    assert any("fresh optimizer" in line for line in logs)
    assert second.card["fresh_optimizer_steps"] == [2]
    assert second.losses[:2] == first.losses                  # the history carries over
    with pytest.raises(ConfigError, match="lr"):
        train_generator(replace(resumed_cfg, output=str(tmp_path / "third"), lr=1e-3), corpora=ncbi(),
                        base=tiny_base(), progress=False, log=quiet)

    # The unfinished run's step-2 weights as a generator directory (to ship a campaign's checkpoint):
    # the finished run's settings and base, the portable's LoRA weights, a card of the run so far.
    from safetensors.torch import load_file

    from llmner.modeling.generator import GeneratorModel
    from llmner.training.checkpoint import export_generator

    out = export_generator(portable, tmp_path / "elsewhere", tmp_path / "shipped", name="gen-step-2", base=tiny_base())
    shipped = GeneratorModel.from_pretrained(out, base=tiny_base())
    want = load_file(str(portable / "adapter" / "adapter_model.safetensors"))
    got = {k: v for k, v in shipped.model.state_dict().items() if "lora_" in k}
    assert len(got) == len(want) and all(torch.equal(got[k.replace(".weight", ".default.weight")], v) for k, v in want.items())
    card = json.loads((out / "training_card.json").read_text())
    assert card["name"] == "gen-step-2" and card["steps"] == 2 and card["examples_seen"] == 2 * cut.batch_size
    assert card["exported_from"] == str(portable) and card["training"]["lr"] == cut.lr
    assert card["first_loss"] == pytest.approx(sum(first.losses) / 2)

    # The finished run's own generator directory re-dressed the same way (its card and history stand in
    # for the training state): the run's final weights, the run's settings and losses in the new card.
    finished = export_generator(tmp_path / "elsewhere", tmp_path / "elsewhere", tmp_path / "final", name="gen-final",
                                base=tiny_base())
    final_card = json.loads((finished / "training_card.json").read_text())
    assert final_card["name"] == "gen-final" and final_card["steps"] == 5
    assert final_card["examples_seen"] == 5 * cut.batch_size and final_card["fresh_optimizer_steps"] == [2]
    assert final_card["first_loss"] == pytest.approx(sum(second.losses[:5]) / 5)
    want = load_file(str(tmp_path / "elsewhere" / "adapter" / "adapter_model.safetensors"))
    got = {k: v for k, v in GeneratorModel.from_pretrained(finished, base=tiny_base()).model.state_dict().items()
           if "lora_" in k}
    assert all(torch.equal(got[k.replace(".weight", ".default.weight")], v) for k, v in want.items())


def test_training_card_contents(tmp_path: Path) -> None:
    docs = disease_docs()
    curated = tmp_path / "subset.jsonl"
    all_ids = [e.id for e in text_examples(docs, "ncbi_disease", get_codec("inline"),
                                           ExampleConfig(entity_free_ratio=-1, chunk_max_tokens=0))]
    curated.write_text("".join(json.dumps({"id": i}) + "\n" for i in all_ids[:6]))
    assert read_curated_ids(curated) == frozenset(all_ids[:6])
    cfg = train_config(tmp_path, steps=3, curated=str(curated), eval_every=3)
    corpora = [CorpusData("ncbi_disease", docs, get_schema("ncbi_disease"), dev_documents=disease_docs(4))]
    result = train_generator(cfg, corpora=corpora, base=tiny_base(), progress=False, log=quiet)
    card = json.loads((Path(cfg.output) / "training_card.json").read_text())
    assert card == json.loads(json.dumps(result.card))
    corpus = card["corpora"]["ncbi_disease"]
    assert corpus["documents"] == len(docs) and corpus["examples"] == 6
    assert corpus["documents_sha256"] == documents_sha256(docs)
    assert corpus["example_stats"]["not_in_curated_subset"] == len(all_ids) - 6
    assert corpus["sampling_probability"] == 1.0
    assert card["steps"] == 3 and card["examples_seen"] == 3 * cfg.batch_size
    assert card["final_loss"] == pytest.approx(sum(result.losses) / 3)
    assert card["first_loss"] == result.losses[0] and math.isfinite(card["final_loss"])
    assert card["duration_s"] > 0 and card["tokens_per_s"] > 0 and card["seconds_per_step"] > 0
    assert card["hardware"]["torch"] == torch.__version__ and card["hardware"]["cuda"] is False
    assert card["seeds"]["seed"] == 0 and card["training"]["lr"] == cfg.lr
    assert card["curated"]["ids"] == 6 and len(card["curated"]["sha256"]) == 64
    assert card["trainable_parameters"] == result.model.trainable_parameters() > 0
    assert card["git_commit"] is None or len(card["git_commit"].split("-")[0]) == 40
    assert card["generator_config"]["schemas"] == ["ncbi_disease"]
    assert generator_size(cfg.output) < 2_000_000
    history = [json.loads(line) for line in (Path(cfg.output) / "history.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in history] == result.losses
    assert [h["step"] for h in history if "dev_loss" in h] == [3]
    assert card["dev_loss"] == history[-1]["dev_loss"] and math.isfinite(card["dev_loss"])
    assert card["name"] == "bundle"


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("corpora: [ncbi_disease, genia]\nsteps: 50\nlr: 0.001\ntemperature: 3.0\n")
    cfg = GeneratorTrainingConfig.from_file(path)
    assert cfg.corpora == ["ncbi_disease", "genia"] and cfg.steps == 50 and cfg.temperature == 3.0
    over = cfg.with_overrides(steps=7, lr=None, output="out")
    assert over.steps == 7 and over.lr == 0.001 and over.output == "out"
    (tmp_path / "bad.json").write_text('{"stepz": 3}')
    with pytest.raises(ConfigError, match="stepz"):
        GeneratorTrainingConfig.from_file(tmp_path / "bad.json")
    gen = over.generator_config()
    assert GeneratorConfig.from_dict(json.loads(json.dumps(gen.to_dict()))) == gen


def test_cli_registers_train_generator_and_curate() -> None:
    from typer.testing import CliRunner

    from llmner.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["train", "generator", "--help"])
    assert out.exit_code == 0 and "--grad-accum" in out.output and "--curated" in out.output
    out = runner.invoke(app, ["curate", "--help"])
    assert out.exit_code == 0 and "--keep-percent" in out.output


def test_cli_trains_stops_and_resumes_with_only_resume_and_output(tmp_path: Path) -> None:
    """The real CLI path: NCBI-Disease read from the registry, a tiny local base model directory."""
    from typer.testing import CliRunner

    from llmner.cli.main import app
    from llmner.data_processing.corpora import data_dir

    if not (data_dir() / "ncbi_disease").is_dir():
        pytest.skip("NCBI-Disease not available under the data directory")
    base = _save_base(tmp_path)
    out = tmp_path / "bundle"
    runner = CliRunner()
    first = runner.invoke(app, ["train", "generator", "--corpus", "ncbi_disease", "--max-documents", "2", "--base", str(base),
                                "--steps", "2", "--batch-size", "2", "--lora-r", "2", "--definitions", "none",
                                "--stop-after", "1", "--output", str(out), "--no-progress", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    assert "segment ended" in first.output and not (out / "generator_config.json").exists()
    # What a session commits, and how a fresh clone continues from it.
    exported = runner.invoke(app, ["train", "export-checkpoint", str(out), str(tmp_path / "portable")])
    assert exported.exit_code == 0, exported.output
    elsewhere = runner.invoke(app, ["train", "generator", "--resume", "--resume-from", str(tmp_path / "portable"),
                                    "--output", str(tmp_path / "elsewhere"), "--no-progress"])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "fresh optimizer" in elsewhere.output and "steps 2/2" in elsewhere.output
    assert json.loads((tmp_path / "elsewhere" / "training_card.json").read_text())["fresh_optimizer_steps"] == [1]
    second = runner.invoke(app, ["train", "generator", "--resume", "--output", str(out), "--no-progress"])
    assert second.exit_code == 0, second.output
    assert "resumed from" in second.output and "steps 2/2" in second.output
    card = json.loads((out / "training_card.json").read_text())
    assert card["steps"] == 2 and card["generator_config"]["lora_r"] == 2
    assert card["corpora"]["ncbi_disease"]["source_files"]["file_count"] > 0


def test_init_from_starts_a_stage_at_an_earlier_bundles_adapter(tmp_path: Path) -> None:
    stage1 = train_generator(train_config(tmp_path / "stage1", steps=4, batch_size=2, lr=1e-2), corpora=ncbi(),
                             base=tiny_base(), progress=False, log=quiet)
    lora1 = {k: v for k, v in stage1.model.model.state_dict().items() if "lora_" in k}
    # One step at a negligible learning rate: stage 2 starts exactly at stage 1's weights.
    stage2 = train_generator(train_config(tmp_path / "stage2", steps=1, batch_size=2, lr=1e-12,
                                          init_from=str(tmp_path / "stage1" / "bundle")),
                             corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    lora2 = {k: v for k, v in stage2.model.model.state_dict().items() if "lora_" in k}
    assert lora1.keys() == lora2.keys() and all(torch.allclose(lora1[k], lora2[k], atol=1e-8) for k in lora1)
    assert any(float(v.abs().max()) > 1e-4 for k, v in lora2.items() if "lora_B" in k)   # not a fresh adapter
    assert json.loads((tmp_path / "stage2" / "bundle" / "training_card.json").read_text())["training"]["init_from"].endswith("bundle")
    with pytest.raises(ConfigError, match="r=4"):
        train_generator(train_config(tmp_path / "stage3", steps=1, batch_size=2, lora_r=2,
                                     init_from=str(tmp_path / "stage1" / "bundle")),
                        corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    with pytest.raises(DataNotFoundError, match="adapter_model.safetensors"):
        train_generator(train_config(tmp_path / "stage4", steps=1, batch_size=2, init_from=str(tmp_path / "nowhere")),
                        corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)


def test_training_documents_that_are_test_documents_elsewhere_are_dropped() -> None:
    from llmner.data_processing.corpora import load_corpus, without_test_overlap
    from llmner.training.generator import load_corpora

    genia_test = {"".join(d.text.split()) for d in load_corpus("genia", "test")}
    jnlpba_train = load_corpus("jnlpba", "train")
    leaked = sum("".join(d.text.split()) in genia_test for d in jnlpba_train)
    assert leaked > 100                      # JNLPBA's training sentences hold GENIA test sentences
    kept = load_corpora(GeneratorTrainingConfig(corpora=["jnlpba"], output="unused"))[0].documents
    assert len(kept) <= len(jnlpba_train) - leaked
    assert not any("".join(d.text.split()) in genia_test for d in kept)
    # The one filter every trainer applies (the peer baseline of the quality report too).
    assert [d.id for d in without_test_overlap(jnlpba_train)] == [d.id for d in kept]
    unfiltered = load_corpora(GeneratorTrainingConfig(corpora=["jnlpba"], output="unused", exclude_test_overlap=False))
    assert len(unfiltered[0].documents) == len(jnlpba_train)


def test_cpu_budget_ends_a_segment_with_a_checkpoint_and_resume_ignores_it(tmp_path: Path) -> None:
    from llmner.training.checkpoint import latest_checkpoint

    # A budget of zero seconds is reached before the first step; a tiny one after a few steps.
    cut = train_config(tmp_path / "run", steps=50, cpu_budget_s=0.0)
    logs: list[str] = []
    first = train_generator(cut, corpora=ncbi(), base=tiny_base(), progress=False, log=logs.append)
    assert not first.finished and first.steps == 0
    assert any("CPU budget of 0 s reached at step 0" in line for line in logs)
    budgeted = train_config(tmp_path / "run2", steps=50, cpu_budget_s=0.05)
    second = train_generator(budgeted, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert 0 < second.steps < 50 and not second.finished
    history = [json.loads(line) for line in (Path(budgeted.output) / "history.jsonl").read_text().splitlines()]
    # Each step starts under the budget; the segment ends at the first check past it.
    assert len(history) == second.steps and all(h["segment_cpu_s"] <= 0.05 for h in history[:-1])  # rounded to ms
    assert latest_checkpoint(Path(budgeted.output) / "checkpoints").name == f"step-{second.steps:06d}"
    # The budget belongs to the segment, not to the run: resuming does not inherit it.
    assert resume_config(budgeted.output).cpu_budget_s is None


def test_time_budget_ends_a_segment_and_is_not_inherited(tmp_path: Path) -> None:
    cut = train_config(tmp_path / "run", steps=50, time_budget_s=0.0)
    logs: list[str] = []
    first = train_generator(cut, corpora=ncbi(), base=tiny_base(), progress=False, log=logs.append)
    assert not first.finished and first.steps == 0
    assert any("time budget of 0 s reached at step 0" in line for line in logs)
    assert resume_config(cut.output).time_budget_s is None


def test_training_with_distractor_types_runs_and_is_a_trajectory_setting(tmp_path: Path) -> None:
    config = train_config(tmp_path / "run", steps=2, own_schema_rate=0.0, distractor_type_rate=1.0)
    result = train_generator(config, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert result.finished and result.steps == 2
    assert result.card["training"]["distractor_type_rate"] == 1.0
    assert result.card["training"]["max_distractor_types"] == 3
    assert replace(config, max_distractor_types=6).schema_variation().max_distractors == 6
    with pytest.raises(ConfigError, match="max_distractors"):
        replace(config, max_distractor_types=0).schema_variation()


def test_training_with_masked_type_names_runs_and_a_resume_must_keep_the_rate(tmp_path: Path) -> None:
    config = train_config(tmp_path / "run", steps=2, own_schema_rate=0.0, type_mask_rate=1.0)
    result = train_generator(config, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
    assert result.finished and result.steps == 2
    assert result.card["training"]["type_mask_rate"] == 1.0
    cut = replace(config, output=str(tmp_path / "cut"), checkpoint_every=1, stop_after=1)
    assert not train_generator(cut, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet).finished
    changed = replace(cut, stop_after=None, resume=True, type_mask_rate=0.0)
    with pytest.raises(ConfigError, match="type_mask_rate"):
        train_generator(changed, corpora=ncbi(), base=tiny_base(), progress=False, log=quiet)
