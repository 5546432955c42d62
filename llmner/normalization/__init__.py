"""Entity normalization: link each entity to a database identifier (a CURIE, ``llmner.curie``) or NIL.

>>> from llmner.normalization import load_normalizer
>>> norm = load_normalizer("bundle/normalizer")           # per-type dictionary normalizers
>>> doc.entities = norm.normalize(doc.entities, doc)      # normalized_id / normalized_score set

One interface (:class:`Normalizer`: entities + document -> :class:`Link`), one backend today
(:class:`DictionaryNormalizer`: exact, normalized string, in-document abbreviation, character
n-gram nearest neighbour with a NIL threshold), routed per entity type by :class:`TypedNormalizer`.
"""

from llmner.normalization.base import NIL, Link, Normalizer, TypedNormalizer
from llmner.normalization.dictionary import (
    Dictionary,
    DictionaryConfig,
    DictionaryNormalizer,
)
from llmner.normalization.store import (
    NormalizerSpec,
    StoredEmbeddings,
    TypeSpec,
    build_from_corpora,
    dictionaries_from_documents,
    embeddings_dir,
    load_normalizer,
    save_normalizer,
    warm_embeddings,
)
from llmner.normalization.text import abbreviations, string_key

__all__ = [
    "NIL", "Dictionary", "DictionaryConfig", "DictionaryNormalizer", "Link", "Normalizer", "NormalizerSpec",
    "StoredEmbeddings", "TypeSpec", "TypedNormalizer", "abbreviations", "build_from_corpora", "dictionaries_from_documents",
    "embeddings_dir", "load_normalizer", "save_normalizer", "string_key", "warm_embeddings",
]
