"""bf16 matrix multiplies on CPUs that do them natively, fp32 everywhere else.

Why: a CPU with AVX512-BF16 or AMX-BF16 multiplies bf16 matrices about 2.3x faster than fp32 (SmolLM2's
576x1536 projections, one thread, on this project's AMD EPYC; whole pipeline: 1.4-1.7x,
``benchmarks/results/throughput_bf16.md``), while a CPU without them emulates bf16 and is about 2.4x
*slower* (``../shared/FIELD_NOTES.md``). So ``auto`` asks the CPU.

Only the matrix multiplies drop to bf16 (``torch.autocast``): embeddings, norms, the residual stream, the
KV cache's dtype and the output layer that scores the allowed tokens stay fp32. For inference, the decoder
layers' Linear weights are also stored in bf16 once (``use_cpu_bf16_matmuls``), so that autocast does not
cast them again on every pass; a model in that state must run under ``matmul_autocast``.
CUDA models are loaded in bf16 already (``llmner.modeling.loading.auto_device``) and are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from llmner.errors import ConfigError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
_MATMUL_DTYPE = "_llmner_matmul_dtype"   # set on a model whose decoder Linear weights were cast


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``; the one check every setting that takes it uses."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    return precision


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def cpu_matmul_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The dtype of a CPU model's matrix multiplies under ``precision`` (auto | fp32 | bf16): bf16 for
    ``bf16``, and for ``auto`` on a CPU that does bf16 natively; None (plain fp32) otherwise and off the CPU."""
    check_precision(precision)
    if torch.device(device).type != "cpu" or precision == "fp32":
        return None
    if precision == "bf16" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def matmul_autocast(dtype: torch.dtype | None, device: str | torch.device = "cpu") -> Iterator[None]:
    """Matrix multiplies in ``dtype`` inside the block (nothing changes for None)."""
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def use_cpu_bf16_matmuls(model: Any, precision: str = "auto") -> bool:
    """Store the decoder layers' Linear weights of a CPU fp32 ``model`` in bf16 when ``precision`` says
    so (``cpu_matmul_dtype``); returns whether it did. Run the model under ``matmul_autocast(
    model_matmul_dtype(model))`` afterwards. The output layer and embeddings keep fp32."""
    parameter = next(model.parameters())
    dtype = cpu_matmul_dtype(precision, parameter.device)
    if dtype is None or parameter.dtype != torch.float32:
        return False
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        return False  # not a decoder stack we know: leave the model as it is
    for layer in layers:
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(dtype)
    setattr(model, _MATMUL_DTYPE, dtype)
    return True


@contextlib.contextmanager
def frozen_weights_in(model: Any, dtype: torch.dtype | None) -> Iterator[int]:
    """Inside the block, the frozen Linear weights of ``model``'s decoder layers (the base weights under
    LoRA; the adapter's own are left alone) are bf16 (``dtype``) copies, for training under
    ``torch.autocast(dtype)``; afterwards the original tensors are back. Yields how many were swapped
    (none for ``dtype`` None).

    Why: autocast keeps its casts only of weights that require grad, so every forward pass cast each
    frozen base weight to bf16 again: held, 8 steps of LoRA above layer 20 took 9 % less CPU time
    (``torch.profiler``: 32.4 -> 29.3 s, the copies 8.8 -> 6.1 s; ``benchmarks/results/
    training_frozen_bf16.md``: 1.10x the examples per second). Autocast's matrix multiplies read the same
    bf16 values either way, so losses and gradients do not change."""
    swapped: list[tuple[torch.nn.Module, torch.nn.Parameter]] = []
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = (getattr(decoder, "layers", None) or []) if dtype is not None else []
    for layer in layers:
        for name, module in layer.named_modules():
            weight = getattr(module, "weight", None)
            if (isinstance(module, torch.nn.Linear) and "lora_" not in name and weight is not None
                    and not weight.requires_grad and weight.dtype != dtype):
                swapped.append((module, weight))
                module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    try:
        yield len(swapped)
    finally:
        for module, weight in swapped:
            module.weight = weight


def model_matmul_dtype(model: Any) -> torch.dtype | None:
    """The dtype ``use_cpu_bf16_matmuls`` gave ``model``'s matrix multiplies (None: untouched)."""
    return getattr(model, _MATMUL_DTYPE, None)


__all__ = ["PRECISIONS", "check_precision", "cpu_has_native_bf16", "cpu_matmul_dtype", "matmul_autocast", "model_matmul_dtype",
           "frozen_weights_in", "use_cpu_bf16_matmuls"]
