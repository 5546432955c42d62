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


def _valid_short_form(sf: str, single_letters: bool = False) -> bool:
    if len(sf) == 1:
        return single_letters and sf.isalpha()
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


def abbreviations(text: str, single_letters: bool = False) -> dict[str, str]:
    """Short form -> long form for every ``long form (SF)`` in ``text`` (the first definition wins).

    ``single_letters``: also one-letter short forms ("methylprednisolone (M), or triamcinolone (T)");
    the algorithm then takes the one word before the parenthesis that starts with the letter. Such a
    definition is only worth looking up for a mention that is the letter itself, so
    :func:`expand_abbreviations` never expands one inside a longer mention."""
    out: dict[str, str] = {}
    for m in _PAREN.finditer(text):
        sf = m.group(1).strip()
        if ";" in sf or "," in sf:      # "(SF, other words)": keep the part before the comma
            sf = re.split(r"[;,]", sf)[0].strip()
        if not _valid_short_form(sf, single_letters) or sf in out:
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


# ---- removable words: variants of a name that keep its concept ----------------------------------------

# Salt, hydrate and counter-ion words of a drug name ("metformin hydrochloride", "piperacillin sodium",
# "bupropion HCl"): MeSH and the corpora link the salt to the parent compound unless the salt has its own name.
SALT_WORDS = frozenset({
    "hydrochloride", "dihydrochloride", "hcl", "hydrobromide", "hbr", "sodium", "disodium", "potassium",
    "calcium", "magnesium", "sulfate", "sulphate", "bisulfate", "mesylate", "mesilate", "maleate", "fumarate",
    "tartrate", "bitartrate", "citrate", "succinate", "besylate", "besilate", "tosylate", "phosphate",
    "acetate", "lactate", "gluconate", "bromide", "chloride", "iodide", "nitrate", "isethionate",
    "hydrate", "monohydrate", "dihydrate", "trihydrate", "anhydrous", "salt", "salts", "free", "base",
})
# Stereo and optical-rotation prefixes: "(+)-", "(-)-", "(±)-", "(R)-", "(S)-", "dl-", "d-", "l-".
_STEREO = re.compile(r"^(?:\((?:[+\-±]|[RS]|[RS],[RS]|[+\-]/[+\-])\)-?|dl-|d-|l-|DL-)", re.IGNORECASE)

# Modifiers of a disease mention that the corpora link to the unmodified concept ("sporadic aniridia",
# "bilateral retinoblastoma", "primary lipomas", "isolated thrombocytopenia"): words about who has it,
# where on the body's sides, or how it was found, not what it is. Never "acute", "chronic",
# "hereditary", "congenital" or "malignant": MeSH has separate concepts for those.
MODIFIER_WORDS = frozenset({
    "sporadic", "bilateral", "unilateral", "primary", "isolated", "classical", "classic", "typical",
    "atypical", "idiopathic", "severe", "mild", "moderate", "progressive", "recurrent", "multiple",
    "adult", "adulthood", "childhood", "human", "clinical", "overt", "subclinical", "symptomatic",
    "asymptomatic", "generalized", "generalised", "diffuse", "focal", "persistent", "transient",
    "significant", "marked", "frank", "possible", "probable", "apparent", "documented", "fatal",
})
# How it is inherited ("autosomal dominant X", "familial X"): tried after MODIFIER_WORDS, since MeSH
# names some inherited forms on their own ("Hereditary Breast and Ovarian Cancer Syndrome").
INHERITANCE_WORDS = frozenset({"autosomal", "dominant", "recessive", "familial", "inherited", "hereditary",
                               "dominantly", "recessively", "germline", "sporadic"})


def strip_words(text: str, words: frozenset[str], stereo: bool = False) -> str | None:
    """``text`` without the removable ``words`` (and, with ``stereo``, a leading stereo prefix); None
    when nothing was removed or nothing would be left."""
    t = " ".join(text.split())
    changed = False
    if stereo:
        m = _STEREO.match(t)
        if m and len(t) > m.end():
            t, changed = t[m.end():], True
    parts = re.split(r"(\s+|-)", t)
    kept = [p for p in parts if p.casefold() not in words]
    if len([p for p in kept if p.strip() and p != "-"]) < len([p for p in parts if p.strip() and p != "-"]):
        changed = True
    out = re.sub(r"\s+", " ", "".join(kept)).strip(" -")
    return out if changed and out and any(c.isalpha() for c in out) else None


def expand_abbreviations(text: str, defined: dict[str, str]) -> str | None:
    """``text`` with each in-document short form among its words replaced by its long form
    ("deficiency of ASPA" -> "deficiency of aspartoacylase", "HPT-JT syndrome" ->
    "hyperparathyroidism-jaw tumor syndrome"); None when no word is a defined short form."""
    if not defined:
        return None
    parts = re.split(r"(\s+|-|/)", text)
    out = [defined.get(p, p) if len(p.strip()) > 1 else p for p in parts]
    return "".join(out) if out != parts else None


# An organ's "-pathy" is how MeSH heads name that organ's diseases ("optic neuropathy" = "Optic Nerve
# Diseases", "retinopathy" = "Retinal Diseases", "encephalopathy" = "Brain Diseases"): the combining
# form -> the word of those headings. Only whole combining forms: "cardiomyopathy" stays as it is.
PATHY_ORGANS: dict[str, str] = {
    "neuro": "nerve", "nephro": "kidney", "encephalo": "brain", "retino": "retinal", "hepato": "liver",
    "arthro": "joint", "myo": "muscular", "cardio": "heart", "angio": "vascular", "vasculo": "vascular",
    "myelo": "spinal cord", "osteo": "bone", "entero": "intestinal", "ophthalmo": "eye", "dermato": "skin",
    "pneumo": "lung", "uro": "urologic", "gastro": "stomach",
}
_PATHY = re.compile(r"\b([A-Za-z]+?)path(y|ies)\b", re.IGNORECASE)


def organ_disease_words(text: str) -> str | None:
    """``text`` with each organ's "-pathy" written as "<organ> disease(s)" ("optic neuropathies" ->
    "optic nerve diseases"); None when it has none."""
    def spell(m: re.Match[str]) -> str:
        organ = PATHY_ORGANS.get(m.group(1).casefold())
        if organ is None:
            return m.group(0)
        return f"{organ} {'disease' if m.group(2).casefold() == 'y' else 'diseases'}"

    out = _PATHY.sub(spell, text)
    return out if out != text else None


def char_trigrams(text: str) -> set[str]:
    t = f" {surface_key(text)} "
    return {t[i : i + 3] for i in range(len(t) - 2)}


def is_short_form(text: str) -> bool:
    """An abbreviation-like mention: one token of at most 10 characters with a capital or a digit
    after its first character ("DVP", "5,7-DHT", "NH4Ac")."""
    t = text.strip()
    return 2 <= len(t) <= 10 and " " not in t and any(c.isupper() or c.isdigit() for c in t[1:]) and any(c.isalpha() for c in t)


def matches_short_form(short: str, long: str) -> bool:
    """The short form's letters and digits occur in order in ``long``, its first at the start of a
    word (Schwartz & Hearst's test, against a mention instead of a parenthesis)."""
    if len(long) <= len(short):
        return False
    found = _best_long_form(short, long)
    return found is not None and found.casefold() == " ".join(long.split()).casefold()
