"""The dictionary normalizer: names with identifiers, matched in four steps.

1. exact: the mention as written is a name in the dictionary;
2. normalized: same :func:`~llmner.normalization.text.string_key` (case, punctuation, plural, word order);
3. abbreviation: a short form defined in the document ("... myocardial infarction (MI) ...") is
   looked up through its long form; the document's definition is tried before the dictionary's own
   entry for the short form, because short forms are ambiguous across documents (APC, MS, PD);
4. nearest neighbour: cosine similarity of character n-gram TF-IDF vectors between the mention and
   every name; at or above ``ngram_threshold`` it links, below it the answer is NIL.

A name linked to several identifiers (training mentions disagree, or a vocabulary repeats a name)
answers with the most frequent one; the score is that identifier's share of the name's votes, times a
step factor (exact 1.0, normalized 0.95, abbreviation 0.9), or the cosine for the n-gram step.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmner.doc import Document, Entity
from llmner.errors import ValidationError
from llmner.normalization.base import NIL, Link
from llmner.normalization.text import abbreviations, string_key, surface_key

_STEP_FACTOR = {"exact": 1.0, "normalized": 0.95, "abbreviation": 0.9}


@dataclass(slots=True)
class DictionaryConfig:
    ngram_threshold: float = 0.8          # cosine below which the nearest neighbour is NIL
    ngram_range: tuple[int, int] = (3, 3)
    use_abbreviations: bool = True
    use_ngrams: bool = True
    min_name_length: int = 2              # shorter names are too ambiguous to keep
    min_ngram_chars: int = 5              # a shorter mention (an undefined acronym) has no useful n-gram neighbour


class Dictionary:
    """Names -> votes per identifier. Corpus mentions vote 2 each, vocabulary names 1."""

    def __init__(self) -> None:
        self.names: dict[str, Counter[str]] = defaultdict(Counter)

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, curie: str, weight: int = 1) -> None:
        name = " ".join(name.split())
        if name and curie:
            self.names[name][curie] += weight

    def update(self, entries: Iterable[tuple[str, str]], weight: int = 1) -> Dictionary:
        for curie, name in entries:
            self.add(name, curie, weight)
        return self

    def add_mentions(self, docs: Iterable[Document], etype: str, weight: int = 2) -> Dictionary:
        """The identifier-annotated mentions of ``etype`` in gold documents (NIL mentions skipped).
        A mention outvotes a vocabulary name (weight 2 against 1): the annotators' choice for a
        name is the convention the corpus scores against."""
        for doc in docs:
            for ent in doc.entities:
                if ent.type == etype and ent.normalized_id:
                    self.add(ent.text or doc.text[ent.start : ent.end], ent.normalized_id, weight)
        return self

    def identifiers(self) -> set[str]:
        return {c for votes in self.names.values() for c in votes}

    def save(self, path: str | Path) -> None:
        """TSV ``curie<TAB>votes<TAB>name``, sorted (diffs of a rebuilt dictionary stay readable)."""
        rows = sorted((name, curie, n) for name, votes in self.names.items() for curie, n in votes.items())
        Path(path).write_text("".join(f"{c}\t{n}\t{name}\n" for name, c, n in rows), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Dictionary:
        d = cls()
        for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3 or not cols[1].isdigit():
                raise ValidationError(f"{path}:{lineno}: expected 'curie<TAB>votes<TAB>name'")
            d.add(cols[2], cols[0], int(cols[1]))
        return d


def _best(votes: Counter[str]) -> tuple[str, float]:
    total = sum(votes.values())
    curie, n = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))   # most votes, then a stable tie-break
    return curie, n / total


class DictionaryNormalizer:
    """:class:`~llmner.normalization.base.Normalizer` over one :class:`Dictionary`."""

    def __init__(self, dictionary: Dictionary, config: DictionaryConfig | None = None) -> None:
        self.config = config or DictionaryConfig()
        self.exact: dict[str, Counter[str]] = {}
        keyed: dict[str, Counter[str]] = defaultdict(Counter)
        for name, votes in dictionary.names.items():
            if len(name) < self.config.min_name_length:
                continue
            self.exact[name] = votes
            key = string_key(name)
            if key:
                keyed[key].update(votes)
        self.keyed = dict(keyed)
        self._index = None   # built on the first n-gram query (most mentions never need it)

    # ---- steps ---------------------------------------------------------------------------------
    def _lookup(self, text: str) -> Link | None:
        votes = self.exact.get(" ".join(text.split()))
        if votes:
            curie, share = _best(votes)
            return Link(curie, share * _STEP_FACTOR["exact"], "exact")
        votes = self.keyed.get(string_key(text))
        if votes:
            curie, share = _best(votes)
            return Link(curie, share * _STEP_FACTOR["normalized"], "normalized")
        return None

    def _ngram_index(self):  # noqa: ANN202 - (vectorizer, matrix, identifiers)
        if self._index is None:
            import numpy as np
            from sklearn.feature_extraction.text import TfidfVectorizer

            surfaces: dict[str, Counter[str]] = defaultdict(Counter)
            for name, votes in self.exact.items():
                surfaces[surface_key(name)].update(votes)
            names = [n for n in sorted(surfaces) if n]
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=self.config.ngram_range, lowercase=False,
                                  sublinear_tf=True, dtype=np.float32)
            matrix = vec.fit_transform(names) if names else None
            self._index = (vec, matrix, [_best(surfaces[n])[0] for n in names])
        return self._index

    def warm(self) -> DictionaryNormalizer:
        self._ngram_index()
        return self

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """The nearest name's identifier and cosine for each text (None when there is no name)."""
        vec, matrix, ids = self._ngram_index()
        if matrix is None or not texts:
            return [(None, 0.0)] * len(texts)
        sims = vec.transform([surface_key(t) for t in texts]) @ matrix.T
        out = []
        for row in range(sims.shape[0]):
            r = sims.getrow(row)
            if r.nnz == 0:
                out.append((None, 0.0))
                continue
            j = r.indices[r.data.argmax()]
            out.append((ids[j], float(r.data.max())))
        return out

    # ---- the interface -------------------------------------------------------------------------
    def link(self, entities: Sequence[Entity], doc: Document) -> list[Link]:
        defined = abbreviations(doc.text) if self.config.use_abbreviations else {}
        out: list[Link | None] = []
        pending: list[tuple[int, str, str]] = []   # (index, text to embed, method if linked)
        for i, ent in enumerate(entities):
            text = ent.text or doc.text[ent.start : ent.end]
            long_form = defined.get(text.strip())
            link = None
            if long_form:
                found = self._lookup(long_form)
                if found is not None:
                    link = Link(found.curie, found.score * _STEP_FACTOR["abbreviation"], "abbreviation")
            if link is None:
                link = self._lookup(text)
            out.append(link)
            query = long_form or text
            if link is None and self.config.use_ngrams and len(surface_key(query)) >= self.config.min_ngram_chars:
                pending.append((i, query, "ngram"))
        if pending:
            for (i, _, method), (curie, cos) in zip(pending, self.nearest([t for _, t, _ in pending])):
                if curie is not None and cos >= self.config.ngram_threshold:
                    out[i] = Link(curie, cos, method)
        return [link or NIL for link in out]
