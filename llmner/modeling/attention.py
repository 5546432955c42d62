"""SDPA attention that reads grouped key/value heads in place on a CPU.

SmolLM2 has 9 query heads over 3 key/value heads. Transformers' SDPA attention hands grouped heads to
``scaled_dot_product_attention(enable_gqa=True)`` only without an attention mask; with one (and tagged
decoding always has one: left padding, holes, draft trees) it first copies every key and value head 3
times (``repeat_kv``), every layer of every forward pass. On a CPU that copy is memory traffic over the
whole cache, a long shared prompt prefix included: measured on 20 CMeEE dev records (prompts of about 620
tokens) it is 2.5 of 33 CPU-s. ``enable_gqa`` with the mask gives the same entities and scores, 1.03-1.13x
faster on one thread (``benchmarks/results/throughput_gqa.md``). On CUDA, a mask with ``enable_gqa`` falls back to SDPA's
math kernel, so other devices keep transformers' own path.

On a CPU whose decoder runs its Linear layers in bf16 (``llmner.modeling.precision``), attention is the
rest of the compute, in fp32: about half of CMeEE's CPU time (prompts of about 620 tokens), where SDPA
already runs near one core's fp32 rate. ``use_cpu_bf16_attention`` makes the two matrix products of
masked decoding passes bf16 as well (fp32 accumulation, scores and softmax in fp32), written out with
the queries of one key/value group stacked (no head copied) and in slices of the batch small enough for
the scores to stay in cache (written out over the whole batch, a pass of 8 rows x 16 queries x 700
columns was slower than SDPA). Prompt prefills (no mask) and passes whose one row's scores would not
fit a slice keep SDPA.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

CPU_GQA_SDPA = "llmner_cpu_gqa_sdpa"
_BF16_ATTENTION = "_llmner_bf16_attention"   # set on attention modules whose products run in bf16
_SLICE_SCORES = 1 << 18                     # fp32 scores per slice (1 MiB), sized to stay in one core's cache
_masks = threading.local()                  # the last boolean mask and its additive form (one per pass)


def _additive_mask(mask: torch.Tensor, batch: int, kv_heads: int) -> torch.Tensor:
    """[b or 1, 1, q, kv] boolean (True: attend) -> [batch * kv_heads, 1, q, kv] fp32 additive, one row per
    key/value group. Every layer of a pass gets the same mask tensor, so this is made once per pass."""
    last = getattr(_masks, "last", None)
    if last is not None and last[0] is mask and last[1] == (batch, kv_heads):
        return last[2]
    q, kv = mask.shape[-2:]
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    bias.masked_fill_(~mask, torch.finfo(torch.float32).min)  # finite: a row that sees nothing stays finite
    bias = bias.expand(batch, kv_heads, q, kv).reshape(batch * kv_heads, 1, q, kv)
    _masks.last = (mask, (batch, kv_heads), bias)
    return bias


def _bf16_grouped_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                            scale: float) -> torch.Tensor | None:
    """softmax(q k^T * scale + mask) v with both products in bf16, per key/value group; [b, heads, q, d]
    (query's dtype), or None (SDPA is then used) when one row's scores would not fit a slice or the mask
    is not [b or 1, 1, q, kv]."""
    b, heads, q, d = query.shape
    kv_heads, kv = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    per_item = groups * q * kv
    if per_item > _SLICE_SCORES or mask.shape[0] not in (1, b) or tuple(mask.shape[-2:]) != (q, kv):
        return None
    bf16 = torch.bfloat16
    queries = (query * scale).to(bf16).reshape(b * kv_heads, groups * q, d)
    keys_t = key.to(bf16).reshape(b * kv_heads, kv, d).transpose(1, 2)
    values = value.to(bf16).reshape(b * kv_heads, kv, d)
    bias = _additive_mask(mask, b, kv_heads)
    step = max(1, _SLICE_SCORES // per_item)
    out = torch.empty(b * kv_heads, groups * q, d, dtype=bf16, device=query.device)
    for i in range(0, b * kv_heads, step):
        scores = torch.matmul(queries[i : i + step], keys_t[i : i + step]).float()
        scores = scores.view(-1, groups, q, kv).add_(bias[i : i + step])
        probs = torch.softmax(scores, dim=-1).to(bf16).view(-1, groups * q, kv)
        torch.matmul(probs, values[i : i + step], out=out[i : i + step])
    return out.to(query.dtype).view(b, heads, q, d)


def _cpu_gqa_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.device.type != "cpu" or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    if (getattr(module, _BF16_ATTENTION, False) and attention_mask is not None and attention_mask.dtype == torch.bool
            and dropout == 0.0):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        out = _bf16_grouped_attention(query, key, value, attention_mask, scale)
        if out is not None:
            return out.transpose(1, 2).contiguous(), None
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=bool(query.shape[2] > 1 and attention_mask is None and causal), enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def use_cpu_gqa_attention(model: Any) -> bool:
    """Switch ``model`` (a transformers causal LM on SDPA attention) to ``CPU_GQA_SDPA``; returns whether it
    did (other attention implementations are left as they are)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(CPU_GQA_SDPA, _cpu_gqa_sdpa)
    AttentionMaskInterface.register(CPU_GQA_SDPA, sdpa_mask)   # the same boolean masks as SDPA
    model.set_attn_implementation(CPU_GQA_SDPA)
    return True


def use_cpu_bf16_attention(model: Any) -> bool:
    """Make the masked decoding passes of ``model``'s attention multiply in bf16 (see the module's
    docstring); returns whether it did: only for a model on ``CPU_GQA_SDPA`` attention whose Linear layers
    already run in bf16 (``use_cpu_bf16_matmuls``), so that ``generator_precision=fp32`` keeps all of fp32."""
    from llmner.modeling.precision import model_matmul_dtype

    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != CPU_GQA_SDPA or model_matmul_dtype(model) != torch.bfloat16:
        return False
    marked = False
    for module in model.modules():
        if hasattr(module, "num_key_value_groups"):
            setattr(module, _BF16_ATTENTION, True)
            marked = True
    return marked


def uses_bf16_attention(model: Any) -> bool:
    """Whether ``use_cpu_bf16_attention`` switched ``model``'s attention to bf16 products."""
    return any(getattr(module, _BF16_ATTENTION, False) for module in model.modules())


__all__ = ["CPU_GQA_SDPA", "use_cpu_bf16_attention", "use_cpu_gqa_attention", "uses_bf16_attention"]
