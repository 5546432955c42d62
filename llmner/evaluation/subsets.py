"""Deterministic document subsets of a split: the first (or last) documents holding N sentences, or
evenly spaced runs of documents (``spread_documents``).

Full splits take hours on a CPU, so calibration and the benchmark reports score a fixed slice:
documents in split order until they hold at least ``sentences`` sentences (llmner's own splitter)
and ``min_gold`` gold mentions. Sentence corpora (GENIA, JNLPBA, BC2GM, LINNAEUS: one document per
sentence) give their first ``sentences`` documents; document corpora (NCBI-Disease, BC5CDR, S800
abstracts, CMeEE records) their first whole documents until those hold enough sentences.
``min_gold`` extends a subset until it holds that many gold mentions (LINNAEUS has 19 in its first
200 test sentences). ``from_end`` takes the slice from the end of the split (kept in split order),
to stay apart from a slice that a report scores from the start. Every system a report compares is
scored on exactly the same documents (``EvalSubset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmner.data_processing.sentences import split_sentences
from llmner.doc import Document
from llmner.errors import ValidationError


def count_sentences(doc: Document) -> int:
    return max(1, len(split_sentences(doc.text, doc.language)))


def leading_documents(docs: Sequence[Document], sentences: int | None, min_gold: int = 0,
                      from_end: bool = False) -> tuple[list[Document], int]:
    """(documents, their sentence count): ``sentences`` None takes every document."""
    if sentences is not None and sentences < 1:
        raise ValidationError(f"sentences must be >= 1, got {sentences}")
    chosen: list[Document] = []
    total = gold = 0
    for doc in reversed(docs) if from_end else docs:
        if sentences is not None and total >= sentences and gold >= min_gold:
            break
        chosen.append(doc)
        total += count_sentences(doc)
        gold += len(doc.entities)
    if from_end:
        chosen.reverse()
    return chosen, total


def spread_documents(docs: Sequence[Document], sentences: int, runs: int) -> tuple[list[Document], int]:
    """(documents, their sentence count): ``runs`` runs of consecutive documents starting at evenly spaced
    places of the split, each run holding at least ``sentences / runs`` sentences (and never reaching
    into the next run's start). Why: a split whose documents are the sentences of a few long articles
    is not sampled by its leading documents; LINNAEUS's first 200 dev sentences are one article, whose
    "wheat" and "potato" are 104 of its 144 mentions."""
    if sentences < 1 or runs < 1:
        raise ValidationError(f"sentences and runs must be >= 1, got {sentences} and {runs}")
    per_run = -(-sentences // runs)
    chosen: list[Document] = []
    total = 0
    for r in range(runs):
        start, stop = r * len(docs) // runs, (r + 1) * len(docs) // runs
        run, count = leading_documents(docs[start:stop], per_run)
        chosen += run
        total += count
    return chosen, total


# The split each corpus is reported on: CMeEE's test set has no labels, so its dev set stands in.
REPORT_SPLITS: dict[str, str] = {
    "ncbi_disease": "test", "bc5cdr": "test", "genia": "test", "jnlpba": "test", "bc2gm": "test",
    "linnaeus": "test", "s800": "test", "cmeee": "dev",
}


@dataclass(frozen=True, slots=True)
class EvalSubset:
    """The first (or last) ``len(documents)`` documents of ``corpus``/``split`` (gold entities attached)."""

    corpus: str
    split: str
    documents: list[Document]
    sentences: int           # sentences in those documents (llmner's splitter)
    split_documents: int     # documents in the whole split

    @property
    def gold_mentions(self) -> int:
        return sum(len(d.entities) for d in self.documents)

    def describe(self) -> str:
        return (f"{self.corpus}/{self.split}: first {len(self.documents)} of {self.split_documents} documents, "
                f"{self.sentences} sentences, {self.gold_mentions} gold mentions")


def evaluation_subset(corpus: str, sentences: int | None, split: str | None = None, min_gold: int = 0,
                      from_end: bool = False) -> EvalSubset:
    """The first documents of the split (default: ``REPORT_SPLITS``) holding at least ``sentences``
    sentences (None: the whole split) and at least ``min_gold`` gold mentions (sparse corpora such as
    LINNAEUS need more sentences). ``from_end`` takes the last documents instead (kept in split
    order): the mixture ablation selects on the tail of each dev split, apart from CMeEE dev's head,
    which the quality report scores."""
    from llmner.data_processing.corpora import is_labeled, load_corpus

    split = split or REPORT_SPLITS.get(corpus, "test")
    if not is_labeled(corpus, split):
        raise ValueError(f"{corpus}/{split} has no gold labels")
    docs = load_corpus(corpus, split)
    chosen, total = leading_documents(docs, sentences, min_gold, from_end)
    return EvalSubset(corpus, split, chosen, total, len(docs))
