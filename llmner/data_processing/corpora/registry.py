"""The corpus registry: ``load_corpus("ncbi_disease", split="test")`` -> list[Document].

Data directory: ``$LLMNER_DATA_DIR`` when set; else ``../shared/data`` relative to the current working
directory; else ``<repo>/../shared/data`` next to this checkout. A missing directory or file raises
DataNotFoundError naming the path and the variable.

Every Document carries ``metadata["corpus"]``, ``metadata["split"]`` (train / dev / test) and the corpus
language (from its built-in schema ``llmner/schemas/<name>.json``). Which files make each split:

=============  ===========================================================================  ===========================
corpus         documents (``load_corpus``)                                                  sentences (``load_sentences``)
=============  ===========================================================================  ===========================
ncbi_disease   ``original/NCBI{train,develop,test}set_corpus.txt`` (PubTator, abstracts;     ``conll/{train,devel,test}.tsv``
               the four NCBI classes -> ``Disease``; PMID 8528200 twice in train, the
               second copy has id ``8528200-dup2``)
bc5cdr         ``pubtator/CDR_{Training,Development,Test}Set.PubTator.txt`` (abstracts)     ``conll/{train,devel,test}.tsv``
genia          ``cased_jsonl/{train,dev,test}.jsonl``, one Document per sentence,           the same Documents
               duplicate spans removed
jnlpba         ``original/Genia4ERtask1.iob2``: train = its first 16,807 sentences, dev =   the same Documents
               the last 1,739 (exactly ``conll_mtl/devel.tsv``); test = ``Genia4EReval1``;
               one Document per sentence
bc2gm          ``conll/{train,devel,test}.tsv``, one Document per sentence                  the same Documents
linnaeus       ``conll/{train,devel,test}.tsv``, one Document per sentence                  the same Documents
s800           ``standoff/<pmid>.{txt,ann}`` listed in ``split/{train,devel,test}.txt``     none
cmeee          ``v1_json/CMeEE_{train,dev,test}.json``; test is unlabeled                   none (records are the documents)
btc            ``conll/btc.{train,dev,test}``, one Document per tweet, @handles joined      the same Documents
               (``btc.py``); an auxiliary general-domain corpus, not an evaluation target
=============  ===========================================================================  ===========================

Identifiers become CURIEs at load time (the file readers keep the column verbatim, so that
reader -> writer -> reader stays lossless): NCBI-Disease and BC5CDR ``D009203`` -> ``MESH:D009203``,
``OMIM:...`` kept, BC5CDR's ``-1`` (no MeSH id) -> None; S800 ``Taxonomy:9606`` -> ``NCBITaxon:9606``.
LINNAEUS (CoNLL) carries no identifiers.

Parsed corpora are cached per process (``functools.lru_cache``); every call returns fresh Document
objects (own metadata dict and entity list; Entity is immutable), so callers may modify them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmner.curie import to_curie
from llmner.data_processing.corpora.brat import read_brat
from llmner.data_processing.corpora.btc import read_btc
from llmner.data_processing.corpora.cblue import read_cblue
from llmner.data_processing.corpora.conll import read_conll
from llmner.data_processing.corpora.genia import read_genia_jsonl
from llmner.data_processing.corpora.pubtator import NCBI_DISEASE_CLASSES, read_pubtator
from llmner.doc import Document
from llmner.errors import DataNotFoundError, ValidationError
from llmner.schema import EntitySchema, get_schema

DATA_DIR_ENV = "LLMNER_DATA_DIR"
SPLITS = ("train", "dev", "test")
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "devel": "dev", "validation": "dev", "test": "test"}
_REPO_ROOT = Path(__file__).resolve().parents[3]

# JNLPBA has no official dev set; the MTL/BioBERT split holds out the last 1,739 training sentences.
JNLPBA_TRAIN_SENTENCES = 16807


def data_dir() -> Path:
    """The corpus root directory (see the module docstring for the lookup order)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"corpus data directory {path} does not exist (set by {DATA_DIR_ENV})")
        return path
    candidates = [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT / ".." / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    tried = " and ".join(str(c) for c in dict.fromkeys(candidates))
    raise DataNotFoundError(f"corpus data directory not found (tried {tried}); set {DATA_DIR_ENV} to the folder holding ncbi_disease/, bc5cdr/, ...")


Loader = Callable[[Path, str, str], list[Document]]  # (corpus folder, split, id prefix) -> documents


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataNotFoundError(f"corpus file not found: {path} (data directory from {DATA_DIR_ENV} or ../shared/data)")
    return path


def _conll(files: dict[str, str], language: str = "en") -> Loader:
    return lambda root, split, prefix: read_conll(_need(root / files[split]), language=language, id_prefix=prefix)


def _pubtator(files: dict[str, str], type_map: dict[str, str] | None = None) -> Loader:
    return lambda root, split, prefix: _with_curies(read_pubtator(_need(root / files[split]), type_map=type_map))


def _with_curies(docs: list[Document], default_prefix: str | None = None) -> list[Document]:
    for doc in docs:
        doc.entities = [e if e.normalized_id is None else dataclasses.replace(e, normalized_id=to_curie(e.normalized_id, default_prefix))
                        for e in doc.entities]
    return docs


def _jnlpba(root: Path, split: str, prefix: str) -> list[Document]:
    if split == "test":
        return read_conll(_need(root / "original" / "Genia4EReval1.iob2"), id_prefix=prefix)
    sentences = _read_jnlpba_training(str(_need(root / "original" / "Genia4ERtask1.iob2")))
    part = sentences[:JNLPBA_TRAIN_SENTENCES] if split == "train" else sentences[JNLPBA_TRAIN_SENTENCES:]
    # ids and sentence indices count from 0 within each split
    return [Document(f"{prefix}{i}", d.text, d.language, {**d.metadata, "sentence_index": i}, list(d.entities))
            for i, d in enumerate(part)]


@functools.lru_cache(maxsize=2)
def _read_jnlpba_training(path: str) -> tuple[Document, ...]:
    # train and dev both come from this file: parse it once.
    return tuple(read_conll(path))


def _genia(root: Path, split: str, prefix: str) -> list[Document]:
    return read_genia_jsonl(_need(root / "cased_jsonl" / f"{split}.jsonl"), id_prefix=prefix)


def _s800(root: Path, split: str, prefix: str) -> list[Document]:
    list_file = _need(root / "split" / f"{ {'dev': 'devel'}.get(split, split)}.txt")
    ids = list_file.read_text(encoding="utf-8").split()
    return _with_curies(read_brat(_need(root / "standoff"), ids=ids), "NCBITaxon")


def _cmeee(root: Path, split: str, prefix: str) -> list[Document]:
    return read_cblue(_need(root / "v1_json" / f"CMeEE_{split}.json"), id_prefix=prefix)


def _btc(root: Path, split: str, prefix: str) -> list[Document]:
    return read_btc(_need(root / "conll" / f"btc.{split}"), id_prefix=prefix)


_CONLL_FILES = {"train": "conll/train.tsv", "dev": "conll/devel.tsv", "test": "conll/test.tsv"}


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    folder: str
    documents: Loader
    sentences: Loader | None  # None: no sentence view; ``documents`` itself when documents are sentences
    labeled_splits: tuple[str, ...] = SPLITS
    description: str = ""
    note: str = ""  # how the counts relate to the corpus README, shown by ``llmner data stats``
    auxiliary: bool = False  # a general-domain corpus for multi-task training only: not in the quality report


CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec("ncbi_disease", "ncbi_disease",
                   _pubtator({"train": "original/NCBItrainset_corpus.txt", "dev": "original/NCBIdevelopset_corpus.txt",
                              "test": "original/NCBItestset_corpus.txt"}, dict(NCBI_DISEASE_CLASSES)),
                   _conll(_CONLL_FILES), description="NCBI-Disease abstracts (PubTator original)",
                   note="sentences: conll/ conversion; PMID 8528200 is listed twice in train (second copy id 8528200-dup2)"),
        CorpusSpec("bc5cdr", "bc5cdr",
                   _pubtator({"train": "pubtator/CDR_TrainingSet.PubTator.txt", "dev": "pubtator/CDR_DevelopmentSet.PubTator.txt",
                              "test": "pubtator/CDR_TestSet.PubTator.txt"}),
                   _conll(_CONLL_FILES), description="BC5CDR abstracts (PubTator)",
                   note="sentences: conll/ conversion (its dev split has 9,593 mentions, 2 more Disease than PubTator)"),
        CorpusSpec("genia", "genia", _genia, _genia, description="GENIA nested, one document per sentence",
                   note="duplicate spans removed: 21 / 8 / 4 (README counts 47,026 / 4,466 / 5,589 include them)"),
        CorpusSpec("jnlpba", "jnlpba", _jnlpba, _jnlpba, description="JNLPBA 2004 IOB2, one document per sentence",
                   note="train + dev = Genia4ERtask1 (18,546 sentences, 51,301 mentions); dev = its last 1,739 sentences"),
        CorpusSpec("bc2gm", "bc2gm", _conll(_CONLL_FILES), _conll(_CONLL_FILES), description="BC2GM CoNLL, one document per sentence"),
        CorpusSpec("linnaeus", "linnaeus", _conll(_CONLL_FILES), _conll(_CONLL_FILES), description="LINNAEUS CoNLL, one document per sentence"),
        CorpusSpec("s800", "s800", _s800, None, description="S800 BRAT standoff abstracts"),
        CorpusSpec("cmeee", "cmeee", _cmeee, None, labeled_splits=("train", "dev"), description="CMeEE v1 (CBLUE JSON), Chinese records",
                   note="the CBLUE test set has no labels"),
        CorpusSpec("btc", "btc", _btc, _btc, description="Broad Twitter Corpus (PER/ORG/LOC tweets), one document per tweet",
                   note="@ + handle joined into one token and one mention (the README's merged counts); empty-token lines skipped",
                   auxiliary=True),
    )
}
CORPUS_NAMES: tuple[str, ...] = tuple(CORPORA)
# The biomedical corpora the quality report and the ablations score (every corpus but the auxiliary ones).
EVALUATION_CORPORA: tuple[str, ...] = tuple(n for n, spec in CORPORA.items() if not spec.auxiliary)


def corpus_spec(name: str) -> CorpusSpec:
    try:
        return CORPORA[name]
    except KeyError:
        raise ValidationError(f"unknown corpus {name!r} (known: {', '.join(CORPUS_NAMES)})") from None


def normalize_split(split: str) -> str:
    try:
        return _SPLIT_ALIASES[split]
    except KeyError:
        raise ValidationError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})") from None


def corpus_schema(name: str) -> EntitySchema:
    corpus_spec(name)
    return get_schema(name)


def is_labeled(name: str, split: str) -> bool:
    return normalize_split(split) in corpus_spec(name).labeled_splits


def has_sentence_view(name: str) -> bool:
    return corpus_spec(name).sentences is not None


def load_corpus(name: str, split: str = "train") -> list[Document]:
    """The gold documents of one split (fresh objects; parsing is cached per process)."""
    return _fresh(_load(str(data_dir()), name, normalize_split(split), "documents"))


def load_sentences(name: str, split: str = "train") -> list[Document]:
    """One Document per sentence (see the module table); ValidationError for corpora without a sentence view."""
    spec = corpus_spec(name)
    if spec.sentences is None:
        raise ValidationError(f"corpus {name!r} has no sentence view (its documents are {spec.description})")
    view = "documents" if spec.sentences is spec.documents else "sentences"
    return _fresh(_load(str(data_dir()), name, normalize_split(split), view))


def without_test_overlap(docs: Sequence[Document]) -> list[Document]:
    """``docs`` less every document whose text (whitespace removed) is also a document of the test
    split of any built-in corpus: corpora derived from the same abstracts share sentences across
    their splits (JNLPBA's training sentences include 121 of GENIA's 1,854 test sentences), and
    training on them would inflate the test scores. Every trainer (generator, peer) filters alike."""
    held_out = _test_texts()
    return [d for d in docs if _squeezed(d.text) not in held_out]


def _squeezed(text: str) -> str:
    return "".join(text.split())


@functools.lru_cache(maxsize=1)
def _test_texts() -> frozenset[str]:
    return frozenset(_squeezed(d.text) for name in CORPUS_NAMES for d in load_corpus(name, "test"))


@functools.lru_cache(maxsize=64)
def _load(root: str, name: str, split: str, view: str) -> tuple[Document, ...]:
    spec = corpus_spec(name)
    folder = Path(root) / spec.folder
    if not folder.is_dir():
        raise DataNotFoundError(f"corpus folder not found: {folder} (data directory from {DATA_DIR_ENV} or ../shared/data)")
    language = corpus_schema(name).language
    loader = spec.documents if view == "documents" else spec.sentences
    assert loader is not None
    docs = loader(folder, split, f"{split}-")
    for doc in docs:
        doc.language = language
        doc.metadata = {"corpus": name, "split": split, **doc.metadata}
    return tuple(docs)


def _fresh(docs: tuple[Document, ...]) -> list[Document]:
    return [Document(d.id, d.text, d.language, dict(d.metadata), list(d.entities)) for d in docs]


def clear_cache() -> None:
    _load.cache_clear()
    _read_jnlpba_training.cache_clear()
    _test_texts.cache_clear()
