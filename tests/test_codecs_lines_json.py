"""The ``lines`` (LLMNER seed) and ``json`` (BioSelectTune) codecs, and the codec registry."""

from __future__ import annotations

import json

import pytest
from codec_strategies import TYPES, keys, text_and_laminar_spans, text_and_spans
from hypothesis import given, settings

from llmner.codecs import CODEC_NAMES, get_codec
from llmner.codecs.json_codec import JsonCodec, occurrences
from llmner.codecs.lines import LinesCodec
from llmner.doc import Entity
from llmner.errors import ConfigError

LINES = LinesCodec()
JSON = JsonCodec()


# ---- lines -------------------------------------------------------------------------------------

@settings(max_examples=1000, deadline=None)
@given(text_and_laminar_spans())
def test_lines_round_trip_is_exact(sample):
    text, spans = sample
    report = LINES.encode_with_report(text, spans)
    assert report.diagnostics.clean
    decoded = LINES.decode(report.target, text, types=TYPES)
    assert decoded.diagnostics.clean
    assert keys(decoded.entities) == keys(spans)


@settings(max_examples=300, deadline=None)
@given(text_and_spans())
def test_lines_reports_what_it_cannot_express(sample):
    text, spans = sample
    report = LINES.encode_with_report(text, spans)
    got = keys(LINES.decode(report.target, text).entities)
    assert set(got) <= set(keys(spans))
    assert len(got) + report.diagnostics.inexpressible_spans == len(spans)


def test_lines_seed_format():
    text = "Germline mutations in BRCA1 cause inherited breast cancer."
    spans = [Entity(34, 57, "Disease"), Entity(44, 57, "Disease"), Entity(22, 27, "Gene")]
    assert LINES.encode(text, spans) == (
        "Gene:  Germline mutations in [BRCA1] cause inherited breast cancer.  \n"
        "Disease:  Germline mutations in BRCA1 cause [inherited [breast cancer]]."
    )
    assert LINES.encode(text, []) == ""
    assert LINES.decode("", text).entities == []


def test_lines_escapes_brackets_backslashes_and_newlines():
    text = "a [b]\\n\nc  "
    target = LINES.encode(text, [Entity(2, 5, "X"), Entity(8, 9, "X")])
    assert target == "X:  a [\\[b\\]]\\\\n\\n[c]  "
    assert keys(LINES.decode(target, text).entities) == [(2, 5, "X", "[b]"), (8, 9, "X", "c")]


def test_lines_broken_output():
    text = "BRCA1 and TP53 in breast cancer"
    output = (
        "Gene: [BRCA1] and [TP53 in breast cancer  \n"   # one space after the colon; unclosed '['
        "Chemical:  [BRCA1] and TP53 in breast cancer  \n"  # type outside the schema
        "no prefix here\n"
        "Disease:  BRCA1 and TP53 in [brest cancer]] []"   # misspelt copy, extra ']', empty brackets
    )
    result = LINES.decode(output, text, types=["Gene", "Disease"])
    assert keys(result.entities) == [(0, 5, "Gene", "BRCA1"), (18, 31, "Disease", "breast cancer")]
    d = result.diagnostics
    assert (d.unbalanced_markers, d.unknown_types, d.unknown_markers, d.empty_mentions) == (2, 1, 1, 1)
    assert d.deleted_chars == 1 and d.inserted_chars == 1  # the missing 'a' and the trailing space


# ---- json --------------------------------------------------------------------------------------

@settings(max_examples=1000, deadline=None)
@given(text_and_spans())
def test_json_round_trip_of_expressible_spans(sample):
    text, spans = sample
    report = JSON.encode_with_report(text, spans)
    decoded = JSON.decode(report.target, text, types=TYPES)
    assert decoded.diagnostics.clean
    got = keys(decoded.entities)
    assert set(got) <= set(keys(spans))
    assert len(got) + report.diagnostics.inexpressible_spans == len(spans)
    # The rule: per (surface, type), the decoded mentions are exactly the first k occurrences.
    groups: dict[tuple[str, str], list[int]] = {}
    for start, _end, etype, surface in got:
        groups.setdefault((surface, etype), []).append(start)
    for (surface, _etype), starts in groups.items():
        assert starts == occurrences(surface, text)[: len(starts)]
    # Every left-out span breaks that rule (or repeats a kept one).
    unique = set(keys(spans))
    for span in unique - set(got):
        assert span[0] not in occurrences(span[3], text)[: len(groups.get((span[3], span[2]), []))]


@settings(max_examples=1000, deadline=None)
@given(text_and_laminar_spans())
def test_json_round_trip_when_every_occurrence_is_tagged(sample):
    text, spans = sample
    # Tag every occurrence of each (surface, type): always expressible by the k-th occurrence rule.
    full = {(s, s + len(e.text), e.type) for e in spans for s in occurrences(e.text, text)}
    entities = [Entity(s, e, t, text[s:e]) for s, e, t in full]
    report = JSON.encode_with_report(text, entities)
    assert report.diagnostics.clean
    assert keys(JSON.decode(report.target, text).entities) == keys(entities)


def test_json_format_and_repeated_surfaces():
    text = "cancer and cancer; IL-2 gene"
    spans = [Entity(11, 17, "Disease"), Entity(0, 6, "Disease"), Entity(19, 23, "protein"), Entity(19, 28, "DNA"), Entity(19, 23, "DNA")]
    target = JSON.encode(text, spans)
    assert json.loads(target) == [
        {"entity": "Disease", "name": "cancer"}, {"entity": "Disease", "name": "cancer"},
        {"entity": "DNA", "name": "IL-2 gene"}, {"entity": "DNA", "name": "IL-2"}, {"entity": "protein", "name": "IL-2"},
    ]
    assert sorted(e.key for e in JSON.decode(target, text).entities) == sorted(e.key for e in spans)
    assert JSON.encode(text, []) == "[]"
    only_second = JSON.encode_with_report(text, [Entity(11, 17, "Disease")])
    assert only_second.target == "[]" and only_second.diagnostics.inexpressible_spans == 1


def test_json_broken_output():
    text = "Mutations in BRCA1 cause Breast  Cancer."
    truncated = '[{"entity": "Gene", "name": "BRCA1"}, {"name": "breast cancer", "entity": "Disease"}, {"entity": "Dis'
    result = JSON.decode(truncated, text, types=["Gene", "Disease"])
    assert keys(result.entities) == [(13, 18, "Gene", "BRCA1"), (25, 39, "Disease", "Breast  Cancer")]
    assert result.diagnostics.unknown_markers == 1
    junk = JSON.decode('Here you go: [{"entity": "Chemical", "name": "BRCA1"}, {"entity": "Gene", "name": "TP53"}, 3, {"entity": "Gene", "name": ""}] thanks', text, types=["Gene"])
    assert junk.entities == []
    d = junk.diagnostics
    assert (d.unknown_types, d.unplaced_mentions, d.unknown_markers, d.empty_mentions) == (1, 1, 1, 1)
    assert JSON.decode("", text).diagnostics.clean and JSON.decode("not json", text).entities == []


# ---- registry ----------------------------------------------------------------------------------

def test_registry():
    assert CODEC_NAMES == ("inline", "lines", "json")
    assert [get_codec(n).name for n in CODEC_NAMES] == list(CODEC_NAMES)
    assert get_codec().name == "inline"
    with pytest.raises(ConfigError, match="unknown codec 'xml'.*inline, lines, json"):
        get_codec("xml")
