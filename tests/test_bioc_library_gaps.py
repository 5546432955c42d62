"""Why llmner keeps its own PubTator and BRAT readers although the installed ``bioc`` package has
``bioc.pubtator`` and ``bioc.brat``: each test shows one input the library gets wrong and the
project's reader gets right. (BioC XML and JSON are read and written through ``bioc`` itself.) If
a ``bioc`` release fixes all of them, switch the readers over and delete this file."""

from __future__ import annotations

import contextlib
import io

import pytest
from bioc import brat as bioc_brat
from bioc import pubtator as bioc_pubtator

from llmner.data_processing.corpora import read_brat, read_pubtator
from llmner.errors import ValidationError

# BC5CDR composite mention: the 7th column lists the individual mentions.
COMPOSITE = ("1|t|Ocular and auditory toxicity.\n1|a|Rare.\n"
             "1\t0\t28\tOcular and auditory toxicity\tDisease\tD009798|D006311\tOcular toxicity|auditory toxicity\n\n")


def test_pubtator_composite_mentions_lose_their_individual_mentions_in_bioc(tmp_path):
    (doc,) = bioc_pubtator.loads(COMPOSITE)
    assert doc.annotations[0].others == []   # the library drops "Ocular toxicity|auditory toxicity"
    path = tmp_path / "c.txt"
    path.write_text(COMPOSITE)
    (ours,) = read_pubtator(path)
    assert ours.metadata["individual_mentions"] == [[0, 28, "Disease", "Ocular toxicity|auditory toxicity"]]


def test_a_malformed_pubtator_line_is_printed_by_bioc_not_raised(tmp_path):
    broken = "1|t|Aspirin.\n1\t0\tAspirin\n\n"   # three columns: neither a mention nor a relation
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bioc_pubtator.loads(broken)
    assert "Cannot parse" in printed.getvalue()   # on stdout, and the document is kept as if fine
    path = tmp_path / "b.txt"
    path.write_text(broken)
    with pytest.raises(ValidationError, match=r"b.txt:2: expected 6 tab-separated fields"):
        read_pubtator(path)


def test_pubtator_documents_without_a_blank_line_between_merge_in_bioc(tmp_path):
    two = "1|t|First title.\n1|a|First abstract.\n2|t|Second title.\n2|a|Second abstract.\n"
    assert len(bioc_pubtator.loads(two)) == 1   # the second title overwrites the first document
    path = tmp_path / "two.txt"
    path.write_text(two)
    assert [d.id for d in read_pubtator(path)] == ["1", "2"]


def test_brat_normalization_lines_are_ignored_by_bioc(tmp_path):
    """S800 gives each species mention its NCBI Taxonomy id on an N line."""
    (tmp_path / "d1.txt").write_text("Human cells.")
    ann = "T1\tSpecies 0 5\tHuman\nN1\tReference T1 Taxonomy:9606\tHomo sapiens\n"
    (tmp_path / "d1.ann").write_text(ann)
    doc = bioc_brat.loads("Human cells.", ann)
    assert "N1" not in str(vars(doc)) and "9606" not in str(vars(doc))
    (ours,) = read_brat(tmp_path)
    assert ours.entities[0].normalized_id == "Taxonomy:9606"


def test_brat_offsets_of_a_crlf_text_shift_in_bioc(tmp_path):
    text = "Line one.\r\nHuman cells."
    (tmp_path / "d1.txt").write_bytes(text.encode())
    (tmp_path / "d1.ann").write_text("T1\tSpecies 11 16\tHuman\n")
    (doc,) = bioc_brat.listdir(tmp_path)
    (entity,) = doc.entities
    start, end = entity.total_span
    assert "\r" not in doc.text and doc.text[start:end] != "Human"   # "\r\n" read as "\n": offsets shift
    (ours,) = read_brat(tmp_path)
    assert ours.entities[0].text == "Human"
