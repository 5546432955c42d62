"""A normalizer on disk (the ``normalizer/`` folder of a bundle) and how it is built.

    normalizer/
      normalizer.json    NormalizerSpec: per entity type, its dictionary file, named vocabularies, thresholds
      <Type>.tsv         the corpus dictionary of that type (``curie<TAB>votes<TAB>name``)
      <encoder>/         optional: a synonym encoder (``save_pretrained`` directory) for neighbour
                         "encoder" or "rerank", named by ``TypeSpec.encoder`` relative to this folder

Vocabularies are named (``"mesh"``) rather than copied, so a bundle stays small; loading one needs
its package installed (see :mod:`llmner.normalization.vocabularies`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmner.cache import cache_dir
from llmner.doc import Document
from llmner.errors import ConfigError, DataNotFoundError
from llmner.normalization.base import TypedNormalizer
from llmner.normalization.dictionary import (
    Dictionary,
    DictionaryConfig,
    DictionaryNormalizer,
)
from llmner.normalization.vocabularies import load_vocabulary

SPEC_NAME = "normalizer.json"
FORMAT_VERSION = 1


def embeddings_dir() -> Path:
    """Where the encoder neighbour keeps its names' embeddings between processes:
    ``LLMNER_NORMALIZER_EMBEDDINGS``, default ``$LLMNER_CACHE_DIR/normalizer-embeddings``.

    Its own variable because an image that computes them at build time (``llmner normalizer warm``)
    must keep them outside the cache volume, which a pod mounts empty over the image's files."""
    configured = os.environ.get("LLMNER_NORMALIZER_EMBEDDINGS")
    if configured:
        return Path(configured).expanduser()
    return cache_dir() / "normalizer-embeddings"


@dataclass(slots=True)
class TypeSpec:
    dictionary: str = ""                                   # file in the normalizer folder ("" = none)
    vocabularies: list[str] = field(default_factory=list)  # named vocabularies or files
    ngram_threshold: float = 0.8
    use_abbreviations: bool = True
    use_ngrams: bool = True
    use_head_backoff: bool = False
    neighbour: str = "ngram"          # or "encoder" / "rerank" (sentence embeddings; ngram_threshold is then their cosine threshold)
    encoder: str = ""                 # "" = the packaged MiniLM; a folder of the normalizer, or an encoder reference
    rerank_k: int = 20                # the n-gram shortlist of neighbour="rerank"
    expand_abbreviations: bool = True
    strip_salts: bool = False
    strip_modifiers: bool = False
    disease_suffixes: bool = False
    use_document: bool = False
    document_threshold: float = 0.6
    wider_tie_break: bool = False
    single_letter_abbreviations: bool = False
    organ_disease_words: bool = False
    salt_free_names: bool = False

    def config(self, root: Path | None = None) -> DictionaryConfig:
        """``root``: the normalizer folder, against which a relative ``encoder`` folder is resolved."""
        encoder = {}   # "" keeps DictionaryConfig's default encoder (the packaged MiniLM)
        if self.encoder:
            relative = root is not None and not self.encoder.startswith("packaged:") and not Path(self.encoder).is_absolute()
            encoder["encoder"] = str(root / self.encoder) if relative else self.encoder
        return DictionaryConfig(ngram_threshold=self.ngram_threshold, use_abbreviations=self.use_abbreviations,
                                rerank_k=self.rerank_k, **encoder,
                                use_ngrams=self.use_ngrams, use_head_backoff=self.use_head_backoff, neighbour=self.neighbour,
                                expand_abbreviations=self.expand_abbreviations, strip_salts=self.strip_salts,
                                strip_modifiers=self.strip_modifiers, disease_suffixes=self.disease_suffixes,
                                use_document=self.use_document, document_threshold=self.document_threshold,
                                wider_tie_break=self.wider_tie_break, single_letter_abbreviations=self.single_letter_abbreviations,
                                organ_disease_words=self.organ_disease_words, salt_free_names=self.salt_free_names)


@dataclass(slots=True)
class NormalizerSpec:
    types: dict[str, TypeSpec] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)      # what the dictionaries were built from
    notes: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = SPEC_NAME) -> NormalizerSpec:
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{where}: unsupported format_version {data.get('format_version')!r} (expected {FORMAT_VERSION})")
        allowed = {f.name for f in fields(TypeSpec)}
        types = {}
        for etype, spec in (data.get("types") or {}).items():
            unknown = set(spec) - allowed
            if unknown:
                raise ConfigError(f"{where}: types[{etype!r}]: unknown field(s) {sorted(unknown)}")
            types[etype] = TypeSpec(**spec)
            for name in ("ngram_threshold", "document_threshold"):
                if not 0.0 <= getattr(types[etype], name) <= 1.0:
                    raise ConfigError(f"{where}: types[{etype!r}].{name} must be in [0, 1]")
        return cls(types=types, sources=list(data.get("sources", [])), notes=str(data.get("notes", "")))


def read_spec(path: str | Path) -> NormalizerSpec:
    """The ``normalizer.json`` of the normalizer folder ``path``."""
    file = Path(path) / SPEC_NAME
    if not file.is_file():
        raise DataNotFoundError(f"not a normalizer: {file} missing")
    try:
        return NormalizerSpec.from_dict(json.loads(file.read_text(encoding="utf-8")), str(file))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} is not valid JSON: {exc}") from None


def _type_normalizer(root: Path, tspec: TypeSpec) -> DictionaryNormalizer:
    """One type's normalizer as stored, its indexes not built yet."""
    dictionary = Dictionary.load(root / tspec.dictionary) if tspec.dictionary else Dictionary()
    for vocab in tspec.vocabularies:
        dictionary.update(load_vocabulary(vocab))
    config = tspec.config(root)
    if config.neighbour == "encoder":
        config.embedding_cache = str(embeddings_dir())   # a worker's next start reads them
    return DictionaryNormalizer(dictionary, config)


def load_normalizer(path: str | Path) -> TypedNormalizer:
    root = Path(path)
    spec = read_spec(root)
    by_type = {}
    for etype, tspec in spec.types.items():
        by_type[etype] = _type_normalizer(root, tspec)
        if tspec.use_ngrams:
            by_type[etype].warm()   # build the index (and load the encoder) now: a worker's first document must not pay for it
    return TypedNormalizer(by_type, name=root.name)


@dataclass(slots=True)
class StoredEmbeddings:
    """The names' embeddings of one entity type, as :func:`warm_embeddings` left them."""
    type: str
    names: int
    file: Path
    encoded: bool          # False: the file was there already and was only read back
    seconds: float         # wall seconds: loading the encoder, then encoding the names (or reading the file back)


def warm_embeddings(path: str | Path) -> list[StoredEmbeddings]:
    """Encode and store in :func:`embeddings_dir` the names of every type of the normalizer folder
    ``path`` whose step 4 encodes every name (``neighbour="encoder"``), where :func:`load_normalizer`
    reads them back: run once (an image's build), it spares each worker's first start the encoding.
    Types with another step 4 have nothing to store (an empty list when none has)."""
    root = Path(path)
    out = []
    for etype, tspec in read_spec(root).types.items():
        if tspec.neighbour != "encoder" or not tspec.use_ngrams:
            continue
        norm = _type_normalizer(root, tspec)
        started = time.perf_counter()
        index = norm.encoder_index()
        seconds = time.perf_counter() - started
        if index.file is None or not index.file.is_file():
            raise ConfigError(f"{etype}: the names' embeddings could not be written into {embeddings_dir()}")
        out.append(StoredEmbeddings(etype, len(index.ids), index.file, not index.cached, seconds))
    return out


def save_normalizer(path: str | Path, dictionaries: dict[str, Dictionary], spec: NormalizerSpec) -> Path:
    """Write the dictionaries and ``normalizer.json``; ``spec.types[t].dictionary`` is set for each."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for etype, dictionary in dictionaries.items():
        name = f"{etype}.tsv"
        dictionary.save(root / name)
        spec.types.setdefault(etype, TypeSpec()).dictionary = name
    (root / SPEC_NAME).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return root


def dictionaries_from_documents(docs: Iterable[Document], types: Sequence[str]) -> dict[str, Dictionary]:
    """One dictionary per type from the identifier-annotated gold mentions of ``docs``."""
    docs = list(docs)
    return {t: Dictionary().add_mentions(docs, t) for t in types}


def build_from_corpora(corpora: Sequence[str], splits: Sequence[str] = ("train", "dev"),
                       types: Sequence[str] | None = None) -> tuple[dict[str, Dictionary], list[str]]:
    """Dictionaries from the gold mentions of ``corpora`` (their ``splits``; never test) and a
    description of the sources."""
    from llmner.data_processing.corpora import load_corpus

    out: dict[str, Dictionary] = {}
    sources = []
    for corpus in corpora:
        for split in splits:
            docs = load_corpus(corpus, split)
            found = sorted({e.type for d in docs for e in d.entities if e.normalized_id})
            for t in found:
                if types is None or t in types:
                    out.setdefault(t, Dictionary()).add_mentions(docs, t)
            sources.append(f"{corpus}/{split}")
    return out, sources
