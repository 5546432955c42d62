"""Selector training: InfoNCE over (gold mention + its negatives) groups plus BCE for calibration.

Per step: ``groups_per_step`` groups (each = one gold mention followed by its negatives, see
``llmner.training.negatives``) and a share of unattached negatives. Loss::

    loss = infonce_weight * mean_g[-log softmax(logits_g)[gold]] + bce_weight * BCE(all candidates)

InfoNCE teaches the ranking that matters (the exact span and type beat their near misses); BCE
keeps the sigmoid calibrated so that one threshold works.

The tokens head (``SelectorConfig.head == "tokens"``) trains on (sentence, type) passes instead
(``token_passes``): each sentence chunk read for every type it mentions and one it does not, every
word piece supervised with its O/B/I label, plus the same InfoNCE over each gold mention and its
negatives of that type in the sentence, whose span logits come from the same pass (``token_pass_loss``)::

    loss = token_weight * CE(pieces) + infonce_weight * mean_g[-log softmax(span logits_g)[gold]] After training the threshold is chosen
on dev for the best F1 (every gold mention counts in recall, so when the generator's predictions
are the dev candidates this is the pipeline's F1) and stored in the selector config.

Output directory: the selector (``selector_config.json`` + ``selector_weights.safetensors``),
``training_card.json``, ``checkpoints/step-N`` (resume with ``resume=True``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from llmner.doc import Candidate, Document, Entity
from llmner.errors import ConfigError, ValidationError
from llmner.evaluation.predict import predict
from llmner.evaluation.thresholds import best_threshold
from llmner.modeling.selector import (
    WORD_EMBEDDINGS,
    SelectorConfig,
    SelectorModel,
    TokenWindow,
    type_prefix,
    unknown_characters,
)
from llmner.schema import EntitySchema
from llmner.training.loop import LoopSettings, TrainingLoop, seed_everything
from llmner.training.negatives import DocumentNegatives, NegativeConfig, build_negatives

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

log = logging.getLogger(__name__)

CARD_NAME = "training_card.json"
TYPE_PREFIX_TOKENS = 48     # room left in max_length for "Type: definition" when sentences are cut into passes


@dataclass(slots=True)
class SelectorTrainingConfig:
    epochs: float = 1.0
    groups_per_step: int = 4          # gold groups per optimizer step (each ~1 + per_mention candidates)
    unattached_per_step: int = 4      # random / generator negatives added to each step (BCE only)
    learning_rate: float = 5e-5       # encoder layers
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    infonce_weight: float = 1.0
    bce_weight: float = 1.0
    temperature: float = 1.0
    token_weight: float = 1.0         # tokens head: cross-entropy of every piece's O/B/I label
    passes_per_step: int = 16         # tokens head: (sentence, type) passes per step
    # Tokens head: the share of passes that show their type under another of its concept's training namings
    # (name and definition, llmner/schemas/namings/type_namings.json; the held-out namings never), so that
    # the selector judges and relabels under a user's names as under the corpus's own (issue 13).
    paraphrase_rate: float = 0.0
    # Characters of the training texts that the base vocabulary reads as [UNK] (Chinese, for MiniLM),
    # seen at least this many times, join the vocabulary with rows of their own (0: none added).
    add_characters_min_count: int = 0
    added_pieces_learning_rate: float = 1e-3   # the added rows start as [UNK]'s and have everything to learn
    max_steps: int = 0                # 0 = from epochs
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 13
    negatives: NegativeConfig = field(default_factory=NegativeConfig)

    def __post_init__(self) -> None:
        if self.groups_per_step < 1:
            raise ConfigError(f"groups_per_step must be >= 1, got {self.groups_per_step}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("either epochs or max_steps must be positive")
        if self.add_characters_min_count < 0:
            raise ConfigError(f"add_characters_min_count must be >= 0, got {self.add_characters_min_count}")
        if not 0.0 <= self.paraphrase_rate <= 1.0:
            raise ConfigError(f"paraphrase_rate must be in [0, 1], got {self.paraphrase_rate}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TrainingResult:
    output: Path
    steps: int
    threshold: float
    dev: dict[str, float]
    losses: list[float]


SchemaChoice = EntitySchema | Mapping[str, EntitySchema]


def schema_of(doc: Document, schemas: SchemaChoice) -> EntitySchema:
    """The schema a training document is read with: the one schema given, or, for several corpora
    trained together, ``schemas[doc.metadata["schema"]]``."""
    if isinstance(schemas, EntitySchema):
        return schemas
    name = (doc.metadata or {}).get("schema")
    if name not in schemas:
        raise ValidationError(f"document {doc.id!r}: metadata.schema {name!r} is not one of the training schemas "
                              f"{sorted(schemas)}")
    return schemas[name]


def candidate(doc: Document, schema: EntitySchema, start: int, end: int, etype: str) -> Candidate:
    return Candidate(doc.text, start, end, etype, schema.definition(etype))


def group_candidates(item: DocumentNegatives, schema: EntitySchema) -> list[list[Candidate]]:
    return [[candidate(item.doc, schema, g.gold.start, g.gold.end, g.gold.type)]
            + [candidate(item.doc, schema, n.start, n.end, n.type) for n in g.negatives]
            for g in item.groups]


def infonce(logits: torch.Tensor, group_sizes: Sequence[int], temperature: float) -> torch.Tensor:
    """Mean of -log softmax(group)[0] over consecutive groups (the gold candidate first in each)."""
    terms = []
    offset = 0
    for size in group_sizes:
        if size > 1:
            terms.append(-torch.log_softmax(logits[offset : offset + size] / temperature, dim=0)[0])
        offset += size
    return torch.stack(terms).mean() if terms else logits.new_zeros(())


def loss_for(logits: torch.Tensor, labels: torch.Tensor, group_sizes: Sequence[int],
             config: SelectorTrainingConfig) -> tuple[torch.Tensor, float, float]:
    """InfoNCE over groups (gold first in each) + BCE over every candidate. Returns (loss, nce, bce)."""
    nce = infonce(logits, group_sizes, config.temperature)
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    loss = config.infonce_weight * nce + config.bce_weight * bce
    return loss, float(nce.detach()), float(bce.detach())


@dataclass(frozen=True, slots=True)
class TokenPass:
    """A tokens-head training example: one sentence chunk read for one type, the type's gold mentions
    in it (every piece is supervised) and its InfoNCE groups (a gold mention first, then negatives of
    the same type in the chunk), spans in chunk offsets."""

    window: TokenWindow
    definition: str
    gold: tuple[tuple[int, int], ...]
    groups: tuple[tuple[tuple[int, int], ...], ...]


def token_passes(items: Sequence[DocumentNegatives], schemas: SchemaChoice, tokenizer: Any, max_tokens: int,
                 definition_chars: int, seed: int, paraphrase_rate: float = 0.0) -> list[TokenPass]:
    """Every sentence chunk of the documents, read for each type it mentions and for one type of its
    schema it does not (so that a type's absence is taught too); with ``paraphrase_rate``, that share of
    the passes shows the type under one of its concept's training namings instead of its own."""
    from llmner.data_processing.chunking import ChunkingConfig, chunk_document
    from llmner.type_namings import load_type_namings

    namings = load_type_namings() if paraphrase_rate > 0 else None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    passes: list[TokenPass] = []
    for item in items:
        schema = schema_of(item.doc, schemas)
        rng = random.Random(f"{seed}:passes:{item.doc.id}")
        for chunk in chunk_document(item.doc, ChunkingConfig(max_tokens=max_tokens, sentences_per_chunk=1), count):
            if not chunk.text.strip():
                continue
            inside = [e for e in item.doc.entities if e.type in schema and chunk.start <= e.start and e.end <= chunk.end]
            present = sorted({e.type for e in inside})
            absent = [t for t in schema.type_names if t not in present]
            for etype in present + ([rng.choice(absent)] if absent else []):
                gold = sorted({(e.start - chunk.start, e.end - chunk.start) for e in inside if e.type == etype})
                groups = []
                for g in item.groups:
                    if g.gold.type != etype or not (chunk.start <= g.gold.start and g.gold.end <= chunk.end):
                        continue
                    negatives = [(n.start - chunk.start, n.end - chunk.start) for n in g.negatives
                                 if n.type == etype and chunk.start <= n.start and n.end <= chunk.end]
                    if negatives:
                        groups.append(((g.gold.start - chunk.start, g.gold.end - chunk.start), *negatives))
                shown, definition = etype, schema.definition(etype)
                concept = namings.concept_of(schema.name, etype) if namings is not None else None
                if concept is not None and concept.namings and rng.random() < paraphrase_rate:
                    naming = rng.choice(concept.namings)
                    shown, definition = naming.name, naming.definition
                prefix = type_prefix(Candidate(chunk.text, 0, 1, shown, definition), definition_chars)
                passes.append(TokenPass(TokenWindow(chunk.text, 0, len(chunk.text), shown, prefix), definition,
                                        tuple(gold), tuple(groups)))
    return passes


def token_pass_loss(model: SelectorModel, passes: Sequence[TokenPass], config: SelectorTrainingConfig) -> tuple[torch.Tensor, float, float]:
    """Cross-entropy of every piece's label in the passes + InfoNCE over their groups' span logits."""
    candidates = [Candidate(p.window.text, s, e, p.window.type, p.definition) for p in passes for group in p.groups
                  for s, e in group]
    # A candidate shares its pass's row; in a sentence too long to read whole it gets a window of its own,
    # supervised by the same gold mentions.
    batch = model.featurizer(candidates, [p.window for p in passes])
    gold_of = {(p.window.text, p.window.type): p.gold for p in passes}
    targets = torch.from_numpy(batch.targets(by_window=[gold_of[(w.text, w.type)] for w in batch.windows]))
    token_logits = model(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()})[0]
    ce = F.cross_entropy(token_logits.reshape(-1, token_logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    sizes = [len(group) for p in passes for group in p.groups]
    nce = (infonce(model.span_logits(batch, token_logits), sizes, config.temperature) if sizes
           else token_logits.new_zeros(()))
    loss = config.token_weight * ce + config.infonce_weight * nce
    return loss, float(ce.detach()), float(nce.detach())


def dev_candidates(docs: Sequence[Document], schemas: SchemaChoice, config: NegativeConfig,
                   predictions: dict[str, list[Entity]] | None = None) -> tuple[list[Candidate], np.ndarray, int]:
    """Dev candidates with labels. With generator predictions: exactly those (the pipeline's view);
    otherwise gold mentions and their constructed negatives."""
    cands: list[Candidate] = []
    labels: list[float] = []
    total_gold = 0
    for doc in docs:
        schema = schema_of(doc, schemas)
        gold = {e.key for e in doc.entities if e.type in schema}
        total_gold += len(gold)
        if predictions is not None:
            for e in {p.key: p for p in predictions.get(doc.id, []) if p.type in schema}.values():
                cands.append(candidate(doc, schema, e.start, e.end, e.type))
                labels.append(float(e.key in gold))
            continue
        item = build_negatives(doc, schema, config)
        for group in group_candidates(item, schema):
            cands.extend(group)
            labels.extend([1.0] + [0.0] * (len(group) - 1))
        for n in item.unattached:
            cands.append(candidate(doc, schema, n.start, n.end, n.type))
            labels.append(0.0)
    return cands, np.asarray(labels, dtype=np.float32), total_gold


def generator_pipeline(path: Path, schemas: Sequence[EntitySchema]) -> Pipeline:
    """The generator whose false positives become selector negatives, as a pipeline without a
    selector: a model bundle's (``bundle.json``) or a generator directory's (``generator_config.json``)."""
    from llmner.pipeline import Pipeline, PipelineConfig

    if (path / "bundle.json").is_file():
        pipe = Pipeline.from_bundle(path, PipelineConfig(selector_backend="none"))
    elif (path / "generator_config.json").is_file():
        from llmner.runtime.torch_generator import TorchGeneratorRuntime

        pipe = Pipeline(TorchGeneratorRuntime.from_pretrained(path), None)
    else:
        raise ConfigError(f"--generator {path}: neither a model bundle (bundle.json) nor a generator directory")
    for schema in schemas:
        pipe.add_schema(schema)
    return pipe


def first_per_schema(docs: Sequence[Document], limit: int | None, max_chars: int | None = None) -> list[Document]:
    """The first documents of each schema (``metadata["schema"]``), in order: at most ``limit`` of them
    and, with ``max_chars``, only while the schema's texts so far hold fewer than ``max_chars``
    characters (generation costs per character: a budget in characters tags abstracts and single
    sentences alike). None: no bound."""
    taken: dict[str, int] = {}
    chars: dict[str, int] = {}
    chosen = []
    for d in docs:
        name = d.metadata["schema"]
        if limit is not None and taken.get(name, 0) >= limit:
            continue
        if max_chars is not None and chars.get(name, 0) >= max_chars:
            continue
        taken[name] = taken.get(name, 0) + 1
        chars[name] = chars.get(name, 0) + len(d.text)
        chosen.append(d)
    return chosen


def generator_candidates(pipe: Pipeline, docs: Sequence[Document], batch_documents: int = 8,
                         on_batch: Callable[[int], None] | None = None) -> dict[str, list[Entity]]:
    """``{doc_id: [Entity]}``: every candidate ``pipe`` proposes on ``docs`` (each under the schema
    its ``metadata["schema"]`` names), the ``generator_predictions`` of ``train_selector``."""
    records = predict(pipe, docs, batch_documents=batch_documents, on_batch=on_batch)
    return {d.id: r.entities for d, r in zip(docs, records, strict=True)}


def _load_weights(model: SelectorModel, checkpoint: Path) -> None:
    """A checkpoint's selector weights (saved at full precision) into ``model``."""
    model.load_state_dict(SelectorModel.from_pretrained(checkpoint / "adapter").state_dict())


class _Fp32Checkpoint:
    """Saves a selector with fp32 encoder layers (a resumed run continues from exact weights)."""

    def __init__(self, model: SelectorModel) -> None:
        self.model = model

    def save_pretrained(self, path: str) -> None:
        from llmner.modeling.selector import CONFIG_NAME

        saved = self.model.config.save_dtype
        self.model.config.save_dtype = "float32"
        try:
            self.model.save_pretrained(path)
        finally:
            self.model.config.save_dtype = saved
        # The config keeps the final save dtype, so a resumed run still ships fp16 layers.
        (Path(path) / CONFIG_NAME).write_text(json.dumps(self.model.config.to_dict(), indent=2))


def train_selector(
    train_docs: Sequence[Document],
    dev_docs: Sequence[Document],
    schema: SchemaChoice,
    output: str | Path,
    selector_config: SelectorConfig | None = None,
    config: SelectorTrainingConfig | None = None,
    generator_predictions: Callable[[Sequence[Document]], dict[str, list[Entity]]] | None = None,
    resume: bool = False,
    progress: bool = True,
    card_extra: dict[str, Any] | None = None,
    init_from: str | Path | None = None,
) -> TrainingResult:
    """Train, choose the dev threshold, save the selector and its card to ``output``.

    ``generator_predictions(docs) -> {doc_id: [Entity]}`` supplies the generator's own predictions
    (document offsets); its false positives become negatives and on dev its predictions are the
    candidates the threshold is tuned on. ``init_from``: a saved selector to continue training from (a
    further epoch of a shipped one) instead of a fresh head; its head and trained layers must match
    ``selector_config``'s.
    """
    from llmner.training import checkpoint as ckpt

    config = config or SelectorTrainingConfig()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if not train_docs:
        raise ValidationError("no training documents")
    seed_everything(config.seed)
    started = time.time()

    train_preds = generator_predictions(train_docs) if generator_predictions else {}
    dev_preds = generator_predictions(dev_docs) if generator_predictions and dev_docs else None
    if len({d.id for d in train_docs}) != len(train_docs):
        raise ValidationError("training document ids are not unique (prefix them by corpus when mixing corpora)")
    items = [build_negatives(d, schema_of(d, schema), config.negatives, train_preds.get(d.id, ())) for d in train_docs]
    groups = [(item, g) for item in items for g in group_candidates(item, schema_of(item.doc, schema))]
    unattached = [candidate(item.doc, schema_of(item.doc, schema), n.start, n.end, n.type)
                  for item in items for n in item.unattached]
    schema_names = [schema.name] if isinstance(schema, EntitySchema) else sorted(schema)
    if not groups:
        raise ValidationError(f"no gold mentions of schema(s) {', '.join(schema_names)} in the training documents")
    kinds: dict[str, int] = {}
    for item in items:
        for n in [n for g in item.groups for n in g.negatives] + item.unattached:
            kinds[n.kind] = kinds.get(n.kind, 0) + 1

    if init_from is not None:
        model = SelectorModel.from_pretrained(init_from)
        wanted = selector_config or SelectorConfig()
        for name in ("head", "trainable_layers", "encoder_fingerprint"):
            have, want = getattr(model.config, name), getattr(wanted, name)
            if want and have != want:
                raise ConfigError(f"--init-from {init_from}: its {name} is {have!r}, the run asks for {want!r}")
        model.config.model_id = wanted.model_id or model.config.model_id
        model.config.save_dtype = wanted.save_dtype
    else:
        model = SelectorModel.from_encoder(selector_config or SelectorConfig())
    if config.add_characters_min_count:
        model.add_pieces(unknown_characters(model.tokenizer, [d.text for d in train_docs], config.add_characters_min_count))
    model.train()
    tokens_head = model.config.head == "tokens"
    # The tokens head trains on (sentence, type) passes, every piece supervised; the span head on groups.
    passes = (token_passes(items, schema, model.tokenizer, max(16, model.config.max_length - TYPE_PREFIX_TOKENS),
                           model.config.definition_chars, config.seed, config.paraphrase_rate) if tokens_head else [])
    examples = len(passes) if tokens_head else len(groups)
    per_step = config.passes_per_step if tokens_head else config.groups_per_step
    steps_per_epoch = math.ceil(examples / per_step)
    total_steps = config.max_steps or max(1, round(config.epochs * steps_per_epoch))

    ckpt_root = output / "checkpoints"
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params_rows = [p for n, p in trained if n == WORD_EMBEDDINGS]
    params_enc = [p for n, p in trained if n.startswith("encoder.") and n != WORD_EMBEDDINGS]
    params_head = [p for n, p in trained if not n.startswith("encoder.")]
    param_groups = [{"params": params_enc, "lr": config.learning_rate}, {"params": params_head, "lr": config.head_learning_rate}]
    if params_rows:
        # No weight decay: the base rows get zero gradients and must stay the base encoder's exactly.
        param_groups.append({"params": params_rows, "lr": config.added_pieces_learning_rate, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
    loop = TrainingLoop(optimizer, params_enc + params_head + params_rows, LoopSettings(
        steps=total_steps, warmup=config.warmup_steps, max_grad_norm=1.0, checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints, log_every=10, name="train selector"), ckpt_root,
        _Fp32Checkpoint(model), lambda path: _load_weights(model, path), progress, log.info)
    if resume:
        loop.resume(ckpt.latest_checkpoint(ckpt_root), seed=config.seed)
    start_step = loop.state.step

    # A fixed order per epoch derived from the seed: step s always sees the same examples, resumed or not.
    def step_indices(step: int) -> list[int]:
        epoch, pos = divmod(step, steps_per_epoch)
        order = list(range(examples))
        rng = random.Random(f"{config.seed}:{epoch}")
        rng.shuffle(order)
        if not tokens_head:
            return order[pos * per_step : (pos + 1) * per_step]
        # Passes of similar length per step (less padding on CPU): sorted within pools of 50 steps,
        # then the steps shuffled.
        pool = 50 * per_step
        steps = []
        for i in range(0, len(order), pool):
            part = sorted(order[i : i + pool], key=lambda k: len(passes[k].window.text) + len(passes[k].window.prefix))
            steps += [part[j : j + per_step] for j in range(0, len(part), per_step)]
        rng.shuffle(steps)
        return steps[pos]

    def step_batch(step: int) -> tuple[list[list[Candidate]], list[Candidate]]:
        chosen = [groups[i][1] for i in step_indices(step)]
        rng = random.Random(f"{config.seed}:u:{step}")
        extra = rng.sample(unattached, min(config.unattached_per_step, len(unattached)))
        return chosen, extra

    def train_step(step: int) -> dict[str, Any]:
        if tokens_head:
            loss, ce, nce = token_pass_loss(model, [passes[i] for i in step_indices(step)], config)
            loss.backward()
            return {"loss": float(loss.detach()), "token_ce": ce, "nce": nce}
        chosen, extra = step_batch(step)
        cands = [c for g in chosen for c in g] + extra
        labels = torch.tensor([1.0 if i == 0 else 0.0 for g in chosen for i in range(len(g))] + [0.0] * len(extra))
        logits = model.logits_for(cands)
        loss, nce, bce = loss_for(logits, labels, [len(g) for g in chosen] + [1] * len(extra), config)
        loss.backward()
        return {"loss": float(loss.detach()), "nce": float(nce), "bce": float(bce)}

    loop.run(train_step)
    losses = [h["loss"] for h in loop.state.history]

    # Threshold on the weights as they will be saved (fp16 encoder layers).
    model.eval()
    model.round_to_save_dtype()
    dev_metrics: dict[str, float] = {}
    if dev_docs:
        dcands, dlabels, total_gold = dev_candidates(dev_docs, schema, config.negatives, dev_preds)
        if dcands:
            scores = model.score(dcands)
            threshold, dev_metrics = best_threshold(scores, dlabels, total_gold)
            model.config.threshold = min(max(threshold, 0.0), 1.0)
            dev_metrics["candidate_source"] = "generator" if dev_preds is not None else "gold+negatives"  # type: ignore[assignment]
    model.save_pretrained(output)
    card = {
        "kind": "selector",
        "model_id": model.config.model_id,
        "schema": schema_names[0] if len(schema_names) == 1 else schema_names,
        "selector_config": model.config.to_dict(),
        "training_config": config.to_dict(),
        "train_documents": len(train_docs),
        "dev_documents": len(dev_docs),
        "groups": len(groups),
        "token_passes": len(passes),
        "negatives_by_kind": kinds,
        "steps": total_steps,
        "resumed_from_step": start_step,
        "initialised_from": str(init_from) if init_from is not None else None,
        "loss_first": losses[0] if losses else None,
        "loss_last_mean10": float(np.mean(losses[-10:])) if losses else None,
        "threshold": model.config.threshold,
        "dev": dev_metrics,
        "seconds": round(time.time() - started, 1),
        **(card_extra or {}),
    }
    try:
        from llmner.training.card import documents_sha256

        card["train_sha256"] = documents_sha256(train_docs)
        card["dev_sha256"] = documents_sha256(dev_docs)
    except ImportError:
        pass
    (output / CARD_NAME).write_text(json.dumps(card, indent=2, default=str))
    loop.write_history(output)      # one record per step, as the generator's: the report's training curve
    return TrainingResult(output, total_steps, model.config.threshold, dev_metrics, losses)


# Fields a weight average may differ in: the rest (encoder, head, trained layers, added pieces) must
# match, or the weights are not the same tensors in the same roles.
_AVERAGE_MAY_DIFFER = ("threshold", "model_id", "encoder_fingerprint")


def average_selectors(sources: Sequence[str | Path], output: str | Path, model_id: str) -> Path:
    """The element-wise mean of several selectors' trained weights (a "model soup": runs from one
    starting point, e.g. a selector and its continuation under paraphrased namings), saved as a
    selector at ``output``. Its threshold is the first source's: choose one on dev for the mean."""
    if len(sources) < 2:
        raise ConfigError("average at least two selectors")
    models = [SelectorModel.from_pretrained(s) for s in sources]
    architecture = {k: v for k, v in models[0].config.to_dict().items() if k not in _AVERAGE_MAY_DIFFER}
    for source, model in zip(sources[1:], models[1:]):
        other = {k: v for k, v in model.config.to_dict().items() if k not in _AVERAGE_MAY_DIFFER}
        differ = sorted(k for k in architecture.keys() | other.keys() if architecture.get(k) != other.get(k))
        if differ:
            raise ConfigError(f"selector at {source} differs from {sources[0]} in {', '.join(differ)}: "
                              f"only selectors of one architecture can be averaged")
    ids = [m.config.model_id for m in models]
    states = [m.trainable_state_dict() for m in models]
    mean = {name: torch.stack([s[name] for s in states]).mean(0) for name in states[0]}
    soup = models[0]
    soup.load_trainable_state_dict(mean, "the average")
    soup.config.model_id = model_id
    out = Path(output)
    soup.save_pretrained(out)     # encoder layers stored in the config's save dtype, as every selector's
    cards = [json.loads(p.read_text()) if (p := Path(s) / CARD_NAME).is_file() else {} for s in sources]
    card = {
        "kind": "selector",
        "model_id": model_id,
        "schema": cards[0].get("schema"),
        "selector_config": soup.config.to_dict(),
        "averaged_from": [{"path": str(s), "model_id": i, "steps": c.get("steps")}
                          for s, i, c in zip(sources, ids, cards)],
        "threshold": soup.config.threshold,
        "threshold_from": f"{sources[0]} (not chosen for the mean)",
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2, default=str))
    return out
