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
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from llmner.doc import Entity
from llmner.errors import ConfigError, ValidationError
from llmner.schema import EntitySchema, EntityType

NAMINGS_FILE = "type_namings.json"


@dataclass(frozen=True, slots=True)
class Concept:
    """One kind of entity across corpora (``disease``: NCBI-Disease's and BC5CDR's ``Disease``)."""

    key: str
    language: str
    corpus_types: Mapping[str, str]
    namings: tuple[EntityType, ...]
    held_out: tuple[EntityType, ...]
    default_types: Mapping[str, str] = field(default_factory=dict)   # default schema name -> its type


@dataclass(frozen=True, slots=True)
class TypeNamings:
    """The naming table: concepts, and which concept each (corpus, type) is."""

    concepts: Mapping[str, Concept]

    def concept_of(self, corpus: str, type_name: str) -> Concept | None:
        for concept in self.concepts.values():
            if concept.corpus_types.get(corpus) == type_name:
                return concept
        return None

    def held_out_schema(self, corpus_schema: EntitySchema) -> tuple[EntitySchema, dict[str, str]]:
        """The corpus schema with every type under its first held-out naming, and the map from the
        corpus's type to that name. A type with no concept keeps its own naming."""
        types, rename = [], {}
        for t in corpus_schema.types:
            concept = self.concept_of(corpus_schema.name, t.name)
            naming = concept.held_out[0] if concept is not None and concept.held_out else t
            types.append(EntityType(naming.name, naming.definition))
            rename[t.name] = naming.name
        return EntitySchema(f"{corpus_schema.name}~held_out", corpus_schema.language, tuple(types)), rename

    def default_type_map(self, corpus: str, default_schema: str) -> dict[str, str]:
        """corpus type -> the type of ``default_schema`` (``biomedical_en``, ``clinical_zh``) it falls under."""
        out = {}
        for concept in self.concepts.values():
            if corpus in concept.corpus_types and default_schema in concept.default_types:
                out[concept.corpus_types[corpus]] = concept.default_types[default_schema]
        return out


def load_type_namings(data: Mapping[str, Any] | None = None) -> TypeNamings:
    """The packaged naming table (or ``data`` in the same layout)."""
    if data is None:
        return _packaged_namings()
    return _parse_namings(data)


@lru_cache(maxsize=1)
def _packaged_namings() -> TypeNamings:
    raw = (resources.files("llmner") / "schemas" / "namings" / NAMINGS_FILE).read_bytes()
    return _parse_namings(orjson.loads(raw))


def _parse_namings(data: Mapping[str, Any]) -> TypeNamings:
    concepts = {}
    for key, c in data.get("concepts", {}).items():
        try:
            namings = tuple(EntityType(n["name"], n["definition"]) for n in c["namings"])
            held_out = tuple(EntityType(n["name"], n["definition"]) for n in c.get("held_out", ()))
            defaults = {k: v for k, v in c.items() if k in ("biomedical_en", "clinical_zh")}
            concepts[key] = Concept(key, c["language"], dict(c["corpus_types"]), namings, held_out, defaults)
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"type namings: concept {key!r} is malformed ({exc})") from None
        seen = {n.name for n in namings}
        leaked = [n.name for n in held_out if n.name in seen]
        if leaked:
            raise ValidationError(f"type namings: concept {key!r} holds out {leaked} but also trains on them")
    return TypeNamings(concepts)


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
    "Concept",
    "SchemaVariant",
    "SchemaVariation",
    "SchemaVariationConfig",
    "TypeNamings",
    "identity_variant",
    "load_type_namings",
]
