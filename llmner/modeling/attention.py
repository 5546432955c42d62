"""SDPA attention that reads grouped key/value heads in place on a CPU.

SmolLM2 has 9 query heads over 3 key/value heads. Transformers' SDPA attention hands grouped heads to
``scaled_dot_product_attention(enable_gqa=True)`` only without an attention mask; with one (and tagged
decoding always has one: left padding, holes, draft trees) it first copies every key and value head 3
times (``repeat_kv``), every layer of every forward pass. On a CPU that copy is memory traffic over the
whole cache, a long shared prompt prefix included: measured on 20 CMeEE dev records (prompts of about 620
tokens) it is 2.5 of 33 CPU-s. ``enable_gqa`` with the mask gives the same entities and scores, 1.03-1.13x
faster on one thread (``benchmarks/results/throughput_gqa.md``). On CUDA, a mask with ``enable_gqa`` falls back to SDPA's
math kernel, so other devices keep transformers' own path.
"""

from __future__ import annotations

from typing import Any

import torch

CPU_GQA_SDPA = "llmner_cpu_gqa_sdpa"


def _cpu_gqa_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.device.type != "cpu" or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
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


__all__ = ["CPU_GQA_SDPA", "use_cpu_gqa_attention"]
