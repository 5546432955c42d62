"""Reader -> writer -> reader is lossless for every format, on real corpus files and on synthetic
documents with nested entities and unicode (CJK, emoji, combining marks, NBSP, U+2028, CRLF)."""

from __future__ import annotations

import pytest
from corpora_helpers import as_dicts, shared_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmner.data_processing.corpora import (
    FORMATS,
    load_corpus,
    read_bioc,
    read_brat,
    read_cblue,
    read_conll,
    read_documents,
    read_genia_jsonl,
    read_pubtator,
    write_brat,
    write_conll,
    write_documents,
)
from llmner.data_processing.corpora.registry import CORPUS_NAMES
from llmner.doc import Document, Entity


def round_trip(docs, fmt, tmp_path, name="out"):
    path = tmp_path / (name if fmt in ("brat", "bc2gm") else f"{name}.{fmt}")
    write_documents(docs, path, fmt)
    return read_documents(path, fmt)


# ---------------------------------------------------------------- real corpus files


def test_pubtator_round_trip_on_ncbi_and_bc5cdr(tmp_path):
    root = shared_data()
    for i, path in enumerate([root / "ncbi_disease/original/NCBItrainset_corpus.txt",
                              root / "bc5cdr/pubtator/CDR_DevelopmentSet.PubTator.txt"]):
        first = read_pubtator(path)
        second = round_trip(first, "pubtator", tmp_path, f"p{i}")
        assert as_dicts(second) == as_dicts(first)
        # relations and composite "individual mention" columns survive too
    assert any("individual_mentions" in d.metadata for d in first)
    assert sum(len(d.metadata.get("relations", [])) for d in second) == 1012


def test_bioc_round_trip_on_bc5cdr(tmp_path):
    first = read_bioc(shared_data() / "bc5cdr/bioc/CDR_TestSet.BioC.xml")
    second = round_trip(first, "bioc", tmp_path)
    assert as_dicts(second) == as_dicts(first)
    assert all(len(d.metadata["passages"]) == 2 for d in second)  # title + abstract kept apart


@pytest.mark.parametrize("rel", ["bc2gm/conll/devel.tsv", "jnlpba/conll_mtl/devel.tsv", "ncbi_disease/conll/test.tsv"])
def test_conll_round_trip_is_byte_identical(tmp_path, rel):
    path = shared_data() / rel
    first = read_conll(path)
    write_conll(first, tmp_path / "out.tsv")
    assert (tmp_path / "out.tsv").read_bytes() == path.read_bytes()
    assert as_dicts(read_conll(tmp_path / "out.tsv")) == as_dicts(first)


def test_brat_round_trip_on_s800(tmp_path):
    root = shared_data() / "s800"
    ids = (root / "split" / "devel.txt").read_text().split()
    first = read_brat(root / "standoff", ids=ids)
    write_brat(first, tmp_path / "brat")
    assert as_dicts(read_brat(tmp_path / "brat", ids=ids)) == as_dicts(first)
    assert as_dicts(read_brat(tmp_path / "brat")) == as_dicts(sorted(first, key=lambda d: d.id))
    for doc_id in ids[:5]:  # the text files are copied byte for byte
        assert (tmp_path / "brat" / f"{doc_id}.txt").read_bytes() == (root / "standoff" / f"{doc_id}.txt").read_bytes()


def test_bc2gm_original_round_trip(tmp_path):
    from llmner.data_processing.corpora import read_bc2gm

    first = read_bc2gm(shared_data() / "bc2gm/original/test")
    second = round_trip(first, "bc2gm", tmp_path)
    assert as_dicts(second) == as_dicts(first)
    assert sum(len(d.metadata.get("alternatives", [])) for d in second) == 5068


def test_genia_round_trip_keeps_nesting(tmp_path):
    first = read_genia_jsonl(shared_data() / "genia/cased_jsonl/dev.jsonl")
    second = round_trip(first, "genia", tmp_path)
    assert as_dicts(second) == as_dicts(first)
    assert any(d.metadata.get("case_restored") is False for d in second)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_cblue_round_trip_on_cmeee(tmp_path, split):
    first = read_cblue(shared_data() / f"cmeee/v1_json/CMeEE_{split}.json")
    second = round_trip(first, "cblue", tmp_path)
    assert as_dicts(second) == as_dicts(first)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_jsonl_round_trip_of_registry_documents(tmp_path, name):
    shared_data()
    first = load_corpus(name, "dev")
    second = round_trip(first, "jsonl", tmp_path)
    assert as_dicts(second) == as_dicts(first)  # metadata (corpus, split, ...) included


def test_cross_format_conversion_keeps_text_and_entities(tmp_path):
    shared_data()
    docs = sorted(load_corpus("bc5cdr", "test")[:50], key=lambda d: d.id)  # a BRAT directory reads back sorted by id
    current = docs
    for fmt in ("bioc", "brat", "jsonl", "pubtator", "cblue"):
        current = round_trip(current, fmt, tmp_path, f"step-{fmt}")
        assert [d.text for d in current] == [d.text for d in docs]
        got = [[e.key for e in d.entities] for d in current]
        assert got == [[e.key for e in d.entities] for d in docs], fmt


# ---------------------------------------------------------------- synthetic documents


def nested_unicode_docs() -> list[Document]:
    text = "Gène BRCA1 mutations cause 乳腺癌 🧬 in\u00a0women\u2028and men\r\nx"
    doc = Document("syn-1", text, "en")
    gene = text.index("BRCA1")
    doc.entities = [
        doc.span(0, gene + 5, "Gene", normalized_id="HGNC:1100"),         # "Gène BRCA1"
        doc.span(gene, gene + 5, "Gene"),                                 # nested inside
        doc.span(gene, gene + 15, "Variant"),                             # overlaps both
        doc.span(text.index("乳腺癌"), text.index("乳腺癌") + 3, "Disease", normalized_id="D001943"),
        doc.span(text.index("🧬"), text.index("🧬") + 1, "Symbol"),
        doc.span(text.index("women"), text.index("men\r") + 3, "Group"),  # crosses U+2028
    ]
    zh = Document("syn-2", "患者出现发热、咳嗽，诊断为肺炎。", "zh")
    zh.entities = [zh.span(4, 6, "sym"), zh.span(13, 15, "dis"), zh.span(13, 14, "bod")]
    empty = Document("syn-3", "No entities here.", "en")
    return [doc, zh, empty]


def single_line(docs):
    out = []
    for d in docs:
        text = d.text.replace("\r\n", "  ")
        out.append(Document(d.id, text, d.language, {}, [Entity(e.start, e.end, e.type, text[e.start:e.end], normalized_id=e.normalized_id) for e in d.entities]))
    return out


def content(docs):
    return [(d.id, d.text, d.language, sorted((e.key, e.text, e.normalized_id) for e in d.entities)) for d in docs]


@pytest.mark.parametrize("fmt", ["jsonl", "bioc", "bioc_json", "brat", "pubtator", "cblue"])
def test_synthetic_nested_unicode_round_trip(tmp_path, fmt):
    docs = nested_unicode_docs()
    if fmt == "pubtator":
        docs = single_line(docs)  # PubTator texts are one line
    once = round_trip(docs, fmt, tmp_path, "a")
    twice = round_trip(once, fmt, tmp_path, "b")
    assert as_dicts(twice) == as_dicts(once)
    expected = content(docs)
    if fmt == "cblue":  # CBLUE has no ids, languages or normalized ids
        expected = [(f"{i}", t, "zh", sorted((k, s, None) for k, s, _ in ents)) for i, (_, t, _, ents) in enumerate(expected)]
    elif fmt in ("bioc", "bioc_json", "brat", "pubtator"):
        expected = [(i, t, "en", ents) for i, t, _, ents in expected]  # these formats carry no language
    got = content(once)
    if fmt == "brat":
        got = sorted(got)
        expected = sorted(expected)
    assert got == expected


def tokenized_docs() -> list[Document]:
    text = "IL-2 gene expression in T\u00a0cells of 小鼠 ( mice ) ."
    doc = Document("t-1", text, metadata={"case_restored": True})
    doc.entities = [doc.span(0, 4, "protein"), doc.span(0, 9, "DNA"), doc.span(text.index("T\u00a0cells"), text.index(" of"), "cell_type")]
    flat = Document("t-2", "NF-kappa B activation", metadata={"case_restored": False})
    flat.entities = [flat.span(0, 10, "protein")]
    return [doc, flat]


def test_synthetic_genia_round_trip(tmp_path):
    once = round_trip(tokenized_docs(), "genia", tmp_path, "a")
    assert as_dicts(round_trip(once, "genia", tmp_path, "b")) == as_dicts(once)
    assert [sorted(e.key for e in d.entities) for d in once] == [sorted(e.key for e in d.entities) for d in tokenized_docs()]
    assert [d.text for d in once] == [d.text for d in tokenized_docs()]


def test_synthetic_conll_round_trip_with_document_markers(tmp_path):
    docs = []
    for i, d in enumerate(tokenized_docs()):
        d.entities = [e for e in d.entities if e.type != "DNA"]  # IOB2 is flat
        d.metadata = {"sentence_index": i, "document_index": i}
        docs.append(d)
    once = round_trip(docs, "conll", tmp_path, "a")
    assert [d.metadata["document_index"] for d in once] == [0, 1]
    assert as_dicts(round_trip(once, "conll", tmp_path, "b")) == as_dicts(once)
    assert [[e.key for e in d.entities] for d in once] == [[e.key for e in d.entities] for d in docs]


# Random texts (no XML-invalid or PubTator-breaking characters) with random, possibly nested spans.
ALPHABET = st.sampled_from(list("ab AB.,-()[]<>{}|é乳腺癌🧬\u00a0\u2028\u0301") + ["\n", "\r", "\t", "\x85"])


@st.composite
def random_documents(draw, allow_breaks: bool):
    docs = []
    for k in range(draw(st.integers(1, 3))):
        chars = draw(st.lists(ALPHABET, min_size=1, max_size=30))
        text = "".join(chars)
        if not allow_breaks:
            text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
        spans = draw(st.lists(st.tuples(st.integers(0, len(text) - 1), st.integers(1, 8), st.sampled_from(["Disease", "Chem-1", "T_x"]),
                                        st.sampled_from([None, "D0001", "Taxonomy:9606"])), max_size=6))
        seen = {}
        for start, length, etype, norm in spans:
            end = min(len(text), start + length)
            seen.setdefault((start, end, etype), Entity(start, end, etype, text[start:end], normalized_id=norm))
        docs.append(Document(f"d{k}", text, "en", {}, list(seen.values())))
    return docs


@pytest.mark.parametrize("fmt", ["jsonl", "bioc", "bioc_json", "brat", "pubtator", "cblue"])
def test_random_documents_round_trip(tmp_path_factory, fmt):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(random_documents(allow_breaks=fmt != "pubtator"))
    def check(docs):
        tmp = tmp_path_factory.mktemp(fmt)
        once = round_trip(docs, fmt, tmp, "a")
        twice = round_trip(once, fmt, tmp, "b")
        assert as_dicts(twice) == as_dicts(once)
        by_id = {d.id: d for d in once} if fmt != "cblue" else {f"d{i}": d for i, d in enumerate(once)}
        for doc in docs:
            got = by_id[doc.id]
            assert got.text == doc.text
            expected = {(e.key, None if fmt == "cblue" else e.normalized_id) for e in doc.entities}
            assert {(e.key, e.normalized_id) for e in got.entities} == expected

    check()


def test_every_format_is_registered_with_reader_and_writer():
    assert set(FORMATS) == {"jsonl", "records", "pubtator", "bioc", "bioc_json", "brat", "conll", "genia", "cblue", "bc2gm"}
    for fmt in FORMATS.values():
        assert callable(fmt.reader) and callable(fmt.writer) and fmt.description


def test_free_text_is_tokenized_for_conll(tmp_path):
    text = "Famotidine-associated delirium.\nA series of six cases (SRC)."
    doc = Document("p1", text)
    doc.entities = [doc.span(0, 10, "Chemical"), doc.span(22, 30, "Disease"), doc.span(text.index("SRC"), text.index("SRC") + 3, "Disease")]
    other = Document("p2", "Naloxone reverses it.")
    other.entities = [other.span(0, 8, "Chemical")]
    first = round_trip([doc, other], "conll", tmp_path, "a")
    # one -DOCSTART- block per document, one sentence per text line, punctuation split off
    assert [d.text for d in first] == ["Famotidine - associated delirium .", "A series of six cases ( SRC ) .", "Naloxone reverses it ."]
    assert [d.metadata["document_index"] for d in first] == [0, 0, 1]
    assert [[(e.text, e.type) for e in d.entities] for d in first] == [
        [("Famotidine", "Chemical"), ("delirium", "Disease")], [("SRC", "Disease")], [("Naloxone", "Chemical")]]
    assert as_dicts(round_trip(first, "conll", tmp_path, "b")) == as_dicts(first)


TOKEN = st.text(alphabet=st.sampled_from(list("abAB-().,乳腺é🧬\u00a0\u2028\x85\u0301")), min_size=1, max_size=6)


@st.composite
def token_sentences(draw, nested: bool):
    docs = []
    for k in range(draw(st.integers(1, 3))):
        tokens = draw(st.lists(TOKEN, min_size=1, max_size=12))
        text = " ".join(tokens)
        starts, pos = [], 0
        for t in tokens:
            starts.append(pos)
            pos += len(t) + 1
        spans = draw(st.lists(st.tuples(st.integers(0, len(tokens) - 1), st.integers(1, 4), st.sampled_from(["DNA", "protein"])), max_size=5))
        entities: dict[tuple[int, int, str], Entity] = {}
        used: set[int] = set()
        for first, length, etype in spans:
            last = min(len(tokens), first + length)
            if not nested and used & set(range(first, last)):
                continue
            used |= set(range(first, last))
            s, e = starts[first], starts[last - 1] + len(tokens[last - 1])
            entities.setdefault((s, e, etype), Entity(s, e, etype, text[s:e]))
        docs.append(Document(f"{k}", text, "en", {"sentence_index": k}, sorted(entities.values(), key=lambda x: (x.start, -x.end, x.type))))
    return docs


@pytest.mark.parametrize("fmt", ["conll", "genia"])
def test_random_token_sentences_round_trip(tmp_path_factory, fmt):
    @settings(max_examples=60, deadline=None)
    @given(token_sentences(nested=fmt == "genia"))
    def check(docs):
        tmp = tmp_path_factory.mktemp(fmt)
        once = round_trip(docs, fmt, tmp, "a")
        assert [(d.text, [e.key for e in d.entities]) for d in once] == [(d.text, [e.key for e in d.entities]) for d in docs]
        assert as_dicts(round_trip(once, fmt, tmp, "b")) == as_dicts(once)

    check()
