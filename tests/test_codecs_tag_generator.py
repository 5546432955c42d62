"""The constrained tag generator's outputs take the inline codec's exact fast path (clean diagnostics)."""

from __future__ import annotations

import re

from llmner.codecs import get_codec
from llmner.decoding import TagGenerationConfig, TagGenerator
from llmner.prompts import PromptBuilder
from llmner.schema import EntitySchema, EntityType
from llmner.testing import tiny_causal_lm

TEXTS = [
    "Patients (n = 12) & controls < 5 years.",
    "患者 出现 发热 。",
    "<Disease>not a tag</Disease> &amp; literal",
    "  spaces  ",
]
TYPES = ["Disease", "Chemical", "protein"]


def test_constrained_outputs_decode_cleanly():
    model, tokenizer = tiny_causal_lm(seed=1)
    tag_generator = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=4, budget_extra=16))
    schema = EntitySchema("test", "en", tuple(EntityType(t, f"{t} mentions") for t in TYPES))
    prefix, suffix = PromptBuilder().split(tokenizer, "", schema)
    outputs = tag_generator.generate(prefix, [t + suffix for t in TEXTS], TEXTS, [TYPES] * len(TEXTS), "constrained")
    codec = get_codec("inline")
    tags = 0
    for text, out in zip(TEXTS, outputs):
        result = codec.decode(out.text, text, TYPES)
        assert result.diagnostics.clean, (out.text, result.diagnostics)
        opened = re.findall(r"<([A-Za-z][\w-]*)>", out.text)
        tags += len(opened)
        assert len(result.entities) == len({(e.start, e.end, e.type) for e in result.entities})
        assert len(result.entities) <= len(opened)
        for ent in result.entities:
            assert ent.text == text[ent.start : ent.end] and ent.type in TYPES
        # Writing the decoded entities back gives a target with the same copy of the text.
        assert codec.decode(codec.encode(text, result.entities), text, TYPES).entities == result.entities
    assert tags > 0  # the random model did write tags
