import pytest

from llmner.errors import ValidationError
from llmner.schema import EntitySchema, EntityType, builtin_schema_names, get_schema


def test_every_corpus_has_a_builtin_schema():
    for name in ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]:
        assert name in builtin_schema_names()
        assert get_schema(name).types
    assert get_schema("cmeee").language == "zh"


def test_user_schema_file_round_trip(tmp_path):
    schema = EntitySchema("mine", "en", (EntityType("Drug", "a medication"),))
    path = tmp_path / "mine.json"
    schema.save(path)
    assert get_schema(str(path)) == schema


@pytest.mark.parametrize("name", ["bad name", "<x>", "1abc", ""])
def test_type_names_must_be_tag_safe(name):
    with pytest.raises(ValidationError, match="type name"):
        EntitySchema("s", "en", (EntityType(name, "d"),))


def test_unknown_schema_is_a_clear_error():
    with pytest.raises(ValidationError, match="unknown schema 'nope'"):
        get_schema("nope")
