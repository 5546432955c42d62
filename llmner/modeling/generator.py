"""The generator model: a causal LM base plus an optional peft LoRA adapter, in the peft style.

``GeneratorConfig`` says everything needed to rebuild the model except the weights: the base model
reference (``packaged:smollm2`` or a local directory), the LoRA settings, the codec, the prompt
configuration and the schemas it was trained on. ``GeneratorModel`` holds (model, tokenizer, config)
and round-trips through ``save_pretrained(dir)`` / ``from_pretrained(dir)``.

A generator directory (one part of a model bundle, ``llmner.bundle``) holds only small files; the base weights stay where the reference points:

    generator_config.json      GeneratorConfig
    adapter/                   peft adapter (adapter_config.json + adapter_model.safetensors)
    schemas/<name>.json        every schema the generator was trained with
    training_card.json         what produced the adapter (corpora, hashes, steps, loss, hardware)

``load_adapter_weights`` copies another directory's LoRA weights (a generator directory, or a training
checkpoint ``<run>/checkpoints/step-N`` or portable checkpoint: anything with an ``adapter/``) into a
loaded model of the same rank and target modules: ``from_pretrained(..., adapter=CHECKPOINT)`` loads a
bundle's generator with a checkpoint's adapter in place of its own (``Pipeline.from_bundle(...,
generator_adapter=...)``); training starts a stage from an earlier stage's adapter with it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from llmner.errors import ConfigError, DataNotFoundError, ValidationError
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.schema import EntitySchema

CONFIG_NAME = "generator_config.json"
ADAPTER_DIR = "adapter"
SCHEMAS_DIR = "schemas"
CARD_NAME = "training_card.json"
MERGED_DIR = "merged"

# Every projection of a Llama block: attention and MLP.
LLAMA_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """How to rebuild a generator (no weights).

    ``lora_r = 0`` means no adapter (the base model as is). ``schemas`` names the schemas the model
    was trained with; their full definitions are saved beside the config in the generator directory.
    """

    base_model: str = "smollm2-135m-instruct"   # a packaged model name (llmner.modeling.loading) or a local dir
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS
    codec: str = "inline"
    prompt: PromptConfig = field(default_factory=PromptConfig)
    schemas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.lora_r < 0:
            raise ConfigError(f"lora_r must be >= 0, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_r and not self.target_modules:
            raise ConfigError("target_modules is empty: LoRA needs at least one module name")
        if self.prompt.codec != self.codec:
            raise ConfigError(f"codec {self.codec!r} differs from the prompt's codec {self.prompt.codec!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        out["schemas"] = list(self.schemas)
        out["prompt"] = self.prompt.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"generator config: unknown field(s) {', '.join(unknown)}")
        values = dict(data)
        if "prompt" in values and not isinstance(values["prompt"], PromptConfig):
            values["prompt"] = PromptConfig.from_dict(values["prompt"])
        for key in ("target_modules", "schemas"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> GeneratorConfig:
        p = Path(path)
        if not p.is_file():
            raise DataNotFoundError(f"generator config not found: {p}")
        try:
            return cls.from_dict(orjson.loads(p.read_bytes()))
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"generator config {p} is not valid JSON: {exc}") from None


def load_base(reference: str, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a base model reference; resolution lives in ``llmner.modeling.loading``."""
    from llmner.modeling import loading

    return loading.load_base_model(reference, device=device, dtype=dtype)


class GeneratorModel:
    """(model with optional LoRA adapter, tokenizer, config) plus the schemas it knows."""

    def __init__(self, model: Any, tokenizer: Any, config: GeneratorConfig,
                 schemas: Mapping[str, EntitySchema] | None = None, card: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.schemas: dict[str, EntitySchema] = dict(schemas or {})
        self.card: dict[str, Any] = dict(card or {})
        missing = [s for s in config.schemas if s not in self.schemas]
        if missing:
            raise ConfigError(f"generator config lists schema(s) {', '.join(missing)} but none was given")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_base(cls, config: GeneratorConfig, schemas: Sequence[EntitySchema] = (),
                  base: tuple[Any, Any] | None = None, device: str | None = None, dtype: Any = None) -> GeneratorModel:
        """A fresh generator: the base model (loaded from ``config.base_model`` unless ``base`` =
        (model, tokenizer) is given in memory) with a newly initialised LoRA adapter when lora_r > 0."""
        model, tokenizer = base if base is not None else load_base(config.base_model, device=device, dtype=dtype)
        schema_map = {s.name: s for s in schemas}
        config = replace(config, schemas=tuple(dict.fromkeys([*config.schemas, *schema_map])))
        if config.lora_r:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=list(config.target_modules), task_type="CAUSAL_LM", bias="none")
            model = get_peft_model(model, lora)
        return cls(model, tokenizer, config, schema_map)

    @classmethod
    def from_pretrained(cls, path: str | Path, base: tuple[Any, Any] | None = None,
                        device: str | None = None, dtype: Any = None, is_trainable: bool = False,
                        adapter: str | Path | None = None) -> GeneratorModel:
        """Load a generator directory written by ``save_pretrained``; ``base`` overrides the base model reference
        with an in-memory (model, tokenizer) (tests, or a base already loaded by the caller). ``adapter``: a
        generator directory or training checkpoint whose LoRA weights replace this directory's (same rank
        and target modules; see ``load_adapter_weights``)."""
        root = Path(path)
        if not root.is_dir():
            raise DataNotFoundError(f"generator directory not found: {root}")
        config = GeneratorConfig.load(root / CONFIG_NAME)
        schemas = {}
        for name in config.schemas:
            schema_file = root / SCHEMAS_DIR / f"{name}.json"
            if not schema_file.is_file():
                raise DataNotFoundError(f"generator directory {root}: schema file {schema_file.name} is missing")
            schemas[name] = EntitySchema.load(schema_file)
        model, tokenizer = base if base is not None else load_base(config.base_model, device=device, dtype=dtype)
        if config.lora_r:
            adapter_dir = root / ADAPTER_DIR
            if not (adapter_dir / "adapter_config.json").is_file():
                raise DataNotFoundError(f"generator directory {root}: adapter/adapter_config.json is missing")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
        if adapter is not None:
            if not config.lora_r:
                raise ConfigError(f"generator directory {root} has no LoRA adapter (lora_r = 0) for {adapter} to replace")
            load_adapter_weights(model, adapter, what="adapter")
        card = orjson.loads((root / CARD_NAME).read_bytes()) if (root / CARD_NAME).is_file() else {}
        out = cls(model, tokenizer, config, schemas, card)
        if not is_trainable:
            out.model.eval()
        return out

    # -- saving ------------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, card: Mapping[str, Any] | None = None) -> Path:
        """Write the generator directory (config, adapter, schemas, card); never the base weights."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        if card is not None:
            self.card = dict(card)
        (root / CONFIG_NAME).write_bytes(orjson.dumps(self.config.to_dict(), option=orjson.OPT_INDENT_2))
        schema_dir = root / SCHEMAS_DIR
        schema_dir.mkdir(exist_ok=True)
        for name, schema in self.schemas.items():
            schema.save(schema_dir / f"{name}.json")
        if self.config.lora_r:
            if not self.has_adapter:
                raise ValidationError("generator config has lora_r > 0 but the model carries no peft adapter")
            self.model.save_pretrained(str(root / ADAPTER_DIR))
        if self.card:
            (root / CARD_NAME).write_bytes(orjson.dumps(self.card, option=orjson.OPT_INDENT_2))
        return root

    def save_merged(self, path: str | Path) -> Path:
        """Base + adapter merged into plain weights (``merge_and_unload``) with the tokenizer: a
        standard transformers directory that loads without peft and runs without LoRA overhead."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        merged = self.merged_model()
        _drop_quantizer_state(merged)
        merged.save_pretrained(str(root))
        self.tokenizer.save_pretrained(str(root))
        return root

    def merge_adapter(self) -> GeneratorModel:
        """Fold the LoRA adapter into the base weights in place, for inference: each projection is
        then one matmul instead of peft's three (base, A, B), about 1.2x faster per token on a CPU
        (benchmarks/decoding.py). The generator can no longer be trained or saved as an adapter."""
        if self.has_adapter:
            self.model = self.model.merge_and_unload()
            self.model.eval()
        return self

    def merged_model(self) -> Any:
        """A copy of the model with the adapter folded into the weights (the wrapper is untouched)."""
        if not self.has_adapter:
            return copy.deepcopy(self.model)
        return copy.deepcopy(self.model).merge_and_unload()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "peft_config")

    @property
    def prompt_builder(self) -> PromptBuilder:
        return PromptBuilder(self.config.prompt)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def schema(self, name: str) -> EntitySchema:
        if name not in self.schemas:
            raise ValidationError(f"generator has no schema {name!r} (known: {', '.join(self.schemas) or 'none'})")
        return self.schemas[name]

    def add_schemas(self, schemas: Sequence[EntitySchema]) -> None:
        for s in schemas:
            self.schemas[s.name] = s
        self.config = replace(self.config, schemas=tuple(dict.fromkeys([*self.config.schemas, *self.schemas])))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def load_adapter_weights(model: Any, generator_dir: str | Path, what: str = "adapter") -> Path:
    """Copy the LoRA weights of ``generator_dir`` (a generator directory or a training checkpoint: its
    ``adapter/``) into the peft ``model``; return the weights file. The adapter shapes must match: same
    rank and target modules. ``what`` names the source in errors (``--init-from`` for training)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = Path(generator_dir) / ADAPTER_DIR
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise DataNotFoundError(f"{what} {generator_dir}: {weights} not found (expected a generator directory with an adapter)")
    saved = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    current = model.peft_config["default"]
    if int(saved.get("r", -1)) != current.r or set(saved.get("target_modules") or ()) != set(current.target_modules):
        raise ConfigError(f"{what} {generator_dir}: adapter has r={saved.get('r')} on {sorted(saved.get('target_modules') or ())}, "
                          f"this model has r={current.r} on {sorted(current.target_modules)}")
    result = set_peft_model_state_dict(model, load_file(str(weights)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(f"{what} {generator_dir}: adapter weights do not fit this model "
                          f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected, e.g. "
                          f"{(missing or list(result.unexpected_keys))[0]})")
    return weights


def merged_weights_dir(generator_dir: str | Path) -> Path:
    """A merged (base + adapter) transformers directory for the generator directory ``generator_dir``,
    built on first use into the user cache (``LLMNER_CACHE_DIR``) and reused: keyed by the hashes of
    its config and adapter."""
    import hashlib

    from llmner.cache import cached, publish_directory

    root = Path(generator_dir)
    h = hashlib.sha256()
    for part in (root / CONFIG_NAME, root / ADAPTER_DIR / "adapter_config.json", root / ADAPTER_DIR / "adapter_model.safetensors"):
        if part.is_file():
            h.update(part.name.encode())
            h.update(part.read_bytes())
    target = cached(Path("merged") / f"{root.resolve().name}-{h.hexdigest()[:16]}", "config.json")
    return publish_directory(
        target, lambda tmp: GeneratorModel.from_pretrained(root, device="cpu", dtype=_float32()).save_merged(tmp)
    )


def _float32() -> Any:
    import torch

    return torch.float32


def _drop_quantizer_state(model: Any) -> None:
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"); its weights are plain
    # fp32 tensors after loading, so clearing the quantizer bookkeeping is enough.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
