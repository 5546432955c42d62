import pytest

from llmner.errors import ConfigError
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.schema import get_schema


class _NoTemplateTokenizer:
    chat_template = None


def test_prefix_is_shared_and_text_is_verbatim():
    builder = PromptBuilder()
    schema = get_schema("bc5cdr")
    tok = _NoTemplateTokenizer()
    p1, s1 = builder.split(tok, "aspirin", schema)
    p2, s2 = builder.split(tok, "other text", schema)
    assert (p1, s1) == (p2, s2)
    assert builder.prompt(tok, "a <b> & c", schema) == p1 + "a <b> & c" + s1
    assert "Chemical:" in p1 and "Disease:" in p1


def test_language_and_definition_modes():
    zh = PromptBuilder().system_message(get_schema("cmeee"))
    assert "逐字复制" in zh and "- dis:" in zh
    full = PromptBuilder(PromptConfig(definitions="full")).system_message(get_schema("ncbi_disease"))
    compact = PromptBuilder(PromptConfig(definitions="compact")).system_message(get_schema("ncbi_disease"))
    names = PromptBuilder(PromptConfig(definitions="none")).system_message(get_schema("ncbi_disease"))
    assert len(full) > len(compact) > len(names)
    assert names.rstrip().endswith("- Disease")


def test_training_and_inference_share_the_builder():
    builder = PromptBuilder()
    schema = get_schema("genia")
    msgs = builder.messages("IL-2", schema, target="<protein>IL-2</protein>")
    assert msgs[:2] == builder.messages("IL-2", schema)
    assert msgs[2] == {"role": "assistant", "content": "<protein>IL-2</protein>"}


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="unknown codec"):
        PromptBuilder(PromptConfig(codec="xml"))
