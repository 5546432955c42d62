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


def test_type_correspondence_pairs_each_prompted_type_with_exactly_one_reported_type():
    from llmner.schema import type_correspondence

    assert type_correspondence(get_schema("clinical_zh"), get_schema("cmeee")) == {
        "dis": "疾病", "sym": "临床表现", "dru": "药物", "equ": "医疗设备", "pro": "医疗程序",
        "bod": "身体部位", "ite": "检验项目", "mic": "微生物", "dep": "科室"}
    with pytest.raises(ValidationError, match="different languages"):
        type_correspondence(get_schema("clinical_zh"), get_schema("bc5cdr"))
    readable = EntitySchema("readable", "en", (EntityType("Disease", "d", ("dis",)), EntityType("Drug", "c", ("chem",))))
    only_one = EntitySchema("codes", "en", (EntityType("dis", "d"),))
    with pytest.raises(ValidationError, match="unmatched: Drug"):       # Drug could never be found
        type_correspondence(readable, only_one)
    stray = EntitySchema("codes", "en", (EntityType("dis", "d"), EntityType("chem", "c"), EntityType("gene", "g")))
    with pytest.raises(ValidationError, match="'gene' of schema 'codes' is neither"):
        type_correspondence(readable, stray)
    doubled = EntitySchema("codes", "en", (EntityType("dis", "d"), EntityType("Disease", "d2")))
    with pytest.raises(ValidationError, match="exactly once"):
        type_correspondence(readable, doubled)
