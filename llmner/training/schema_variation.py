"""Schema-robust training: every batch of a corpus is shown under a varied schema.

A generator trained only under each corpus's own schema learns the corpora, not the schema: under
a schema it has not seen, it writes one type for everything (a user's ``Medication``/``Problem``
schema labelled pneumonia ``Medication``). So each training batch renders its corpus's schema
differently (``SchemaVariation.draw``):

- the types in a random order;
- a random subset of the types dropped, their mentions dropped from the target with them (a
  dropped type is absent, never a wrong label: the text has no other annotation to put there);
- each type named by one of several paraphrases with its own definition
  (``llmner/schemas/namings/type_namings.json``), in the corpus's language.

The variant is an ordinary ``EntitySchema``: the prompt is rendered from it by the same
``PromptBuilder`` that renders a user's schema file at inference. The ``held_out`` namings of the
table are never drawn: they are the unseen naming of the schema check (``benchmarks/schemas.py``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmner.doc import Entity
from llmner.errors import ConfigError
from llmner.schema import EntitySchema, EntityType
from llmner.type_namings import TypeNamings, load_type_namings


@dataclass(frozen=True, slots=True)
class SchemaVariationConfig:
    """How often, and how, a batch's schema differs from its corpus's own.

    ``own_rate``: share of batches shown the corpus schema unchanged. Otherwise the types are
    shuffled (``shuffle``); with probability ``drop_rate`` a schema of two or more types loses a
    random non-empty proper subset of them; each type takes a paraphrase with probability
    ``paraphrase_rate`` (else its own name and definition).
    """

    enabled: bool = True
    own_rate: float = 0.25
    shuffle: bool = True
    drop_rate: float = 0.4
    paraphrase_rate: float = 0.6

    def __post_init__(self) -> None:
        for name in ("own_rate", "drop_rate", "paraphrase_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"schema variation: {name} must be in [0, 1], got {value}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SchemaVariant:
    """A schema to render, and how the corpus's gold types appear under it."""

    schema: EntitySchema
    rename: Mapping[str, str]          # corpus type -> name in ``schema``; dropped types are absent

    def entities(self, entities: Sequence[Entity]) -> list[Entity]:
        """Gold entities under this schema: dropped types removed, the others renamed. Offsets and
        text are untouched (the source text is never changed)."""
        return [Entity(e.start, e.end, self.rename[e.type], e.text, e.score, e.normalized_id)
                for e in entities if e.type in self.rename]

    @property
    def is_identity(self) -> bool:
        return all(k == v for k, v in self.rename.items()) and len(self.rename) == len(self.schema.types)


def identity_variant(schema: EntitySchema) -> SchemaVariant:
    return SchemaVariant(schema, {t.name: t.name for t in schema.types})


class SchemaVariation:
    """Draws schema variants for a corpus, deterministically from a seed string."""

    def __init__(self, config: SchemaVariationConfig | None = None, namings: TypeNamings | None = None) -> None:
        self.config = config or SchemaVariationConfig()
        self.namings = namings or load_type_namings()

    def draw(self, schema: EntitySchema, seed: str) -> SchemaVariant:
        """A variant of the corpus schema ``schema``; the same ``seed`` always gives the same variant."""
        cfg = self.config
        rng = random.Random(seed)
        if not cfg.enabled or rng.random() < cfg.own_rate:
            return identity_variant(schema)
        types = list(schema.types)
        if len(types) > 1 and rng.random() < cfg.drop_rate:
            keep = rng.randint(1, len(types) - 1)
            kept = {t.name for t in rng.sample(types, keep)}
            types = [t for t in types if t.name in kept]
        if cfg.shuffle:
            rng.shuffle(types)
        shown: list[EntityType] = []
        rename: dict[str, str] = {}
        used: set[str] = set()
        for t in types:
            naming = t
            concept = self.namings.concept_of(schema.name, t.name)
            if concept is not None and concept.language == schema.language and rng.random() < cfg.paraphrase_rate:
                choices = [n for n in concept.namings if n.name not in used]
                if choices:
                    naming = rng.choice(choices)
            if naming.name in used:        # two types may not share a name: fall back to the type's own
                naming = t
            used.add(naming.name)
            shown.append(EntityType(naming.name, naming.definition))
            rename[t.name] = naming.name
        return SchemaVariant(EntitySchema(f"{schema.name}~variant", schema.language, tuple(shown), schema.description),
                             rename)


__all__ = [
    "SchemaVariant",
    "SchemaVariation",
    "SchemaVariationConfig",
    "identity_variant",
]
