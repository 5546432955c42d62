"""Identifiers as CURIEs (``MESH:D009203``, ``OMIM:614380``, ``NCBITaxon:9606``).

A mention can name several concepts at once: the NCBI-Disease and BC5CDR files join them with ``|``
("breast and ovarian cancer" -> ``D001943|D010051``) or ``+``. Both are kept as written, each component
turned into a CURIE; :func:`concept_set` compares identifiers by their set of components, so the
separator and the order never decide whether two identifiers agree.
"""

from __future__ import annotations

import re

# Prefix spellings seen in the corpora -> the CURIE prefix (bioregistry style).
_PREFIXES = {"MESH": "MESH", "MSH": "MESH", "OMIM": "OMIM", "MIM": "OMIM", "TAXONOMY": "NCBITaxon",
             "NCBITAXON": "NCBITaxon", "NCBITAXONOMY": "NCBITaxon", "TAXON": "NCBITaxon"}
_SPLIT = re.compile(r"\s*([|+])\s*")
_BARE_MESH = re.compile(r"^[CD]\d{6,9}$")   # MeSH descriptors (D...) and supplementary concepts (C...)

# The corpora mark "no identifier" this way (BC5CDR: -1).
NO_ID_MARKERS = frozenset({"", "-1", "-", "NIL", "CUI-less"})


def component_curie(raw: str, default_prefix: str | None = None) -> str:
    """One identifier as a CURIE: a known prefix is respelled, a bare MeSH id gets ``MESH:``, a bare
    number gets ``default_prefix`` (S800 / LINNAEUS taxon ids)."""
    raw = raw.strip()
    if ":" in raw:
        prefix, local = raw.split(":", 1)
        return f"{_PREFIXES.get(prefix.strip().upper().replace(' ', ''), prefix.strip())}:{local.strip()}"
    if _BARE_MESH.match(raw):
        return f"MESH:{raw}"
    if default_prefix:
        return f"{default_prefix}:{raw}"
    return raw


def to_curie(raw: str | None, default_prefix: str | None = None) -> str | None:
    """A corpus identifier column as a CURIE (components kept with their separators); None for
    the corpora's "no identifier" markers."""
    if raw is None or raw.strip() in NO_ID_MARKERS:
        return None
    parts = _SPLIT.split(raw.strip())
    out = []
    for i, part in enumerate(parts):
        out.append(part if i % 2 else component_curie(part, default_prefix))
    return "".join(out)


def concept_set(curie: str | None) -> frozenset[str]:
    """The concepts an identifier names (empty for None / NIL)."""
    if not curie:
        return frozenset()
    return frozenset(p for p in re.split(r"[|+]", curie) if p.strip() and p.strip() not in NO_ID_MARKERS)


def same_concepts(predicted: str | None, gold: str | None) -> bool:
    """Whether two identifiers name the same, non-empty set of concepts."""
    g = concept_set(gold)
    return bool(g) and concept_set(predicted) == g
