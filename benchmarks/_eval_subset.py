"""The deterministic evaluation subset shared by the quality report and the peer baseline.

Full test splits take hours on a 2-core CPU, so both report scripts evaluate on the first documents
of a split: sentence corpora (GENIA, JNLPBA, BC2GM, LINNAEUS: one document per sentence) give their
first ``sentences`` documents; document corpora (NCBI-Disease, BC5CDR, S800 abstracts, CMeEE records)
give their first documents until those hold at least ``sentences`` sentences (counted with llmner's
own sentence splitter). ``min_gold`` extends a subset until it holds that many gold mentions (LINNAEUS
has 19 in its first 200 test sentences). Every system is scored on exactly these documents, so the rows compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmner.data_processing.corpora import is_labeled, load_corpus
from llmner.doc import Document
from llmner.evaluation.subsets import count_sentences, leading_documents

# The split each corpus is reported on: CMeEE's test set has no labels, so its dev set stands in.
REPORT_SPLITS: dict[str, str] = {
    "ncbi_disease": "test", "bc5cdr": "test", "genia": "test", "jnlpba": "test", "bc2gm": "test",
    "linnaeus": "test", "s800": "test", "cmeee": "dev",
}


@dataclass(frozen=True, slots=True)
class EvalSubset:
    """The first ``len(documents)`` documents of ``corpus``/``split`` (gold entities attached)."""

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
    """The first documents of the split holding at least ``sentences`` sentences (None: the whole split)
    and at least ``min_gold`` gold mentions (sparse corpora such as LINNAEUS need more sentences).
    ``from_end`` takes the last documents instead (kept in split order): the mixture ablation selects
    on the tail of each dev split, apart from CMeEE dev's head, which the quality report scores."""
    split = split or REPORT_SPLITS.get(corpus, "test")
    if not is_labeled(corpus, split):
        raise ValueError(f"{corpus}/{split} has no gold labels")
    docs = load_corpus(corpus, split)
    chosen, total = leading_documents(docs, sentences, min_gold, from_end)
    return EvalSubset(corpus, split, chosen, total, len(docs))


def per_document_counts(gold: Sequence[Document], predicted: Sequence[Document]) -> list[dict[str, list[int]]]:
    """Strict [tp, fp, fn] of each document, overall ("all") and per type (for bootstrap intervals)."""
    from llmner.evaluation.scorer import score

    out = []
    for g, p in zip(gold, predicted):
        report = score([g], [p])
        counts = {"all": [report.strict.tp, report.strict.fp, report.strict.fn]}
        for etype, c in report.per_type.items():
            counts[etype] = [c.tp, c.fp, c.fn]
        out.append(counts)
    return out
