"""llmner/schema.py: built-in schemas per corpus, user schema files, and clear errors for bad schemas."""

from __future__ import annotations

import re

import orjson
import pytest

from llmner.errors import ValidationError
from llmner.schema import EntitySchema, EntityType, builtin_schema_names, get_schema

BUILTIN_TYPES = {
    "ncbi_disease": ("en", {"Disease"}),
    "bc5cdr": ("en", {"Chemical", "Disease"}),
    "genia": ("en", {"protein", "DNA", "RNA", "cell_line", "cell_type"}),
    "jnlpba": ("en", {"protein", "DNA", "RNA", "cell_line", "cell_type"}),
    "bc2gm": ("en", {"GENE"}),
    "linnaeus": ("en", {"Species"}),
    "s800": ("en", {"Species"}),
    "cmeee": ("zh", {"dis", "sym", "dru", "equ", "pro", "bod", "ite", "mic", "dep"}),
}


@pytest.mark.parametrize("name", sorted(BUILTIN_TYPES))
def test_builtin_schema_loads_with_types_and_language(name):
    schema = get_schema(name)
    language, types = BUILTIN_TYPES[name]
    assert schema.name == name and schema.language == language
    assert set(schema.type_names) == types
    for t in schema.types:
        assert schema.definition(t.name) == t.definition and t.definition.strip()
        assert t.name in schema
    if language == "zh":  # CMeEE definitions are in Chinese
        assert all(re.search(r"[\u4e00-\u9fff]", t.definition) for t in schema.types)
    assert EntitySchema.from_dict(orjson.loads(schema.to_json())) == schema


def test_builtin_names_match_the_corpus_registry():
    from llmner.data_processing.corpora import CORPUS_NAMES, corpus_schema

    assert set(CORPUS_NAMES) <= set(builtin_schema_names())
    assert all(corpus_schema(n).name == n for n in CORPUS_NAMES)


def test_user_schema_file_by_path(tmp_path):
    path = tmp_path / "drugs.json"
    path.write_text('{"name": "drugs", "language": "en", "description": "my corpus", "types": '
                    '[{"name": "Drug", "definition": "a medication"}, {"name": "Dose", "definition": "an amount of drug"}]}')
    schema = get_schema(path)
    assert schema.type_names == ("Drug", "Dose") and schema.description == "my corpus"
    assert get_schema(str(path)) == schema
    saved = tmp_path / "copy.json"
    schema.save(saved)
    assert EntitySchema.load(saved) == schema
    assert schema.subset(["Dose"]).type_names == ("Dose",)


def test_unknown_type_lookup_is_clear():
    with pytest.raises(ValidationError, match="schema 'bc5cdr': unknown entity type 'Gene' \\(known: Chemical, Disease\\)"):
        get_schema("bc5cdr").definition("Gene")


def _schema_file(tmp_path, payload) -> str:
    path = tmp_path / "s.json"
    path.write_bytes(payload if isinstance(payload, bytes) else orjson.dumps(payload))
    return str(path)


GOOD_TYPE = {"name": "Drug", "definition": "a medication"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "is not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"name": "x", "types": [GOOD_TYPE]}, "missing field 'language'"),
        ({"name": "x", "language": "en", "types": [GOOD_TYPE], "colour": "red"}, "unknown field(s) ['colour']"),
        ({"name": "x", "language": "en", "types": []}, "schema 'x': no entity types"),
        ({"name": "x", "language": "en", "types": [{"name": "Drug"}]}, "types[0] needs 'name' and 'definition'"),
        ({"name": "x", "language": "en", "types": [GOOD_TYPE, GOOD_TYPE]}, "type 'Drug' listed twice"),
        ({"name": "x", "language": "en", "types": [{"name": "Drug", "definition": "  "}]}, "type 'Drug' has no definition"),
        ({"name": "x", "language": "fr", "types": [GOOD_TYPE]}, "unknown language 'fr' (expected en or zh)"),
        ({"name": "x", "language": "en", "types": [{"name": "a drug", "definition": "d"}]}, "type name 'a drug' must start with a letter"),
    ],
)
def test_bad_schema_files_give_one_clear_error(tmp_path, payload, message):
    path = _schema_file(tmp_path, payload)
    with pytest.raises(ValidationError) as info:
        get_schema(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "x", "language": "en", "types": 5}, "'types' must be a list"),
        ({"name": "x", "language": "en", "types": [GOOD_TYPE], "metadata": 3}, "'metadata' must be an object"),
    ],
)
def test_wrongly_typed_schema_fields_give_a_clear_error(tmp_path, payload, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        get_schema(_schema_file(tmp_path, payload))


def test_missing_schema_file_and_unknown_builtin(tmp_path):
    with pytest.raises(ValidationError, match="schema file not found"):
        get_schema(tmp_path / "absent.json")
    with pytest.raises(ValidationError, match="unknown schema 'nope': not a file and not a built-in schema \\(bc2gm"):
        get_schema("nope")


def test_schema_objects_validate_on_construction():
    with pytest.raises(ValidationError, match="no entity types"):
        EntitySchema("s", "en", ())
    schema = EntitySchema("s", "zh", (EntityType("dis", "疾病"),))
    assert schema.language == "zh" and schema.to_dict()["types"] == [{"name": "dis", "definition": "疾病"}]
