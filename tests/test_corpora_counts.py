"""Every corpus and split reproduces the counts of ../shared/data/README.md and the folders' README.txt.

Parsing is cached per process by the registry, so each corpus file is read once per test session.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from corpora_helpers import shared_data

from llmner.curie import to_curie
from llmner.data_processing.corpora import (
    CORPUS_NAMES,
    SPLITS,
    corpus_schema,
    has_sentence_view,
    is_labeled,
    load_corpus,
    load_sentences,
    read_bioc,
    read_conll,
    read_pubtator,
)

# (documents, sentences or None, mentions or None, {type: mentions} or None), from the README files.
EXPECTED = {
    ("ncbi_disease", "train"): (593, 5432, 5145, {"Disease": 5145}),
    ("ncbi_disease", "dev"): (100, 923, 787, {"Disease": 787}),
    ("ncbi_disease", "test"): (100, 940, 960, {"Disease": 960}),
    ("bc5cdr", "train"): (500, 4560, 9385, {"Chemical": 5203, "Disease": 4182}),
    ("bc5cdr", "dev"): (500, 4581, 9591, {"Chemical": 5347, "Disease": 4244}),
    ("bc5cdr", "test"): (500, 4797, 9809, {"Chemical": 5385, "Disease": 4424}),
    # GENIA README counts list duplicated spans (21 / 8 / 4 of them); the reader dedupes, see test_genia_* below.
    ("genia", "train"): (15021, 15021, 47026 - 21, None),
    ("genia", "dev"): (1668, 1668, 4466 - 8, None),
    ("genia", "test"): (1854, 1854, 5589 - 4, None),
    # JNLPBA train/dev = first 16,807 / last 1,739 sentences of Genia4ERtask1 (51,301 - 4,551 = 46,750 mentions).
    ("jnlpba", "train"): (16807, 16807, 51301 - 4551, None),
    ("jnlpba", "dev"): (1739, 1739, 4551, None),
    ("jnlpba", "test"): (3856, 3856, 8662, {"protein": 5067, "cell_type": 1921, "DNA": 1056, "cell_line": 500, "RNA": 118}),
    ("bc2gm", "train"): (12500, 12500, 15197, {"GENE": 15197}),
    ("bc2gm", "dev"): (2500, 2500, 3061, {"GENE": 3061}),
    ("bc2gm", "test"): (5000, 5000, 6325, {"GENE": 6325}),
    ("linnaeus", "train"): (11935, 11935, 2119, {"Species": 2119}),
    ("linnaeus", "dev"): (4078, 4078, 711, {"Species": 711}),
    ("linnaeus", "test"): (7142, 7142, 1433, {"Species": 1433}),
    ("s800", "train"): (560, None, 2557, {"Species": 2557}),
    ("s800", "dev"): (80, None, 384, {"Species": 384}),
    ("s800", "test"): (160, None, 767, {"Species": 767}),
    ("cmeee", "train"): (15000, None, 61794, {"bod": 17697, "dis": 15843, "sym": 12269, "pro": 6331, "dru": 3930,
                                              "ite": 2581, "mic": 1907, "equ": 888, "dep": 348}),
    ("cmeee", "dev"): (5000, None, 20300, None),
    ("cmeee", "test"): (3000, None, None, None),  # unlabeled
    # BTC, @ + handle joined (the README's merged counts, train 7,364). Dev and test have one Person more
    # than the README's 705 / 1,602: a handle chain tagged I-PER ('@ a @ b', the second '@' an I-) stays
    # one mention here, as IOB2 says. Dev has 1,000 tweets, not 1,001: one block holds only an empty token.
    ("btc", "train"): (6338, 6338, 7364, {"Person": 3101, "Organization": 2267, "Location": 1996}),
    ("btc", "dev"): (1000, 1000, 1127, {"Person": 706, "Organization": 270, "Location": 151}),
    ("btc", "test"): (2001, 2001, 2997, {"Person": 1603, "Organization": 792, "Location": 602}),
}

# Tokens per split of the corpora read from CoNLL-style tokens (README "tokens" column).
EXPECTED_TOKENS = {
    ("ncbi_disease", "train"): 136086, ("ncbi_disease", "dev"): 23969, ("ncbi_disease", "test"): 24497,
    ("bc5cdr", "train"): 118170, ("bc5cdr", "dev"): 117453, ("bc5cdr", "test"): 124750,
    ("genia", "train"): 397894, ("genia", "dev"): 42825, ("genia", "test"): 50140,
    ("jnlpba", "dev"): 47461, ("jnlpba", "test"): 101039,
    ("bc2gm", "train"): 355405, ("bc2gm", "dev"): 71042, ("bc2gm", "test"): 143465,
    ("linnaeus", "train"): 280960, ("linnaeus", "dev"): 93815, ("linnaeus", "test"): 164653,
}

CASES = [(name, split) for name in CORPUS_NAMES for split in SPLITS]


def involved_in_nesting(spans: list[tuple[int, int]]) -> int:
    """READMEs' "entities involved in nesting": spans that contain or lie inside another, different span."""
    return sum(1 for a in spans if any(b != a and ((b[0] <= a[0] and a[1] <= b[1]) or (a[0] <= b[0] and b[1] <= a[1])) for b in spans))


def test_every_corpus_and_split_has_an_expectation():
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize(("name", "split"), CASES)
def test_counts_match_the_readme(name, split):
    shared_data()
    n_docs, n_sentences, n_mentions, per_type = EXPECTED[name, split]
    docs = load_corpus(name, split)
    assert len(docs) == n_docs
    if n_sentences is None:
        assert not has_sentence_view(name)
    else:
        assert len(load_sentences(name, split)) == n_sentences
    types = Counter(e.type for d in docs for e in d.entities)
    if n_mentions is None:
        assert not is_labeled(name, split)
        assert sum(types.values()) == 0 and all(d.metadata.get("labeled") is False for d in docs)
    else:
        assert is_labeled(name, split)
        assert sum(types.values()) == n_mentions
    if per_type is not None:
        assert dict(types) == per_type


@pytest.mark.parametrize(("name", "split"), CASES)
def test_every_entity_is_valid_and_typed_by_the_schema(name, split):
    shared_data()
    schema = corpus_schema(name)
    views = [load_corpus(name, split)] + ([load_sentences(name, split)] if has_sentence_view(name) else [])
    for docs in views:
        ids = set()
        for doc in docs:
            doc.validate()  # offsets in range and surface text == text[start:end]
            assert all(e.text == doc.text[e.start : e.end] and e.text for e in doc.entities)
            assert {e.type for e in doc.entities} <= set(schema.type_names)
            assert doc.language == schema.language
            assert doc.metadata["corpus"] == name and doc.metadata["split"] == split
            ids.add(doc.id)
        assert len(ids) == len(docs), "document ids are unique within a split"


@pytest.mark.parametrize(("name", "split"), sorted(EXPECTED_TOKENS))
def test_token_counts_of_the_sentence_views(name, split):
    shared_data()
    sentences = load_sentences(name, split)
    assert sum(len(d.text.split(" ")) for d in sentences) == EXPECTED_TOKENS[name, split]


def test_btc_joins_handles_and_repairs_tokens(tmp_path):
    from llmner.data_processing.corpora.btc import read_btc

    path = tmp_path / "btc.dev"
    path.write_text("RT\tO\n@\tB-ORG\nSportsCenter\tB-ORG\n:\tO\n\tO\nAllen\tB-PER\nIverson \tI-PER\n"
                    "ke s\tO\n@\tO\nbob\tO\n\nLondon\tB-LOC\n", encoding="utf-8")
    first, second = read_btc(path, id_prefix="dev-")
    assert first.text == "RT @SportsCenter : Allen Iverson ke s @bob"
    assert [(e.text, e.type) for e in first.entities] == [("@SportsCenter", "Organization"), ("Allen Iverson", "Person")]
    assert second.id == "dev-1" and [(e.text, e.type) for e in second.entities] == [("London", "Location")]


def test_btc_is_auxiliary():
    from llmner.data_processing.corpora import CORPUS_NAMES, EVALUATION_CORPORA

    assert "btc" in CORPUS_NAMES and "btc" not in EVALUATION_CORPORA
    assert set(EVALUATION_CORPORA) == set(CORPUS_NAMES) - {"btc"}


def test_loading_returns_fresh_documents():
    shared_data()
    first = load_corpus("ncbi_disease", "dev")
    first[0].entities.clear()
    first[0].metadata["touched"] = True
    again = load_corpus("ncbi_disease", "dev")
    assert again[0].entities and "touched" not in again[0].metadata


def test_ncbi_disease_original_classes_and_duplicate_pmid():
    root = shared_data() / "ncbi_disease" / "original"
    raw = read_pubtator(root / "NCBItrainset_corpus.txt")  # no type map: the four NCBI classes
    assert Counter(e.type for d in raw for e in d.entities) == {
        "SpecificDisease": 2972, "Modifier": 1289, "DiseaseClass": 769, "CompositeMention": 115}
    ids = [d.id for d in load_corpus("ncbi_disease", "train")]
    assert len({i.split("-dup")[0] for i in ids}) == 592
    assert "8528200" in ids and "8528200-dup2" in ids
    # MeSH / OMIM identifiers are kept
    assert all(e.normalized_id for d in raw for e in d.entities)


def test_ncbi_sentence_view_matches_documents():
    shared_data()
    for split in SPLITS:
        sentence_mentions = sum(len(d.entities) for d in load_sentences("ncbi_disease", split))
        assert sentence_mentions == EXPECTED[("ncbi_disease", split)][2]


def test_bc5cdr_bioc_equals_pubtator_and_counts_relations():
    root = shared_data() / "bc5cdr"
    files = {"train": "Training", "dev": "Development", "test": "Test"}
    annotation_elements = {"train": 9570, "dev": 9773, "test": 9928}
    relations = {"train": 1038, "dev": 1012, "test": 1066}
    for split, stem in files.items():
        bioc_docs = read_bioc(root / "bioc" / f"CDR_{stem}Set.BioC.xml")
        pubtator = load_corpus("bc5cdr", split)
        assert [d.id for d in bioc_docs] == [d.id for d in pubtator]
        for b, p in zip(bioc_docs, pubtator):
            assert b.text == p.text
            # load_corpus turns the identifier column into CURIEs (MESH:D..., -1 -> None); read_bioc keeps it verbatim
            assert [(e.key, to_curie(e.normalized_id)) for e in b.entities] == [(e.key, e.normalized_id) for e in p.entities]
            assert b.metadata["relations"] == p.metadata.get("relations", [])
        assert sum(len(d.metadata.get("relations", [])) for d in pubtator) == relations[split]
        # The BioC file holds extra per-component annotations of composite mentions (skipped by the reader).
        xml = (root / "bioc" / f"CDR_{stem}Set.BioC.xml").read_text(encoding="utf-8")
        total = xml.count("<annotation ")
        individual = xml.count('<infon key="CompositeRole">IndividualMention</infon>')
        assert total == annotation_elements[split]
        assert total - individual == EXPECTED[("bc5cdr", split)][2]


def test_bc5cdr_conll_sentence_view_counts():
    shared_data()
    expected = {"train": {"Chemical": 5203, "Disease": 4182}, "dev": {"Chemical": 5347, "Disease": 4246},
                "test": {"Chemical": 5385, "Disease": 4424}}
    for split, per_type in expected.items():
        assert Counter(e.type for d in load_sentences("bc5cdr", split) for e in d.entities) == per_type


def test_genia_counts_before_and_after_dedupe():
    root = shared_data() / "genia" / "cased_jsonl"
    # README counts, which include the duplicated spans of the Lu & Roth data.
    readme = {
        "train": (47026, {"protein": 29121, "DNA": 7952, "cell_type": 6049, "cell_line": 3170, "RNA": 734}, 19),
        "dev": (4466, {"protein": 2355, "DNA": 1066, "cell_type": 564, "cell_line": 343, "RNA": 138}, 8),
        "test": (5589, {"protein": 3103, "DNA": 1290, "cell_type": 616, "cell_line": 463, "RNA": 117}, 4),
    }
    not_restored = 0
    for split, (total, per_type, dup_sentences) in readme.items():
        raw = [orjson.loads(line) for line in (root / f"{split}.jsonl").read_bytes().splitlines() if line.strip()]
        assert Counter(e["type"] for r in raw for e in r["entities"]) == per_type
        assert sum(len(r["entities"]) for r in raw) == total
        docs = load_corpus("genia", split)
        removed = [len(r["entities"]) - len({(e["start"], e["end"], e["type"]) for e in r["entities"]}) for r in raw]
        assert sum(1 for r in removed if r) == dup_sentences
        assert sum(removed) == {"train": 21, "dev": 8, "test": 4}[split]
        assert sum(len(d.entities) for d in docs) == total - sum(removed)
        for d in docs:
            assert len({e.key for e in d.entities}) == len(d.entities)
        not_restored += sum(1 for d in docs if d.metadata["case_restored"] is False)
        # README nesting counts are on the raw lists (a duplicated nested span counts twice)
        raw_nesting = sum(involved_in_nesting([(e["start"], e["end"]) for e in r["entities"]]) for r in raw)
        assert raw_nesting == {"train": 8356, "dev": 814, "test": 1201}[split]
        nesting = sum(involved_in_nesting([(e.start, e.end) for e in d.entities]) for d in docs)
        assert nesting == {"train": 8352, "dev": 812, "test": 1198}[split]  # after dedupe
    assert not_restored == 60


def test_jnlpba_full_files_and_dev_subset():
    root = shared_data() / "jnlpba"
    full = read_conll(root / "original" / "Genia4ERtask1.iob2")
    assert len(full) == 18546
    assert sum(len(d.text.split(" ")) for d in full) == 492551
    assert Counter(e.type for d in full for e in d.entities) == {
        "protein": 30269, "DNA": 9533, "cell_type": 6718, "cell_line": 3830, "RNA": 951}
    mtl_dev = read_conll(root / "conll_mtl" / "devel.tsv")  # with -DOCSTART- lines between abstracts
    dev = load_corpus("jnlpba", "dev")
    train = load_corpus("jnlpba", "train")
    assert [d.text for d in dev] == [d.text for d in mtl_dev]
    assert [[e.key for e in d.entities] for d in dev] == [[e.key for e in d.entities] for d in mtl_dev]
    assert [d.text for d in train + dev] == [d.text for d in full]
    assert len({d.metadata["document_index"] for d in mtl_dev}) == 200


def test_cmeee_characters_and_unlabeled_test():
    shared_data()
    chars = {"train": 812295, "dev": 270417, "test": 165673}
    for split, n in chars.items():
        docs = load_corpus("cmeee", split)
        assert sum(len(d.text) for d in docs) == n
        assert all(d.language == "zh" for d in docs)
    for split, expected in {"train": 6497, "dev": 2173}.items():
        docs = load_corpus("cmeee", split)
        assert sum(involved_in_nesting([(e.start, e.end) for e in d.entities]) for d in docs) == expected


def test_bc2gm_original_files():
    from llmner.data_processing.corpora import read_bc2gm

    root = shared_data() / "bc2gm" / "original"
    expected = {"train": (15000, 18265, 14499), "test": (5000, 6331, 5068)}
    for split, (sentences, genes, alternatives) in expected.items():
        docs = read_bc2gm(root / split)
        assert len(docs) == sentences
        assert sum(len(d.entities) for d in docs) == genes
        assert sum(len(d.metadata.get("alternatives", [])) for d in docs) == alternatives
        for d in docs:
            d.validate()
    # "14 33|alkaline phosphatases": offsets count non-space characters, end inclusive
    first = read_bc2gm(root / "train")[0]
    assert [e.text for e in first.entities] == ["alkaline phosphatases", "5-nucleotidase"]


def test_s800_splits_cover_all_annotations():
    root = shared_data() / "s800"
    rows = [line for line in (root / "original" / "S800.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [d for split in SPLITS for d in load_corpus("s800", split)]
    assert sum(len(d.entities) for d in docs) == len(rows) == 3708
    assert len({d.id for d in docs}) == 800
    assert all(e.normalized_id and e.normalized_id.startswith("NCBITaxon:") for d in docs for e in d.entities)
    # S800.tsv (taxid, category:pmid, start, end inclusive, text) lists the same mentions as the standoff files
    tsv = set()
    for row in rows:
        taxid, doc, start, end, text = row.split("\t")
        tsv.add((doc.split(":")[1], int(start), int(end) + 1, text, f"NCBITaxon:{taxid}"))
    assert tsv == {(d.id, e.start, e.end, e.text, e.normalized_id) for d in docs for e in d.entities}
