"""Schema-robust training: every batch of a corpus is shown under a varied schema.

A generator trained only under each corpus's own schema learns the corpora, not the schema: under
a schema it has not seen, it writes one type for everything (a user's ``Medication``/``Problem``
schema labelled pneumonia ``Medication``). So each training batch renders its corpus's schema
differently (``SchemaVariation.draw``):

- the types in a random order;
- a random subset of the types dropped, their mentions dropped from the target with them (a
  dropped type is absent, never a wrong label: the text has no other annotation to put there);
- each type named by one of several paraphrases with its own definition
  (``llmner/schemas/namings/type_namings.json``), in the corpus's language;
- with ``distractor_rate``, types the corpus does not annotate added to the schema (a few concepts of
  its language whose default-schema type none of its own types falls under), so that the model sees
  schemas larger than any corpus's, as the six-type ``biomedical_en`` is. Without them a model
  trained on single-corpus schemas reads a prompt holding ``Chemical`` as "this is BC5CDR" and labels
  BC2GM's genes ``Chemical`` (the schema check at campaign step 400: 79-92 % of genes, 67 % of
  LINNAEUS species). A distractor's mentions would be unannotated in the text, and training would then
  teach the model to skip them; so a concept is a distractor only when none of the known mentions
  of it (``MentionLexicon``: every training corpus's gold mentions) occurs in the batch's texts;
- with ``mask_rate``, every type of the variant renamed to an opaque label (``Type_C``, ``Type_A``,
  letters in a random order), its definition kept: class-name masking, the regulariser of GoLLIE
  (Sainz et al., 2024), so that the model must read the definitions instead of recognising names.
  A held-out naming (``Illness``, ``Compound``) is a name the model never saw, and the schema check
  shows it followed by what the name resembles (BC5CDR's ``Illness`` written as ``Compound``).

The variant is an ordinary ``EntitySchema``: the prompt is rendered from it by the same
``PromptBuilder`` that renders a user's schema file at inference. The ``held_out`` namings of the
table are never drawn: they are the unseen naming of the schema check (``benchmarks/schemas.py``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
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
    distractor_rate: float = 0.0     # share of varied schemas that also list types the corpus does not annotate
    max_distractors: int = 3
    mask_rate: float = 0.0           # share of varied schemas whose type names become opaque labels

    def __post_init__(self) -> None:
        if self.max_distractors < 1:
            raise ConfigError(f"schema variation: max_distractors must be >= 1, got {self.max_distractors}")
        for name in ("own_rate", "drop_rate", "paraphrase_rate", "distractor_rate", "mask_rate"):
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


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> tuple[str, ...]:
    """The words of a mention or text, case-folded except abbreviations (all capitals: ``WAS``, ``ALL``
    and ``CAN`` are diseases and genes, ``was``, ``all`` and ``can`` are not)."""
    return tuple(w if len(w) > 1 and w.isupper() else w.lower() for w in _WORD.findall(text))


class MentionLexicon:
    """Known mentions of each concept (word sequences, see ``_words``), to tell whether a text mentions it."""

    max_words = 6

    def __init__(self, mentions: Mapping[str, Iterable[str]]) -> None:
        self.mentions: dict[str, set[tuple[str, ...]]] = {}
        for concept, texts in mentions.items():
            keys = {w for w in map(_words, texts) if w and len(w) <= self.max_words and len(" ".join(w)) >= 3}
            self.mentions[concept] = keys

    @classmethod
    def from_corpora(cls, corpora: Iterable[tuple[str, Sequence[Any]]], namings: TypeNamings) -> MentionLexicon:
        """From ``(corpus name, documents)`` pairs: every gold mention, under its type's concept."""
        mentions: dict[str, list[str]] = {}
        for name, documents in corpora:
            for doc in documents:
                for ent in doc.entities:
                    concept = namings.concept_of(name, ent.type)
                    if concept is not None:
                        mentions.setdefault(concept.key, []).append(ent.text)
        return cls(mentions)

    def mentioned(self, texts: Sequence[str]) -> set[str]:
        """Concepts one of whose known mentions occurs, as whole words, in one of ``texts``."""
        grams: set[tuple[str, ...]] = set()
        for text in texts:
            # Both as mentions are keyed (abbreviations kept) and all folded (HUMAN in a title is human).
            for words in (_words(text), tuple(w.lower() for w in _WORD.findall(text))):
                for n in range(1, self.max_words + 1):
                    grams.update(words[i : i + n] for i in range(len(words) - n + 1))
        return {concept for concept, keys in self.mentions.items() if not keys.isdisjoint(grams)}


class SchemaVariation:
    """Draws schema variants for a corpus, deterministically from a seed string."""

    def __init__(self, config: SchemaVariationConfig | None = None, namings: TypeNamings | None = None,
                 lexicon: MentionLexicon | None = None) -> None:
        self.config = config or SchemaVariationConfig()
        self.namings = namings or load_type_namings()
        self.lexicon = lexicon

    def draw(self, schema: EntitySchema, seed: str, texts: Sequence[str] = ()) -> SchemaVariant:
        """A variant of the corpus schema ``schema``; the same ``seed`` (and ``texts``: the batch's, for
        distractors) always gives the same variant."""
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
        # Drawn last, and only when enabled, so that variants without distractors stay as they were.
        if cfg.distractor_rate > 0 and rng.random() < cfg.distractor_rate:
            extra = self._distractors(schema, texts, used, rng)
            if extra:
                shown.extend(extra)
                if cfg.shuffle:
                    rng.shuffle(shown)
        # Drawn after everything else, and only when enabled, for the same reason.
        if cfg.mask_rate > 0 and rng.random() < cfg.mask_rate:
            shown, rename = _masked(shown, rename, rng)
        return SchemaVariant(EntitySchema(f"{schema.name}~variant", schema.language, tuple(shown), schema.description),
                             rename)


    def _distractors(self, schema: EntitySchema, texts: Sequence[str], used: set[str],
                     rng: random.Random) -> list[EntityType]:
        """Up to ``max_distractors`` types of concepts the corpus does not annotate: same language, a
        default-schema type none of the corpus's types falls under, not mentioned in ``texts``."""
        own = [self.namings.concept_of(schema.name, t.name) for t in schema.types]
        covered = {v for c in own if c is not None for v in c.default_types.values()}
        mentioned = self.lexicon.mentioned(texts) if self.lexicon is not None and texts else set()
        pool = [c for key, c in sorted(self.namings.concepts.items())
                if c.language == schema.language and c not in own and key not in mentioned
                and c.default_types and not covered.intersection(c.default_types.values())]
        if not pool:
            return []
        out = []
        for concept in rng.sample(pool, rng.randint(1, min(self.config.max_distractors, len(pool)))):
            choices = [n for n in concept.namings if n.name not in used]
            if choices:
                naming = rng.choice(choices)
                used.add(naming.name)
                out.append(EntityType(naming.name, naming.definition))
        return out


MASK_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _masked(shown: Sequence[EntityType], rename: Mapping[str, str],
            rng: random.Random) -> tuple[list[EntityType], dict[str, str]]:
    """Every shown type (distractors too) under an opaque label, ``Type_<letter>``, the letters drawn
    in a random order so that a label says nothing about its type; definitions unchanged."""
    letters = rng.sample(MASK_LETTERS, len(shown))
    label = {t.name: f"Type_{letter}" for t, letter in zip(shown, letters)}
    return ([EntityType(label[t.name], t.definition) for t in shown],
            {corpus_type: label[name] for corpus_type, name in rename.items()})


__all__ = [
    "MentionLexicon",
    "SchemaVariant",
    "SchemaVariation",
    "SchemaVariationConfig",
    "identity_variant",
]
