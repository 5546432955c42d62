import orjson
import pytest

from llmner.doc import Document, Entity, ResultRecord, dedupe_entities
from llmner.errors import ValidationError


def test_document_round_trip_with_nested_entities():
    doc = Document(id="d1", text="IL-2 promoter activity", language="en", metadata={"source": "x"})
    doc.entities = [doc.span(0, 13, "DNA"), doc.span(0, 4, "protein", score=0.9, normalized_id="P60568")]
    back = Document.from_json(doc.to_json())
    assert back == doc
    assert back.entities[1].score == 0.9 and back.entities[1].normalized_id == "P60568"


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"text": "x"}, "missing field 'id'"),
        ({"id": "a"}, "missing field 'text'"),
        ({"id": "a", "text": "abc", "mrn": 1, "metadata": {"mrn": 2}}, "'mrn' given both at the top level and in metadata"),
        ({"id": "a", "text": "abc", "language": "fr"}, "unknown language 'fr'"),
        ({"id": "a", "text": "abc", "entities": [{"start": 0, "end": 9, "type": "X"}]}, "out of range"),
        ({"id": "a", "text": "abc", "entities": [{"start": 2, "end": 1, "type": "X"}]}, "out of range"),
        ({"id": "a", "text": "abc", "entities": [{"start": 0, "end": 2, "type": "X", "text": "bc"}]}, "does not match"),
        ({"id": "a", "text": "abc", "entities": [{"start": 0, "end": 2, "type": "X", "bogus": 1}]}, "unknown field(s) 'bogus'"),
        ({"id": "a", "text": "abc", "entities": [{"start": "0", "end": 2, "type": "X"}]}, "must be integers"),
        ({"id": "a", "text": 5}, "text must be a string"),
    ],
)
def test_validation_errors_name_the_problem(payload, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Document.from_dict(payload)


def test_not_json_is_a_validation_error():
    with pytest.raises(ValidationError, match="not valid JSON"):
        Document.from_json(b"{nope")


def test_dedupe_keeps_best_score_and_nesting():
    a = Entity(0, 4, "protein", "IL-2", score=0.2)
    b = Entity(0, 4, "protein", "IL-2", score=0.8)
    outer = Entity(0, 13, "DNA", "IL-2 promoter")
    out = dedupe_entities([a, outer, b])
    assert out == [outer, b] and out[1].score == 0.8


def test_result_record_is_versioned_and_round_trips():
    rec = ResultRecord("d1", [Entity(0, 4, "Disease", "gout", score=0.7)], model_ids={"generator": "g"}, chunk_count=2)
    data = orjson.loads(rec.to_json())
    assert data["schema_version"] == 1
    assert ResultRecord.from_json(rec.to_json()) == rec
    data["schema_version"] = 99
    with pytest.raises(ValidationError, match="schema_version"):
        ResultRecord.from_dict(data)


def test_generator_score_round_trips_and_breaks_ties():
    ent = Entity(0, 4, "Disease", "gout", generator_score=0.25)
    assert Entity.from_dict(ent.to_dict()).generator_score == 0.25
    assert "generator_score" not in Entity(0, 4, "Disease", "gout").to_dict()
    with pytest.raises(ValidationError):
        Entity.from_dict({"start": 0, "end": 4, "type": "Disease", "generator_score": "high"})
    low, high = Entity(0, 4, "D", "gout", generator_score=0.1), Entity(0, 4, "D", "gout", generator_score=0.9)
    assert dedupe_entities([low, high])[0].generator_score == 0.9
