"""Type maps: rename gold entity types to the predicted ones before scoring.

A corpus's gold types are not always the types a model predicts: NCBI-Disease annotates
SpecificDisease, DiseaseClass, Modifier and CompositeMention, and a model tags Disease. Scoring
without a map gives 0. ``llmner eval --type-map`` takes, any number of times:

- the name of a shipped map (``STANDARD_TYPE_MAPS``: ``ncbi_disease``);
- ``Gold=Pred`` pairs, comma-separated (``SpecificDisease=Disease,Modifier=Disease``);
- a file: a JSON object ``{"Gold": "Pred"}``, or one ``Gold=Pred`` per line (``#`` comments).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import orjson

from llmner.data_processing.corpora.pubtator import NCBI_DISEASE_CLASSES
from llmner.doc import Document
from llmner.errors import ValidationError

STANDARD_TYPE_MAPS: Mapping[str, Mapping[str, str]] = {"ncbi_disease": NCBI_DISEASE_CLASSES}


def parse_type_map(specs: Sequence[str]) -> dict[str, str]:
    """One gold -> predicted type mapping from ``--type-map`` values (later ones win)."""
    mapping: dict[str, str] = {}
    for spec in specs:
        if spec in STANDARD_TYPE_MAPS:
            mapping.update(STANDARD_TYPE_MAPS[spec])
        elif Path(spec).is_file():
            mapping.update(_read_type_map_file(Path(spec)))
        elif "=" in spec:
            mapping.update(_pairs(spec.split(","), f"--type-map {spec!r}"))
        else:
            raise ValidationError(f"--type-map {spec!r}: neither a shipped map ({', '.join(STANDARD_TYPE_MAPS)}), "
                                  "a file, nor Gold=Pred pairs")
    return mapping


def _read_type_map_file(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"{path}: not valid JSON ({exc})") from None
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()):
            raise ValidationError(f"{path}: a type map is a JSON object of non-empty strings, Gold -> Pred")
        return dict(data)
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return _pairs([line for line in lines if line], str(path))


def _pairs(items: Iterable[str], where: str) -> dict[str, str]:
    out = {}
    for item in items:
        gold, sep, pred = (part.strip() for part in item.partition("="))
        if not sep or not gold or not pred:
            raise ValidationError(f"{where}: expected Gold=Pred, got {item.strip()!r}")
        out[gold] = pred
    return out


def map_types(docs: Iterable[Document], mapping: Mapping[str, str]) -> list[Document]:
    """Copies of ``docs`` with entity types renamed by ``mapping`` (unmapped types kept)."""
    return [Document(d.id, d.text, d.language, d.metadata,
                     [dataclasses.replace(e, type=mapping.get(e.type, e.type)) for e in d.entities])
            for d in docs]


def disjoint_types_hint(gold: Iterable[Document], predicted: Iterable[Document]) -> str | None:
    """A hint when the gold and predicted type sets do not intersect (every match is then impossible)."""
    gold_types = {e.type for d in gold for e in d.entities}
    pred_types = {e.type for d in predicted for e in d.entities}
    if not gold_types or not pred_types or gold_types & pred_types:
        return None
    fitting = [name for name, mapping in STANDARD_TYPE_MAPS.items() if gold_types <= set(mapping)]
    fix = (f"--type-map {fitting[0]} (shipped; it maps every one of these gold types)" if fitting else
           f"--type-map: Gold=Pred pairs such as {min(gold_types)}={min(pred_types)}, a file, or a shipped map "
           f"({', '.join(STANDARD_TYPE_MAPS)})")
    return (f"the gold types ({', '.join(sorted(gold_types))}) and the predicted types ({', '.join(sorted(pred_types))}) "
            f"do not intersect, so nothing can match: map the gold types with {fix}")
