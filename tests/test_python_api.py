"""The Python API a new user reaches for first: ``llmner.load()``, ``nlp(text)``, ``nlp.pipe(...)``,
and the README's example, run as written against a tiny bundle standing in for the default one."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import llmner
from llmner.doc import Document, Entity
from llmner.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from llmner.testing import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("api") / "bundle")


@pytest.fixture(scope="module")
def nlp(tiny_bundle):
    return llmner.load(tiny_bundle, llmner.PipelineConfig(selector_backend="torch"))


def test_top_level_imports_and_load_return_a_pipeline(nlp):
    from llmner import Pipeline, load  # noqa: F401 - the names a user tries first

    assert isinstance(nlp, llmner.Pipeline)


def test_calling_the_pipeline_on_a_string_returns_a_document_with_entities(nlp):
    text = "BRCA1 is mutated in breast cancer. Cisplatin inhibits tumour growth in mice."
    doc = nlp(text)
    assert isinstance(doc, Document) and doc.text == text and doc.id == "0" and doc.language == "en"
    assert doc.entities, "the tiny bundle (threshold 0) tags something"
    for ent in doc.entities:
        assert isinstance(ent, Entity)
        assert ent.text == text[ent.start:ent.end] and ent.type and ent.score is not None
        assert ent.normalized_id is None
    assert doc.metadata["model_ids"]["bundle"] == "tiny"


def test_pipe_takes_strings_dicts_and_documents_in_batches(nlp):
    gold = Document("g1", "Cisplatin was given to mice.", metadata={"relations": [["CID", "a", "b"]], "source": "x"})
    gold.entities = [gold.span(0, 9, "Chemical")]
    inputs = ["Asthma worsened at night.", {"text": "患者咳嗽三天。", "mrn": "12345"}, gold]
    docs = list(nlp.pipe(inputs, batch_size=2))
    assert [d.id for d in docs] == ["0", "1", "g1"]
    assert [d.language for d in docs] == ["en", "zh", "en"]   # a string's or dict's script decides
    assert docs[1].metadata["mrn"] == "12345"                   # extra dict fields kept in metadata
    # a prediction holds predictions only: no gold relation, no gold entity unless predicted
    assert "relations" not in docs[2].metadata and docs[2].metadata["source"] == "x"
    one_by_one = [nlp(x) for x in inputs]
    assert [[e.key for e in d.entities] for d in docs] == [[e.key for e in d.entities] for d in one_by_one]


def test_process_with_strings_says_what_to_call(nlp):
    with pytest.raises(ConfigError, match=r"nlp\.pipe"):
        nlp.process(["text"])
    with pytest.raises(ConfigError, match="cannot tag a int"):
        nlp(3)


def test_readme_python_example_runs(tiny_bundle, monkeypatch):
    """The README's Python block, executed as written; the tiny bundle stands in for the default."""
    blocks = re.findall(r"## Python API\n\n```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1, "README: one python block right under '## Python API'"
    monkeypatch.setattr("llmner.bundle.default_bundle_path", lambda: Path(tiny_bundle))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 - running the README example is the point
    lines = out.getvalue().splitlines()
    assert any(line.startswith("0 en - [") for line in lines), lines
    assert any(line.startswith("n2 zh 12345 [") for line in lines), lines


def test_load_and_call_are_quiet_unless_verbose_and_leave_the_callers_filters_alone(tiny_bundle, capfd):
    import warnings

    from llmner.quiet import library_noise_hidden

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        nlp = llmner.load(tiny_bundle, llmner.PipelineConfig(selector_backend="none"))
        nlp("BRCA1 mutations cause breast cancer.")
        with library_noise_hidden():
            warnings.warn("deprecated cache argument", FutureWarning)       # what transformers says mid-call
        warnings.warn("the caller's own warning", FutureWarning)            # outside llmner: still shown
    assert [str(w.message) for w in seen if w.category is FutureWarning] == ["the caller's own warning"]
    assert "Loading weights" not in capfd.readouterr().err
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with library_noise_hidden(verbose=True):
            warnings.warn("deprecated cache argument", FutureWarning)
    assert len(seen) == 1
