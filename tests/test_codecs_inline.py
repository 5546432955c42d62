"""The inline codec: exact round trip, reported inexpressible spans, robust decoding of broken output."""

from __future__ import annotations

import re

from codec_strategies import TYPES, crosses, keys, text_and_laminar_spans, text_and_spans
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from llmner.codecs.alignment import diff_opcodes
from llmner.codecs.inline import InlineCodec, escape_text
from llmner.doc import Entity

CODEC = InlineCodec()


@settings(max_examples=1000, deadline=None)
@given(text_and_laminar_spans())
def test_round_trip_is_exact(sample):
    text, spans = sample
    report = CODEC.encode_with_report(text, spans)
    assert report.diagnostics.clean
    decoded = CODEC.decode(report.target, text, types=TYPES)
    assert decoded.diagnostics.clean
    assert keys(decoded.entities) == keys(spans)


@settings(max_examples=1000, deadline=None)
@given(text_and_spans())
def test_arbitrary_spans_round_trip_or_are_reported(sample):
    text, spans = sample
    report = CODEC.encode_with_report(text, spans)
    decoded = CODEC.decode(report.target, text)
    got = keys(decoded.entities)
    # Every decoded span was given; every given span is decoded or counted as inexpressible.
    assert set(got) <= set(keys(spans))
    assert len(got) + report.diagnostics.inexpressible_spans == len(spans)
    assert len(report.diagnostics.notes) == report.diagnostics.inexpressible_spans
    # What was left out really is inexpressible: a duplicate or a same-type crossing of a kept span.
    kept = decoded.entities
    for a in kept:
        assert not any(b.type == a.type and crosses(a, b) for b in kept)
    for ent in spans:
        if (ent.start, ent.end, ent.type, ent.text) not in got:
            assert any(k.type == ent.type and crosses(k, ent) for k in kept)
    assert len(set(got)) == len(got)


@settings(max_examples=300, deadline=None)
@given(text_and_laminar_spans(), st.data())
def test_decode_never_raises_on_corrupted_output(sample, data):
    text, spans = sample
    target = CODEC.encode(text, spans)
    chars = list(target)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        pos = data.draw(st.integers(0, max(0, len(chars) - 1)))
        piece = data.draw(st.sampled_from(["x", " ", "<", "</Gene>", "<Disease>", "&", "癌", "word "]))
        if op == "delete" and chars:
            del chars[pos]
        elif op == "insert":
            chars.insert(pos, piece)
        elif chars:
            chars[pos] = piece
    result = CODEC.decode("".join(chars), text, types=("Disease", "Gene"))
    for ent in result.entities:
        assert 0 <= ent.start < ent.end <= len(text)
        assert ent.text == text[ent.start : ent.end]
        assert ent.type in ("Disease", "Gene")


@settings(max_examples=300, deadline=None)
@given(text_and_laminar_spans(), st.lists(st.integers(0, 10_000), min_size=1, max_size=5))
def test_inserted_foreign_characters_are_aligned_away(sample, positions):
    """Characters the source never contains, inserted anywhere outside markers, do not move any entity."""
    text, spans = sample
    assume("§" not in text)
    target = CODEC.encode(text, spans)
    # Insert only at positions between whole markers/escapes (never inside "<Gene>" or "&amp;").
    boundaries = [0] + [m.end() for m in re.finditer(r"</?[A-Za-z][\w-]*>|&(?:amp|lt|gt);|.", target, re.DOTALL)]
    cuts = sorted({boundaries[p % len(boundaries)] for p in positions}, reverse=True)
    corrupted = target
    for cut in cuts:
        corrupted = corrupted[:cut] + "§" + corrupted[cut:]
    result = CODEC.decode(corrupted, text)
    # Whitespace-edged mentions are trimmed on the aligned path; nothing else changes.
    expected = {(e.start + len(e.text) - len(e.text.lstrip()), e.end - len(e.text) + len(e.text.rstrip()), e.type)
                for e in spans if e.text.strip()}
    assert {e.key for e in result.entities} == expected
    assert result.diagnostics.inserted_chars == len(cuts) and result.diagnostics.deleted_chars == 0


def test_format_nesting_adjacency_and_escaping():
    text = "IL-2 promoter <b> & x"
    spans = [Entity(0, 13, "DNA"), Entity(0, 4, "protein"), Entity(14, 17, "Tag")]
    assert CODEC.encode(text, spans) == "<DNA><protein>IL-2</protein> promoter</DNA> <Tag>&lt;b&gt;</Tag> &amp; x"
    adjacent = [Entity(0, 2, "A"), Entity(2, 4, "A")]
    assert CODEC.encode("abcd", adjacent) == "<A>ab</A><A>cd</A>"


def test_crossing_different_types_are_written_and_read_back():
    target = CODEC.encode("abcdef", [Entity(0, 4, "A"), Entity(2, 6, "B")])
    assert target == "<A>ab<B>cd</A>ef</B>"
    assert keys(CODEC.decode(target, "abcdef").entities) == [(0, 4, "A", "abcd"), (2, 6, "B", "cdef")]


def test_crossing_same_type_and_duplicates_are_reported():
    report = CODEC.encode_with_report("abcdef", [Entity(0, 4, "A"), Entity(2, 6, "A"), Entity(0, 4, "A")])
    assert report.target == "<A>abcd</A>ef"
    assert report.diagnostics.inexpressible_spans == 2
    bad = CODEC.encode_with_report("abc", [Entity(1, 1, "A"), Entity(0, 9, "A"), Entity(0, 1, "two words")])
    assert bad.target == "abc" and bad.diagnostics.inexpressible_spans == 3


def test_marker_lookalike_source_round_trips():
    text = "<Disease>cancer</Disease> &lt;"
    target = CODEC.encode(text, [Entity(9, 15, "Disease")])
    assert target == "&lt;Disease&gt;<Disease>cancer</Disease>&lt;/Disease&gt; &amp;lt;"
    assert keys(CODEC.decode(target, text).entities) == [(9, 15, "Disease", "cancer")]


def test_dropped_words_are_aligned():
    text = "Germline mutations in BRCA1 cause inherited breast and ovarian cancer."
    output = "Germline mutations in <Gene>BRCA1</Gene> cause <Disease>breast and ovarian cancer</Disease>."
    result = CODEC.decode(output, text, types=["Gene", "Disease"])
    assert keys(result.entities) == [(22, 27, "Gene", "BRCA1"), (44, 69, "Disease", "breast and ovarian cancer")]
    assert result.diagnostics.deleted_chars == len("inherited ")
    assert result.diagnostics.inserted_chars == 0


def test_changed_and_added_words_are_aligned():
    text = "Linkage analysis of ataxia telangiectasia."
    output = "<Disease>Lage</Disease> analysis of the <Disease>ataxia telangiectesia</Disease>."
    result = CODEC.decode(output, text)
    assert keys(result.entities) == [(0, 7, "Disease", "Linkage"), (20, 41, "Disease", "ataxia telangiectasia")]
    assert result.diagnostics.inserted_chars > 0 and result.diagnostics.deleted_chars > 0
    # A mention made only of invented words has no place in the source.
    invented = CODEC.decode("Linkage <Disease>foo</Disease> analysis of ataxia telangiectasia.", text)
    assert invented.entities == [] and invented.diagnostics.unplaced_mentions == 1


def test_unbalanced_unknown_and_empty_markers_are_counted():
    text = "BRCA1 and TP53 in cancer"
    output = "<Gene>BRCA1</Gene> and <Gene>TP53 in </Chemical><Disease>cancer</Disease></Gene></Gene><Disease><Gene></Gene"
    result = CODEC.decode(output, text, types=["Gene", "Disease"])
    assert keys(result.entities) == [(0, 5, "Gene", "BRCA1"), (10, 24, "Gene", "TP53 in cancer"), (18, 24, "Disease", "cancer")]
    d = result.diagnostics
    assert d.unknown_types == 1          # </Chemical>
    assert d.unbalanced_markers == 3     # the extra </Gene>, <Disease> and <Gene> never closed
    assert d.unknown_markers == 1        # the cut-off "</Gene"
    assert d.inserted_chars == len("</Gene")
    assert CODEC.decode("<Gene></Gene>x", "x").diagnostics.empty_mentions == 1


def test_unescaped_source_characters_are_tolerated():
    text = "a < b & c > d"
    result = CODEC.decode("<X>a < b</X> & c > d", text)
    assert keys(result.entities) == [(0, 5, "X", "a < b")]
    assert result.diagnostics.unknown_markers == 1
    assert result.diagnostics.inserted_chars == 0 and result.diagnostics.deleted_chars == 0


def test_fast_path_keeps_exact_offsets_and_dedupes():
    text = "  x  "
    result = CODEC.decode(escape_text(" ") + "<A><A> x</A></A>  ", text)
    assert keys(result.entities) == [(1, 3, "A", " x")]
    assert result.diagnostics.clean


def _lcs_length(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[-1]))
        prev = cur
    return prev[-1]


@settings(max_examples=500, deadline=None)
@given(st.text("ab0 癌", max_size=14), st.text("ab0 癌", max_size=14))
def test_alignment_opcodes_are_a_minimal_edit_script(a, b):
    ops = diff_opcodes(a, b)
    pos = (0, 0)
    for tag, i1, i2, j1, j2 in ops:
        assert (i1, j1) == pos
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
        pos = (i2, j2)
    assert pos == (len(a), len(b))
    assert sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag == "equal") == _lcs_length(a, b)
