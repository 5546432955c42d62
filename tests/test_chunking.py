"""Sentence splitting, chunking with exact offsets and full coverage, and merging chunk entities."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from llmner.data_processing.chunking import (
    ChunkingConfig,
    approximate_token_count,
    chunk_document,
    merge_chunk_entities,
)
from llmner.data_processing.sentences import split_sentences
from llmner.doc import Chunk, Document, Entity
from llmner.errors import ConfigError, ValidationError


def sentences(text: str, language: str = "en") -> list[str]:
    return [text[a:b] for a, b in split_sentences(text, language)]


def test_english_abbreviations_do_not_split():
    text = (
        "Mutations (e.g. BRCA1) occur in 2.5% of cases, i.e. rarely. Mice were given 5 mg/kg i.v. "
        "Twice daily vs. placebo (Fig. 2). Smith et al. Reported this. J. Smith agreed! "
        "\"Is it?\" Yes.\n\nA title without a full stop\n\nAfter 30 min. The cells died."
    )
    assert sentences(text) == [
        "Mutations (e.g. BRCA1) occur in 2.5% of cases, i.e. rarely.",
        "Mice were given 5 mg/kg i.v. Twice daily vs. placebo (Fig. 2).",
        "Smith et al. Reported this.",
        "J. Smith agreed!",
        "\"Is it?\"",
        "Yes.",
        "A title without a full stop",
        "After 30 min.",
        "The cells died.",
    ]


def test_single_capitals_initials_versus_sentence_ends():
    text = "Patients had hepatitis B. Serum vitamin D. Levels were low as shown by J. Smith and A. B. Jones. J. Smith agreed."
    assert sentences(text) == [
        "Patients had hepatitis B.", "Serum vitamin D.", "Levels were low as shown by J. Smith and A. B. Jones.",
        "J. Smith agreed.",
    ]
    assert sentences("It rose (r = 0. 968; P <. 0001). 20 mg was given to patient (J. B.).") == [
        "It rose (r = 0. 968; P <. 0001).", "20 mg was given to patient (J. B.)."]


def test_chinese_sentence_ends():
    text = "患者发热三天。伴咳嗽！是否有过敏史？“无。”查体；心肺正常"
    assert sentences(text, "zh") == ["患者发热三天。", "伴咳嗽！", "是否有过敏史？", "“无。”", "查体；", "心肺正常"]


_WORDS = st.sampled_from([
    "BRCA1", "cancer", "e.g.", "i.v.", "Fig.", "2.", "et al.", "J.", "Smith", "vs.", "The", "a", "2.5",
    "患者", "发热。", "咳嗽！", "？", "”", "🧬", "(", ")", "[", "<Disease>", "supercalifragilisticexpialidocious",
])
_SEPS = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", ". ", "! ", "", "。"])
DOC_TEXTS = st.lists(st.tuples(_WORDS, _SEPS), min_size=0, max_size=60).map(lambda ps: "".join(w + s for w, s in ps))


@settings(max_examples=300, deadline=None)
@given(DOC_TEXTS, st.sampled_from(["en", "zh"]))
def test_sentences_are_trimmed_ordered_and_cover_the_text(text, language):
    spans = split_sentences(text, language)
    covered = set()
    prev_end = 0
    for a, b in spans:
        assert prev_end <= a < b <= len(text)
        assert not text[a].isspace() and not text[b - 1].isspace()
        covered.update(range(a, b))
        prev_end = b
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


@settings(max_examples=300, deadline=None)
@given(DOC_TEXTS, st.sampled_from(["en", "zh"]), st.integers(1, 40), st.data())
def test_chunks_are_exact_ordered_bounded_and_cover_everything(text, language, max_tokens, data):
    overlap = data.draw(st.integers(0, max_tokens - 1))
    per_chunk = data.draw(st.integers(1, 4))
    config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap, sentences_per_chunk=per_chunk)
    doc = Document("d", text, language=language)
    chunks = chunk_document(doc, config)
    covered = set()
    for i, chunk in enumerate(chunks):
        assert chunk.index == i and chunk.doc_id == "d" and chunk.language == language
        assert chunk.text == text[chunk.start : chunk.end] and chunk.text
        # Over budget only when the chunk is one character (which cannot be split).
        assert approximate_token_count(chunk.text) <= max_tokens or len(chunk.text) == 1
        covered.update(range(chunk.start, chunk.end))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert all(a.end <= b.end for a, b in itertools.pairwise(chunks))
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


def test_long_sentence_windows_overlap_at_word_boundaries():
    words = [f"w{i:02d}" for i in range(40)]
    text = " ".join(words) + "."
    count = lambda s: len(s.split())
    chunks = chunk_document(Document("d", text), ChunkingConfig(max_tokens=10, overlap_tokens=3), count)
    assert [c.text.split()[0] for c in chunks] == ["w00", "w07", "w14", "w21", "w28", "w35"]
    assert all(len(c.text.split()) <= 10 for c in chunks)
    assert chunks[-1].text.endswith("w39.")
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # overlapping
        assert text[b.start - 1] == " "  # windows start at a word


def test_sentences_are_packed_while_they_fit():
    text = "One two. Three four. Five six seven eight nine. Ten."
    count = lambda s: len(s.split())
    chunks = chunk_document(Document("d", text), ChunkingConfig(max_tokens=5, overlap_tokens=1, sentences_per_chunk=3), count)
    assert [c.text for c in chunks] == ["One two. Three four.", "Five six seven eight nine.", "Ten."]
    assert chunk_document(Document("d", "  \n "), ChunkingConfig()) == []


def test_config_is_validated():
    with pytest.raises(ConfigError, match="overlap_tokens"):
        ChunkingConfig(max_tokens=8, overlap_tokens=-1)
    assert ChunkingConfig(max_tokens=16).effective_overlap == 8  # the default overlap is capped
    with pytest.raises(ConfigError, match="max_tokens"):
        ChunkingConfig(max_tokens=0, overlap_tokens=0)


def _tag_chunk(chunk: Chunk, gold: list[Entity]) -> list[Entity]:
    """A perfect tagger that also reports the visible part of mentions cut by the window edge."""
    out = []
    for ent in gold:
        start, end = max(ent.start, chunk.start), min(ent.end, chunk.end)
        if start < end:
            out.append(Entity(start - chunk.start, end - chunk.start, ent.type, chunk.text[start - chunk.start : end - chunk.start]))
    return out


@settings(max_examples=300, deadline=None)
@given(DOC_TEXTS, st.integers(2, 30), st.data())
def test_merge_restores_document_entities(text, max_tokens, data):
    doc = Document("d", text)
    config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=data.draw(st.integers(0, max_tokens - 1)))
    chunks = chunk_document(doc, config)
    assume(chunks)
    # Gold: random spans that fit in some chunk; same-type spans disjoint (types may nest/cross).
    gold: list[Entity] = []
    for _ in range(data.draw(st.integers(0, 10))):
        chunk = data.draw(st.sampled_from(chunks))
        a = data.draw(st.integers(chunk.start, chunk.end - 1))
        b = data.draw(st.integers(a + 1, chunk.end))
        ent = doc.span(a, b, data.draw(st.sampled_from(["A", "B"])))
        if all(g.type != ent.type or g.end <= a or b <= g.start for g in gold):
            gold.append(ent)
    merged = merge_chunk_entities(chunks, [_tag_chunk(c, gold) for c in chunks], text)
    assert [(e.start, e.end, e.type, e.text) for e in merged] == sorted(
        ((e.start, e.end, e.type, e.text) for e in gold), key=lambda k: (k[0], -k[1], k[2])
    )


def test_merge_dedupes_keeps_nesting_and_drops_cut_mentions():
    text = "alpha beta gamma delta epsilon"
    #       0     6    11    17    23
    chunks = [Chunk("d", 0, 0, 16, text[0:16]), Chunk("d", 1, 11, 30, text[11:30])]
    per_chunk = [
        [Entity(11, 16, "G"), Entity(6, 16, "G"), Entity(0, 5, "D", score=0.4), Entity(11, 16, "D", score=0.2)],
        [Entity(0, 5, "G"), Entity(0, 11, "G"), Entity(6, 11, "D"), Entity(0, 5, "D", score=0.7)],
    ]
    merged = merge_chunk_entities(chunks, per_chunk, text)
    # "beta gamma" (G) ends at chunk 0's cut edge, "gamma delta" (G) starts at chunk 1's: each is
    # contained in no longer G, so both are kept (nested same-type entities stay nested).
    # "gamma" (G) touches a cut edge in both chunks and each time the other chunk saw a longer G
    # over it: dropped. "gamma" (D) is found twice and nothing longer exists: kept once, best score.
    assert [(e.start, e.end, e.type) for e in merged] == [
        (0, 5, "D"), (6, 16, "G"), (11, 22, "G"), (11, 16, "D"), (17, 22, "D"),
    ]
    assert merged[3].score == 0.7 and merged[3].text == "gamma"
    assert merged[0].score == 0.4 and merged[0].text == "alpha"
    # A mention cut by chunk 0's end is dropped when chunk 1 has its full extent.
    cut = merge_chunk_entities(chunks, [[Entity(11, 16, "X")], [Entity(0, 11, "X")]], text)
    assert [(e.start, e.end, e.type) for e in cut] == [(11, 22, "X")]
    with pytest.raises(ValidationError, match="outside chunk 0"):
        merge_chunk_entities(chunks, [[Entity(10, 20, "X")], []], text)
    with pytest.raises(ValidationError, match="2 chunks but 1"):
        merge_chunk_entities(chunks, [[]], text)


@pytest.mark.parametrize("corpus, split", [("ncbi_disease", "dev"), ("cmeee", "dev")])
def test_chunking_real_documents_with_a_subword_tokenizer(corpus, split):
    from llmner.data_processing.corpora import load_corpus
    from llmner.errors import DataNotFoundError
    from llmner.testing import tiny_causal_tokenizer

    try:
        docs = load_corpus(corpus, split=split)[:20]
    except DataNotFoundError:
        pytest.skip(f"{corpus} not available")
    tokenizer = tiny_causal_tokenizer()
    count = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])
    config = ChunkingConfig(max_tokens=24, overlap_tokens=6, sentences_per_chunk=4)
    windows = 0
    for doc in docs:
        chunks = chunk_document(doc, config, count)
        covered = set()
        for chunk in chunks:
            assert chunk.text == doc.text[chunk.start : chunk.end]
            assert count(chunk.text) <= config.max_tokens
            covered.update(range(chunk.start, chunk.end))
        assert all(doc.text[i].isspace() for i in range(len(doc.text)) if i not in covered)
        windows += sum(b.start < a.end for a, b in itertools.pairwise(chunks))
        # Gold entities survive a round trip through chunks (a perfect tagger, cut mentions included).
        merged = merge_chunk_entities(chunks, [_tag_chunk(c, doc.entities) for c in chunks], doc.text)
        inside = {e.key for e in doc.entities if any(c.start <= e.start and e.end <= c.end for c in chunks)}
        assert inside <= {e.key for e in merged}
    assert windows > 0  # the budget is small enough that long sentences were windowed
