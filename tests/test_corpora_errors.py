"""Clear one-line errors: missing data, malformed files (naming file and line), unwritable documents."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from llmner.cli.main import app
from llmner.data_processing.corpora import (
    DATA_DIR_ENV,
    data_dir,
    load_corpus,
    load_sentences,
    read_bioc,
    read_brat,
    read_cblue,
    read_conll,
    read_genia_jsonl,
    read_jsonl,
    read_pubtator,
    registry,
    write_bioc,
    write_brat,
    write_conll,
    write_genia_jsonl,
    write_pubtator,
)
from llmner.doc import Document
from llmner.errors import DataNotFoundError, ValidationError

PUBTATOR_OK = "1|t|Aspirin and headache.\n1|a|It helps.\n1\t0\t7\tAspirin\tChemical\tD001241\n1\t12\t20\theadache\tDisease\tD006261\n\n"


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


# ---------------------------------------------------------------- data directory


def test_env_var_pointing_nowhere(monkeypatch, tmp_path):
    missing = tmp_path / "nope"
    monkeypatch.setenv(DATA_DIR_ENV, str(missing))
    with pytest.raises(DataNotFoundError, match=re.escape(f"{missing} does not exist (set by {DATA_DIR_ENV})")):
        load_corpus("ncbi_disease", "test")


def test_no_data_directory_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataNotFoundError) as info:
        data_dir()
    message = str(info.value)
    assert DATA_DIR_ENV in message and str(tmp_path / "repo" / ".." / "shared" / "data") in message


def test_default_is_relative_to_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "project")
    assert data_dir() == (tmp_path / "shared" / "data").resolve()


def test_missing_corpus_folder_and_file(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "s800"))):
        load_corpus("s800", "train")
    (tmp_path / "cmeee").mkdir()
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "cmeee" / "v1_json" / "CMeEE_dev.json"))):
        load_corpus("cmeee", "dev")


def test_registry_loads_from_an_env_data_dir(monkeypatch, tmp_path):
    folder = tmp_path / "ncbi_disease" / "original"
    folder.mkdir(parents=True)
    text = PUBTATOR_OK.replace("Chemical", "SpecificDisease").replace("Disease\tD006261", "Modifier\tD006261")
    (folder / "NCBItestset_corpus.txt").write_text(text, encoding="utf-8")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    (doc,) = load_corpus("ncbi_disease", "test")
    assert [e.type for e in doc.entities] == ["Disease", "Disease"]
    assert doc.metadata["corpus"] == "ncbi_disease" and doc.metadata["split"] == "test"


def test_unknown_corpus_split_and_sentence_view():
    with pytest.raises(ValidationError, match="unknown corpus 'nope' \\(known: ncbi_disease"):
        load_corpus("nope")
    with pytest.raises(ValidationError, match="unknown split 'validate'"):
        load_corpus("s800", "validate")
    with pytest.raises(ValidationError, match="corpus 's800' has no sentence view"):
        load_sentences("s800", "train")


# ---------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (PUBTATOR_OK.replace("0\t7\tAspirin", "0\t70\tAspirin"), ":3: offsets [0, 70) out of range"),
        (PUBTATOR_OK.replace("0\t7\tAspirin", "1\t8\tAspirin"), ":3: mention 'Aspirin' does not match text[1:8]"),
        (PUBTATOR_OK.replace("0\t7\tAspirin", "x\t7\tAspirin"), ":3: start offset must be an integer, got 'x'"),
        (PUBTATOR_OK.replace("\tD006261", ""), None),  # 5 columns (no id) are accepted
        (PUBTATOR_OK.replace("1\t12\t20\theadache", "1\t12\theadache"), ":4: end offset must be an integer, got 'headache'"),
        (PUBTATOR_OK.replace("1\t12\t20\theadache\tDisease\tD006261", "1\t12\t20"), ":4: expected 6 tab-separated fields"),
        (PUBTATOR_OK.replace("1|t|", "1|x|"), ":1: expected 'PMID|t|title'"),
        (PUBTATOR_OK.replace("1\t12", "2\t12"), ":4: line belongs to document '2' inside document '1'"),
    ],
)
def test_malformed_pubtator(tmp_path, content, message):
    path = write(tmp_path, "bad.txt", content)
    if message is None:
        (doc,) = read_pubtator(path)
        assert doc.entities[1].normalized_id is None
        return
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_pubtator(path)


def test_pubtator_without_blank_lines_and_with_crlf(tmp_path):
    two = PUBTATOR_OK.rstrip("\n") + "\n" + PUBTATOR_OK.replace("1|", "2|").replace("1\t", "2\t")
    path = write(tmp_path, "two.txt", two.replace("\n", "\r\n"))
    docs = read_pubtator(path)
    assert [d.id for d in docs] == ["1", "2"]
    assert all(d.text == "Aspirin and headache. It helps." and len(d.entities) == 2 for d in docs)


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ("T1\tSpecies 0 5\tHuman\n", None),
        ("T1\tSpecies 0 5\n", ":1: expected 'T<n><TAB><type> <start> <end><TAB><mention>'"),
        ("T1\tSpecies zero 5\tHuman\n", ":1: start offset must be an integer, got 'zero'"),
        ("T1\tSpecies 0 5\tHuman\nT2\tSpecies 0 50\tHuman\n", ":2: offsets [0, 50) out of range"),
        ("T1\tSpecies 0 5\tHumxn\n", ":1: mention 'Humxn' does not match text[0:5]"),
        ("T1\tSpecies 0 5 7\tHuman\n", ":1: expected '<type> <start> <end>'"),
        ("N1\tReference T1\n", ":1: expected 'N<n><TAB>Reference T<m> <db:id>'"),
        ("T1\tSpecies 0 5\tHuman\nN1\tReference T9 Taxonomy:9606\n", ": normalization refers to unknown annotation 'T9'"),
    ],
)
def test_malformed_brat(tmp_path, ann, message):
    write(tmp_path, "doc.txt", "Human cells.")
    path = write(tmp_path, "doc.ann", ann)
    if message is None:
        (doc,) = read_brat(tmp_path)
        assert doc.id == "doc" and doc.entities[0].text == "Human"
        return
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_brat(tmp_path)


def test_brat_discontinuous_annotation_is_skipped_and_counted(tmp_path):
    write(tmp_path, "d.txt", "Human and mouse cells.")
    write(tmp_path, "d.ann", "T1\tSpecies 0 5;16 21\tHuman cells\nT2\tSpecies 10 15\tmouse\n#1\tAnnotatorNotes T2\tnote\n")
    (doc,) = read_brat(tmp_path / "d.ann")
    assert [e.text for e in doc.entities] == ["mouse"] and doc.metadata["discontinuous_skipped"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("A\tO\nB\tX-GENE\n", ":2: invalid IOB2 tag 'X-GENE'"),
        ("A\tO\nB\n", ":2: expected 'token<TAB>tag'"),
        ("A\tO\n\tO\n", ":2: token '' is empty"),
    ],
)
def test_malformed_conll(tmp_path, content, message):
    path = write(tmp_path, "bad.tsv", content)
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_conll(path)


def test_conll_lenient_i_tag_and_docstart(tmp_path):
    path = write(tmp_path, "x.tsv", "-DOCSTART-\tO\n\nIL-2\tI-protein\ngene\tI-DNA\n.\tO\n\n###MEDLINE:123\n\nA\tB-RNA\nB\tI-RNA\n\n")
    first, second = read_conll(path)
    assert [(e.text, e.type) for e in first.entities] == [("IL-2", "protein"), ("gene", "DNA")]
    assert first.metadata == {"sentence_index": 0, "document_index": 0}
    assert second.metadata == {"sentence_index": 1, "document_index": 1, "document_id": "123"}
    assert [(e.text, e.type) for e in second.entities] == [("A B", "RNA")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: not valid JSON"),
        ('{"tokens": ["a", "b"], "entities": [{"start": 1, "end": 3, "type": "DNA"}]}', ":2: entity #0 token span [1, 3) out of range"),
        ('{"tokens": ["a b"], "entities": []}', ":2: 'tokens' must be a non-empty list"),
        ('{"tokens": ["a"], "entities": [{"start": 0, "type": "DNA"}]}', ":2: entity #0 needs 'start', 'end'"),
        ('{"tokens": ["a"], "extra": 1}', ":2: unknown field(s) ['extra']"),
    ],
)
def test_malformed_genia(tmp_path, line, message):
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["ok"], "entities": []}\n' + line + "\n")
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_genia_jsonl(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"text": "发热咳嗽", "entities": [{"start_idx": 0, "end_idx": 1, "type": "sym", "entity": "咳嗽"}]}]',
         ": record #0 entity #0: mention '咳嗽' does not match text[0:2] = '发热'"),
        ('[{"text": "发热", "entities": [{"start_idx": 0, "end_idx": 5, "type": "sym"}]}]', ": record #0 entity #0: offsets [0, 6) out of range"),
        ('[{"entities": []}]', ": record #0: expected an object with a 'text' string"),
        ('{"text": "x"}', ": expected a JSON list of records"),
        ("[", ": not valid JSON"),
    ],
)
def test_malformed_cblue(tmp_path, content, message):
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_cblue(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("S1|0 40|gene", ":1: non-space offsets '0 40' out of range"),
        ("S1|0|gene", ":1: expected '<sentence-id>|<start> <end>|<mention>'"),
        ("S9|0 3|gene", ":1: unknown sentence id 'S9'"),
    ],
)
def test_malformed_bc2gm(tmp_path, line, message):
    from llmner.data_processing.corpora import read_bc2gm

    write(tmp_path, "x.in", "S1 The BRCA1 gene.\n")
    path = write(tmp_path, "GENE.eval", line + "\n")
    with pytest.raises(ValidationError, match=re.escape(f"{path}{message}")):
        read_bc2gm(tmp_path)


def test_bc2gm_offsets_skip_whitespace(tmp_path):
    from llmner.data_processing.corpora import read_bc2gm, write_bc2gm

    write(tmp_path, "x.in", "S1 The  BRCA1 gene product.\n")
    write(tmp_path, "GENE.eval", "S1|3 11|BRCA1 gene\n")
    write(tmp_path, "ALTGENE.eval", "S1|3 7|BRCA1\n")
    (doc,) = read_bc2gm(tmp_path / "x.in")
    assert [e.text for e in doc.entities] == ["BRCA1 gene"] and doc.metadata["alternatives"] == [[5, 10]]
    bad = Document("S2", "two types")
    bad.entities = [bad.span(0, 3, "GENE"), bad.span(4, 9, "Other")]
    with pytest.raises(ValidationError, match="BC2GM stores one entity type"):
        write_bc2gm([bad], tmp_path / "out")


def test_cblue_inclusive_end(tmp_path):
    path = write(tmp_path, "ok.json", '[{"text": "发热咳嗽", "entities": [{"start_idx": 2, "end_idx": 3, "type": "sym", "entity": "咳嗽"}]}]')
    (doc,) = read_cblue(path)
    assert (doc.entities[0].start, doc.entities[0].end, doc.language) == (2, 4, "zh")


def test_malformed_jsonl_bioc_and_encoding(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"id": "a", "text": "x", "entities": []}\n{"id": "b", "text": "xy", "entities": [{"start": 0, "end": 9, "type": "T"}]}\n')
    with pytest.raises(ValidationError, match=re.escape(f"{path}:2: document 'b' entity #0 (T): offsets [0, 9) out of range")):
        read_jsonl(path)
    xml = write(tmp_path, "bad.xml", "<collection><document><id>1</id>")
    with pytest.raises(ValidationError, match=re.escape(f"{xml}: not a readable BioC XML file")):
        read_bioc(xml)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("1|t|Gène\n".encode("latin-1"))
    with pytest.raises(ValidationError, match=re.escape(f"{latin}: not valid UTF-8")):
        read_pubtator(latin)
    with pytest.raises(DataNotFoundError, match="corpus file not found"):
        read_pubtator(tmp_path / "missing.txt")


def test_bioc_annotation_text_mismatch(tmp_path):
    xml = write(tmp_path, "x.xml", "<?xml version='1.0' encoding='UTF-8'?><collection><source/><date/><key/><document><id>7</id>"
                "<passage><offset>0</offset><text>Aspirin works.</text><annotation id='0'><infon key='type'>Chemical</infon>"
                "<location offset='0' length='6'/><text>Aspirin</text></annotation></passage></document></collection>")
    with pytest.raises(ValidationError, match=re.escape(f"{xml}: document '7' passage #0 annotation '0': mention 'Aspirin' does not match text[0:6]")):
        read_bioc(xml)


# ---------------------------------------------------------------- writers refuse what the format cannot hold


def test_writers_reject_unrepresentable_documents(tmp_path):
    multi_line = Document("m", "line one\nline two")
    with pytest.raises(ValidationError, match="PubTator cannot store a text with line breaks"):
        write_pubtator([multi_line], tmp_path / "x.txt")
    nested = Document("n", "IL-2 gene expression")
    nested.entities = [nested.span(0, 4, "protein"), nested.span(0, 9, "DNA")]
    with pytest.raises(ValidationError, match="CoNLL/IOB2 cannot store nested or overlapping entities"):
        write_conll([nested], tmp_path / "x.tsv")
    untokenized = Document("u", "IL-2  gene")
    with pytest.raises(ValidationError, match="GENIA JSONL needs a text of tokens joined by single spaces"):
        write_genia_jsonl([untokenized], tmp_path / "x.jsonl")
    cut = Document("c", "IL-2 gene")
    cut.entities = [cut.span(0, 2, "protein")]
    with pytest.raises(ValidationError, match="does not fall on token boundaries"):
        write_genia_jsonl([cut], tmp_path / "x.jsonl")
    with pytest.raises(ValidationError, match="BioC XML cannot store the character '\\\\x01'"):
        write_bioc([Document("b", "bad\x01char")], tmp_path / "x.xml")
    with pytest.raises(ValidationError, match="id cannot be used as a BRAT file name"):
        write_brat([Document("a/b", "text")], tmp_path / "brat")


# ---------------------------------------------------------------- CLI


def test_cli_convert_and_errors(tmp_path):
    source = write(tmp_path, "in.txt", PUBTATOR_OK)
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "out.xml"), "--from", "pubtator", "--to", "bioc"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 documents with 2 mentions" in result.output
    (doc,) = read_bioc(tmp_path / "out.xml")
    assert [(e.text, e.type, e.normalized_id) for e in doc.entities] == [("Aspirin", "Chemical", "D001241"), ("headache", "Disease", "D006261")]
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "o"), "--from", "pubtator", "--to", "xml"])
    assert isinstance(result.exception, ValidationError) and "unknown format 'xml'" in str(result.exception)


def test_cli_errors_are_one_line(tmp_path):
    bad = write(tmp_path, "bad.txt", PUBTATOR_OK.replace("0\t7\tAspirin", "0\t70\tAspirin"))
    env_cmd = [sys.executable, "-c", "from llmner.cli.main import main; main()",
               "convert", str(bad), str(tmp_path / "o.jsonl"), "--from", "pubtator", "--to", "jsonl"]
    proc = subprocess.run(env_cmd, check=False, capture_output=True, text=True, env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{bad}:3: offsets [0, 70) out of range" in lines[0]


def test_cli_data_stats_prints_the_counts(monkeypatch):
    from corpora_helpers import shared_data

    shared_data()
    result = CliRunner().invoke(app, ["data", "stats", "--corpus", "s800"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]] for line in result.output.splitlines() if line.count("│") >= 5}
    assert rows["documents"] == ["560", "80", "160"]
    assert rows["sentences"] == ["-", "-", "-"]
    assert rows["mentions"] == ["2,557", "384", "767"]
    assert rows["Species"] == ["2,557", "384", "767"]
    result = CliRunner().invoke(app, ["data", "stats", "--corpus", "cmeee"], env={"COLUMNS": "120"})
    assert "unlabeled" in result.output and "61,794" in result.output
    result = CliRunner().invoke(app, ["data", "stats", "--corpus", "ncbi_disease", "--json"])
    counts = orjson.loads(result.output)["corpora"]["ncbi_disease"]
    assert counts["train"] == {"documents": 593, "sentences": 5432, "mentions": 5145, "per_type": {"Disease": 5145}}
