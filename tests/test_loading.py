"""Base model resolution and the GGUF -> safetensors cache, on a tiny Llama written as a GGUF file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling import loading
from llmner.testing import tiny_causal_lm


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert script reorders q/k rows for its rotary layout; transformers undoes it on load.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: Path, model, tokenizer) -> None:
    """A float32 GGUF laid out like llama.cpp writes Llama models with a GPT-2 style tokenizer."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]) if getattr(cfg, "rope_parameters", None) else 10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    w.add_token_list(tokens)
    w.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(tokenizer.bos_token_id)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_chat_template(tokenizer.chat_template)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, cfg.num_attention_heads)
            elif gg == "attn_k":
                t = _permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gguf_converts_once_to_a_safetensors_cache(tmp_path, cache_env, monkeypatch):
    model, tokenizer = tiny_causal_lm(seed=5)
    gguf_path = tmp_path / "tiny.gguf"
    write_llama_gguf(gguf_path, model, tokenizer)

    path = loading.resolve_base_model(gguf_path)
    assert path.parent == cache_env / "models" and (path / "config.json").is_file()
    assert any(p.suffix == ".safetensors" for p in path.iterdir())
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind

    loaded, tok = loading.load_base_model(gguf_path, device="cpu")
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    text = "BRCA1 is mutated in <Disease>breast cancer</Disease> 患者"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    with torch.inference_mode():
        expected = model(torch.tensor([ids])).logits
        got = loaded(torch.tensor([ids])).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    # Second resolution reads the cache: converting again would fail loudly here.
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_conversion)
    assert loading.resolve_base_model(gguf_path) == path
    assert loading.resolve_base_model(tmp_path) == path  # a directory holding exactly one .gguf


def test_cache_key_changes_with_the_file(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"a" * 100)
    k1 = loading.gguf_cache_key(f)
    f.write_bytes(b"b" * 100)
    os.utime(f, (1, 1))
    assert loading.gguf_cache_key(f) != k1


def test_local_directory_and_errors(tmp_path):
    model, tokenizer = tiny_causal_lm(seed=6)
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    assert loading.resolve_base_model(tmp_path / "hf") == tmp_path / "hf"
    loaded, tok = loading.load_base_model(tmp_path / "hf")
    assert loaded.device.type == loading.auto_device().device.split(":")[0]
    assert loaded.dtype == loading.auto_device().dtype
    with pytest.raises(DataNotFoundError, match="never downloaded"):
        loading.resolve_base_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="config.json"):
        loading.resolve_base_model(tmp_path / "empty")
    with pytest.raises(ConfigError, match="unknown packaged model"):
        loading.packaged_gguf("nope")


def test_auto_device_is_cpu_fp32_without_cuda():
    choice = loading.auto_device("cpu")
    assert (choice.device, choice.dtype) == ("cpu", torch.float32)
    if not torch.cuda.is_available():
        assert loading.auto_device().device == "cpu"


@pytest.mark.slow
def test_packaged_smollm2_tags_a_sentence():
    from llmner.runtime.base import TagRequest
    from llmner.runtime.torch_generator import TorchGeneratorRuntime
    from llmner.schema import get_schema

    runtime = TorchGeneratorRuntime.from_base(mode="speculative", batch_size=2)
    text = "Germline mutations in BRCA1 are responsible for most cases of inherited breast and ovarian cancer ."
    [result] = runtime.tag([TagRequest(text, get_schema("ncbi_disease"))])
    plain = result.output
    for t in ("<Disease>", "</Disease>"):
        plain = plain.replace(t, "")
    assert plain == text
    assert all(text[e.start : e.end] == e.text for e in result.entities)
    assert result.forward_passes < result.output_tokens


def test_a_prebuilt_conversion_is_read_first_and_never_written(tmp_path, monkeypatch):
    """An image's prebuilt directory (LLMNER_PREBUILT_DIR, filled by `llmner warm`) holds the converted
    model: a pod with an empty cache reads it there, converts nothing and writes nothing into it."""
    model, tokenizer = tiny_causal_lm(seed=6)
    gguf_path = tmp_path / "tiny.gguf"
    write_llama_gguf(gguf_path, model, tokenizer)
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "image"))
    assert not loading.base_model_ready(gguf_path)
    built = loading.resolve_base_model(gguf_path)
    assert loading.base_model_ready(gguf_path)

    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "pod-cache"))
    assert not loading.base_model_ready(gguf_path)
    monkeypatch.setenv("LLMNER_PREBUILT_DIR", os.pathsep.join([str(tmp_path / "missing"), str(tmp_path / "image")]))
    assert loading.base_model_ready(gguf_path)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("converted again")))
    assert loading.resolve_base_model(gguf_path) == built
    assert not (tmp_path / "pod-cache").exists()
