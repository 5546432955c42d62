"""Schema-robust training renders (llmner.training.schema_variation + examples.render_examples)."""

from __future__ import annotations

import re

import pytest

from llmner.codecs import get_codec
from llmner.doc import Entity
from llmner.errors import ConfigError, ValidationError
from llmner.schema import EntitySchema, get_schema
from llmner.testing import tiny_causal_tokenizer
from llmner.training.examples import TextExample, render_examples
from llmner.training.schema_variation import (
    MentionLexicon,
    SchemaVariation,
    SchemaVariationConfig,
    identity_variant,
)
from llmner.type_namings import load_type_namings

CORPORA = ("ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _genia_example() -> TextExample:
    text = "IL-2 gene expression in human T cells requires NF-kappa B & <AP-1>."
    ents = (Entity(0, 9, "DNA"), Entity(0, 4, "protein"), Entity(24, 37, "cell_type"), Entity(47, 57, "protein"),
            Entity(61, 65, "protein"))
    target = get_codec("inline").encode(text, ents)
    return TextExample("genia/d1#0", "genia", "d1", 0, "en", text, target, ents)


def test_every_built_in_corpus_type_has_a_concept_with_namings_and_a_held_out_one() -> None:
    namings = load_type_namings()
    for corpus in CORPORA:
        for t in get_schema(corpus).types:
            concept = namings.concept_of(corpus, t.name)
            assert concept is not None, (corpus, t.name)
            assert len(concept.namings) >= 3 and concept.held_out, (corpus, t.name)
            assert concept.language == get_schema(corpus).language


def test_same_seed_same_variant_and_seeds_vary_order_subsets_and_names() -> None:
    variation = SchemaVariation()
    genia = get_schema("genia")
    assert variation.draw(genia, "0/genia/5/0") == variation.draw(genia, "0/genia/5/0")
    variants = [variation.draw(genia, f"0/genia/{step}/0") for step in range(400)]
    identity = sum(v.is_identity for v in variants)
    assert 60 < identity < 140                                       # own_rate 0.25 of 400
    assert len({v.schema.type_names for v in variants}) > 50         # orders, subsets and names differ
    assert any(len(v.schema.types) < 5 for v in variants)
    assert any(v.schema.type_names[0] != "protein" and len(v.schema.types) == 5 for v in variants)


def test_held_out_namings_are_never_drawn_and_languages_stay_apart() -> None:
    namings = load_type_namings()
    held = {n.name for c in namings.concepts.values() for n in c.held_out}
    variation = SchemaVariation(SchemaVariationConfig(own_rate=0.0, paraphrase_rate=1.0))
    for corpus in CORPORA:
        schema = get_schema(corpus)
        for step in range(300):
            v = variation.draw(schema, f"1/{corpus}/{step}")
            assert not held & set(v.schema.type_names), (corpus, v.schema.type_names)
            assert len(set(v.schema.type_names)) == len(v.schema.types)
            for t in v.schema.types:
                if schema.language == "zh":
                    assert CJK.search(t.name) and CJK.search(t.definition), t
                else:
                    assert not CJK.search(t.name + t.definition), t


def test_a_dropped_type_takes_its_mentions_with_it_and_the_text_never_changes() -> None:
    tokenizer = tiny_causal_tokenizer()
    from llmner.prompts import PromptBuilder

    builder = PromptBuilder()
    codec = get_codec("inline")
    example = _genia_example()
    variation = SchemaVariation(SchemaVariationConfig(own_rate=0.0, drop_rate=1.0, paraphrase_rate=0.5))
    seen_drops = 0
    for step in range(60):
        variant = variation.draw(get_schema("genia"), f"2/genia/{step}")
        (rendered,) = render_examples([example], variant, codec, tokenizer, builder)
        target = tokenizer.decode(rendered.input_ids[rendered.prompt_length:], skip_special_tokens=True)
        decoded = codec.decode(target, example.text, variant.schema.type_names)
        # The copy in the target is the source text, untouched; the prompt holds it verbatim.
        assert decoded.diagnostics.inserted_chars == decoded.diagnostics.deleted_chars == 0
        prompt = tokenizer.decode(rendered.input_ids[: rendered.prompt_length])
        assert example.text in prompt
        kept_types = set(variant.rename)
        want = sorted((e.start, e.end, variant.rename[e.type]) for e in example.entities if e.type in kept_types)
        assert sorted((e.start, e.end, e.type) for e in decoded.entities) == want
        for t in set(get_schema("genia").type_names) - kept_types:            # absent from prompt and target
            assert f"- {t}:" not in prompt
        seen_drops += len(kept_types) < 5
    assert seen_drops == 60


def test_identity_variant_renders_the_corpus_target() -> None:
    from llmner.prompts import PromptBuilder

    tokenizer = tiny_causal_tokenizer()
    example = _genia_example()
    variant = identity_variant(get_schema("genia"))
    (rendered,) = render_examples([example], variant, get_codec("inline"), tokenizer, PromptBuilder())
    assert tokenizer.decode(rendered.input_ids[rendered.prompt_length:], skip_special_tokens=True) == example.target


def test_held_out_schema_and_default_type_maps() -> None:
    namings = load_type_namings()
    schema, rename = namings.held_out_schema(get_schema("bc5cdr"))
    assert rename == {"Chemical": "Compound", "Disease": "Illness"} and schema.type_names == ("Compound", "Illness")
    assert namings.default_type_map("genia", "biomedical_en") == {
        "protein": "Gene", "DNA": "Gene", "RNA": "Gene", "cell_line": "CellLine", "cell_type": "CellType"}
    assert namings.default_type_map("cmeee", "clinical_zh")["dru"] == "药物"
    assert set(namings.default_type_map("cmeee", "clinical_zh").values()) == set(get_schema("clinical_zh").type_names)


def test_type_names_in_any_script_and_yaml_schema_files(tmp_path) -> None:
    path = tmp_path / "clinic.yaml"
    path.write_text("name: clinic\nlanguage: zh\ntypes:\n  - name: 解剖部位\n    definition: 身体的部位\n"
                    "  - name: 药物\n    definition: 药品名称\n    aliases: [dru]\n", encoding="utf-8")
    schema = get_schema(path)
    assert schema.type_names == ("解剖部位", "药物") and schema.canonical("dru") == "药物"
    assert EntitySchema.from_dict(schema.to_dict()) == schema
    assert get_schema("clinical_zh").canonical("sym") == "临床表现"
    for bad in ("1Drug", "Drug name", "<x>", "_x"):
        with pytest.raises(ValidationError, match="must start with a letter"):
            EntitySchema.from_dict({"name": "s", "language": "en", "types": [{"name": bad, "definition": "d"}]})
    with pytest.raises(ValidationError, match="not valid YAML"):
        (tmp_path / "bad.yml").write_text("types: [", encoding="utf-8")
        EntitySchema.load(tmp_path / "bad.yml")


def test_the_readme_schema_file_example_loads(tmp_path) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Entity schemas", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "clinic.yaml").write_text(block, encoding="utf-8")
    schema = get_schema(tmp_path / "clinic.yaml")
    assert schema.type_names == ("Medication", "Problem") and schema.language == "en"


def test_distractor_types_come_from_concepts_the_corpus_does_not_cover() -> None:
    namings = load_type_namings()
    bc2gm = get_schema("bc2gm")
    variation = SchemaVariation(SchemaVariationConfig(own_rate=0.0, drop_rate=0.0, distractor_rate=1.0, max_distractors=3))
    held_out = {n.name for c in namings.concepts.values() for n in c.held_out}
    gene_like = {n.name for k in ("gene", "protein", "dna", "rna") for n in namings.concepts[k].namings}
    sizes = set()
    for i in range(60):
        variant = variation.draw(bc2gm, f"s/{i}")
        names = [t.name for t in variant.schema.types]
        extra = [n for n in names if n not in variant.rename.values()]
        sizes.add(len(extra))
        assert list(variant.rename) == ["GENE"] and 1 <= len(extra) <= 3
        # Never another name of what the corpus annotates (a gene named twice), never a held-out name.
        assert not set(extra) & (gene_like | held_out) and len(set(names)) == len(names)
        assert variation.draw(bc2gm, f"s/{i}").schema == variant.schema
    assert sizes == {1, 2, 3}
    # Chinese has no concept outside CMeEE's own: no distractors there.
    cmeee = variation.draw(get_schema("cmeee"), "s/0")
    assert set(cmeee.rename.values()) == {t.name for t in cmeee.schema.types}


def test_a_concept_the_batch_mentions_is_never_a_distractor() -> None:
    lexicon = MentionLexicon({"species": ["human", "Mus musculus"], "chemical": ["cisplatin"], "disease": ["gout"]})
    assert lexicon.mentioned(["Cisplatin-treated HUMAN cells."]) == {"species", "chemical"}
    assert lexicon.mentioned(["humanized antibodies", "mus  musculus"]) == {"species"}   # whole words only
    # Abbreviations keep their case: the disease ALL is not the word "all".
    acronyms = MentionLexicon({"disease": ["ALL", "A-T"], "gene": ["p53"]})
    assert acronyms.mentioned(["all of them, at a time"]) == set()
    assert acronyms.mentioned(["children with ALL", "P53 levels"]) == {"disease", "gene"}
    variation = SchemaVariation(SchemaVariationConfig(own_rate=0.0, drop_rate=0.0, distractor_rate=1.0),
                                lexicon=lexicon)
    namings = load_type_namings()
    species = {n.name for n in namings.concepts["species"].namings}
    chemical = {n.name for n in namings.concepts["chemical"].namings}
    for i in range(40):
        variant = variation.draw(get_schema("bc2gm"), f"s/{i}", ["BRCA1 is mutated in human cells given cisplatin."])
        names = {t.name for t in variant.schema.types}
        assert not names & (species | chemical)


def test_without_distractors_variants_are_drawn_as_before() -> None:
    plain, zero = SchemaVariation(SchemaVariationConfig()), SchemaVariation(SchemaVariationConfig(distractor_rate=0.0))
    for corpus in CORPORA:
        for i in range(20):
            assert plain.draw(get_schema(corpus), f"x/{i}") == zero.draw(get_schema(corpus), f"x/{i}", ["human"])


def test_masked_names_are_opaque_labels_over_the_same_definitions_and_mentions() -> None:
    schema = get_schema("genia")
    example = _genia_example()
    plain = SchemaVariation(SchemaVariationConfig(own_rate=0.0, distractor_rate=0.5))
    masked = SchemaVariation(SchemaVariationConfig(own_rate=0.0, distractor_rate=0.5, mask_rate=1.0))
    labels_seen = set()
    for i in range(30):
        seed = f"genia/{i}"
        p, m = plain.draw(schema, seed, [example.text]), masked.draw(schema, seed, [example.text])
        # The masking draw comes last: the unmasked variant underneath is the plain one, in the same order.
        assert [t.definition for t in m.schema.types] == [t.definition for t in p.schema.types]
        names = [t.name for t in m.schema.types]
        assert all(re.fullmatch(r"Type_[A-Z]", n) for n in names) and len(set(names)) == len(names)
        labels_seen.update(names)
        # A dropped type's mentions stay dropped; the kept ones keep their offsets and text, under their label.
        label_of = {t.name: m_t.name for t, m_t in zip(p.schema.types, m.schema.types)}
        assert m.rename == {corpus_type: label_of[name] for corpus_type, name in p.rename.items()}
        expected = [(e.start, e.end, label_of[e.type], e.text) for e in p.entities(example.entities)]
        assert [(e.start, e.end, e.type, e.text) for e in m.entities(example.entities)] == expected
    # Letters are drawn in a random order, so a label says nothing about the type it hides.
    assert len(labels_seen) > 5


def test_without_masking_variants_are_drawn_as_before() -> None:
    plain, zero = SchemaVariation(SchemaVariationConfig(distractor_rate=0.5)), SchemaVariation(SchemaVariationConfig(distractor_rate=0.5, mask_rate=0.0))
    for corpus in CORPORA:
        for i in range(20):
            assert plain.draw(get_schema(corpus), f"x/{i}") == zero.draw(get_schema(corpus), f"x/{i}")


def test_mask_rate_must_be_a_share() -> None:
    with pytest.raises(ConfigError, match="mask_rate"):
        SchemaVariationConfig(mask_rate=1.5)
