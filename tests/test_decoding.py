"""Decoding modes on a tiny random Llama: the constrained copy is exact, speculative == constrained,
results do not depend on the batch, and the shared prompt-prefix KV changes nothing.

A random model writes tags almost anywhere the constraint allows, which is what these tests want: it
exercises markers at every kind of boundary (escapes, CJK bytes, whitespace, tokens straddling tags).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import synthetic_sentences, tiny_causal_lm

from llmner.codecs.inline import UNESCAPES
from llmner.decoding import DecodeConfig, Decoder
from llmner.prompts import PromptBuilder
from llmner.schema import EntitySchema, EntityType

MARKER = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9_\-]*)>")
TYPES = ["Disease", "Chemical", "protein", "DNA", "cell_type"]
TRICKY = [
    "BRCA1 is mutated in breast cancer.",
    "Patients (n = 12) & controls < 5 years > 3 months.",
    "患者 出现 发热 和 咳嗽 。",
    "α-synuclein [Aβ]  rose\t2-fold\n",
    "a",
    "<Disease>not a tag</Disease> &amp; literal",
    "IL-2 binds the IL-2 promoter in T cells",
    "  leading and trailing spaces  ",
]


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(seed=0)


@pytest.fixture(scope="module")
def decoder(lm):
    model, tokenizer = lm
    return Decoder(model, tokenizer, DecodeConfig(budget_factor=16, budget_extra=64))


def schema_of(types: list[str]) -> EntitySchema:
    return EntitySchema("test", "en", tuple(EntityType(t, f"{t} mentions") for t in types))


def run(decoder: Decoder, texts: list[str], types: list[str], mode: str):
    prefix, suffix = PromptBuilder().split(decoder.tokenizer, "", schema_of(types))
    return decoder.decode(prefix, [t + suffix for t in texts], texts, [types] * len(texts), mode)


def check_copy(output: str, source: str, types: list[str]) -> None:
    """Balanced, non-empty, schema-typed tags, and the text between them is exactly the escaped source."""
    stack: list[tuple[str, int]] = []
    plain: list[str] = []
    last = 0
    copied = 0
    for m in MARKER.finditer(output):
        chunk = output[last : m.start()]
        plain.append(chunk)
        copied += len(chunk)
        last = m.end()
        closing, name = m.group(1), m.group(2)
        assert name in types, output
        if closing:
            assert stack and stack[-1][0] == name, f"unbalanced close in {output!r}"
            assert copied > stack[-1][1], f"empty tag in {output!r}"
            stack.pop()
        else:
            stack.append((name, copied))
    plain.append(output[last:])
    assert not stack, f"unclosed tag in {output!r}"
    text = "".join(plain)
    assert "<" not in text and ">" not in text
    assert re.sub("&amp;|&lt;|&gt;", lambda e: UNESCAPES[e.group(0)], text) == source


def test_constrained_copies_tricky_sources(decoder):
    outs = run(decoder, TRICKY, TYPES, "constrained")
    for out, src in zip(outs, TRICKY):
        assert out.finished
        check_copy(out.text, src, TYPES)
        # the bytes we matched are what the tokenizer itself decodes
        assert decoder.tokenizer.decode(out.token_ids) == out.text
    assert sum(MARKER.search(o.text) is not None for o in outs) >= 4  # the random model does tag


texts_st = st.lists(
    st.sampled_from(list("abcXYZ019 -&<>()[]{}.,;\t\n") + ["患", "者", "α", "é", "  ", "BRCA1", "cancer", "<D", "&amp;"]),
    min_size=1, max_size=25,
).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(texts_st, min_size=1, max_size=3),
       types=st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))
def test_constrained_always_reproduces_source(decoder, texts, types):
    for out, src in zip(run(decoder, texts, types, "constrained"), texts):
        check_copy(out.text, src, types)


SENTENCES = TRICKY + [s for s in synthetic_sentences(60, seed=3) if "<" not in s][:16]


def test_speculative_equals_constrained_batch_1_and_4(decoder):
    constrained = run(decoder, SENTENCES, TYPES[:2], "constrained")
    for batch in (1, 4):
        spec = []
        for i in range(0, len(SENTENCES), batch):
            spec += run(decoder, SENTENCES[i : i + batch], TYPES[:2], "speculative")
        assert [o.token_ids for o in spec] == [o.token_ids for o in constrained]
        assert [o.text for o in spec] == [o.text for o in constrained]
    assert sum(o.forward_passes for o in spec) < sum(o.forward_passes for o in constrained)
    assert all(o.output_tokens == len(o.token_ids) for o in spec)


@pytest.mark.parametrize("mode", ["free", "constrained", "speculative"])
def test_result_does_not_depend_on_batch(decoder, mode):
    texts = SENTENCES[:10]
    alone = [run(decoder, [t], TYPES[:3], mode)[0] for t in texts]
    together = run(decoder, texts, TYPES[:3], mode)
    halves = run(decoder, texts[5:], TYPES[:3], mode) + run(decoder, texts[:5], TYPES[:3], mode)
    halves = halves[5:] + halves[:5]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    assert [o.token_ids for o in halves] == [o.token_ids for o in alone]


@pytest.mark.parametrize("mode", ["free", "speculative"])
def test_prefix_cache_reuse_changes_nothing(lm, mode):
    model, tokenizer = lm
    reuse = Decoder(model, tokenizer, DecodeConfig(max_new_tokens=60))
    fresh = Decoder(model, tokenizer, DecodeConfig(max_new_tokens=60, reuse_prefix_cache=False))
    texts = SENTENCES[:6]
    a = run(reuse, texts, ["Disease"], mode)
    b = run(reuse, texts, ["Disease"], mode)  # second call reads the stored prefix KV
    c = run(fresh, texts, ["Disease"], mode)
    assert len(reuse._prefixes) == 1 and not fresh._prefixes
    assert [o.token_ids for o in a] == [o.token_ids for o in b] == [o.token_ids for o in c]


def test_budget_exhausted_still_reproduces_source(lm):
    model, tokenizer = lm
    short = Decoder(model, tokenizer, DecodeConfig(max_new_tokens=3))
    for mode in ("constrained", "speculative"):
        outs = run(short, TRICKY[:3], TYPES, mode)
        assert all(not o.finished and o.output_tokens == 3 for o in outs)
        for out, src in zip(outs, TRICKY[:3]):
            check_copy(out.text, src, TYPES)
    free = run(short, TRICKY[:2], TYPES, "free")
    assert all(o.output_tokens <= 3 for o in free)


def test_unknown_mode_is_a_config_error(decoder):
    from llmner.errors import ConfigError

    with pytest.raises(ConfigError, match="mode"):
        run(decoder, ["x"], TYPES, "beam")
