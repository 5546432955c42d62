"""llmner.evaluation.schema_check: conditions, gold mapping, type confusion and absorption."""

from __future__ import annotations

import pytest

from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import ConfigError
from llmner.evaluation.predict import predict_documents
from llmner.evaluation.schema_check import (
    CONVENTIONS_APART,
    NONE,
    check_condition,
    namings_for,
    type_confusion,
)
from llmner.schema import get_schema

TEXT = "IL-2 gene in T cells and Jurkat cells."


def _gold() -> list[Document]:
    return [Document("d1", TEXT, "en", {}, [Entity(0, 4, "protein"), Entity(0, 9, "DNA"), Entity(13, 20, "cell_type"),
                                            Entity(25, 37, "cell_line")])]


def test_three_conditions_for_genia_map_gold_types() -> None:
    own, default, held = namings_for(get_schema("genia"))
    assert (own.condition, default.condition, held.condition) == ("own", "default", "held_out")
    assert default.schema.name == "biomedical_en" and default.gold_map["DNA"] == "Gene"
    assert held.schema.type_names == ("Protein_name", "DNA_element", "Ribonucleic_acid", "Immortalized_cells", "Cell_kind")
    assert namings_for(get_schema("cmeee"))[1].schema.name == "clinical_zh"


def test_default_condition_scores_only_annotated_types_and_counts_absorption() -> None:
    _, default, _ = namings_for(get_schema("genia"))
    # One type for everything (what an unseen schema used to produce), plus a Disease the corpus does not annotate.
    predicted = [Document("d1", TEXT, "en", {}, [Entity(0, 4, "Gene"), Entity(0, 9, "Gene"), Entity(13, 20, "Gene"),
                                                 Entity(25, 37, "Gene"), Entity(28, 33, "Disease")])]
    result = check_condition(default, _gold(), predicted)
    assert result.report.strict.tp == 2 and result.report.strict.fp == 2 and result.report.strict.fn == 2
    share, gold_type, absorbing = result.absorption()
    assert share == 1.0 and absorbing == "Gene" and gold_type in ("CellLine", "CellType")
    assert result.confusion[(NONE, "Disease")] == 1          # visible in the confusion, not scored


def test_type_confusion_diagonal_missed_and_spurious() -> None:
    gold = _gold()
    predicted = [Document("d1", TEXT, "en", {}, [Entity(0, 4, "protein"), Entity(13, 20, "cell_line"), Entity(5, 9, "DNA")])]
    confusion = type_confusion(gold, predicted)
    assert confusion[("protein", "protein")] == 1 and confusion[("cell_type", "cell_line")] == 1
    assert confusion[("DNA", NONE)] == 1 and confusion[("cell_line", NONE)] == 1 and confusion[(NONE, "DNA")] == 1


def test_predict_documents_tags_under_the_given_schema_and_drops_gold() -> None:
    seen: list[str] = []

    class RecordingPipeline:
        def add_schema(self, schema):
            seen.append(schema.name)

        def process(self, docs, select=True):
            assert not select and all(d.metadata["schema"] == "biomedical_en" and not d.entities for d in docs)
            return [ResultRecord(d.id, [Entity(0, 4, "Gene")], {"generator": "g"}, language=d.language) for d in docs]

    done: list[int] = []
    out = predict_documents(RecordingPipeline(), _gold(), get_schema("biomedical_en"), batch_documents=1, on_batch=done.append)
    assert seen == ["biomedical_en"] and done == [1]
    assert out[0].id == "d1" and out[0].text == TEXT and [e.type for e in out[0].entities] == ["Gene"]
    assert out[0].metadata["model_ids"] == {"generator": "g"}


def test_prediction_cache_resumes_only_the_same_model_and_slice(tmp_path):
    from llmner.evaluation.predict import PredictionCache

    key = {"model": "bundle + step-400", "sentences": 100}
    cache = PredictionCache(tmp_path / "c", key)
    assert cache.get("cmeee", "own") is None
    doc = Document("1", "患者有高血压。", "zh", {}, [Entity(3, 6, "疾病", "高血压", generator_score=0.5)])
    cache.put("cmeee", "own", [doc])
    (back,) = PredictionCache(tmp_path / "c", dict(key)).get("cmeee", "own")
    assert back.entities == doc.entities and back.entities[0].generator_score == 0.5
    assert not list((tmp_path / "c").glob("*.tmp"))
    with pytest.raises(ConfigError, match="holds predictions of"):
        PredictionCache(tmp_path / "c", {**key, "sentences": 40})
    assert PredictionCache(tmp_path / "c").get("cmeee", "own")[0].entities == doc.entities   # read-only
    with pytest.raises(ConfigError, match="no predictions kept"):
        PredictionCache(tmp_path / "missing")


def test_linnaeus_people_set_aside_on_both_sides_under_every_condition() -> None:
    text = "Patients and mice were infected; the patients' human cells grew."
    gold = [Document("d1", text, "en", {}, [Entity(0, 8, "Species"), Entity(13, 17, "Species"), Entity(37, 45, "Species"),
                                            Entity(48, 53, "Species")])]
    # Under the default schema the model follows its definition: people untagged, mice and human tagged.
    predicted = [Document("d1", text, "en", {}, [Entity(13, 17, "Species"), Entity(48, 53, "Species")])]
    what, people = CONVENTIONS_APART["linnaeus"]
    _, default, _ = namings_for(get_schema("linnaeus"))
    whole = check_condition(default, gold, predicted).report.strict
    apart = check_condition(default, gold, predicted, people).report.strict
    assert (whole.tp, whole.fn) == (2, 2)
    assert (apart.tp, apart.fp, apart.fn) == (2, 0, 0)   # "Patients", "patients" gone from the gold; "human" stays
    # A people mention the model did tag leaves the predictions too, so (a) is scored on the same mentions:
    # left in the predictions it would be a false positive, left in both a true positive.
    own, _, _ = namings_for(get_schema("linnaeus"))
    tagged = [Document("d1", text, "en", {}, [Entity(0, 8, "Species"), Entity(13, 17, "Species")])]
    scored = check_condition(own, gold, tagged, people).report.strict
    assert (scored.tp, scored.fp, scored.fn) == (1, 0, 1)   # mice found, human missed
    assert what == "people" and "human" not in people


def test_default_schema_variant_replaces_definitions_and_keeps_the_gold_map() -> None:
    from llmner.schema import EntitySchema

    base = get_schema("biomedical_en").to_dict()
    base["types"][2]["definition"] = "a gene, gene product or DNA element (e.g. 'IL-2 promoter')"
    variant = EntitySchema.from_dict(base)
    _, default, _ = namings_for(get_schema("genia"), default_schema=variant)
    assert default.schema.types[2].definition.endswith("'IL-2 promoter')") and default.gold_map["DNA"] == "Gene"
    assert namings_for(get_schema("cmeee"), default_schema=variant)[1].schema.name == "clinical_zh"  # other language
    renamed = dict(base, types=base["types"][:5])
    with pytest.raises(ConfigError, match="keeps its name and types"):
        namings_for(get_schema("genia"), default_schema=EntitySchema.from_dict(renamed))
