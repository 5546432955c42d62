"""Does the generator follow the schema in its prompt? F1 of a corpus's own types under three namings.

For a corpus with gold annotations, the same documents are tagged under:

- ``own``: the corpus's own schema (its type names and definitions, as in training);
- ``default``: the language's default schema (``biomedical_en``, ``clinical_zh``). Gold types are
  mapped to the default type they fall under (GENIA ``protein``, ``DNA`` and ``RNA`` -> ``Gene``);
  predicted types the corpus does not annotate (``Disease`` in GENIA) are not scored;
- ``held_out``: every type under a name and definition never shown in training
  (``type_namings.json`` ``held_out``).

The type confusion counts, for every gold mention, the type predicted on exactly its span
(``—`` when none): one type absorbing another shows as a large off-diagonal cell.

Where a corpus annotates what the default schema's definition leaves out, condition ``default`` scores
the corpus's convention against the definition's, not the model. ``CONVENTIONS_APART`` lists such
mentions by their case-folded text; the check scores those corpora a second time with them set aside
(gone from the gold and from the predictions alike, under every condition).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmner.doc import Document, Entity
from llmner.errors import ConfigError
from llmner.evaluation.scorer import Report, score
from llmner.schema import EntitySchema, get_schema
from llmner.type_namings import TypeNamings, load_type_namings

NONE = "—"
CONDITIONS = ("own", "default", "held_out")   # the namings of namings_for, in its order
DEFAULT_SCHEMAS = {"en": "biomedical_en", "zh": "clinical_zh"}

# LINNAEUS tags people as Species ("patients" at 246 of 246 places in its training split, "people" 78 of
# 78, "children" 64 of 66); S800 never does ("patients" 0 of 102), and biomedical_en's Species definition
# follows S800 ("'patients' is not a species"). Humans named as such ("human", "humans") stay scored.
PEOPLE = frozenset({
    "patient", "patients", "people", "person", "persons", "participant", "participants", "individual",
    "individuals", "subject", "subjects", "volunteer", "volunteers", "man", "men", "woman", "women",
    "child", "children", "boy", "boys", "girl", "girls", "adult", "adults", "infant", "infants",
    "mother", "mothers", "father", "fathers",
})
CONVENTIONS_APART: Mapping[str, tuple[str, frozenset[str]]] = {"linnaeus": ("people", PEOPLE)}


@dataclass(frozen=True, slots=True)
class Naming:
    """One condition of the check: the schema shown, and gold type -> the name it has there."""

    condition: str
    schema: EntitySchema
    gold_map: Mapping[str, str]


@dataclass(slots=True)
class ConditionResult:
    condition: str
    schema: str
    report: Report
    confusion: Counter = field(default_factory=Counter)     # (gold type as named, predicted type or NONE)

    def absorption(self) -> tuple[float, str, str]:
        """The largest share of a gold type's span-matched mentions labelled as another single type:
        (share, gold type, absorbing type). 0 when every matched span has its own type."""
        worst = (0.0, "", "")
        gold_types = {g for g, _ in self.confusion if g != NONE}
        for g in gold_types:
            matched = {p: n for (gg, p), n in self.confusion.items() if gg == g and p != NONE}
            total = sum(matched.values())
            for p, n in matched.items():
                if p != g and total and n / total > worst[0]:
                    worst = (n / total, g, p)
        return worst


def namings_for(corpus_schema: EntitySchema, namings: TypeNamings | None = None,
                default_schema: EntitySchema | None = None) -> list[Naming]:
    """The three conditions for a corpus. ``default_schema`` replaces the language's default schema (a
    variant of its definitions under the same name and types, to try on dev)."""
    namings = namings or load_type_namings()
    own = Naming("own", corpus_schema, {t: t for t in corpus_schema.type_names})
    default_name = DEFAULT_SCHEMAS[corpus_schema.language]
    shown = get_schema(default_name)
    if default_schema is not None and default_schema.language == corpus_schema.language:
        if (default_schema.name, default_schema.type_names) != (default_name, shown.type_names):
            raise ConfigError(f"a variant of {default_name} keeps its name and types, "
                              f"got {default_schema.name} {default_schema.type_names}")
        shown = default_schema
    default = Naming("default", shown, namings.default_type_map(corpus_schema.name, default_name))
    held_schema, rename = namings.held_out_schema(corpus_schema)
    return [own, default, Naming("held_out", held_schema, rename)]


def _scored_copy(doc: Document, entities: list[Entity]) -> Document:
    """``doc`` with other entities and no metadata: what the scorer reads."""
    return Document(doc.id, doc.text, doc.language, {}, entities)


def renamed_gold(docs: Sequence[Document], gold_map: Mapping[str, str]) -> list[Document]:
    return [_scored_copy(d, [Entity(e.start, e.end, gold_map[e.type], e.text) for e in d.entities if e.type in gold_map])
            for d in docs]


def scored_predictions(predicted: Sequence[Document], scored_types: set[str]) -> list[Document]:
    """Predictions of the types the gold annotates (the others are not scored)."""
    return [_scored_copy(d, [e for e in d.entities if e.type in scored_types]) for d in predicted]


def type_confusion(gold: Sequence[Document], predicted: Sequence[Document]) -> Counter:
    """(gold type, type predicted on the same span or NONE) over every gold mention, plus
    (NONE, predicted type) for predictions on spans with no gold mention."""
    confusion: Counter = Counter()
    by_id = {d.id: d for d in predicted}
    for g in gold:
        pred = by_id.get(g.id)
        spans: dict[tuple[int, int], set[str]] = {}
        for e in pred.entities if pred else ():
            spans.setdefault((e.start, e.end), set()).add(e.type)
        gold_spans = {(e.start, e.end) for e in g.entities}
        for e in {(e.start, e.end, e.type) for e in g.entities}:
            types = spans.get((e[0], e[1]), set())
            confusion[(e[2], e[2] if e[2] in types else (min(types) if types else NONE))] += 1
        for span, types in spans.items():
            if span not in gold_spans:
                for t in types:
                    confusion[(NONE, t)] += 1
    return confusion


def set_aside(docs: Sequence[Document], texts: frozenset[str]) -> list[Document]:
    """``docs`` without the entities whose case-folded text is one of ``texts``."""
    return [_scored_copy(d, [e for e in d.entities if d.text[e.start:e.end].lower() not in texts]) for d in docs]


def check_condition(naming: Naming, gold: Sequence[Document], predicted: Sequence[Document],
                    apart: frozenset[str] = frozenset()) -> ConditionResult:
    """One condition scored; with ``apart``, the mentions of those texts set aside on both sides."""
    if apart:
        gold, predicted = set_aside(gold, apart), set_aside(predicted, apart)
    mapped = renamed_gold(gold, naming.gold_map)
    kept = scored_predictions(predicted, set(naming.gold_map.values()))
    return ConditionResult(naming.condition, naming.schema.name, score(mapped, kept), type_confusion(mapped, predicted))


def confusion_markdown(result: ConditionResult) -> list[str]:
    gold_types = sorted({g for g, _ in result.confusion if g != NONE})
    pred_types = sorted({p for _, p in result.confusion if p != NONE})
    columns = [*pred_types, NONE]
    lines = [f"| gold \\ predicted ({result.condition}: {result.schema}) | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for g in [*gold_types, NONE]:
        cells = [str(result.confusion.get((g, p), 0)) if not (g == NONE and p == NONE) else "" for p in columns]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return lines


def summary_row(corpus: str, results: Sequence[ConditionResult], documents: int, gold_mentions: int) -> dict[str, Any]:
    by = {r.condition: r for r in results}
    own = by["own"].report.strict.f1
    row: dict[str, Any] = {"corpus": corpus, "documents": documents, "gold": gold_mentions}
    for r in results:
        share, g, p = r.absorption()
        row[r.condition] = {"f1": r.report.strict.f1, "precision": r.report.strict.precision,
                            "recall": r.report.strict.recall, "minus_own": r.report.strict.f1 - own,
                            "absorption": share, "absorbed": f"{g} -> {p}" if share else ""}
    return row


__all__ = ["CONDITIONS", "CONVENTIONS_APART", "ConditionResult", "Naming", "check_condition", "confusion_markdown", "namings_for", "renamed_gold",
           "set_aside", "summary_row", "type_confusion"]
