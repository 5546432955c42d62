"""TorchGeneratorRuntime on the tiny Llama, the any-tokenizer byte table, and decoding options."""

from __future__ import annotations

import re

import pytest

from llmner.decoding import TagGenerationConfig, TagGenerator, token_bytes_table
from llmner.errors import ConfigError
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.runtime.base import TagRequest
from llmner.runtime.torch_generator import TorchGeneratorRuntime
from llmner.schema import EntitySchema, get_schema
from llmner.testing import tiny_causal_lm, tiny_llama

TEXTS = [
    "BRCA1 is mutated in breast cancer.",
    "Patients (n = 12) & controls < 5 years.",
    "IL-2 binds the IL-2 promoter in T cells",
    "Germline mutations in APC cause familial adenomatous polyposis .",
    "患者 出现 发热 和 咳嗽 。",
]
MARKER = re.compile(r"</?[A-Za-z][A-Za-z0-9_\-]*>")


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(seed=1)


def genia_like() -> EntitySchema:
    return get_schema("genia")


def test_runtime_tags_with_exact_offsets_whatever_the_batch(lm):
    model, tokenizer = lm
    schema = genia_like()
    requests = [TagRequest(t, schema) for t in TEXTS]
    one = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=1).tag(requests)
    three = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=3).tag(requests)
    assert [r.output for r in one] == [r.output for r in three]
    assert [r.entities for r in one] == [r.entities for r in three]
    found = 0
    for req, res in zip(requests, one):
        assert MARKER.sub("", res.output).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == req.text
        assert res.diagnostics.inserted_chars == 0 and res.diagnostics.deleted_chars == 0
        assert res.forward_passes >= 1 and res.output_tokens >= 1
        for e in res.entities:
            assert req.text[e.start : e.end] == e.text and e.type in schema and e.end > e.start
            found += 1
    assert found > 0  # the random model tags something, and the codec decodes it


def test_runtime_mixed_schemas_keep_request_order(lm):
    model, tokenizer = lm
    ncbi, genia = get_schema("ncbi_disease"), genia_like()
    requests = [TagRequest(t, ncbi if i % 2 else genia) for i, t in enumerate(TEXTS)]
    runtime = TorchGeneratorRuntime(model, tokenizer, mode="constrained", batch_size=2)
    mixed = runtime.tag(requests)
    single = [runtime.tag([r])[0] for r in requests]
    assert [r.output for r in mixed] == [r.output for r in single]
    for req, res in zip(requests, mixed):
        assert all(e.type in req.schema for e in res.entities)


def test_runtime_free_mode_and_other_codecs(lm):
    model, tokenizer = lm
    schema = get_schema("ncbi_disease")
    with pytest.raises(ConfigError, match="constrained"):
        TorchGeneratorRuntime(model, tokenizer, PromptBuilder(PromptConfig(codec="lines")), mode="constrained")
    with pytest.raises(ConfigError, match="speculative"):
        TorchGeneratorRuntime(model, tokenizer, codec="json", mode="speculative")
    runtime = TorchGeneratorRuntime(model, tokenizer, codec="lines", mode="free",
                                    generation_config=TagGenerationConfig(max_new_tokens=12))
    results = runtime.tag([TagRequest(t, schema) for t in TEXTS[:2]])
    assert len(results) == 2 and all(r.output_tokens <= 12 for r in results)
    for req, res in zip(TEXTS, results):  # whatever the model wrote, entities lie inside the text
        assert all(req[e.start : e.end] == e.text for e in res.entities)


def test_runtime_from_generator_bundle_wrapper(lm):
    from llmner.modeling.generator import GeneratorConfig, GeneratorModel

    model, tokenizer = lm
    gen = GeneratorModel.from_base(GeneratorConfig(lora_r=0), [get_schema("ncbi_disease")], base=(model, tokenizer))
    runtime = TorchGeneratorRuntime.from_generator(gen, mode="speculative", batch_size=2)
    direct = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=2)
    requests = [TagRequest(t, get_schema("ncbi_disease")) for t in TEXTS[:3]]
    assert [r.output for r in runtime.tag(requests)] == [r.output for r in direct.tag(requests)]


def test_scoring_only_allowed_rows_equals_full_logits(lm):
    model, tokenizer = lm
    texts, types = TEXTS, ["protein", "DNA"]
    prefix, suffix = PromptBuilder().split(tokenizer, "", genia_like())
    fast = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=8))
    full = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=8))
    full._stack, full._head = None, None  # the generic path: full logits from the model
    for mode in ("constrained", "speculative"):
        a = fast.generate(prefix, [t + suffix for t in texts], texts, [types] * len(texts), mode)
        b = full.generate(prefix, [t + suffix for t in texts], texts, [types] * len(texts), mode)
        assert [o.token_ids for o in a] == [o.token_ids for o in b]


def test_no_tags_inside_words_unless_allowed(lm):
    model, tokenizer = lm
    prefix, suffix = PromptBuilder().split(tokenizer, "", genia_like())
    texts = ["Hemophilia antithrombin cardiomyopathy dystrophin", "polyposis coli and adenomas"]
    types = ["protein", "DNA", "RNA"]

    def inside_word_markers(allow: bool) -> int:
        dec = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=12, tags_inside_words=allow))
        count = 0
        for out in dec.generate(prefix, [t + suffix for t in texts], texts, [types] * 2, "constrained"):
            for m in MARKER.finditer(out.text):
                before, after = out.text[: m.start()], out.text[m.end():]
                prev = MARKER.sub("", before)[-1:]
                nxt = MARKER.sub("", after)[:1]
                count += bool(prev.isalnum() and nxt.isalnum())
        return count

    assert inside_word_markers(False) == 0
    assert inside_word_markers(True) > 0  # the random model does put them there when allowed


def metaspace_byte_fallback_tokenizer():
    """A sentencepiece-style tokenizer: '▁' for spaces, <0xNN> byte fallback for unknown characters."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Replace(" ", "▁")
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    base.train_from_iterator(["BRCA1 is mutated in breast cancer.", "IL-2 binds the IL-2 promoter <x> & y."] * 20,
                             trainer=trainer)
    import json

    data = json.loads(base.to_str())
    vocab = data["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token=None))
    tok.normalizer = base.normalizer
    tok.pre_tokenizer = base.pre_tokenizer
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    for i, name in enumerate(["<pad>", "<s>", "</s>"]):
        assert tok.token_to_id(name) == i
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   padding_side="left", clean_up_tokenization_spaces=False)


def test_sentencepiece_style_tokenizer_constrained_copy():
    tokenizer = metaspace_byte_fallback_tokenizer()
    table = token_bytes_table(tokenizer)
    for text in ["BRCA1 is mutated", "患者 α & <x>"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(table[i] for i in ids) == text.encode("utf-8")
    model = tiny_llama(tokenizer, seed=2)
    dec = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=12, budget_extra=64))
    texts = ["BRCA1 is mutated in 患者 cancer.", "IL-2 & <x> binds"]
    prefix, suffix = PromptBuilder().split(tokenizer, "", genia_like())
    con = dec.generate(prefix, [t + suffix for t in texts], texts, [["protein", "DNA"]] * 2, "constrained")
    spec = dec.generate(prefix, [t + suffix for t in texts], texts, [["protein", "DNA"]] * 2, "speculative")
    assert [o.text for o in con] == [o.text for o in spec]
    for out, src in zip(con, texts):
        plain = MARKER.sub("", out.text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        assert plain == src


def test_generator_scores_are_the_probabilities_of_each_entitys_markers(lm):
    """Each inline entity carries the product of the probabilities of the tokens that wrote its open
    and close markers (Chinese text included, where tokens split characters' bytes)."""
    from llmner.codecs.inline import _TOKEN

    model, tokenizer = lm
    schema = genia_like()
    requests = [TagRequest(t, schema) for t in TEXTS]
    runtime = TorchGeneratorRuntime(model, tokenizer, mode="constrained", batch_size=2)
    generator = runtime.tag_generator
    prefix, suffix = runtime.prompt_builder.split(tokenizer, "", schema)
    outputs = generator.generate(prefix, [t + suffix for t in TEXTS], TEXTS, [list(schema.type_names)] * len(TEXTS),
                                 "constrained")
    scored = 0
    for req, out, res in zip(requests, outputs, runtime.tag(requests)):
        assert len(out.token_probs) == len(out.token_ids)
        assert all(0.0 < p <= 1.0 for p in out.token_probs)
        assert out.char_tokens is not None and len(out.char_tokens) == len(out.text)
        # The characters of each token, in order, are the token's bytes.
        for index, token in enumerate(out.token_ids):
            chars = "".join(c for c, owner in zip(out.text, out.char_tokens) if owner == index)
            piece = generator.vocab.token_bytes[token] or b""
            assert piece.decode("utf-8", errors="ignore") in chars or chars.encode() in piece or not piece
        # Recompute every entity's score from the markers in the output.
        markers = [m for m in _TOKEN.finditer(out.text) if m.group(2)]
        expected: dict[str, list[float]] = {}
        stack: dict[str, list[float]] = {}
        for m in markers:
            p = out.span_probability(m.start(), m.end())
            assert p is not None and 0.0 < p <= 1.0
            if m.group(1):
                expected.setdefault(m.group(2), []).append(stack[m.group(2)].pop() * p)
            else:
                stack.setdefault(m.group(2), []).append(p)
        got = sorted(e.generator_score for e in res.entities)
        assert got == pytest.approx(sorted(p for ps in expected.values() for p in ps), rel=1e-4)  # batch layout
        assert all(e.score is None for e in res.entities)
        scored += len(got)
    assert scored > 0


def test_speculative_generator_scores_equal_constrained(lm):
    model, tokenizer = lm
    requests = [TagRequest(t, genia_like()) for t in TEXTS]
    constrained = TorchGeneratorRuntime(model, tokenizer, mode="constrained", batch_size=2).tag(requests)
    speculative = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=2).tag(requests)
    for a, b in zip(constrained, speculative):
        assert a.entities == b.entities
        assert [e.generator_score for e in a.entities] == pytest.approx([e.generator_score for e in b.entities], rel=1e-3)


def test_char_token_indices_map_split_characters_and_refuse_other_text():
    from llmner.decoding.tag_generator import char_token_indices

    pieces = ["发".encode()[:2], "发".encode()[2:] + b"<", b"a>"]  # a character split across two tokens
    assert char_token_indices(pieces, b"", "发<a>") == [0, 1, 2, 2]
    assert char_token_indices(pieces, b"x", "发<a>x") == [0, 1, 2, 2, -1]
    assert char_token_indices(pieces, b"", "发<b>") is None
    assert char_token_indices([b"\xe5\x8f"], b"", "\ufffd") is None  # invalid UTF-8 was replaced


def test_open_bias_opens_more_tags_alike_in_constrained_and_speculative_decoding(lm):
    """A logit bonus for opening a tag trades precision for recall. Speculative decoding verifies its
    drafts with the same biased choice, so both modes still write the same output; scores stay the
    model's own probabilities."""
    model, tokenizer = lm
    schema = get_schema("ncbi_disease")
    plain = [TagRequest(t, schema) for t in TEXTS]
    biased = [TagRequest(t, schema, open_bias=30.0) for t in TEXTS]
    constrained = TorchGeneratorRuntime(model, tokenizer, mode="constrained", batch_size=2)
    speculative = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=2)
    base = constrained.tag(plain)
    more = constrained.tag(biased)
    assert [r.output for r in more] == [r.output for r in speculative.tag(biased)]
    assert sum(len(r.entities) for r in more) > sum(len(r.entities) for r in base)
    for req, res in zip(biased, more):
        assert MARKER.sub("", res.output).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == req.text
        assert all(e.generator_score is None or 0.0 <= e.generator_score <= 1.0 for e in res.entities)
    # Mixed biases in one call are generated apart (the bias is part of the batch key), in request order.
    mixed = constrained.tag([biased[0], plain[0]])
    assert [r.output for r in mixed] == [more[0].output, base[0].output]


def test_grouped_kv_attention_on_a_cpu_gives_the_same_tags_and_scores():
    import torch

    from llmner.modeling.attention import CPU_GQA_SDPA, use_cpu_gqa_attention

    # The tiny Llama groups 4 query heads over 2 key/value heads, as SmolLM2 groups 9 over 3.
    schema = genia_like()
    requests = [TagRequest(t, schema) for t in TEXTS]
    outputs = []
    for grouped in (False, True):
        model, tokenizer = tiny_causal_lm(seed=1)
        assert model.config.num_key_value_heads < model.config.num_attention_heads
        if grouped:
            assert use_cpu_gqa_attention(model) and model.config._attn_implementation == CPU_GQA_SDPA
        # speculative: padded rows, holes and branching draft trees, i.e. every kind of attention mask
        runtime = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=3)
        assert runtime.tag_generator._tree_masks
        results = runtime.tag(requests)
        probs = [out.token_probs for out in runtime.tag_generator.generate(
            "", [t + " =>" for t in TEXTS], TEXTS, [schema.type_names] * len(TEXTS), "speculative")]
        with torch.inference_mode():
            ids = tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
            logits = model(**ids).logits
        outputs.append(([r.output for r in results], [r.entities for r in results], probs, logits))
    (out_a, ents_a, probs_a, logits_a), (out_b, ents_b, probs_b, logits_b) = outputs
    assert out_a == out_b and ents_a == ents_b
    assert all(pa == pytest.approx(pb, abs=1e-5) for pa, pb in zip(probs_a, probs_b))
    assert torch.allclose(logits_a, logits_b, atol=1e-5)
    # Eager attention is left as it is.
    eager = tiny_llama(seed=1)
    eager.set_attn_implementation("eager")
    assert not use_cpu_gqa_attention(eager) and eager.config._attn_implementation == "eager"


def test_cpu_matmul_precision_follows_the_cpu_unless_told(monkeypatch):
    import torch

    from llmner.modeling import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.cpu_matmul_dtype("auto", "cpu") is None          # emulated bf16 is slower than fp32
    assert precision.cpu_matmul_dtype("bf16", "cpu") is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.cpu_matmul_dtype("auto", "cpu") is torch.bfloat16
    assert precision.cpu_matmul_dtype("fp32", "cpu") is None
    assert precision.cpu_matmul_dtype("auto", "cuda") is None           # CUDA models load in bf16 already
    with pytest.raises(ConfigError, match="unknown precision"):
        precision.cpu_matmul_dtype("fp16", "cpu")
    from llmner.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="unknown precision"):
        PipelineConfig(generator_precision="fp16")


def test_bf16_matmuls_keep_embeddings_norms_and_output_layer_in_fp32_and_copy_the_source():
    import torch

    from llmner.modeling.precision import matmul_autocast, model_matmul_dtype, use_cpu_bf16_matmuls

    model, tokenizer = tiny_causal_lm(seed=1)
    assert not use_cpu_bf16_matmuls(model, "fp32") and model_matmul_dtype(model) is None
    with torch.inference_mode():
        ids = tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
        reference = model(**ids).logits
    assert use_cpu_bf16_matmuls(model, "bf16") and model_matmul_dtype(model) is torch.bfloat16
    layer = model.get_decoder().layers[0]
    assert layer.self_attn.q_proj.weight.dtype == torch.bfloat16 and layer.mlp.down_proj.weight.dtype == torch.bfloat16
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert layer.input_layernorm.weight.dtype == torch.float32
    with torch.inference_mode(), matmul_autocast(model_matmul_dtype(model)):
        logits = model(**ids).logits.float()
    mask = ids["attention_mask"].bool()
    # bf16 keeps 8 mantissa bits: close to fp32, not equal (the entities it changes are measured on real
    # models in benchmarks/results/throughput_bf16.md).
    error = (logits[mask] - reference[mask]).abs()
    assert float(error.mean()) < 0.05 and float(error.max()) < 0.5, (float(error.mean()), float(error.max()))
    assert not torch.equal(logits[mask], reference[mask])
    # The decoder runs under autocast by itself; constrained copies stay exact copies of the source.
    runtime = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=3)
    assert runtime.tag_generator._matmul_dtype is torch.bfloat16
    results = runtime.tag([TagRequest(t, genia_like()) for t in TEXTS])
    for text, res in zip(TEXTS, results):
        assert MARKER.sub("", res.output).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text
        assert res.diagnostics.inserted_chars == 0 and res.diagnostics.deleted_chars == 0
        assert all(text[e.start : e.end] == e.text for e in res.entities)


def test_bf16_attention_matches_sdpa_closely_in_slices_and_only_follows_bf16_matmuls(monkeypatch):
    import torch

    from llmner.modeling import attention
    from llmner.modeling.precision import use_cpu_bf16_matmuls

    # The written-out grouped products against SDPA over repeated heads: masks with a batch of one or of
    # every row, a row that sees nothing (finite, as padding rows must stay), slices of the batch.
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, queries, columns, dim = 5, 6, 2, 7, 40, 16
    query = torch.randn(batch, heads, queries, dim, generator=generator)
    key = torch.randn(batch, kv_heads, columns, dim, generator=generator)
    value = torch.randn(batch, kv_heads, columns, dim, generator=generator)
    for rows in (batch, 1):
        mask = torch.rand(rows, 1, queries, columns, generator=generator) > 0.3
        mask[..., 0] = True
        reference = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.25,
                                                                     enable_gqa=True)
        for slice_scores in (1 << 18, (heads // kv_heads) * queries * columns):   # all at once, one row a slice
            monkeypatch.setattr(attention, "_SLICE_SCORES", slice_scores)
            out = attention._bf16_grouped_attention(query, key, value, mask, 0.25)
            assert out is not None and out.dtype == torch.float32 and out.shape == reference.shape
            assert float((out - reference).abs().max()) < 0.05
    blind = torch.ones(batch, 1, queries, columns, dtype=torch.bool)
    blind[0, 0, 0] = False
    assert torch.isfinite(attention._bf16_grouped_attention(query, key, value, blind, 0.25)).all()
    monkeypatch.setattr(attention, "_SLICE_SCORES", 10)   # one row's scores do not fit: SDPA takes the pass
    assert attention._bf16_grouped_attention(query, key, value, blind, 0.25) is None
    monkeypatch.undo()

    # Only a model whose Linear layers run in bf16 and whose attention is grouped gets it.
    model, tokenizer = tiny_causal_lm(seed=1)
    assert not attention.use_cpu_bf16_attention(model)
    attention.use_cpu_gqa_attention(model)
    assert not attention.use_cpu_bf16_attention(model)          # fp32 matmuls: all of fp32 stays
    use_cpu_bf16_matmuls(model, "bf16")
    assert not attention.uses_bf16_attention(model)
    assert attention.use_cpu_bf16_attention(model) and attention.uses_bf16_attention(model)
    written_out = []
    original = attention._bf16_grouped_attention

    def counted(*args):
        out = original(*args)
        written_out.append(out is not None)
        return out

    monkeypatch.setattr(attention, "_bf16_grouped_attention", counted)
    runtime = TorchGeneratorRuntime(model, tokenizer, mode="speculative", batch_size=3)
    results = runtime.tag([TagRequest(t, genia_like()) for t in TEXTS])
    assert any(written_out)   # the decoding passes (masked) took the bf16 path
    for text, res in zip(TEXTS, results):
        assert MARKER.sub("", res.output).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text
