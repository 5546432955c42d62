"""Decoding modes on a tiny random Llama: the constrained copy is exact, speculative == constrained,
results do not depend on the batch, and the shared prompt-prefix KV changes nothing.

A random model writes tags almost anywhere the constraint allows, which is what these tests want: it
exercises markers at every kind of boundary (escapes, CJK bytes, whitespace, tokens straddling tags).
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmner.codecs.inline import UNESCAPES
from llmner.decoding import TagGenerationConfig, TagGenerator
from llmner.prompts import PromptBuilder
from llmner.schema import EntitySchema, EntityType
from llmner.testing import synthetic_sentences, tiny_causal_lm

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
def tag_generator(lm):
    model, tokenizer = lm
    return TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=16, budget_extra=64))


def schema_of(types: list[str]) -> EntitySchema:
    return EntitySchema("test", "en", tuple(EntityType(t, f"{t} mentions") for t in types))


def run(tag_generator: TagGenerator, texts: list[str], types: list[str], mode: str):
    prefix, suffix = PromptBuilder().split(tag_generator.tokenizer, "", schema_of(types))
    return tag_generator.generate(prefix, [t + suffix for t in texts], texts, [types] * len(texts), mode)


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


def test_constrained_copies_tricky_sources(tag_generator):
    outs = run(tag_generator, TRICKY, TYPES, "constrained")
    for out, src in zip(outs, TRICKY):
        assert out.finished
        check_copy(out.text, src, TYPES)
        # the bytes we matched are what the tokenizer itself decodes
        assert tag_generator.tokenizer.decode(out.token_ids) == out.text
    assert sum(MARKER.search(o.text) is not None for o in outs) >= 4  # the random model does tag


texts_st = st.lists(
    st.sampled_from(list("abcXYZ019 -&<>()[]{}.,;\t\n") + ["患", "者", "α", "é", "  ", "BRCA1", "cancer", "<D", "&amp;"]),
    min_size=1, max_size=25,
).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(texts_st, min_size=1, max_size=3),
       types=st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))
def test_constrained_always_reproduces_source(tag_generator, texts, types):
    for out, src in zip(run(tag_generator, texts, types, "constrained"), texts):
        check_copy(out.text, src, types)


SENTENCES = TRICKY + [s for s in synthetic_sentences(60, seed=3) if "<" not in s][:16]


def test_speculative_equals_constrained_batch_1_and_4(tag_generator):
    constrained = run(tag_generator, SENTENCES, TYPES[:2], "constrained")
    for batch in (1, 4):
        spec = []
        for i in range(0, len(SENTENCES), batch):
            spec += run(tag_generator, SENTENCES[i : i + batch], TYPES[:2], "speculative")
        assert [o.token_ids for o in spec] == [o.token_ids for o in constrained]
        assert [o.text for o in spec] == [o.text for o in constrained]
    assert sum(o.forward_passes for o in spec) < sum(o.forward_passes for o in constrained)
    assert all(o.output_tokens == len(o.token_ids) for o in spec)


def test_speculative_equals_constrained_with_draft_trees_in_every_row(lm):
    model, tokenizer = lm
    # a budget wide enough for a full trunk and tag branches in each of 4 rows
    wide = TagGenerator(model, tokenizer, TagGenerationConfig(budget_factor=16, budget_extra=64, draft_budget=4 * 48))
    texts = SENTENCES[:12]
    constrained = run(wide, texts, TYPES[:3], "constrained")
    spec = []
    for i in range(0, len(texts), 4):
        spec += run(wide, texts[i : i + 4], TYPES[:3], "speculative")
    assert [o.token_ids for o in spec] == [o.token_ids for o in constrained]


@pytest.mark.parametrize("mode", ["free", "constrained", "speculative"])
def test_result_does_not_depend_on_batch(tag_generator, mode):
    texts = SENTENCES[:6]
    alone = [run(tag_generator, [t], TYPES[:3], mode)[0] for t in texts]
    together = run(tag_generator, texts, TYPES[:3], mode)
    halves = run(tag_generator, texts[3:], TYPES[:3], mode) + run(tag_generator, texts[:3], TYPES[:3], mode)
    halves = halves[3:] + halves[:3]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    assert [o.token_ids for o in halves] == [o.token_ids for o in alone]


@pytest.mark.parametrize("mode", ["free", "speculative"])
def test_prefix_cache_reuse_changes_nothing(lm, mode):
    model, tokenizer = lm
    reuse = TagGenerator(model, tokenizer, TagGenerationConfig(max_new_tokens=60))
    fresh = TagGenerator(model, tokenizer, TagGenerationConfig(max_new_tokens=60, reuse_prefix_cache=False))
    texts = SENTENCES[:6]
    a = run(reuse, texts, ["Disease"], mode)
    b = run(reuse, texts, ["Disease"], mode)  # second call reads the stored prefix KV
    c = run(fresh, texts, ["Disease"], mode)
    assert len(reuse._prefixes) == 1 and not fresh._prefixes
    assert [o.token_ids for o in a] == [o.token_ids for o in b] == [o.token_ids for o in c]


def test_budget_exhausted_still_reproduces_source(lm):
    model, tokenizer = lm
    short = TagGenerator(model, tokenizer, TagGenerationConfig(max_new_tokens=3))
    for mode in ("constrained", "speculative"):
        outs = run(short, TRICKY[:3], TYPES, mode)
        assert all(not o.finished and o.output_tokens == 3 for o in outs)
        for out, src in zip(outs, TRICKY[:3]):
            check_copy(out.text, src, TYPES)
    free = run(short, TRICKY[:2], TYPES, "free")
    assert all(o.output_tokens <= 3 for o in free)


def test_unknown_mode_is_a_config_error(tag_generator):
    from llmner.errors import ConfigError

    with pytest.raises(ConfigError, match="mode"):
        run(tag_generator, ["x"], TYPES, "beam")


class ScriptedLM(torch.nn.Module):
    """A causal LM that writes a fixed token script: at position p it prefers ``script[p - start]``
    (``start``: the position of the last prompt token), whatever the tokens before. Position-only
    logits make drafts of any shape verifiable, so pass counts show what the draft tree saves."""

    def __init__(self, vocab_size: int, script: list[int], start: int, eos: int) -> None:
        super().__init__()
        from transformers import LlamaConfig

        self.config = LlamaConfig(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                  num_key_value_heads=1, head_dim=8)
        self.config._attn_implementation = "sdpa"
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.script, self.start, self.eos = script, start, eos
        self.fed: list[int] = []  # tokens per forward pass

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True,
                logits_to_keep=1, **_):
        from types import SimpleNamespace

        batch, width = input_ids.shape
        assert batch == 1  # the scripted start position is per row
        self.fed.append(width)
        if position_ids is None:  # the shared prompt prefix
            position_ids = torch.arange(width)[None] + past_key_values.get_seq_length()
        empty = torch.zeros(batch, 1, width, 8)
        past_key_values.update(empty, empty, 0)
        logits = torch.zeros(batch, logits_to_keep, self.config.vocab_size)
        for q, pos in enumerate(position_ids[0, -logits_to_keep:].tolist()):
            step = pos - self.start
            logits[0, q, self.script[step] if 0 <= step < len(self.script) else self.eos] = 1.0
        return SimpleNamespace(logits=logits)


def scripted_run(output: str, source: str, types: list[str], config: TagGenerationConfig):
    from llmner.testing import tiny_causal_tokenizer

    tokenizer = tiny_causal_tokenizer()
    prefix, suffix = PromptBuilder().split(tokenizer, "", schema_of(types))
    start = len(tokenizer(prefix + source + suffix, add_special_tokens=False)["input_ids"]) - 1
    script = tokenizer(output, add_special_tokens=False)["input_ids"]
    model = ScriptedLM(len(tokenizer), script, start, tokenizer.eos_token_id)
    tag_generator = TagGenerator(model, tokenizer, config)
    outs = {mode: tag_generator.generate(prefix, [source + suffix], [source], [types], mode)[0]
            for mode in ("constrained", "speculative")}
    assert outs["speculative"].text == outs["constrained"].text == output
    return outs["speculative"].forward_passes


LINEAR = TagGenerationConfig(branch_tokens=0)


def test_close_tag_drafted_and_accepted_in_the_same_pass():
    source = "Germline APC mutations cause familial adenomatous polyposis ."
    output = "Germline APC mutations cause <Disease>familial adenomatous polyposis</Disease> ."
    # prefill (+ source draft, rejected where the tag opens); then the open finished, the mention and,
    # on a close branch, the rest: one pass. A linear draft is rejected at the close: one pass more.
    assert scripted_run(output, source, ["Disease"], TagGenerationConfig()) == 2
    assert scripted_run(output, source, ["Disease"], LINEAR) == 3


def drafted_sequences(tree) -> list[list[int]]:
    """Every root-to-leaf token path of a draft tree."""
    paths, leaves = {0: []}, []
    for i, (token, parent) in enumerate(zip(tree.tokens, tree.parents)):
        paths[i + 1] = paths[parent] + [token]
    for col, path in paths.items():
        if col and col not in tree.children:
            leaves.append(path)
    return leaves


def draft_for(source: str, types: list[str], written: str, memory: dict[bytes, str], opened: bool = False):
    from llmner.decoding import CopyConstraint, vocab_for
    from llmner.decoding.drafting import DraftLimits, draft_tree
    from llmner.testing import tiny_causal_tokenizer

    tokenizer = tiny_causal_tokenizer()
    vocab = vocab_for(tokenizer)
    constraint = CopyConstraint(source, types, vocab)
    state = constraint.start()
    for b in written.encode():
        state = constraint.step(state, b)
    tag_generator = TagGenerator.__new__(TagGenerator)
    tag_generator.tokenizer, tag_generator.vocab = tokenizer, vocab

    def tokenize(data: bytes, limit: int) -> list[int]:
        return tag_generator._draft_ids(data, limit)

    tree = draft_tree(constraint, state, None, memory, opened, DraftLimits(trunk=24, nodes=120, branch=5, forks=4), tokenize)
    texts = [tokenizer.decode(seq) for seq in drafted_sequences(tree)]
    return tree, texts


def test_pending_open_marker_drafts_every_type():
    _, texts = draft_for("IL-2 binds the IL-2 promoter in T cells", ["protein", "DNA", "cell_type"],
                         "IL-2 binds the IL-2 promoter in <", {})
    for name in ("protein", "DNA", "cell_type"):
        assert any(t.startswith(f"{name}>T cells") for t in texts), texts


def test_entity_memory_drafts_a_repeated_mention_tagged():
    source = "BRCA1 is mutated in breast cancer ; breast cancer risk rises ."
    written = "BRCA1 is mutated in <Disease>breast cancer</Disease>"
    _, texts = draft_for(source, ["Disease"], written, {b"breast cancer": "Disease"})
    assert any(t.startswith(" ; <Disease>breast cancer</Disease> risk") for t in texts), texts
    _, without = draft_for(source, ["Disease"], written, {})
    assert not any("<Disease>breast cancer</Disease>" in t for t in without)


def test_close_branches_at_the_next_word_boundaries():
    _, texts = draft_for("familial adenomatous polyposis coli was seen .", ["Disease"], "<Disease>fam", {})
    for mention in ("ilial", "ilial adenomatous", "ilial adenomatous polyposis", "ilial adenomatous polyposis coli"):
        assert any(t.startswith(mention + "</Disease>") for t in texts), (mention, texts)
    assert any(t.startswith("ilial adenomatous polyposis coli was seen .") for t in texts)  # the trunk


def test_open_bias_moves_the_choice_to_an_open_marker_and_keeps_the_models_probability(lm):
    from llmner.decoding import CopyConstraint, vocab_for

    _, tokenizer = lm
    vocab = vocab_for(tokenizer)
    plain = CopyConstraint("cancer risk", ["Disease"], vocab)
    biased = CopyConstraint("cancer risk", ["Disease"], vocab, open_bias=3.0)
    state = plain.start()
    ids, _ = plain.allowed(state)
    opens = [i for i in ids if vocab.token_bytes[i][:1] == b"<"]
    copies = [i for i in ids if i not in opens]
    assert opens and copies
    logits = torch.full((len(vocab.token_bytes),), -20.0)
    logits[copies[0]], logits[opens[0]] = 2.0, 0.0           # copying wins by 2 logits
    token, prob = plain.choose(state, logits)
    assert token == copies[0]
    token_b, prob_b = biased.choose(state, logits)
    assert token_b == opens[0]                               # +3 beats the 2-logit margin
    p_open = float(torch.softmax(logits[torch.tensor(ids)], 0)[ids.index(opens[0])])
    assert prob_b == pytest.approx(p_open)                   # the unbiased probability of what was chosen
    # Once a marker is pending, its remaining bytes get no bonus.
    inside = biased.advance(biased.start(), min(opens, key=lambda i: len(vocab.token_bytes[i])))
    assert inside is not None and inside.marker.startswith(b"<")
    assert biased._open_bonus(inside, biased.allowed(inside)[0]) is None


# Prompts of very different lengths in one batch: the first pass runs in groups (grouped prefill).
UNEVEN = [SENTENCES[0], " ".join(SENTENCES[1:6]), "a", SENTENCES[6], " ".join(SENTENCES[9:12]), SENTENCES[3]]


@pytest.mark.parametrize(("mode", "prefix_cache"),
                         [("free", True), ("constrained", True), ("speculative", True), ("speculative", False)])
def test_grouped_prefill_gives_the_padded_batchs_output(lm, monkeypatch, mode, prefix_cache):
    model, tokenizer = lm
    settings = dict(budget_factor=16, budget_extra=64, reuse_prefix_cache=prefix_cache)
    padded = TagGenerator(model, tokenizer, TagGenerationConfig(grouped_prefill=False, **settings))
    grouped = TagGenerator(model, tokenizer, TagGenerationConfig(**settings))
    calls: list[list[list[int]]] = []
    original = TagGenerator._grouped_pass

    def spy(self, groups, *args, **kwargs):
        calls.append(groups)
        return original(self, groups, *args, **kwargs)

    monkeypatch.setattr(TagGenerator, "_grouped_pass", spy)
    expected = run(padded, UNEVEN, TYPES[:3], mode)
    assert calls == []  # switched off: one padded first pass
    got = run(grouped, UNEVEN, TYPES[:3], mode)
    assert len(calls) == 1 and len(calls[0]) > 1 and sorted(sum(calls[0], [])) == list(range(len(UNEVEN)))
    assert [o.token_ids for o in got] == [o.token_ids for o in expected]
    assert [o.text for o in got] == [o.text for o in expected]
    for g, e in zip(got, expected):
        assert g.token_probs == pytest.approx(e.token_probs, abs=1e-5)
    for out, src in zip(got, UNEVEN):
        if mode != "free":
            check_copy(out.text, src, TYPES[:3])


def test_prefill_groups_split_only_where_padding_costs_more_than_a_pass(tag_generator):
    from llmner.decoding.drafting import DraftTree

    trees = [DraftTree() for _ in range(4)]
    even = [[1] * 30, [1] * 31, [1] * 29, [1] * 30]
    assert tag_generator._prefill_groups(even, trees) == [[2, 0, 3, 1]]
    uneven = [[1] * 300, [1] * 10, [1] * 12, [1] * 290]
    groups = tag_generator._prefill_groups(uneven, trees)
    assert groups == [[1, 2], [3, 0]]
