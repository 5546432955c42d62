"""Rule-based sentence splitting for English biomedical abstracts and Chinese clinical text.

Returns character spans (start, end) into the text, trimmed of surrounding whitespace, in order and
non-overlapping; together they cover every non-whitespace character of the text (nothing is lost).

English: a sentence ends at ``.``, ``!`` or ``?`` (plus closing quotes/brackets) followed by
whitespace and a character that can start a sentence (upper case, digit, opening quote or bracket,
or any non-Latin letter), except after

- abbreviations that do not end sentences in abstracts: "e.g.", "i.e.", "et al.", "vs.", "Fig.",
  "Figs.", "Ref.", "Eq.", "No.", "approx.", "cf.", "ca.", "Dr.", "Mr.", "Mrs.", "St.", "resp." ...
- any dotted abbreviation such as "i.v.", "i.p.", "s.c.", "b.i.d." (letters separated by dots),
- a single capital letter that is a name initial ("J. Smith", "by J. Smith"; but "hepatitis B.",
  "vitamin D." end sentences: a lower-case word before a single capital makes it a sentence end),
- and never inside a number: "2.5", or "0. 008", "P <. 0001" as tokenised corpora write them.

Chinese: a sentence ends after 。！？； (and their ASCII forms ``!?;``) plus any closing quotes or
brackets (”’」』）》】), with no whitespace required.

Both: a blank line (two newlines, possibly with spaces between) always ends a sentence.
"""

from __future__ import annotations

import itertools
import re

# Lower-cased tokens (without the final dot) after which a '.' does not end a sentence.
ABBREVIATIONS: frozenset[str] = frozenset({
    "e.g", "i.e", "al", "vs", "v", "fig", "figs", "ref", "refs", "eq", "eqs", "no", "nos", "approx", "cf", "ca",
    "dr", "mr", "mrs", "ms", "prof", "st", "resp", "inc", "ltd", "co", "corp", "jr", "sr", "vol", "vols", "pp", "p",
    "tab", "suppl", "sect", "ch", "chap", "ed", "eds", "etc", "viz",
    "sp", "spp", "var", "subsp", "cv", "nr", "dept", "univ", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec",
})
_BEFORE_NAMES = frozenset({"by", "and", "with", "from", "to", "of", "dr", "prof", "see", "cf"})
_CLOSERS = "\"'”’」』）》】)]"
_OPENERS = "\"'“‘「『（《【([<"
_EN_END = re.compile(r"[.!?]+[" + re.escape(_CLOSERS) + r"]*(?=\s)")
_ZH_END = re.compile(r"[。！？；!?;]+[" + re.escape(_CLOSERS) + r"]*")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the '.' at ``text[dot]`` ends an abbreviation rather than a sentence."""
    start = dot
    while start > 0 and not text[start - 1].isspace():  # scan back to the word start (linear overall)
        start -= 1
    raw = text[start:dot]
    word = raw.lstrip(_OPENERS)
    if not word:
        return False
    if len(word) == 1 and word.isupper() and len(raw) > 1:
        return True  # an initial in brackets: "(J. B.)"
    lowered = word.lower()
    if lowered in ABBREVIATIONS or _DOTTED.fullmatch(word):
        return True
    if len(word) == 1 and word.isupper():
        return _is_initial(text, start)
    return False


def _is_initial(text: str, start: int) -> bool:
    """A single capital at ``text[start]`` is a name initial ("J. Smith", "Smith AB, Jones J. and")
    unless a lower-case word precedes it: "hepatitis B.", "vitamin D.", "type A." end sentences
    (except after words that introduce names: "by J. Smith", "and J. Smith")."""
    end = start
    while end > 0 and text[end - 1].isspace():
        end -= 1
    begin = end
    while begin > 0 and not text[begin - 1].isspace():
        begin -= 1
    previous = text[begin:end]
    if not previous or not previous.isalpha() or not previous.islower():
        return True
    return previous in _BEFORE_NAMES


def _before_decimal(text: str, dot: int) -> bool:
    """Whether the last non-space character before ``text[dot]`` is a digit or a comparison sign."""
    i = dot - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i >= 0 and (text[i].isdigit() or text[i] in "<>=≤≥")


def _can_start_sentence(char: str) -> bool:
    if char.isupper() or char.isdigit() or char in _OPENERS:
        return True
    return char.isalpha() and not char.isascii() and not char.islower()  # CJK and other caseless scripts


def _english_breaks(text: str, start: int, end: int) -> list[int]:
    breaks = []
    for match in _EN_END.finditer(text, start, end):
        after = match.end()
        nxt = after
        while nxt < end and text[nxt].isspace():
            nxt += 1
        if nxt >= end or not _can_start_sentence(text[nxt]):
            continue
        punct = text[match.start() : match.end()].rstrip(_CLOSERS)
        if punct == "." and _is_abbreviation(text, match.start()):
            continue
        if punct == "." and after == match.start() + 1 and text[nxt].isdigit() and _before_decimal(text, match.start()):
            continue  # a decimal split by tokenisation: "p = 0. 008", "P <. 0001", "P = . 02"
        breaks.append(after)
    return breaks


def _chinese_breaks(text: str, start: int, end: int) -> list[int]:
    return [m.end() for m in _ZH_END.finditer(text, start, end) if m.end() < end]


def split_sentences(text: str, language: str = "en") -> list[tuple[int, int]]:
    """Sentence spans (start, end) of ``text``, whitespace-trimmed, covering all non-whitespace."""
    find_breaks = _chinese_breaks if language == "zh" else _english_breaks
    spans: list[tuple[int, int]] = []
    block_start = 0
    blocks = [(m.start(), m.end()) for m in _BLANK_LINE.finditer(text)] + [(len(text), len(text))]
    for block_end, next_start in blocks:
        cuts = [block_start, *find_breaks(text, block_start, block_end), block_end]
        for a, b in itertools.pairwise(cuts):
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
            if a < b:
                spans.append((a, b))
        block_start = next_start
    return spans
