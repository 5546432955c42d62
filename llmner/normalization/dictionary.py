"""The dictionary normalizer: names with identifiers, matched in four steps.

1. exact: the mention as written is a name in the dictionary;
2. normalized: the same name up to case, then the same :func:`~llmner.normalization.text.string_key`
   (case, punctuation, plural, word order); a coordinated mention ("breast and ovarian cancer")
   whose conjuncts each match this way names several concepts (``MESH:D001943|MESH:D010051``);
3. abbreviation: a short form defined in the document ("... myocardial infarction (MI) ...") is
   looked up through its long form; the document's definition is tried before the dictionary's own
   entry for the short form, because short forms are ambiguous across documents (APC, MS, PD);
   then variants of the mention that keep its concept, each looked up as in step 2 (``expanded``:
   in-document short forms inside a longer mention, "deficiency of ASPA" -> "deficiency of
   aspartoacylase"; ``stripped``, per type: salt / hydrate words and stereo prefixes of a drug,
   "metformin hydrochloride" -> "metformin"; modifiers and then the mode of inheritance of a disease,
   "bilateral sporadic aniridia" -> "aniridia"; a generic head dropped or added, "Krabbe disease" ->
   "Krabbe", "Reye" -> "Reye syndrome"; an organ's "-pathy" spelled as MeSH heads spell it, "optic
   neuropathy" -> "optic nerve disease"; last, with ``salt_free_names``, the mention against the
   dictionary's names without their salt words, "tiapride" -> "Tiapride Hydrochloride");
   (optional, ``use_head_backoff``) the longest word suffix that matches: the corpora link an unlisted
   specific mention ("nonocular tumors") to its head's concept;
4. nearest neighbour: cosine similarity of character n-gram TF-IDF vectors between the mention and
   every name; at or above ``ngram_threshold`` it links, below it the answer is NIL. Or
   (``neighbour="encoder"``) the cosine of sentence embeddings of the mention and every name, or
   (``neighbour="rerank"``) the n-gram neighbour's ``rerank_k`` nearest names reordered by that
   cosine, which then meets the threshold (see :mod:`llmner.normalization.encoder`; a synonym
   encoder is trained by :mod:`llmner.training.synonym_encoder`).
   Before it (optional, ``use_document``), the document's other mentions: a mention not linked by
   steps 1-3 takes the identifier of a same-type mention of the document linked by name (steps 1-3)
   that it abbreviates ("DVP" after "divalproex") or nearly spells ("tobramicyn" after "tobramycin";
   character-trigram Dice at or above ``document_threshold``).

A name linked to several identifiers (training mentions disagree, or a vocabulary repeats a name)
answers with the most frequent one (``wider_tie_break``: identifiers with as many votes are ordered by
the votes of the names sharing its case-folded form, then its key: "myalgia" is a corpus mention of
two concepts, "Myalgia" the MeSH name of one); the score is that identifier's share of the name's votes, times a
step factor (exact 1.0, normalized 0.95, abbreviation and expanded 0.9, stripped 0.85), the cosine for
the n-gram step, or 0.8 times the Dice coefficient (1.0 for a short form) for the document step.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmner.doc import Document, Entity
from llmner.errors import ValidationError
from llmner.normalization.base import NIL, Link
from llmner.normalization.text import (
    INHERITANCE_WORDS,
    MODIFIER_WORDS,
    SALT_WORDS,
    abbreviations,
    char_trigrams,
    expand_abbreviations,
    is_short_form,
    matches_short_form,
    organ_disease_words,
    string_key,
    strip_words,
    surface_key,
)

if TYPE_CHECKING:   # imported at run time only by the encoder neighbours (it loads the model stack)
    from llmner.normalization.encoder import EncoderIndex

# "X, Y and Z", "X and/or Y", "X or Y", "X/Y"
_CONJUNCTION = re.compile(r"\s*,\s*(?:and/or|and|or)?\s*|\s+(?:and/or|and|or)\s+|\s*/\s*")
_GENERIC_HEADS = frozenset({"disease", "diseases", "syndrome", "syndromes", "disorder", "disorders"})
NEIGHBOURS = ("ngram", "encoder", "rerank")
_STEP_FACTOR = {"exact": 1.0, "normalized": 0.95, "abbreviation": 0.9, "expanded": 0.9, "stripped": 0.85,
                "head": 0.6, "document": 0.8}


@dataclass(slots=True)
class DictionaryConfig:
    ngram_threshold: float = 0.8          # cosine below which the nearest neighbour is NIL
    ngram_range: tuple[int, int] = (3, 3)
    use_abbreviations: bool = True
    use_ngrams: bool = True
    use_head_backoff: bool = False        # try the mention's head (a word suffix) before the n-gram neighbour
    min_name_length: int = 2              # shorter names are too ambiguous to keep
    min_ngram_chars: int = 5              # a shorter mention (an undefined acronym) has no useful n-gram neighbour
    neighbour: str = "ngram"              # step 4: "ngram" (character 3-gram TF-IDF), "encoder" (sentence embeddings
                                          # of every name) or "rerank" (the n-gram shortlist, closest by the encoder)
    encoder: str = "packaged:minilm"      # the encoder of neighbour="encoder" / "rerank" (a reference or a directory)
    rerank_k: int = 20                    # the n-gram shortlist that neighbour="rerank" reorders
    embedding_cache: str = ""             # neighbour="encoder": a directory keeping the names' embeddings between
                                          # processes ("" = none; load_normalizer uses store.embeddings_dir())
    expand_abbreviations: bool = True     # in-document short forms inside a longer mention ("deficiency of ASPA")
    strip_salts: bool = False             # drop salt / hydrate words and stereo prefixes ("metformin hydrochloride")
    strip_modifiers: bool = False         # drop modifiers that keep the concept ("sporadic aniridia"), then
                                          # also the mode of inheritance ("autosomal dominant X")
    disease_suffixes: bool = False        # "Krabbe disease" <-> "Krabbe", "Reye" <-> "Reye syndrome"
    use_document: bool = False            # a NIL mention takes the link of a same-type mention of the document
    document_threshold: float = 0.6       # ... whose character trigrams it shares this much (Dice), or whose short form it is
    wider_tie_break: bool = False         # identifiers tied on a name: the one with more votes on its case-folded form, then its key
    single_letter_abbreviations: bool = False   # "triamcinolone (T)" defines "T" (only a mention that is the letter uses it)
    organ_disease_words: bool = False     # "optic neuropathy" -> "optic nerve disease", "retinopathy" -> "retinal disease"
    salt_free_names: bool = False         # a mention may match a name without its salt words ("tiapride": "Tiapride Hydrochloride")


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


def _best(votes: Counter[str], *wider: Counter[str] | None) -> tuple[str, float]:
    """The identifier with the most votes and its share of them. Identifiers with as many votes are
    told apart by the votes of ``wider`` (the same name matched more loosely, in order), then by
    identifier (a stable tie-break)."""
    total = sum(votes.values())
    top = max(votes.values())
    tied = [c for c, n in votes.items() if n == top]
    for more in wider:
        if len(tied) < 2:
            break
        if more:
            most = max(more.get(c, 0) for c in tied)
            tied = [c for c in tied if more.get(c, 0) == most]
    return min(tied), top / total


class DictionaryNormalizer:
    """:class:`~llmner.normalization.base.Normalizer` over one :class:`Dictionary`."""

    def __init__(self, dictionary: Dictionary, config: DictionaryConfig | None = None) -> None:
        self.config = config or DictionaryConfig()
        self.exact: dict[str, Counter[str]] = {}
        folded: dict[str, Counter[str]] = defaultdict(Counter)
        keyed: dict[str, Counter[str]] = defaultdict(Counter)
        for name, votes in dictionary.names.items():
            if len(name) < self.config.min_name_length:
                continue
            self.exact[name] = votes
            folded[name.casefold()].update(votes)
            key = string_key(name)
            if key:
                keyed[key].update(votes)
        self.keyed = dict(keyed)
        self.folded = dict(folded)
        # salt_free_names: keys of the names that carry salt words, the salt words dropped; consulted
        # only when every other name step has failed, so a name of its own always wins.
        salt_free: dict[str, Counter[str]] = defaultdict(Counter)
        if self.config.salt_free_names:
            for name, votes in self.exact.items():
                bare = strip_words(name, SALT_WORDS, stereo=True)
                key = string_key(bare) if bare else ""
                if key:
                    salt_free[key].update(votes)
        self.salt_free = dict(salt_free)
        self._index = None   # built on the first n-gram query (most mentions never need it)
        self._encoded = None
        if self.config.neighbour not in NEIGHBOURS:
            raise ValidationError(f"unknown neighbour {self.config.neighbour!r} (expected one of {', '.join(NEIGHBOURS)})")

    # ---- steps ---------------------------------------------------------------------------------
    def _lookup(self, text: str) -> Link | None:
        name = " ".join(text.split())
        tie_break = self.config.wider_tie_break
        votes = self.exact.get(name)
        if votes:
            wider = ((self.folded.get(name.casefold()), self.keyed.get(string_key(name)))
                     if tie_break and len(votes) > 1 else ())
            curie, share = _best(votes, *wider)
            return Link(curie, share * _STEP_FACTOR["exact"], "exact")
        folded = self.folded.get(name.casefold())
        # The key (plural, word order) is worked out only when the case-folded name did not match or is tied.
        keyed = self.keyed.get(string_key(name)) if not folded or (tie_break and len(folded) > 1) else None
        votes = folded or keyed
        if votes:
            wider = (keyed,) if tie_break and folded and len(votes) > 1 else ()
            curie, share = _best(votes, *wider)
            return Link(curie, share * _STEP_FACTOR["normalized"], "normalized")
        return None

    def _composite(self, text: str) -> Link | None:
        """A coordinated mention whose conjuncts, each completed with the shared head, all match:
        "breast and ovarian cancer" -> breast cancer | ovarian cancer."""
        parts = [p.strip() for p in _CONJUNCTION.split(text) if p and p.strip()]
        if len(parts) < 2:
            return None
        last = parts[-1].split()
        for head_len in (1, 2):
            if len(last) <= head_len:
                break
            head = " ".join(last[-head_len:])
            names = [p if p.split()[-head_len:] == last[-head_len:] else f"{p} {head}" for p in parts]
            links = [self._lookup(n) for n in names]
            if all(link is not None for link in links):
                curies = list(dict.fromkeys(link.curie for link in links if link is not None))
                score = min(link.score for link in links if link is not None)
                return Link("|".join(c for c in curies if c), score * _STEP_FACTOR["normalized"], "composite")
        return None

    def _variants(self, text: str, defined: dict[str, str]) -> Link | None:
        """The mention rewritten by the rules that keep its concept, each looked up as in step 2:
        in-document short forms expanded inside it, then salt / stereo words or modifiers dropped."""
        candidates: list[tuple[str, str]] = []
        if self.config.expand_abbreviations:
            expanded = expand_abbreviations(text, defined)
            if expanded:
                candidates.append((expanded, "expanded"))
        if self.config.organ_disease_words:
            for base in [text] + [c for c, _ in candidates]:
                spelled = organ_disease_words(base)
                if spelled:
                    candidates.append((spelled, "stripped"))
        for base in [text] + [c for c, _ in candidates]:
            if self.config.strip_salts:
                stripped = strip_words(base, SALT_WORDS, stereo=True)
                if stripped:
                    candidates.append((stripped, "stripped"))
            if self.config.strip_modifiers:
                stripped = strip_words(base, MODIFIER_WORDS)
                if stripped:
                    candidates.append((stripped, "stripped"))
                stripped = strip_words(base, MODIFIER_WORDS | INHERITANCE_WORDS)
                if stripped:
                    candidates.append((stripped, "stripped"))
        if self.config.disease_suffixes:
            for base in [text] + [c for c, _ in candidates]:
                words = base.split()
                if len(words) > 1 and words[-1].casefold() in _GENERIC_HEADS:
                    candidates.append((" ".join(words[:-1]), "stripped"))
                else:
                    candidates += [(f"{base} {head}", "stripped") for head in ("disease", "syndrome")]
        for variant, method in candidates:
            found = self._lookup(variant) or self._composite(variant)
            if found is not None:
                return Link(found.curie, found.score * _STEP_FACTOR[method], method)
        for variant in ([text] + [c for c, _ in candidates]) if self.salt_free else ():
            key = string_key(variant)
            # not for an acronym or a symbol ("K", "T4"): too short to tell the salts of different parents apart
            votes = self.salt_free.get(key) if len(key) >= self.config.min_ngram_chars else None
            if votes:
                curie, share = _best(votes)
                return Link(curie, share * _STEP_FACTOR["stripped"], "stripped")
        return None

    def _document(self, entities: Sequence[Entity], doc: Document, out: list[Link | None]) -> None:
        """Before step 4 (``use_document``): a mention not linked by name takes the identifier of a
        mention of the same document that it abbreviates ("DVP" after "divalproex") or nearly spells
        ("tobramicyn" after "tobramycin": character-trigram Dice at or above ``document_threshold``).
        The other mention must have been linked by name (steps 1-3)."""
        linked = {}
        for ent, link in zip(entities, out):
            if link is not None and link.curie and link.method not in (self.config.neighbour, "document", "head"):
                linked.setdefault(" ".join((ent.text or doc.text[ent.start : ent.end]).split()), link)
        if not linked:
            return
        grams = {t: char_trigrams(t) for t in linked}
        for i, ent in enumerate(entities):
            if out[i] is not None:
                continue
            text = " ".join((ent.text or doc.text[ent.start : ent.end]).split())
            best: tuple[float, str] | None = None
            if is_short_form(text):
                hits = {linked[t].curie for t in linked if matches_short_form(text, t)}
                if len(hits) == 1:
                    best = (1.0, next(iter(hits)))    # type: ignore[arg-type]
            if best is None and len(text) >= self.config.min_ngram_chars:
                g = char_trigrams(text)
                scored = sorted(((2 * len(g & grams[t]) / (len(g) + len(grams[t])), t) for t in linked), reverse=True)
                if scored and scored[0][0] >= self.config.document_threshold:
                    best = (scored[0][0], linked[scored[0][1]].curie)   # type: ignore[assignment]
            if best is not None:
                out[i] = Link(best[1], best[0] * _STEP_FACTOR["document"], "document")

    def _head(self, text: str) -> Link | None:
        """The longest proper word suffix that matches ("nonocular tumors" -> "tumors"): the mention's
        head names its broader concept, which is how the corpora link an unlisted specific mention."""
        words = text.split()
        for i in range(1, len(words)):
            suffix = " ".join(words[i:])
            if len(suffix) < 4:
                break
            found = self._lookup(suffix)
            if found is not None:
                return Link(found.curie, found.score * _STEP_FACTOR["head"], "head")
        return None

    def _ngram_index(self):
        if self._index is None:
            import numpy as np
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.preprocessing import normalize

            surfaces: dict[str, Counter[str]] = defaultdict(Counter)
            shown: dict[str, str] = {}     # the name the reranker encodes for a surface: its first, sorted
            for name in sorted(self.exact):
                key = surface_key(name)
                surfaces[key].update(self.exact[name])
                shown.setdefault(key, name)
            names = [n for n in sorted(surfaces) if n]
            # norm=None: queries are normalized by hand, counting the n-grams no name has (see nearest()).
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=self.config.ngram_range, lowercase=False,
                                  sublinear_tf=True, dtype=np.float32, norm=None)
            matrix = normalize(vec.fit_transform(names)) if names else None
            self._index = (vec, matrix, [_best(surfaces[n])[0] for n in names], [shown[n] for n in names])
        return self._index

    def warm(self) -> DictionaryNormalizer:
        if self.config.neighbour == "encoder":
            self.encoder_index()
        else:
            self._ngram_index()
            if self.config.neighbour == "rerank":
                self._encoder()
        return self

    def _encoder(self):
        from llmner.normalization.encoder import shared_encoder

        return shared_encoder(self.config.encoder)

    def encoder_index(self) -> EncoderIndex:
        """Step 4's index of every name with neighbour="encoder" (built, or read back from
        ``embedding_cache``, on the first call)."""
        if self._encoded is None:
            from llmner.normalization.encoder import EncoderIndex, shared_encoder

            folded: dict[str, Counter[str]] = defaultdict(Counter)
            shown: dict[str, str] = {}
            for name in sorted(self.exact):   # the encoders here are uncased: one row per case-folded name
                folded[name.casefold()].update(self.exact[name])
                shown.setdefault(name.casefold(), name)
            keys = sorted(folded)
            self._encoded = EncoderIndex([shown[k] for k in keys], [_best(folded[k])[0] for k in keys],
                                         shared_encoder(self.config.encoder), cache=self.config.embedding_cache or None)
        return self._encoded

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """The nearest name's identifier and cosine for each text (None when there is no name).

        An n-gram of the query that no name has still counts in the query's length (weighted like
        the rarest known n-gram): otherwise "nonocular tumors" would be as close to "tumors" as
        "tumors" itself, its unknown part silently dropped."""
        import numpy as np

        if self.config.neighbour == "encoder":
            return self.encoder_index().nearest(texts)
        if self.config.neighbour == "rerank":
            from llmner.normalization.encoder import rerank

            return rerank(self._encoder(), texts, self.shortlists(texts, self.config.rerank_k))
        vec, matrix, ids, _ = self._ngram_index()
        if matrix is None or not texts:
            return [(None, 0.0)] * len(texts)
        keys = [surface_key(t) for t in texts]
        q = vec.transform(keys)
        analyze = vec.build_analyzer()
        max_idf = float(vec.idf_.max())
        sims = q @ matrix.T
        out = []
        for row, key in enumerate(keys):
            grams = Counter(analyze(key))
            oov = [n for g, n in grams.items() if g not in vec.vocabulary_]
            known = q.getrow(row).data
            norm = float(np.sqrt((known ** 2).sum() + sum(((1 + np.log(n)) * max_idf) ** 2 for n in oov)))
            r = sims.getrow(row)
            if r.nnz == 0 or norm == 0.0:
                out.append((None, 0.0))
                continue
            j = r.indices[r.data.argmax()]
            out.append((ids[j], float(r.data.max()) / norm))
        return out

    def shortlists(self, texts: Sequence[str], k: int) -> list[list[tuple[str, str]]]:
        """The ``k`` names nearest each text by character n-grams (one per surface key), as
        (name, identifier), nearest first; names sharing no n-gram with the text are left out."""
        import numpy as np

        vec, matrix, ids, shown = self._ngram_index()
        if matrix is None or not texts:
            return [[] for _ in texts]
        sims = (vec.transform([surface_key(t) for t in texts]) @ matrix.T).tocsr()
        out = []
        for row in range(len(texts)):
            r = sims.getrow(row)
            top = r.indices[np.argsort(-r.data, kind="stable")[:k]]
            out.append([(shown[j], ids[j]) for j in top])
        return out

    # ---- the interface -------------------------------------------------------------------------
    def link(self, entities: Sequence[Entity], doc: Document) -> list[Link]:
        defined = abbreviations(doc.text, self.config.single_letter_abbreviations) if self.config.use_abbreviations else {}
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
            if link is None:
                link = self._composite(text)
            if link is None:
                link = self._variants(text, defined)
            if link is None and self.config.use_head_backoff:
                link = self._head(long_form or text)
            out.append(link)
            query = long_form or text
            if link is None and self.config.use_ngrams and len(surface_key(query)) >= self.config.min_ngram_chars:
                pending.append((i, query, self.config.neighbour))
        if self.config.use_document:
            # Before the neighbour: a same-document mention is better evidence than the nearest
            # name in the whole vocabulary (dev: both steps' links are right more often this way).
            self._document(entities, doc, out)
            pending = [p for p in pending if out[p[0]] is None]
        if pending:
            for (i, _, method), (curie, cos) in zip(pending, self.nearest([t for _, t, _ in pending])):
                if curie is not None and cos >= self.config.ngram_threshold:
                    out[i] = Link(curie, cos, method)
        return [link or NIL for link in out]
