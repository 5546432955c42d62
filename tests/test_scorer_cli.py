"""``llmner eval --gold --pred``: reads any supported format, prints the table, writes JSON, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmner.cli.main import app
from llmner.doc import Document
from llmner.evaluation.scorer import score

CONLL = Path("/work/shared/data/ncbi_disease/conll/devel.tsv")


def write_jsonl(docs: list[Document], path: Path) -> None:
    path.write_bytes(b"".join(d.to_json() + b"\n" for d in docs))


def test_eval_jsonl_files(tmp_path):
    gold = [Document("a", "BRCA1 causes breast cancer"), Document("b", "no entity here")]
    gold[0].entities = [gold[0].span(0, 5, "Gene"), gold[0].span(13, 26, "Disease")]
    pred = [Document("a", "BRCA1 causes breast cancer")]
    pred[0].entities = [pred[0].span(20, 26, "Disease"), pred[0].span(0, 5, "Gene")]
    write_jsonl(gold, tmp_path / "gold.jsonl")
    write_jsonl(pred, tmp_path / "pred.jsonl")
    result = CliRunner().invoke(app, ["eval", "--gold", str(tmp_path / "gold.jsonl"), "--pred", str(tmp_path / "pred.jsonl"),
                                      "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert "strict (micro)" in result.output and "Disease" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["strict"]["micro"]["tp"] == 1 and report["partial"]["tp"] == 2
    assert report["missing_predictions"] == 1


def test_eval_conll_gold_against_jsonl_predictions(tmp_path):
    if not CONLL.exists():
        pytest.skip("NCBI-Disease CoNLL file not available")
    from llmner.data_processing.corpora import read_documents

    gold = read_documents(CONLL, "conll")
    pred = [Document(d.id, d.text, d.language, entities=d.entities[::2]) for d in gold]  # every other mention
    write_jsonl(pred, tmp_path / "pred.jsonl")
    result = CliRunner().invoke(app, ["eval", "--gold", str(CONLL), "--pred", str(tmp_path / "pred.jsonl"),
                                      "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "report.json").read_text())["strict"] == score(gold, pred).to_dict()["strict"]


@pytest.mark.parametrize("args, message", [
    (["--gold", "/nonexistent/gold.jsonl", "--pred", "p.jsonl"], "input not found: /nonexistent/gold.jsonl"),
    (["--gold", "x.jsonl"], "pass --gold FILE and --pred FILE"),
    (["--corpus", "ncbi_disease", "--gold", "x.jsonl"], "not both"),
])
def test_eval_errors_are_one_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "llmner.cli.main", "eval", *args], check=False, capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": ""}, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_eval_unknown_extension(tmp_path):
    """The content decides the format; an empty file or one in no format says so."""
    path = tmp_path / "gold.weird"
    path.write_text("")
    result = CliRunner().invoke(app, ["eval", "--gold", str(path), "--pred", str(path)])
    assert "is empty: nothing to do" in str(result.exception)
    path.write_text("just some prose\n")
    result = CliRunner().invoke(app, ["eval", "--gold", str(path), "--pred", str(path)])
    assert "plain text, not one of the document formats" in str(result.exception)


def test_eval_corpus_runs_the_bundle_and_writes_the_evaluation(monkeypatch, tmp_path):
    from test_pipeline import LexiconGenerator

    from llmner.data_processing.corpora import data_dir
    from llmner.pipeline import Pipeline

    if not (data_dir() / "ncbi_disease").is_dir():
        pytest.skip("NCBI-Disease not available")
    loaded = []
    monkeypatch.setattr(Pipeline, "from_bundle", lambda model: loaded.append(model) or Pipeline(LexiconGenerator(), None))
    result = CliRunner().invoke(app, ["eval", "--corpus", "ncbi_disease", "--split", "dev", "--model", str(tmp_path),
                                      "--limit", "3", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert loaded == [tmp_path]
    assert "generator alone" in result.output and "no selector in this model" in result.output
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["corpus"] == "ncbi_disease" and written["documents"] == 3 and "with_selector" not in written
