"""The shipped bundle's reader on the Chinese sample notes (the packaged Gemma-3-270M and the trained head)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTES = Path(__file__).resolve().parents[1] / "examples" / "notes.jsonl"


@pytest.mark.slow
def test_shipped_reader_finds_the_drugs_and_diseases_of_the_chinese_notes():
    import llmner

    notes = {r["id"]: r for r in map(json.loads, NOTES.read_text(encoding="utf-8").splitlines()) if r.get("language") == "zh"}
    nlp = llmner.load()
    assert nlp.reader is not None and "cmeee" in nlp.reader_schemas
    found = {doc.id: {(e.text, e.type) for e in doc.entities} for doc in nlp.pipe(list(notes.values()))}
    # The failures the issue names: amlodipine tagged as a symptom, hypertension missed, insulin a body part.
    assert ("氨氯地平", "药物") in found["note-009"]
    assert any(text.startswith("高血压") and etype == "疾病" for text, etype in found["note-009"])
    assert {("二甲双胍", "药物"), ("胰岛素", "药物")} <= found["note-010"]
    assert ("阿莫西林", "药物") in found["note-012"]
    for doc in nlp.pipe(list(notes.values())):
        assert all(e.source == "reader" and doc.text[e.start : e.end] == e.text for e in doc.entities)
