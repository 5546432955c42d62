"""Corpus documents -> generator training examples.

One example per chunk (the same chunking the pipeline applies at inference; CoNLL corpora already
hold one sentence per document): the prompt comes from ``PromptBuilder`` with the corpus schema, the
target from the codec. Prompt and target are tokenized separately and concatenated so that the
label mask is exact: every prompt token has label -100, every target token (plus the end-of-turn
token) is its own label. Nothing is truncated: an example over ``max_length`` is skipped and counted.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmner.doc import Document, Entity
from llmner.errors import ConfigError, ValidationError
from llmner.prompts import PromptBuilder
from llmner.schema import EntitySchema

IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class TextExample:
    """A chunk of a corpus document with its gold entities (chunk offsets) and its target string."""

    id: str                    # "<corpus>/<doc_id>#<chunk index>", stable across runs
    corpus: str
    doc_id: str
    chunk_index: int
    language: str
    text: str
    target: str
    entities: tuple[Entity, ...]

    @property
    def has_entities(self) -> bool:
        return bool(self.entities)


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    id: str
    corpus: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_length: int          # number of leading tokens masked with -100
    has_entities: bool

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_length


@dataclass(slots=True)
class ExampleStats:
    """What happened while building examples for one corpus (printed and written to the card)."""

    documents: int = 0
    chunks: int = 0
    with_entities: int = 0
    entity_free_available: int = 0
    entity_free_kept: int = 0
    skipped_too_long: int = 0
    skipped_crossing_entity: int = 0      # chunks cut through an entity (the entity cannot be encoded)
    inexpressible_spans: int = 0          # spans the codec reported it could not express
    not_in_curated_subset: int = 0
    prompt_tokens: int = 0
    target_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ExampleConfig:
    """How documents become examples.

    ``entity_free_ratio``: entity-free chunks kept per entity-containing chunk (0.5 = one for every
    two; a negative value keeps them all), sampled with ``seed``. ``chunk_max_tokens``: documents are
    cut into sentence chunks of at most this many text tokens, exactly as the pipeline does; 0 = one
    example per document (corpora that are one sentence per document). ``sentences_per_chunk``:
    consecutive sentences packed into one chunk while they fit (one prompt per several sentences;
    the pipeline must chunk the same way, ``BundleManifest.sentences_per_chunk``).
    """

    entity_free_ratio: float = 0.5
    max_length: int = 512
    chunk_max_tokens: int = 256
    sentences_per_chunk: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        if self.sentences_per_chunk < 1:
            raise ConfigError(f"sentences_per_chunk must be >= 1, got {self.sentences_per_chunk}")


def text_examples(docs: Iterable[Document], corpus: str, codec: Any, config: ExampleConfig,
                  stats: ExampleStats | None = None, tokenizer: Any = None,
                  keep_ids: frozenset[str] | set[str] | None = None) -> list[TextExample]:
    """All chunks of ``docs`` as examples, entity-free ones subsampled by ``config.entity_free_ratio``.

    ``keep_ids`` (a curated subset from ``llmner curate``) drops every other example first; the
    entity-free ratio then applies to what remains. ``tokenizer`` counts tokens for chunking.
    """
    stats = stats if stats is not None else ExampleStats()
    ordered: list[TextExample] = []
    for doc in docs:
        stats.documents += 1
        for index, (start, end) in enumerate(_chunk_spans(doc, config, tokenizer)):
            stats.chunks += 1
            inside, crossing = _chunk_entities(doc.entities, start, end)
            if crossing:
                stats.skipped_crossing_entity += 1
                continue
            text = doc.text[start:end]
            encoded = codec.encode_with_report(text, inside)
            stats.inexpressible_spans += encoded.diagnostics.inexpressible_spans
            example = TextExample(id=f"{corpus}/{doc.id}#{index}", corpus=corpus, doc_id=doc.id, chunk_index=index,
                                  language=doc.language, text=text, target=encoded.target, entities=tuple(inside))
            if keep_ids is not None and example.id not in keep_ids:
                stats.not_in_curated_subset += 1
                continue
            ordered.append(example)
    with_entities = [e for e in ordered if e.has_entities]
    entity_free = [e for e in ordered if not e.has_entities]
    stats.with_entities = len(with_entities)
    stats.entity_free_available = len(entity_free)
    kept_free = subsample_entity_free(entity_free, len(with_entities), config.entity_free_ratio, config.seed, corpus)
    stats.entity_free_kept = len(kept_free)
    kept_ids = {e.id for e in kept_free}
    return [e for e in ordered if e.has_entities or e.id in kept_ids]


def subsample_entity_free(entity_free: Sequence[TextExample], n_with_entities: int, ratio: float, seed: int,
                          corpus: str) -> list[TextExample]:
    """A seeded random subset of ``ratio * n_with_entities`` entity-free examples (all when ratio < 0)."""
    if ratio < 0 or len(entity_free) <= ratio * n_with_entities:
        return list(entity_free)
    want = round(ratio * n_with_entities)
    rng = random.Random(f"{seed}/{corpus}/entity-free")
    return rng.sample(list(entity_free), want)


def tokenize_example(example: TextExample, tokenizer: Any, builder: PromptBuilder, schema: EntitySchema,
                     prompt_parts: tuple[str, str] | None = None) -> TokenizedExample:
    """Prompt and target tokenized separately, so the mask boundary is exactly the prompt's end.

    ``prompt_parts``: ``builder.split(tokenizer, ..., schema)`` computed once by the caller (the chat
    template is rendered once per schema instead of once per example; the prompt is the same)."""
    prefix, suffix = prompt_parts if prompt_parts is not None else builder.split(tokenizer, example.text, schema)
    prompt = prefix + example.text + suffix
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValidationError("the tokenizer has no eos token: the generator could not learn where to stop")
    target_ids = [*target_ids, eos]
    return TokenizedExample(
        id=example.id,
        corpus=example.corpus,
        input_ids=tuple(prompt_ids) + tuple(target_ids),
        labels=(IGNORE_INDEX,) * len(prompt_ids) + tuple(target_ids),
        prompt_length=len(prompt_ids),
        has_entities=example.has_entities,
    )


def render_examples(examples: Sequence[TextExample], variant: Any, codec: Any, tokenizer: Any,
                    builder: PromptBuilder) -> list[TokenizedExample]:
    """``examples`` of one corpus under a schema variant (``llmner.training.schema_variation``): the
    prompt shows the variant's types, and each target is encoded from the gold entities as the
    variant names them (dropped types' mentions left out). The source text is never changed."""
    parts = builder.split(tokenizer, "", variant.schema)
    out = []
    for example in examples:
        if variant.is_identity:
            target = example.target
        else:
            target = codec.encode_with_report(example.text, variant.entities(example.entities)).target
        rendered = TextExample(example.id, example.corpus, example.doc_id, example.chunk_index, example.language,
                               example.text, target, example.entities)
        out.append(tokenize_example(rendered, tokenizer, builder, variant.schema, parts))
    return out


def tokenize_examples(examples: Iterable[TextExample], tokenizer: Any, builder: PromptBuilder, schema: EntitySchema,
                      max_length: int, stats: ExampleStats | None = None) -> list[TokenizedExample]:
    """Tokenized examples; those longer than ``max_length`` are skipped and counted, never truncated."""
    stats = stats if stats is not None else ExampleStats()
    parts = builder.split(tokenizer, "", schema)
    out = []
    for example in examples:
        tokenized = tokenize_example(example, tokenizer, builder, schema, parts)
        if len(tokenized) > max_length:
            stats.skipped_too_long += 1
            continue
        stats.prompt_tokens += tokenized.prompt_length
        stats.target_tokens += tokenized.target_tokens
        out.append(tokenized)
    return out


@dataclass(slots=True)
class Batch:
    input_ids: Any
    attention_mask: Any
    labels: Any
    target_tokens: int = 0
    tokens: int = 0
    ids: list[str] = field(default_factory=list)


def collate(examples: Sequence[TokenizedExample], pad_token_id: int) -> Batch:
    """Right-padded tensors; padding has attention 0 and label -100."""
    import torch

    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        input_ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
        attention[row, :n] = 1
    return Batch(input_ids, attention, labels, target_tokens=sum(e.target_tokens for e in examples),
                 tokens=sum(len(e) for e in examples), ids=[e.id for e in examples])


def _chunk_spans(doc: Document, config: ExampleConfig, tokenizer: Any) -> list[tuple[int, int]]:
    if config.chunk_max_tokens <= 0 or not doc.text:
        return [(0, len(doc.text))] if doc.text.strip() else []
    from llmner.data_processing.chunking import ChunkingConfig, chunk_document

    count_tokens = None
    if tokenizer is not None:
        count_tokens = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])
    chunks = chunk_document(doc, ChunkingConfig(max_tokens=config.chunk_max_tokens,
                                                  sentences_per_chunk=config.sentences_per_chunk), count_tokens)
    return [(c.start, c.end) for c in chunks if c.text.strip()]


def _chunk_entities(entities: Sequence[Entity], start: int, end: int) -> tuple[list[Entity], int]:
    inside: list[Entity] = []
    crossing = 0
    for e in entities:
        if e.start >= start and e.end <= end:
            inside.append(e.shifted(-start))
        elif e.start < end and e.end > start:
            crossing += 1
    return inside, crossing

