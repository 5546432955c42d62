"""The naming table of entity types: paraphrased names and one-line definitions per concept.

Each concept (``disease``, ``chemical``, ...) says which type of which corpus it is, the namings a
schema may give it, and the held-out namings that training never shows (the unseen naming of the
schema check, ``llmner/evaluation/schema_check.py``). The table is
``llmner/schemas/namings/type_namings.json``; training draws from it
(``llmner/training/schema_variation.py``) and evaluation reads it, so it sits beside ``schema.py``,
below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from llmner.errors import ValidationError
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


__all__ = ["NAMINGS_FILE", "Concept", "TypeNamings", "load_type_namings"]
