"""``llmner view``: the page's structure, escaping, and the page as a real browser renders it."""

from __future__ import annotations

import re
import time

import pytest

from llmner.browser import dump_dom, find_chromium, screenshot
from llmner.doc import Document, Entity
from llmner.viewer import ViewConfig, render_html, render_text

NOTE = 'Pt note: <script>alert("pwned")</script> & "quotes" \'single\' <b>bold</b>. Heart attack (MI) treated with aspirin.'


def genia_nested() -> Document:
    """A GENIA-style sentence (nested protein inside DNA inside DNA), made here."""
    text = "Activation of the human IL-2 gene promoter requires NF-kappa B in T cells ."
    doc = Document("genia-nested", text)
    find = lambda s: (text.index(s), text.index(s) + len(s))
    doc.entities = [doc.span(*find("human IL-2 gene promoter"), "DNA"), doc.span(*find("human IL-2 gene"), "DNA"),
                    doc.span(*find("IL-2"), "protein"), doc.span(*find("NF-kappa B"), "protein"),
                    doc.span(*find("T cells"), "cell_type")]
    return doc


def note_doc() -> Document:
    doc = Document("note<1>&", NOTE)
    s = NOTE.index("<script>")
    ha = NOTE.index("Heart attack")
    doc.entities = [doc.span(s, s + 8, "Odd<Type>"), doc.span(ha, ha + 12, "Disease", score=0.91, normalized_id="MESH:D009203",
                                                                normalized_score=1.0),
                    doc.span(NOTE.index("aspirin"), NOTE.index("aspirin") + 7, "Chemical", score=0.8, normalized_score=0.0)]
    doc.metadata["dropped_candidates"] = [Entity(NOTE.index("MI"), NOTE.index("MI") + 2, "Disease", "MI", 0.001).to_dict()]
    return doc


def chinese_doc() -> Document:
    text = "患者有2型糖尿病和慢性肾病，服用二甲双胍。"
    doc = Document("zh-1", text, language="zh")
    f = lambda s: (text.index(s), text.index(s) + len(s))
    doc.entities = [doc.span(*f("2型糖尿病"), "dis"), doc.span(*f("糖尿病"), "dis"), doc.span(*f("慢性肾病"), "dis"),
                    doc.span(*f("肾"), "bod"), doc.span(*f("二甲双胍"), "dru")]
    return doc


def long_doc(n: int = 3000) -> Document:
    words = [f"w{i}" for i in range(n)]
    text = " ".join(words)
    doc = Document("long", text)
    pos = 0
    ents = []
    for i, w in enumerate(words):
        ents.append(doc.span(pos, pos + len(w), ("Gene", "Disease", "Chemical")[i % 3]))
        pos += len(w) + 1
    doc.entities = ents
    return doc


def test_nested_and_crossing_spans_and_escaping():
    doc = Document("x", "abcdefghij")
    doc.entities = [doc.span(0, 6, "A"), doc.span(2, 4, "B"), doc.span(4, 9, "C")]
    out = render_text(doc.text, doc.entities, {"A": 0, "B": 1, "C": 2})
    # B nests inside A; C crosses A's end: cut there, its two pieces share data-entity="2".
    assert re.sub(r' (title|data-depth|data-label)="[^"]*"', "", out) == (
        '<span class="ent t0" data-entity="0" data-type="A">ab<span class="ent t1" data-entity="1" data-type="B">cd</span>'
        '<span class="ent t2" data-entity="2" data-type="C">ef</span></span>'
        '<span class="ent t2 cont" data-entity="2" data-type="C">ghi</span>j')
    page = render_html([note_doc()], ViewConfig(title="<title>"))
    assert "<script>alert" not in page and "alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1            # only the page's own
    assert "Odd<Type>" not in page and "Odd&lt;Type&gt;" in page
    assert "http://" not in page and "https://" not in page     # nothing fetched from anywhere
    assert "default-src 'none'" in page


@pytest.mark.skipif(find_chromium() is None, reason="no headless Chromium (.ci/run installs Debian's chromium)")
def test_page_in_headless_chromium(tmp_path):
    import lxml.html

    docs = [note_doc(), genia_nested(), chinese_doc(), long_doc(3000)]
    page = tmp_path / "view.html"
    started = time.perf_counter()
    page.write_text(render_html(docs, ViewConfig(show_dropped=True)), encoding="utf-8")
    assert time.perf_counter() - started < 5.0
    started = time.perf_counter()
    dom = lxml.html.fromstring(dump_dom(page, timeout=180))
    assert time.perf_counter() - started < 120.0   # thousands of entities: the browser does not hang
    body = dom.find("body")
    assert body.get("data-ready") == "1"           # the page's own script ran (CSP allows inline, nothing else)
    assert len(dom.xpath("//script")) == 1
    sections = {s.get("data-doc"): s for s in dom.xpath("//section[@class='doc']")}
    assert set(sections) == {"note<1>&", "genia-nested", "zh-1", "long"}

    note = sections["note<1>&"]
    text = note.xpath(".//div[@class='text']")[0].text_content()
    assert text == NOTE                             # every character shown as text, <script> included
    odd = note.xpath(".//span[@data-type='Odd<Type>']")[0]
    assert odd.text_content() == "<script>" and not odd.xpath(".//script")
    disease = note.xpath(".//span[@data-type='Disease' and not(contains(@class,'dropped'))]")[0]
    assert disease.get("data-id") == "MESH:D009203" and "score 0.910" in disease.get("title")
    assert "id NIL" in note.xpath(".//span[@data-type='Chemical']")[0].get("title")
    dropped = note.xpath(".//span[contains(@class,'dropped')]")
    assert [d.text_content() for d in dropped] == ["MI"]

    genia = sections["genia-nested"]
    ents = genia.xpath(".//span[contains(@class,'ent')]")
    assert [(e.get("data-type"), e.text_content()) for e in ents] == [
        ("DNA", "human IL-2 gene promoter"), ("DNA", "human IL-2 gene"), ("protein", "IL-2"),
        ("protein", "NF-kappa B"), ("cell_type", "T cells")]
    il2 = ents[2]
    assert [a.get("data-type") for a in il2.iterancestors("span")] == ["DNA", "DNA"]   # nested two deep
    assert il2.get("data-depth") == "2"

    zh = sections["zh-1"]
    zh_ents = zh.xpath(".//span[contains(@class,'ent')]")
    assert sorted(e.text_content() for e in zh_ents) == sorted(["2型糖尿病", "糖尿病", "慢性肾病", "肾", "二甲双胍"])
    kidney = zh.xpath(".//span[@data-type='bod']")[0]
    assert kidney.getparent().text_content() == "慢性肾病"
    assert zh.xpath(".//div[@class='text']")[0].text_content() == chinese_doc().text

    assert len(sections["long"].xpath(".//span[contains(@class,'ent')]")) == 3000
    legend = {k.get("data-type"): k.text_content() for k in dom.xpath("//div[@id='legend']/span")}
    assert legend["Gene"] == "Gene 1000" and legend["DNA"] == "DNA 2"
    counts = note.xpath(".//div[@class='counts']")[0].text_content()
    assert counts.startswith("3 entities (Chemical 1, Disease 1, Odd<Type> 1); 1 with an identifier; 1 dropped")

    small = tmp_path / "small.html"
    small.write_text(render_html([genia_nested(), note_doc()], ViewConfig(show_dropped=True)), encoding="utf-8")
    png = screenshot(small, tmp_path / "view.png", 900, 500)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("fmt,ext", [("jsonl", "jsonl"), ("bioc", "xml"), ("pubtator", "pubtator")])
def test_view_cli_reads_every_tagged_output_format(tmp_path, fmt, ext):
    from typer.testing import CliRunner

    from llmner.cli.main import app
    from llmner.data_processing.corpora import write_documents

    doc = genia_nested()
    doc.entities[2] = Entity(doc.entities[2].start, doc.entities[2].end, "protein", "IL-2", 0.9, "UniProt:P60568")
    src = tmp_path / f"tagged.{ext}"
    write_documents([doc], src, fmt)
    out = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["view", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert page.count('class="ent ') == 5 and 'data-id="UniProt:P60568"' in page
    assert 'data-depth="2"' in page
