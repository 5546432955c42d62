"""LoRA training of the generator: ``llmner train generator``.

Joint training over corpora (temperature sampling, ``sampling.py``), prompt tokens masked
(``examples.py``), AdamW with linear warmup and decay, gradient accumulation with an exact
token-level mean over the whole accumulated batch, fixed seeds, CUDA + bf16 autocast when present
(fp32 on CPU, where bf16 is slower), periodic checkpoints and an exact ``resume``. The result is a
generator directory (``GeneratorModel.save_pretrained``) with a training card.

Runs may be cut into segments: ``stop_after`` ends a run at that step with a checkpoint, and
``resume`` continues from the newest checkpoint as if the run had never stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmner.doc import Document
from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling.generator import (
    LLAMA_PROJECTIONS,
    GeneratorConfig,
    GeneratorModel,
    load_adapter_weights,
)
from llmner.modeling.precision import check_precision, frozen_weights_in
from llmner.prompts import PromptConfig
from llmner.schema import EntitySchema
from llmner.training import card as cardlib
from llmner.training.checkpoint import CONFIG_NAME as CHECKPOINT_CONFIG_NAME
from llmner.training.checkpoint import (
    PORTABLE_STATE_NAME,
    is_portable,
    latest_checkpoint,
    load_adapter,
)
from llmner.training.examples import (
    IGNORE_INDEX,
    ExampleConfig,
    ExampleStats,
    TextExample,
    TokenizedExample,
    collate,
    render_examples,
    text_examples,
    tokenize_examples,
)
from llmner.training.loop import (
    HISTORY_NAME,
    LoopSettings,
    TrainingLoop,
    seed_everything,
)
from llmner.training.sampling import TemperatureSampler
from llmner.training.schema_variation import MentionLexicon, SchemaVariation, SchemaVariationConfig
from llmner.type_namings import load_type_namings

CHECKPOINT_DIR = "checkpoints"


@dataclass(slots=True)
class GeneratorTrainingConfig:
    """Everything a generator training run depends on (loadable from YAML or JSON)."""

    corpora: list[str] = field(default_factory=list)
    output: str = ""
    split: str = "train"
    base_model: str = "smollm2-135m-instruct"
    # data
    temperature: float = 2.0
    corpus_weights: dict[str, float] = field(default_factory=dict)   # p ∝ weight · n^(1/T); 1 when absent (sampling.py)
    entity_free_ratio: float = 0.5
    max_length: int = 512
    chunk_max_tokens: int = 256
    sentences_per_chunk: int = 1              # sentences per training chunk (and per inference chunk of its bundle)
    curated: str | None = None
    max_documents: int | None = None          # per corpus, for smoke runs
    init_from: str | None = None              # generator directory whose LoRA weights start this run (curriculum stages)
    exclude_test_overlap: bool = True         # drop training documents whose text is in any corpus's test split
    # schema-robust training (llmner.training.schema_variation): each batch sees a varied schema
    vary_schema: bool = True
    own_schema_rate: float = 0.25
    drop_type_rate: float = 0.4
    paraphrase_rate: float = 0.6
    distractor_type_rate: float = 0.0         # varied schemas that also list types the corpus does not annotate
    max_distractor_types: int = 3             # how many such types at most (1 to this many, drawn per schema)
    type_mask_rate: float = 0.0               # varied schemas whose type names become opaque labels (Type_A)
    # model
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))
    codec: str = "inline"
    definitions: str = "compact"
    # optimisation
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = -1                    # -1: 5 % of steps
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    share_prefix: bool = True                 # run the prompt prefix common to a batch once (batch_loss_sum)
    batch_per_corpus: bool = True             # one corpus (one schema, one prompt prefix) per micro-batch
    supervised_logits_only: bool = True       # LM head only where a target token is predicted
    train_layers_from: int = 0                # LoRA of lower layers frozen: no backward below this layer
    length_segments: bool = False             # length-sorted segments of a batch: measured no faster (benchmarks/results/training.md)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"                   # CPU matrix multiplies: auto (bf16 autocast where the CPU does bf16
                                              # natively, llmner.modeling.precision) | fp32 | bf16; CUDA: bf16 autocast
    # bookkeeping
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    stop_after: int | None = None             # end this segment at this step (with a checkpoint)
    cpu_budget_s: float | None = None         # end this segment after this much process CPU time (equal-compute ablations)
    time_budget_s: float | None = None        # end this segment after this many wall-clock seconds (a lent GPU)
    resume: bool = False
    resume_from: str | None = None            # a checkpoint (full or portable) to resume from when output has none
    dev_split: str | None = None              # e.g. "dev": mean dev loss every eval_every steps
    eval_every: int = 0
    dev_max_examples: int = 200
    log_every: int = 1

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.grad_accum <= 0:
            raise ConfigError("steps, batch_size and grad_accum must be positive")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        check_precision(self.precision)

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps >= 0 else round(0.05 * self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorTrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"generator training config: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> GeneratorTrainingConfig:
        p = Path(path)
        if not p.is_file():
            raise DataNotFoundError(f"training config file not found: {p}")
        text = p.read_text(encoding="utf-8")
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"training config {p} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"training config {p} must hold a mapping of keys to values")
        return cls.from_dict(data)

    def with_overrides(self, **overrides: Any) -> GeneratorTrainingConfig:
        """A copy with every non-None override applied (CLI options over the config file)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def schema_variation(self) -> SchemaVariationConfig:
        return SchemaVariationConfig(enabled=self.vary_schema, own_rate=self.own_schema_rate,
                                     drop_rate=self.drop_type_rate, paraphrase_rate=self.paraphrase_rate,
                                     distractor_rate=self.distractor_type_rate, max_distractors=self.max_distractor_types,
                                     mask_rate=self.type_mask_rate)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            base_model=self.base_model, lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
            target_modules=tuple(self.target_modules), codec=self.codec,
            prompt=PromptConfig(codec=self.codec, definitions=self.definitions),  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class CorpusData:
    """One corpus as the trainer sees it (documents already read)."""

    name: str
    documents: Sequence[Document]
    schema: EntitySchema
    source_files: dict[str, Any] = field(default_factory=dict)
    dev_documents: Sequence[Document] = ()


@dataclass(slots=True)
class TrainingResult:
    output: Path
    steps: int
    losses: list[float]
    finished: bool
    card: dict[str, Any]
    model: GeneratorModel


def load_corpora(config: GeneratorTrainingConfig) -> list[CorpusData]:
    """Read every corpus split named in the config (schema = the built-in schema of the same name).

    With ``exclude_test_overlap`` a training document is dropped when it is also a document of the
    test split of any built-in corpus (``without_test_overlap``)."""
    from llmner.data_processing.corpora import load_corpus, without_test_overlap
    from llmner.schema import get_schema

    if not config.corpora:
        raise ConfigError("no corpus given (use --corpus NAME, repeatable)")
    out = []
    for name in config.corpora:
        docs = list(load_corpus(name, config.split))
        if config.exclude_test_overlap and config.split != "test":
            docs = without_test_overlap(docs)
        if config.max_documents is not None:
            docs = docs[: config.max_documents]
        dev = []
        if config.dev_split and config.eval_every:
            dev = list(load_corpus(name, config.dev_split))
        out.append(CorpusData(name, docs, get_schema(name), cardlib.corpus_source_files(name), dev))
    return out


def resume_config(output: str | Path, resume_from: str | Path | None = None) -> GeneratorTrainingConfig | None:
    """The settings of the run whose newest checkpoint is under ``output``, else of the checkpoint
    ``resume_from`` (full or portable); None when there is neither, so that ``--resume`` needs no
    other option."""
    found = latest_checkpoint(Path(output) / CHECKPOINT_DIR)
    if found is not None and (found / CHECKPOINT_CONFIG_NAME).is_file():
        data = json.loads((found / CHECKPOINT_CONFIG_NAME).read_text(encoding="utf-8"))
    elif resume_from is not None and is_portable(resume_from):
        data = json.loads((Path(resume_from) / PORTABLE_STATE_NAME).read_text(encoding="utf-8"))["config"]
    elif resume_from is not None and (Path(resume_from) / CHECKPOINT_CONFIG_NAME).is_file():
        data = json.loads((Path(resume_from) / CHECKPOINT_CONFIG_NAME).read_text(encoding="utf-8"))
    else:
        return None
    return GeneratorTrainingConfig.from_dict({k: v for k, v in data.items() if k not in ("resume", "stop_after", "cpu_budget_s", "time_budget_s",
                                                                                  "resume_from")})


def read_curated_ids(path: str | Path) -> frozenset[str]:
    """Example ids from a subset file written by ``llmner curate`` (JSONL, one ``{"id": ...}`` per line)."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"curated subset file not found: {p}")
    ids = set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"curated subset {p} line {n}: expected a JSON object with an 'id'") from None
    return frozenset(ids)


def example_config(config: GeneratorTrainingConfig) -> ExampleConfig:
    """How a run with ``config`` turns documents into examples (its entity-free subsample is seeded with the run's seed)."""
    return ExampleConfig(entity_free_ratio=config.entity_free_ratio, max_length=config.max_length,
                         chunk_max_tokens=config.chunk_max_tokens, sentences_per_chunk=config.sentences_per_chunk,
                         seed=config.seed)


@dataclass(slots=True)
class ExamplePools:
    """A run's training examples per corpus, in the order its sampler indexes them: index ``i`` of
    corpus ``name`` is ``tokenized[name][i]``, built from ``texts[name][i]`` (whose ``doc_id`` names
    the source document)."""

    tokenized: dict[str, list[TokenizedExample]]
    texts: dict[str, list[TextExample]]
    stats: dict[str, ExampleStats]
    keep_ids: frozenset[str] | None = None     # the curated subset, when the run has one

    def sizes(self) -> dict[str, int]:
        """Examples per corpus: the sizes the run's ``TemperatureSampler`` is built on."""
        return {name: len(pool) for name, pool in self.tokenized.items()}


def build_example_pools(config: GeneratorTrainingConfig, corpora: Sequence[CorpusData], tokenizer: Any, builder: Any,
                        codec: Any = None, log: Callable[[str], None] = print) -> ExamplePools:
    """Every corpus's training examples exactly as ``train_generator`` builds them: its chunks, the
    curated subset (``config.curated``), the entity-free subsample seeded with ``config.seed``, and
    no example over ``config.max_length`` tokens. ``tokenizer`` and ``builder`` (a ``PromptBuilder``)
    must be the run's: its base model's tokenizer and its prompt configuration; ``codec``: the
    config's unless given."""
    if codec is None:
        from llmner.codecs import get_codec

        codec = get_codec(config.codec)
    keep_ids = read_curated_ids(config.curated) if config.curated else None
    settings = example_config(config)
    pools = ExamplePools({}, {}, {}, keep_ids)
    for corpus in corpora:
        st = ExampleStats()
        examples = text_examples(corpus.documents, corpus.name, codec, settings, st, tokenizer, keep_ids)
        pools.tokenized[corpus.name] = tokenize_examples(examples, tokenizer, builder, corpus.schema, config.max_length, st)
        kept_ids = {e.id for e in pools.tokenized[corpus.name]}
        pools.texts[corpus.name] = [e for e in examples if e.id in kept_ids]
        pools.stats[corpus.name] = st
        log(f"{corpus.name}: {st.documents} documents -> {len(pools.tokenized[corpus.name])} examples "
            f"({st.with_entities} with entities, {st.entity_free_kept}/{st.entity_free_available} entity-free kept, "
            f"{st.skipped_too_long} skipped over {config.max_length} tokens, {st.skipped_crossing_entity} chunks cut an entity"
            + (f", {st.not_in_curated_subset} not in the curated subset" if keep_ids is not None else "") + ")")
    return pools


def training_sampler(config: GeneratorTrainingConfig, sizes: Mapping[str, int]) -> TemperatureSampler:
    """The sampler of a run with ``config`` over corpora of ``sizes`` examples (``ExamplePools.sizes``)."""
    return TemperatureSampler(sizes, config.temperature, config.seed, config.corpus_weights)


def step_draws(sampler: TemperatureSampler, config: GeneratorTrainingConfig) -> list[list[tuple[str, list[int]]]]:
    """One training step's draws, as the trainer makes them: per micro-batch (``grad_accum`` of them),
    its (corpus, example indices) groups: one group with ``batch_per_corpus``, else the micro-batch's
    draws grouped by corpus."""
    out: list[list[tuple[str, list[int]]]] = []
    for _ in range(config.grad_accum):
        if config.batch_per_corpus:
            out.append([sampler.next_batch(config.batch_size)])
        else:
            grouped: dict[str, list[int]] = {}
            for name, i in sampler.take(config.batch_size):
                grouped.setdefault(name, []).append(i)
            out.append(list(grouped.items()))
    return out


def drawn_documents(config: GeneratorTrainingConfig, pools: ExamplePools, steps: int) -> dict[str, Counter[str]]:
    """Per corpus, how many of the examples a run with ``config`` draws in its first ``steps`` steps
    came from each source document (``TextExample.doc_id``). The sampler's stream is a pure
    function of its sizes, temperature, weights and seed, so this replays it without a model; a
    resumed run replays the same stream. Every corpus of ``pools`` has a (possibly empty) entry."""
    sampler = training_sampler(config, pools.sizes())
    counts: dict[str, Counter[str]] = {name: Counter() for name in pools.texts}
    for _ in range(steps):
        for groups in step_draws(sampler, config):
            for name, indices in groups:
                counts[name].update(pools.texts[name][i].doc_id for i in indices)
    return counts


def train_generator(
    config: GeneratorTrainingConfig,
    corpora: Sequence[CorpusData] | None = None,
    base: tuple[Any, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Train (or resume) and write the generator directory to ``config.output``; ``corpora`` and ``base`` may be
    given in memory (tests), otherwise they are read from the registry and ``config.base_model``."""
    import torch

    if not config.output:
        raise ConfigError("no output directory given (--output DIR)")
    output = Path(config.output)
    started = time.perf_counter()
    seed_everything(config.seed)
    from llmner.modeling.loading import auto_device
    from llmner.modeling.precision import cpu_matmul_dtype

    device = auto_device(config.device).device
    use_bf16 = device.startswith("cuda") or cpu_matmul_dtype(config.precision, device) is not None
    log(f"device {device}, matrix multiplies in {'bf16 (autocast)' if use_bf16 else 'fp32'}")

    corpora = list(corpora) if corpora is not None else load_corpora(config)
    generator = GeneratorModel.from_base(config.generator_config(), [c.schema for c in corpora], base=base,
                                         device=device, dtype=torch.float32)
    model, tokenizer = generator.model, generator.tokenizer
    if config.init_from and not config.resume:
        log(f"LoRA weights initialised from {load_adapter_weights(model, config.init_from, what='--init-from')}")
    model.to(device)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Gradient checkpointing turns the KV cache off, and the shared prefix needs it.
    share_prefix = config.share_prefix and not config.gradient_checkpointing

    from llmner.codecs import get_codec

    codec = get_codec(config.codec)
    builder = generator.prompt_builder
    built = build_example_pools(config, corpora, tokenizer, builder, codec, log)
    texts, stats, keep_ids = built.texts, built.stats, built.keep_ids
    dev_pools: dict[str, list[TokenizedExample]] = {}
    for corpus in corpora:
        if corpus.dev_documents:
            dev_cfg = replace(example_config(config), entity_free_ratio=-1.0)
            dev_examples = text_examples(corpus.dev_documents, corpus.name, codec, dev_cfg, None, tokenizer)
            dev_pools[corpus.name] = tokenize_examples(dev_examples[: config.dev_max_examples], tokenizer, builder,
                                                       corpus.schema, config.max_length)
    sampler = training_sampler(config, built.sizes())
    log("sampling probabilities: " + ", ".join(f"{k} {p:.3f}" for k, p in sorted(sampler.probabilities.items())))

    variation_config = config.schema_variation()
    lexicon = None
    if variation_config.distractor_rate > 0:
        lexicon = MentionLexicon.from_corpora(((c.name, c.documents) for c in corpora), load_type_namings())
    variation = SchemaVariation(variation_config, lexicon=lexicon)
    schemas = {c.name: c.schema for c in corpora}
    if config.train_layers_from:
        log(f"LoRA frozen below layer {config.train_layers_from}: {freeze_lower_layers(model, config.train_layers_from)} tensors")

    def micro_batches(step: int) -> list[list[TokenizedExample]]:
        """This step's micro-batches, one list per (corpus, schema variant): the variant is a pure
        function of (seed, corpus, step, micro-batch), so a resumed run renders the same prompts."""
        out = []
        for m, groups in enumerate(step_draws(sampler, config)):
            for name, indices in groups:
                batch = [texts[name][i] for i in indices]
                variant = variation.draw(schemas[name], f"{config.seed}/{name}/{step}/{m}", [e.text for e in batch])
                out.append(render_examples(batch, variant, codec, tokenizer, builder))
        return out

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    checkpoints = output / CHECKPOINT_DIR
    loop = TrainingLoop(optimizer, params, LoopSettings(
        steps=config.steps, warmup=config.warmup, max_grad_norm=config.max_grad_norm,
        checkpoint_every=config.checkpoint_every, keep_checkpoints=config.keep_checkpoints, stop_after=config.stop_after,
        cpu_budget_s=config.cpu_budget_s, time_budget_s=config.time_budget_s, log_every=config.log_every, name="train generator"), checkpoints, model,
        lambda path: load_adapter(path, model), progress, log)
    if config.resume:
        found = latest_checkpoint(checkpoints) or (Path(config.resume_from) if config.resume_from else None)
        if found is None:
            log(f"no checkpoint under {checkpoints}: starting from step 0")
        loop.resume(found, check=lambda saved, where: _check_same_run(saved.get("config", {}), config, where),
                    restore_extra=lambda saved: sampler.load_state_dict(saved["sampler"]), seed=config.seed)
    model.train()

    def train_step(step: int) -> dict[str, Any]:
        micro = micro_batches(step)
        total_targets = sum(e.target_tokens for batch in micro for e in batch)
        loss_value = 0.0
        for group in micro:
            for segment in length_segments(group, share_prefix) if config.length_segments else [group]:
                loss = batch_loss_sum(model, segment, pad_id, device, use_bf16, share_prefix,
                                      config.supervised_logits_only) / total_targets
                loss.backward()
                loss_value += float(loss.detach())
        return {"loss": loss_value, "tokens": sum(len(e) for batch in micro for e in batch),
                "target_tokens": total_targets, "examples": sum(len(b) for b in micro), "bf16": use_bf16}

    def dev_loss(record: dict[str, Any]) -> None:
        if dev_pools and config.eval_every and record["step"] % config.eval_every == 0:
            record["dev_loss"] = evaluate_loss(model, dev_pools, pad_id, config.batch_size, device, use_bf16)
            model.train()

    with frozen_weights_in(model, torch.bfloat16 if use_bf16 else None) as swapped:
        if swapped:
            log(f"{swapped} frozen base weights held in bf16 while training (autocast would cast them every pass)")
        finished = loop.run(train_step, extra_state=lambda: {"sampler": sampler.state_dict(), "config": config.to_dict()},
                            after_step=dev_loss)
    history = loop.state.history
    loop.write_history(output)
    card = training_card(config, corpora, stats, sampler, history, loop.elapsed(), generator, keep_ids)
    card["fresh_optimizer_steps"] = loop.state.fresh_optimizer_steps
    if finished:
        model.eval()
        generator.save_pretrained(output, card=card)
        # A finished run cannot be extended (the schedule ends at ``steps``): its checkpoints only cost disk.
        shutil.rmtree(checkpoints, ignore_errors=True)
        log(f"generator written to {output} ({generator_size(output) / 1e6:.1f} MB, {loop.state.step} steps, "
            f"{time.perf_counter() - started:.0f} s this segment)")
    return TrainingResult(output, loop.state.step, [h["loss"] for h in history], finished, card, generator)


# Settings that change the training trajectory: a resumed run must use the checkpoint's values.
_TRAJECTORY_KEYS = ("corpora", "split", "base_model", "temperature", "corpus_weights", "entity_free_ratio", "max_length", "chunk_max_tokens",
                    "sentences_per_chunk", "curated", "max_documents", "init_from", "exclude_test_overlap", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "codec",
                    "definitions", "steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_steps",
                    "max_grad_norm", "share_prefix", "seed", "vary_schema", "own_schema_rate", "drop_type_rate",
                    "paraphrase_rate", "distractor_type_rate", "max_distractor_types", "type_mask_rate", "batch_per_corpus",
                    "train_layers_from")


def _check_same_run(saved: Mapping[str, Any], config: GeneratorTrainingConfig, where: Path) -> None:
    current = config.to_dict()
    changed = [f"{k}: {saved[k]!r} -> {current[k]!r}" for k in _TRAJECTORY_KEYS if k in saved and saved[k] != current[k]]
    if changed:
        raise ConfigError(f"cannot resume from {where}: settings differ from the checkpoint's ({'; '.join(changed)})")


def evaluate_loss(model: Any, pools: Mapping[str, Sequence[TokenizedExample]], pad_id: int, batch_size: int,
                  device: str, use_bf16: bool = False) -> float:
    """Mean target-token loss over every example of ``pools`` (no dropout, no gradients)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for examples in pools.values():
            for i in range(0, len(examples), batch_size):
                chunk = examples[i : i + batch_size]
                total += float(batch_loss_sum(model, chunk, pad_id, device, use_bf16, share_prefix=False))
                count += sum(e.target_tokens for e in chunk)
    return total / max(count, 1)


def training_card(config: GeneratorTrainingConfig, corpora: Sequence[CorpusData], stats: Mapping[str, ExampleStats],
                  sampler: TemperatureSampler, history: Sequence[Mapping[str, Any]], elapsed: float,
                  generator: GeneratorModel, keep_ids: frozenset[str] | None) -> dict[str, Any]:
    tail = [h["loss"] for h in history[-10:]]
    seconds = sum(h["seconds"] for h in history)
    tokens = sum(h["tokens"] for h in history)
    dev = [h for h in history if "dev_loss" in h]
    card: dict[str, Any] = {
        "kind": "llmner generator",
        "name": Path(config.output).name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": config.base_model,
        "generator_config": generator.config.to_dict(),
        "corpora": {
            c.name: {
                "split": config.split,
                "language": c.schema.language,
                "documents": len(c.documents),
                "documents_sha256": cardlib.documents_sha256(c.documents),
                "source_files": c.source_files,
                "examples": sampler.sizes.get(c.name, 0),
                "sampling_probability": round(sampler.probabilities.get(c.name, 0.0), 6),
                "example_stats": stats[c.name].to_dict(),
            }
            for c in corpora
        },
        "training": config.to_dict(),
        "steps": len(history),
        "examples_seen": len(history) * config.batch_size * config.grad_accum,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "final_loss_window": len(tail),
        "first_loss": history[0]["loss"] if history else None,
        "dev_loss": dev[-1]["dev_loss"] if dev else None,
        "tokens_seen": tokens,
        "tokens_per_s": tokens / seconds if seconds else None,
        "seconds_per_step": seconds / len(history) if history else None,
        "duration_s": round(elapsed, 2),
        "trainable_parameters": generator.trainable_parameters(),
        "seeds": {"seed": config.seed, "sampler": config.seed, "entity_free_subsample": config.seed},
        "hardware": cardlib.hardware(),
        "git_commit": cardlib.git_commit(),
    }
    if config.curated:
        card["curated"] = {"file": str(config.curated), "sha256": cardlib.file_sha256(config.curated),
                           "ids": len(keep_ids or ())}
    return card


def generator_size(path: str | Path) -> int:
    """Bytes on disk of a generator directory, checkpoints and history excluded."""
    root = Path(path)
    return sum(p.stat().st_size for p in root.rglob("*")
               if p.is_file() and CHECKPOINT_DIR not in p.relative_to(root).parts and p.name != HISTORY_NAME)


def batch_loss_sum(model: Any, examples: Sequence[TokenizedExample], pad_id: int, device: Any,
                   use_bf16: bool = False, share_prefix: bool = True, supervised_logits_only: bool = False) -> Any:
    """Summed NLL of the target tokens of ``examples`` (a tensor with gradients).

    With ``share_prefix``, the longest token prefix common to every example (the instruction and
    type definitions of one schema: most of each prompt) is run once at batch size 1 and its KV
    cache repeated over the batch; only the rest of each example is run per row. The attention,
    positions and supervised tokens are exactly those of the full batch (the prefix holds no
    supervised token), and gradients flow back through the shared cache, so the loss and gradients
    equal the full computation, up to float rounding, at a fraction of the cost. (With LoRA dropout,
    the prefix shares one dropout mask across the rows.)

    With ``supervised_logits_only``, the LM head (576 x 49k for SmolLM2: a fifth of a token's
    compute) runs only on the positions that predict a target token, not on the prompt tail and the
    padding; the loss is the same.
    """
    import torch

    prefix = shared_prefix_length(examples) if share_prefix and len(examples) > 1 else 0
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
        if prefix < 2:
            batch = collate(examples, pad_id)
            inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
            return _summed_loss(model, inputs, batch.labels.to(device), supervised_logits_only)
        head = torch.tensor([examples[0].input_ids[:prefix]], dtype=torch.long, device=device)
        cache = model(input_ids=head, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(examples))
        tails = [prompt_tail(e, prefix) for e in examples]
        batch = collate(tails, pad_id)
        width = batch.input_ids.size(1)
        attention = torch.cat([torch.ones((len(examples), prefix), dtype=torch.long), batch.attention_mask], dim=1)
        positions = torch.arange(prefix, prefix + width, dtype=torch.long).unsqueeze(0).expand(len(examples), -1)
        inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": attention.to(device),
                  "position_ids": positions.to(device), "past_key_values": cache, "use_cache": True}
        return _summed_loss(model, inputs, batch.labels.to(device), supervised_logits_only)


def _summed_loss(model: Any, inputs: Mapping[str, Any], labels: Any, supervised_logits_only: bool) -> Any:
    parts = body_and_head(model) if supervised_logits_only else None
    if parts is None:
        return _summed_token_loss(model(**inputs).logits, labels)
    import torch.nn.functional as F

    body, head = parts
    hidden = body(**inputs).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep], reduction="sum")


# Config attributes that rescale logits after the LM head: such models keep the full forward.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def body_and_head(model: Any) -> tuple[Any, Any] | None:
    """(transformer body, LM head) of a causal LM whose logits are exactly ``head(body(x))``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    try:
        body, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if body is None or head is None or body is base:
        return None
    return body, head


def freeze_lower_layers(model: Any, first_trained: int) -> int:
    """Freeze the LoRA weights of decoder layers below ``first_trained`` (they still apply, warm-started
    or not): autograd then stops at that layer, so the lower layers run forward only. Returns the
    number of tensors frozen."""
    import re

    layer = re.compile(r"\.layers\.(\d+)\.")
    frozen = 0
    for name, param in model.named_parameters():
        match = layer.search(name)
        if param.requires_grad and match and int(match.group(1)) < first_trained:
            param.requires_grad_(False)
            frozen += 1
    return frozen


# A forward call's fixed cost in token-equivalents (Python and kernel launch overhead per layer).
_CALL_OVERHEAD_TOKENS = 16


def length_segments(examples: Sequence[TokenizedExample], share_prefix: bool = True) -> list[list[TokenizedExample]]:
    """``examples`` cut into length-sorted segments, each run as its own padded batch.

    A padded batch costs rows x longest row: one 60-token row among 20-token rows triples the
    work of the others (padding was a third of the tokens of one-corpus batches). Each extra segment
    costs a forward call and, with ``share_prefix``, one more pass of the shared prompt prefix. The
    cut minimising rows x width summed over segments plus those costs is found exactly (dynamic
    programming over the sorted lengths). The summed loss, and so the gradient, is unchanged."""
    if len(examples) < 2:
        return [list(examples)]
    ordered = sorted(examples, key=len)
    lengths = [len(e) for e in ordered]
    prefix = shared_prefix_length(ordered) if share_prefix else 0
    extra = prefix + _CALL_OVERHEAD_TOKENS

    def cost(i: int, j: int) -> int:          # rows i..j-1 as one segment (sorted: row j-1 is the longest)
        return (j - i) * (lengths[j - 1] - prefix) + extra

    n = len(ordered)
    best = [0] + [10**12] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            c = best[i] + cost(i, j)
            if c < best[j]:
                best[j], cut[j] = c, i
    segments: list[list[TokenizedExample]] = []
    j = n
    while j > 0:
        segments.append(ordered[cut[j] : j])
        j = cut[j]
    return segments[::-1]


def shared_prefix_length(examples: Sequence[TokenizedExample]) -> int:
    """Longest common token prefix, kept one token short of the shortest prompt so that the first
    token after it is still a prompt token (its prediction, from the prefix, is not supervised)."""
    first = examples[0].input_ids
    limit = min(e.prompt_length for e in examples) - 1
    n = 0
    while n < limit and all(e.input_ids[n] == first[n] for e in examples):
        n += 1
    return n


def prompt_tail(example: TokenizedExample, start: int) -> TokenizedExample:
    """``example`` from token ``start`` on (what is left to run after a shared prefix)."""
    return replace(example, input_ids=example.input_ids[start:], labels=example.labels[start:],
                   prompt_length=example.prompt_length - start)


def _summed_token_loss(logits: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    return F.cross_entropy(shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


__all__ = [
    "CorpusData",
    "ExamplePools",
    "GeneratorTrainingConfig",
    "TrainingResult",
    "batch_loss_sum",
    "body_and_head",
    "build_example_pools",
    "drawn_documents",
    "example_config",
    "generator_size",
    "evaluate_loss",
    "freeze_lower_layers",
    "length_segments",
    "load_corpora",
    "prompt_tail",
    "read_curated_ids",
    "resume_config",
    "shared_prefix_length",
    "step_draws",
    "train_generator",
    "training_card",
    "training_sampler",
]
