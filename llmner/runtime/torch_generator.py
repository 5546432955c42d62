"""PyTorch generator runtime: prompt -> batched tag generation (``llmner.decoding``) -> the codec's
``decode`` parses the generated text into candidate entities.

Construct it from a plain (model, tokenizer) or with ``from_generator`` (a
``llmner.modeling.generator.GeneratorModel``: base + LoRA adapter), ``from_pretrained`` (a generator
directory) or ``from_base`` (a base model reference: packaged name, local directory or .gguf).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmner.codecs.base import Diagnostics
from llmner.decoding.tag_generator import MODES, TagGenerationConfig, TagGenerator
from llmner.errors import ConfigError
from llmner.modeling.attention import use_cpu_bf16_attention, use_cpu_gqa_attention
from llmner.modeling.precision import use_cpu_bf16_matmuls
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.runtime.base import GeneratorRuntime, TagRequest, TagResult

_CONSTRAINED_CODECS = ("inline",)


class TorchGeneratorRuntime(GeneratorRuntime):
    """Tags chunks with a causal LM. ``mode``: free | constrained | speculative (the last two only
    for the inline codec, whose output is a constrained copy of the source)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt_builder: PromptBuilder | None = None,
        codec: str | None = None,
        mode: str = "speculative",
        batch_size: int = 8,
        generation_config: TagGenerationConfig | None = None,
        model_id: str = "",
    ) -> None:
        self.prompt_builder = prompt_builder or PromptBuilder(PromptConfig(codec=codec or "inline"))
        self.codec_name = codec or self.prompt_builder.config.codec
        if self.codec_name != self.prompt_builder.config.codec:
            raise ConfigError(
                f"codec {self.codec_name!r} differs from the prompt's codec {self.prompt_builder.config.codec!r}"
            )
        if mode not in MODES:
            raise ConfigError(f"unknown decoding mode {mode!r} (expected one of {', '.join(MODES)})")
        if mode != "free" and self.codec_name not in _CONSTRAINED_CODECS:
            raise ConfigError(
                f"decoding mode {mode!r} needs the inline codec; codec {self.codec_name!r} supports only mode 'free'"
            )
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.mode = mode
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        self.tag_generator = TagGenerator(model, tokenizer, generation_config)
        self.model_id = model_id or str(getattr(getattr(model, "config", None), "name_or_path", "") or "")

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_generator(cls, generator: Any, mode: str = "speculative", batch_size: int = 8,
                       generation_config: TagGenerationConfig | None = None, model_id: str = "") -> TorchGeneratorRuntime:
        """From a ``GeneratorModel`` (its prompt config and codec are used)."""
        return cls(generator.model, generator.tokenizer, generator.prompt_builder, generator.config.codec,
                   mode, batch_size, generation_config, model_id or str(getattr(generator, "card", {}).get("name", "")))

    @classmethod
    def from_pretrained(cls, path: str | Path, mode: str = "speculative", batch_size: int = 8,
                        generation_config: TagGenerationConfig | None = None, device: str | None = None,
                        adapter: str | Path | None = None, merge_adapter: bool = True,
                        grouped_attention: bool = True, precision: str = "auto",
                        bf16_attention: bool = True) -> TorchGeneratorRuntime:
        """From a generator directory written by ``GeneratorModel.save_pretrained``; ``adapter``: a generator
        directory or training checkpoint whose LoRA weights replace the directory's own; ``merge_adapter``:
        fold the LoRA weights into the base weights (faster; ``GeneratorModel.merge_adapter``);
        ``grouped_attention``: on a CPU, attention reads grouped key/value heads in place (faster, same
        output; ``llmner.modeling.attention``); ``precision``: auto | fp32 | bf16, the matrix multiplies'
        dtype on a CPU (auto: bf16 where the CPU does it natively; ``llmner.modeling.precision``);
        ``bf16_attention``: where the matrix multiplies are bf16 and attention is grouped, attention's two
        products in bf16 too (faster; ``llmner.modeling.attention``)."""
        from llmner.modeling.generator import GeneratorModel

        generator = GeneratorModel.from_pretrained(path, device=device, adapter=adapter)
        if merge_adapter:
            generator.merge_adapter()
        if grouped_attention:
            use_cpu_gqa_attention(generator.model)
        use_cpu_bf16_matmuls(generator.model, precision)
        if bf16_attention:
            use_cpu_bf16_attention(generator.model)
        model_id = str(path) if adapter is None else f"{path} + {adapter}"
        return cls.from_generator(generator, mode, batch_size, generation_config, model_id=model_id)

    @classmethod
    def from_base(cls, reference: str | Path | None = None, prompt_config: PromptConfig | None = None,
                  mode: str = "speculative", batch_size: int = 8, generation_config: TagGenerationConfig | None = None,
                  device: str | None = None, precision: str = "auto") -> TorchGeneratorRuntime:
        """An untuned base model (packaged SmolLM2 by default): useful as a zero-shot baseline."""
        from llmner.modeling.loading import DEFAULT_BASE_MODEL, load_base_model

        model, tokenizer = load_base_model(reference, device=device)
        use_cpu_bf16_matmuls(model, precision)
        config = prompt_config or PromptConfig()
        return cls(model, tokenizer, PromptBuilder(config), config.codec, mode, batch_size, generation_config,
                   model_id=str(reference or DEFAULT_BASE_MODEL))

    # -- tagging ----------------------------------------------------------------------------------
    def tag(self, requests: Sequence[TagRequest]) -> list[TagResult]:
        from llmner.codecs import get_codec

        codec = get_codec(self.codec_name)
        results: list[TagResult | None] = [None] * len(requests)
        # Group by schema (one shared prompt prefix each); inside a group, similar lengths batch together.
        groups: dict[Any, list[int]] = {}
        schemas: dict[Any, Any] = {}
        for i, req in enumerate(requests):
            key = (req.schema.name, req.schema.language, req.schema.types, req.open_bias)  # metadata dicts are unhashable
            groups.setdefault(key, []).append(i)
            schemas[key] = req.schema
        for key, indices in groups.items():
            schema = schemas[key]
            prefix, suffix = self.prompt_builder.split(self.tokenizer, "", schema)
            types = list(schema.type_names)
            indices = sorted(indices, key=lambda i: len(requests[i].text))
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                texts = [requests[i].text for i in batch]
                outputs = self.tag_generator.generate(prefix, [t + suffix for t in texts], texts, [types] * len(batch), self.mode,
                                                      open_bias=requests[batch[0]].open_bias)
                for i, text, out in zip(batch, texts, outputs):
                    parsed = codec.decode(out.text, text, types, out.span_probability)
                    diagnostics = parsed.diagnostics
                    if not out.finished:
                        diagnostics = diagnostics.merge(Diagnostics(notes=["token budget exhausted"]))
                    results[i] = TagResult(parsed.entities, out.text, diagnostics, out.forward_passes, out.output_tokens)
        return [r for r in results if r is not None]
