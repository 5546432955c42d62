"""The scorer: strict/boundary/partial counts, id matching, and a cross-check against seqeval."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from rich.console import Console
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from llmner.doc import Document, Entity
from llmner.errors import ValidationError
from llmner.evaluation.scorer import score

DATA = Path("/work/shared/data")


def doc(doc_id: str, text: str, *spans: tuple[int, int, str]) -> Document:
    d = Document(doc_id, text)
    d.entities = [d.span(*s) for s in spans]
    return d


def test_strict_boundary_partial_and_nesting():
    text = "inherited breast cancer and colon cancer in BRCA1 carriers"
    gold = [doc("a", text, (0, 23, "Disease"), (10, 23, "Disease"), (28, 40, "Disease"), (44, 49, "Gene"))]
    pred = [doc("a", text, (10, 23, "Disease"), (28, 34, "Disease"), (44, 49, "Disease"), (50, 58, "Gene"),
                (10, 23, "Disease"))]  # a repeated prediction counts once
    report = score(gold, pred)
    assert (report.strict.tp, report.strict.fp, report.strict.fn) == (1, 3, 3)
    assert (report.per_type["Disease"].tp, report.per_type["Disease"].fp, report.per_type["Disease"].fn) == (1, 2, 2)
    assert (report.per_type["Gene"].tp, report.per_type["Gene"].fp, report.per_type["Gene"].fn) == (0, 1, 1)
    # Boundary: (10,23) and (44,49) match whatever the type.
    assert (report.boundary.tp, report.boundary.fp, report.boundary.fn) == (2, 2, 2)
    # Partial, same type, one-to-one: (10,23)->(0,23) or (10,23) and (28,34)->(28,40); the other
    # nested gold stays unmatched. "BRCA1" is typed Disease in the prediction: no Gene overlap.
    assert (report.partial.tp, report.partial.fp, report.partial.fn) == (2, 2, 2)
    assert report.strict.precision == pytest.approx(0.25) and report.strict.recall == pytest.approx(0.25)
    assert report.macro["f1"] == pytest.approx((report.per_type["Disease"].f1 + 0.0) / 2)
    assert report.gold_entities == 4 and report.predicted_entities == 4


def test_partial_matching_is_maximal_not_greedy():
    text = "aaaa bbbb"
    gold = [doc("a", text, (0, 4, "X"), (3, 9, "X"))]
    # A greedy left-to-right matcher pairing (0,9) with (0,4) would leave (0,2) unmatched.
    pred = [doc("a", text, (0, 9, "X"), (0, 2, "X"))]
    assert score(gold, pred).partial.tp == 2


def test_document_matching():
    gold = [doc("a", "x y", (0, 1, "T")), doc("b", "y", (0, 1, "T"))]
    report = score(gold, [doc("a", "x y", (0, 1, "T"))])
    assert report.missing_predictions == 1 and (report.strict.tp, report.strict.fn) == (1, 1)
    with pytest.raises(ValidationError, match="'c' is not in the gold"):
        score(gold, [doc("c", "z")])
    with pytest.raises(ValidationError, match="different text"):
        score(gold, [doc("a", "x z")])
    with pytest.raises(ValidationError, match="appears twice"):
        score(gold + gold[:1], [])
    # Predictions stored without their text (e.g. result records) are accepted.
    assert score(gold, [Document("a", "", entities=[Entity(0, 1, "T")])]).strict.tp == 1


def test_report_dict_and_table():
    text = "a b"
    report = score([doc("d", text, (0, 1, "T"))], [doc("d", text, (0, 1, "T"), (2, 3, "U"))])
    data = report.to_dict()
    assert data["strict"]["micro"]["precision"] == 0.5 and data["strict"]["micro"]["recall"] == 1.0
    assert data["strict"]["macro"]["f1"] == pytest.approx(0.5)
    assert set(data["per_type"]) == {"T", "U"}
    console = Console(record=True, width=100)
    console.print(report.to_table())
    rendered = console.export_text()
    assert "strict (micro)" in rendered and "0.6667" in rendered and "2 predicted" in rendered


# ---- cross-check against seqeval on a real CoNLL corpus ----------------------------------------

def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        token, tag = line.split("\t")[:2]
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def bio_to_document(doc_id: str, tokens: list[str], tags: list[str]) -> Document:
    """Tokens joined by single spaces; strict IOB2 (an I- without a matching B-/I- before it starts nothing)."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    d = Document(doc_id, " ".join(tokens))
    current: tuple[int, str] | None = None
    for i, tag in enumerate(tags + ["O"]):
        if current is not None and tag != f"I-{current[1]}":
            first, etype = current
            d.entities.append(d.span(starts[first], starts[i - 1] + len(tokens[i - 1]), etype))
            current = None
        if tag.startswith("B-"):
            current = (i, tag[2:])
    return d


def perturb(tags: list[str], rng: random.Random) -> list[str]:
    out = list(tags)
    for i in range(len(out)):
        r = rng.random()
        if r < 0.03:
            out[i] = "O"
        elif r < 0.05:
            out[i] = rng.choice(["B-Disease", "I-Disease", "B-Chemical", "I-Chemical"])
        elif r < 0.06 and out[i] != "O":
            out[i] = out[i][:2] + ("Chemical" if out[i].endswith("Disease") else "Disease")
    return out


@pytest.mark.parametrize("corpus", ["ncbi_disease", "bc5cdr"])
def test_strict_scores_equal_seqeval(corpus):
    path = DATA / corpus / "conll" / "devel.tsv"
    if not path.exists():
        pytest.skip(f"{path} not available")
    rng = random.Random(13)
    sentences = read_conll(path)
    true_tags = [tags for _, tags in sentences]
    pred_tags = [perturb(tags, rng) for tags in true_tags]
    gold = [bio_to_document(str(i), toks, tags) for i, (toks, tags) in enumerate(sentences)]
    pred = [bio_to_document(str(i), toks, tags) for i, ((toks, _), tags) in enumerate(zip(sentences, pred_tags))]
    report = score(gold, pred)
    expected = classification_report(true_tags, pred_tags, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    assert report.strict.tp > 500 and report.strict.fp > 10 and report.strict.fn > 10
    micro = expected["micro avg"]
    assert (report.strict.precision, report.strict.recall, report.strict.f1) == pytest.approx(
        (micro["precision"], micro["recall"], micro["f1-score"]), abs=1e-12)
    assert report.gold_entities == micro["support"]
    macro = expected["macro avg"]
    assert (report.macro["precision"], report.macro["recall"], report.macro["f1"]) == pytest.approx(
        (macro["precision"], macro["recall"], macro["f1-score"]), abs=1e-12)
    for etype, counts in report.per_type.items():
        assert (counts.precision, counts.recall, counts.f1) == pytest.approx(
            (expected[etype]["precision"], expected[etype]["recall"], expected[etype]["f1-score"]), abs=1e-12)
        assert counts.tp + counts.fn == expected[etype]["support"]
