"""String keys for dictionary lookup and abbreviation resolution within a document.

``string_key`` is the "normalized string" step of matching: case, punctuation, plural and word
order do not matter ("Cancers, Breast" and "breast cancer" share a key). ``abbreviations`` is the
Schwartz & Hearst (2003) algorithm: a short form in parentheses after its long form.
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Function words ("cancer of the breast" = "breast cancer"); dropped from a key unless nothing else is left.
_STOP = frozenset({"of", "the", "and", "or", "in", "with", "to", "a", "an", "by", "for", "on", "s"})


def singular(word: str) -> str:
    """A cheap English singular (keys only; never shown): tumours -> tumour, deficiencies -> deficiency."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        return word[:-1]
    return word


# Spellings and word forms that name the same thing in disease and chemical names: British/American
# spelling, the adjective MeSH uses for an organ ("Kidney Neoplasms" for "renal tumours"), and the head
# nouns the NCBI-Disease and BC5CDR guidelines link to one MeSH concept ("tumor", "cancer" ->
# Neoplasms). Keys only: a key never leaves the normalizer.
CANONICAL_WORDS: dict[str, str] = {
    "tumour": "neoplasm", "tumor": "neoplasm", "cancer": "neoplasm", "neoplasia": "neoplasm",
    "carcinoma": "neoplasm", "malignancy": "neoplasm",
    "renal": "kidney", "hepatic": "liver", "cardiac": "heart", "pulmonary": "lung", "gastric": "stomach",
    "prostatic": "prostate", "ovary": "ovarian", "colonic": "colon", "cerebral": "brain", "ocular": "eye",
    "anaemia": "anemia", "leukaemia": "leukemia", "haemorrhage": "hemorrhage", "oedema": "edema",
    "oestrogen": "estrogen", "sulphate": "sulfate", "sulphur": "sulfur", "aluminium": "aluminum",
    "caesium": "cesium", "haemolytic": "hemolytic", "ischaemia": "ischemia", "ischaemic": "ischemic",
    "abnormality": "disease", "anomaly": "disease", "disorder": "disease", "defect": "disease",
}


def tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for t in _TOKEN.findall(text):
        t = singular(t)
        out.append(CANONICAL_WORDS.get(t, t))
    return out


def string_key(text: str) -> str:
    """Case-, punctuation-, plural- and word-order-insensitive key; '' when nothing is left."""
    toks = tokens(text)
    kept = [t for t in toks if t not in _STOP] or toks
    return " ".join(sorted(kept))


def surface_key(text: str) -> str:
    """Case- and punctuation-insensitive key that keeps word order (for character n-grams)."""
    return " ".join(tokens(text))


# ---- Schwartz & Hearst abbreviation detection ---------------------------------------------------------

_PAREN = re.compile(r"\(([^()]{1,40})\)")


def _valid_short_form(sf: str) -> bool:
    if not (2 <= len(sf) <= 10) or len(sf.split()) > 2:
        return False
    return any(c.isalpha() for c in sf) and sf[0].isalnum()


def _best_long_form(sf: str, candidate: str) -> str | None:
    """The shortest suffix of ``candidate`` that contains the short form's characters in order,
    its first character at the start of a word (the published algorithm, right to left)."""
    s = len(sf) - 1
    l = len(candidate) - 1
    sf_l, lf_l = sf.lower(), candidate.lower()
    while s >= 0:
        c = sf_l[s]
        if not c.isalnum():
            s -= 1
            continue
        while l >= 0 and (lf_l[l] != c or (s == 0 and l > 0 and lf_l[l - 1].isalnum())):
            l -= 1
        if l < 0:
            return None
        l -= 1
        s -= 1
    start = candidate.rfind(" ", 0, l + 1) + 1
    long_form = candidate[start:].strip()
    return long_form or None


def abbreviations(text: str) -> dict[str, str]:
    """Short form -> long form for every ``long form (SF)`` in ``text`` (the first definition wins)."""
    out: dict[str, str] = {}
    for m in _PAREN.finditer(text):
        sf = m.group(1).strip()
        if ";" in sf or "," in sf:      # "(SF, other words)": keep the part before the comma
            sf = re.split(r"[;,]", sf)[0].strip()
        if not _valid_short_form(sf) or sf in out:
            continue
        before = text[: m.start()].rstrip()
        # The published window: at most min(|SF| + 5, 2|SF|) words before the parenthesis, in the same sentence.
        sentence_start = max(before.rfind(". "), before.rfind("? "), before.rfind("! ")) + 1
        words = before[sentence_start:].split()
        window = min(len(sf) + 5, 2 * len(sf))
        candidate = " ".join(words[-window:])
        if not candidate:
            continue
        long_form = _best_long_form(sf, candidate)
        if long_form and len(long_form) > len(sf) and sf.lower() not in long_form.lower().split():
            out[sf] = long_form
    return out
