"""Formats a new user meets in the first hour: content sniffing, result records, BioC JSON, the PubTator
abstract line and extra JSONL fields (issue 17)."""

from __future__ import annotations

import orjson
import pytest

from llmner.data_processing.corpora import (
    PLAIN_TEXT,
    guess_format,
    read_bioc_json,
    read_documents,
    read_jsonl,
    read_pubtator,
    write_bioc,
    write_bioc_json,
    write_documents,
    write_jsonl,
    write_pubtator,
)
from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import DataNotFoundError, ValidationError

PUBTATOR = ("9949209|t|Copper toxicosis in terriers.\n9949209|a|Wilson disease is rare.\n"
            "9949209\t0\t16\tCopper toxicosis\tSpecificDisease\tD006527\n9949209\t30\t44\tWilson disease\tModifier\tD006527\n\n")


def sample_docs() -> list[Document]:
    doc = Document("d1", "BRCA1 is mutated in breast cancer.", metadata={"source": "x"})
    doc.entities = [doc.span(0, 5, "Gene", score=0.91), doc.span(20, 33, "Disease", score=0.5, normalized_id="D001943")]
    return [doc, Document("d2", "No entity here.")]


@pytest.mark.parametrize("fmt", ["pubtator", "bioc", "bioc_json", "jsonl", "records", "genia", "cblue", "conll"])
def test_the_content_decides_not_the_extension(tmp_path, fmt):
    """Every file is named ``.txt`` (the corpora's PubTator files are): the content gives the format."""
    path = tmp_path / "input.txt"
    if fmt == "records":
        path.write_bytes(ResultRecord("d1", [Entity(0, 5, "Gene", "BRCA1")], {"generator": "g"}).to_json() + b"\n")
    elif fmt == "genia":
        path.write_text('{"tokens": ["IL-2", "gene"], "entities": [{"start": 0, "end": 1, "type": "protein"}]}\n')
    elif fmt == "cblue":
        path.write_text('[\n  {"text": "患者咳嗽", "entities": []}\n]\n')
    elif fmt == "conll":
        path.write_text("IL-2\tB-protein\ngene\tO\n")
    else:
        write_documents(sample_docs()[:1], path, fmt)
    assert guess_format(path) == fmt
    assert read_documents(path)   # and it reads with the guessed format


def test_the_ncbi_disease_original_file_is_pubtator(tmp_path):
    from corpora_helpers import shared_data

    assert guess_format(shared_data() / "ncbi_disease/original/NCBItestset_corpus.txt") == "pubtator"
    assert guess_format(shared_data() / "bc5cdr/bioc/CDR_TestSet.BioC.xml") == "bioc"
    assert guess_format(shared_data() / "s800/standoff") == "brat"


def test_nothing_to_read_fails_with_a_reason(tmp_path):
    with pytest.raises(DataNotFoundError, match="input not found"):
        guess_format(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n \n")
    with pytest.raises(ValidationError, match="is empty: nothing to do"):
        guess_format(tmp_path / "empty.jsonl")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValidationError, match="empty directory: nothing to do"):
        guess_format(tmp_path / "dir")
    (tmp_path / "other.jsonl").write_text('{"note": "x"}\n')
    with pytest.raises(ValidationError, match=r"unknown schema \(fields note\)"):
        guess_format(tmp_path / "other.jsonl")
    (tmp_path / "x.xml").write_text("<html></html>")
    with pytest.raises(ValidationError, match="not a BioC collection"):
        guess_format(tmp_path / "x.xml")
    (tmp_path / "notes.txt").write_text("A plain clinical note.\nSecond line.\n")
    assert guess_format(tmp_path / "notes.txt") == PLAIN_TEXT
    with pytest.raises(ValidationError, match="plain text"):
        read_documents(tmp_path / "notes.txt")


def test_result_records_read_as_predicted_documents(tmp_path):
    """What ``llmner run`` writes: records (and error lines for rejected notes) are readable."""
    record = ResultRecord("n1", [Entity(0, 5, "Gene", "BRCA1", 0.9)], {"generator": "g"}, {"end_to_end": 3.0}, 1,
                          metadata={"mrn": "42"})
    path = tmp_path / "out.jsonl"
    path.write_bytes(record.to_json() + b"\n" + orjson.dumps({"document_id": "n2", "error": "empty_text", "reason": "empty"}) + b"\n")
    (doc,) = read_documents(path)
    assert doc.id == "n1" and doc.text == "" and [e.key for e in doc.entities] == [(0, 5, "Gene")]
    assert doc.metadata["mrn"] == "42" and doc.metadata["model_ids"] == {"generator": "g"}


def test_extra_jsonl_fields_are_kept_in_metadata_and_reach_the_result_record(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "n1", "text": "BRCA1 is mutated.", "mrn": "12345", "ward": 7}\n')
    (doc,) = read_jsonl(path)
    assert doc.metadata == {"mrn": "12345", "ward": 7}
    from test_pipeline import LexiconGenerator

    from llmner.pipeline import Pipeline

    (record,) = Pipeline(LexiconGenerator()).process([doc])
    assert record.metadata == {"mrn": "12345", "ward": 7}
    assert ResultRecord.from_json(record.to_json()).metadata == record.metadata


def test_pubtator_writes_an_abstract_line_and_reads_it_back(tmp_path):
    doc = Document("7", "A single-sentence note about asthma.")
    doc.entities = [doc.span(29, 35, "Disease")]
    write_pubtator([doc], tmp_path / "x.txt")
    lines = (tmp_path / "x.txt").read_text().splitlines()
    assert lines[:2] == ["7|t|A single-sentence note about asthma.", "7|a|"]
    (back,) = read_pubtator(tmp_path / "x.txt")
    assert back.text == doc.text and [e.key for e in back.entities] == [e.key for e in doc.entities]


def test_bioc_json_round_trips_scores_ids_and_model_ids(tmp_path):
    docs = sample_docs()
    docs[0].metadata["model_ids"] = {"generator": "gen-1", "selector": "sel-1"}
    write_bioc_json(docs, tmp_path / "x.json")
    assert orjson.loads((tmp_path / "x.json").read_bytes())["documents"][0]["id"] == "d1"
    back = read_bioc_json(tmp_path / "x.json")
    assert [(e.key, e.score, e.normalized_id) for e in back[0].entities] == [(e.key, e.score, e.normalized_id) for e in docs[0].entities]
    assert back[0].metadata["model_ids"] == {"generator": "gen-1", "selector": "sel-1"}
    write_bioc(docs, tmp_path / "x.xml")
    assert [e.score for e in read_documents(tmp_path / "x.xml")[0].entities] == [0.91, 0.5]


def test_a_gold_document_is_tagged_without_its_annotations():
    doc = Document("g", "Cisplatin causes nephrotoxicity.", metadata={"relations": [["CID", "D1", "D2"]], "title_length": 10,
                                                                       "individual_mentions": [[0, 9, "Chemical", "x"]]})
    doc.entities = [doc.span(0, 9, "Chemical")]
    bare = doc.without_annotations()
    assert bare.entities == [] and bare.metadata == {"title_length": 10}
    assert doc.entities and "relations" in doc.metadata   # the input is left alone


def test_jsonl_documents_still_round_trip(tmp_path):
    write_jsonl(sample_docs(), tmp_path / "a.jsonl")
    assert [d.to_dict() for d in read_jsonl(tmp_path / "a.jsonl")] == [d.to_dict() for d in sample_docs()]


@pytest.mark.parametrize("fmt", ["bioc", "bioc_json", "jsonl"])
def test_generator_scores_round_trip_through_prediction_formats(tmp_path, fmt):
    doc = Document("z", "患者有高血压。", language="zh")
    doc.entities = [doc.span(3, 6, "疾病", generator_score=0.8125)]
    path = tmp_path / f"out.{fmt}"
    write_documents([doc], path, fmt)
    (back,) = read_documents(path, fmt)
    assert back.entities[0].generator_score == 0.8125 and back.entities[0].score is None
