"""Entity schemas: the type names of a corpus with a one-line definition each.

The definitions go into the generator's prompt (so an unseen corpus works zero-shot) and into the
selector's input. Built-in schemas live in ``llmner/schemas/<name>.json``; users pass their own file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from llmner.errors import ValidationError

# A type name becomes an inline tag (<Disease>, <疾病>): a letter of any script, then letters, digits,
# '_' or '-'. The codecs parse markers with this same pattern.
TYPE_NAME_PATTERN = r"[^\W\d_][\w\-]*"
_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class EntityType:
    """One type: the name the generator writes, a one-line definition for the prompt, and aliases
    (other names of the same type, e.g. a corpus's codes: ``疾病`` has alias ``dis``), which gold
    annotations may use."""

    name: str
    definition: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EntitySchema:
    """A named set of entity types in one language."""

    name: str
    language: str
    types: tuple[EntityType, ...]
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.types:
            raise ValidationError(f"schema {self.name!r}: no entity types")
        seen: set[str] = set()
        for t in self.types:
            # Type names become inline tag names (<Disease>): keep them identifier-like.
            if not _TYPE_NAME.fullmatch(t.name):
                raise ValidationError(
                    f"schema {self.name!r}: type name {t.name!r} must start with a letter (any script) and contain "
                    "only letters, digits, '_' or '-'"
                )
            if t.name in seen:
                raise ValidationError(f"schema {self.name!r}: type {t.name!r} listed twice")
            if not t.definition.strip():
                raise ValidationError(f"schema {self.name!r}: type {t.name!r} has no definition")
            seen.add(t.name)
        aliases = [a for t in self.types for a in t.aliases]
        clash = sorted({a for a in aliases if a in seen or aliases.count(a) > 1})
        if clash:
            raise ValidationError(f"schema {self.name!r}: alias(es) {', '.join(clash)} name more than one type")
        if self.language not in ("en", "zh"):
            raise ValidationError(f"schema {self.name!r}: unknown language {self.language!r} (expected en or zh)")

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def definition(self, type_name: str) -> str:
        for t in self.types:
            if t.name == type_name:
                return t.definition
        raise ValidationError(f"schema {self.name!r}: unknown entity type {type_name!r} (known: {', '.join(self.type_names)})")

    def __contains__(self, type_name: object) -> bool:
        return any(t.name == type_name for t in self.types)

    def canonical(self, type_name: str) -> str | None:
        """The schema's own name for ``type_name`` (itself, or the type it is an alias of); None if unknown."""
        for t in self.types:
            if type_name == t.name or type_name in t.aliases:
                return t.name
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "description": self.description,
            "types": [{"name": t.name, "definition": t.definition, **({"aliases": list(t.aliases)} if t.aliases else {})}
                      for t in self.types],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "schema") -> EntitySchema:
        if not isinstance(data, Mapping):
            raise ValidationError(f"{where}: expected a JSON object")
        unknown = set(data) - {"name", "language", "description", "types", "metadata"}
        if unknown:
            raise ValidationError(f"{where}: unknown field(s) {sorted(unknown)}")
        for key in ("name", "language", "types"):
            if key not in data:
                raise ValidationError(f"{where}: missing field {key!r}")
        if not isinstance(data["types"], list):
            raise ValidationError(f"{where}: 'types' must be a list of {{'name', 'definition'}} objects")
        if not isinstance(data.get("metadata", {}), Mapping):
            raise ValidationError(f"{where}: 'metadata' must be an object")
        types = []
        for i, t in enumerate(data["types"]):
            if not isinstance(t, Mapping) or "name" not in t or "definition" not in t:
                raise ValidationError(f"{where}: types[{i}] needs 'name' and 'definition'")
            unknown_keys = set(t) - {"name", "definition", "aliases"}
            if unknown_keys:
                raise ValidationError(f"{where}: types[{i}] has unknown field(s) {sorted(unknown_keys)}")
            aliases = t.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise ValidationError(f"{where}: types[{i}].aliases must be a list of strings")
            types.append(EntityType(str(t["name"]), str(t["definition"]), tuple(aliases)))
        return cls(
            name=str(data["name"]),
            language=str(data["language"]),
            types=tuple(types),
            description=str(data.get("description", "")),
            metadata=dict(data.get("metadata", {})),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> EntitySchema:
        """A schema file: JSON, or YAML when the name ends in ``.yaml`` / ``.yml``."""
        p = Path(path)
        if not p.is_file():
            raise ValidationError(f"schema file not found: {p}")
        if p.suffix.lower() in SCHEMA_YAML_SUFFIXES:
            import yaml

            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ValidationError(f"schema file {p} is not valid YAML: {exc}") from None
        else:
            try:
                data = orjson.loads(p.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise ValidationError(f"schema file {p} is not valid JSON: {exc}") from None
        return cls.from_dict(data, where=f"schema file {p}")

    def subset(self, type_names: Sequence[str]) -> EntitySchema:
        return EntitySchema(self.name, self.language, tuple(t for t in self.types if t.name in set(type_names)), self.description)


SCHEMA_YAML_SUFFIXES = (".yaml", ".yml")


def type_correspondence(reported: EntitySchema, prompted: EntitySchema) -> dict[str, str]:
    """``prompted``'s type -> ``reported``'s type, for a generator prompted with ``prompted``'s names whose
    entities are reported under ``reported``'s (e.g. prompted with CMeEE's codes, reported as
    ``clinical_zh``'s readable names, which list the codes as aliases). Each type of one schema must be
    exactly one type of the other, by name or alias: a type without a partner would be silently lost or
    never found."""
    if reported.language != prompted.language:
        raise ValidationError(f"schemas {reported.name!r} ({reported.language}) and {prompted.name!r} "
                              f"({prompted.language}) are in different languages")
    mapping: dict[str, str] = {}
    for t in prompted.types:
        partner = reported.canonical(t.name)
        if partner is None:
            raise ValidationError(f"type {t.name!r} of schema {prompted.name!r} is neither a type nor an alias "
                                  f"in schema {reported.name!r}")
        mapping[t.name] = partner
    missing = sorted(set(reported.type_names) - set(mapping.values()))
    if missing or len(set(mapping.values())) != len(mapping):
        raise ValidationError(f"schema {prompted.name!r} does not name each type of {reported.name!r} exactly once "
                              f"(unmatched: {', '.join(missing) or 'none'}; two types share a partner otherwise)")
    return mapping


def builtin_schema_names() -> list[str]:
    root = resources.files("llmner") / "schemas"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def get_schema(name_or_path: str | Path) -> EntitySchema:
    """A built-in schema by corpus name (``ncbi_disease``) or a user schema file path."""
    text = str(name_or_path)
    if text.lower().endswith((".json", *SCHEMA_YAML_SUFFIXES)) or Path(text).is_file():
        return EntitySchema.load(text)
    root = resources.files("llmner") / "schemas" / f"{text}.json"
    if not root.is_file():
        raise ValidationError(f"unknown schema {text!r}: not a file and not a built-in schema ({', '.join(builtin_schema_names())})")
    return EntitySchema.from_dict(orjson.loads(root.read_bytes()), where=f"built-in schema {text}")
