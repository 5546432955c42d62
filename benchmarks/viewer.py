"""The viewer on real output: the sample notes as tagged by the default bundle, plus one nested GENIA
sentence, rendered by ``llmner view`` and photographed by headless Chromium.

    llmner tag examples/notes.jsonl -o benchmarks/results/notes_tagged.jsonl --normalize --keep-dropped
    python benchmarks/viewer.py            # -> benchmarks/results/viewer.html, viewer.png

The GENIA sentence is the first of the test split with an entity nested two deep ("Corpus
annotations (c) GENIA Project", CC BY 3.0). Chinese needs a CJK font where the picture is taken
(Debian: fonts-wqy-zenhei); the page itself names the usual ones and needs none to be correct.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llmner.browser import screenshot
from llmner.data_processing.corpora import load_corpus, read_jsonl
from llmner.doc import Document
from llmner.viewer import ViewConfig, render_html

RESULTS = Path(__file__).resolve().parent / "results"


def nesting_depth(doc: Document) -> int:
    depth = 0
    for e in doc.entities:
        inside = sum(1 for o in doc.entities if o is not e and o.start <= e.start and e.end <= o.end and o.key != e.key)
        depth = max(depth, inside)
    return depth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tagged", type=Path, default=RESULTS / "notes_tagged.jsonl")
    # The notes in the picture: a plain one, one with a NIL, the two where the selector dropped a
    # candidate (drawn faint), a Chinese one.
    ap.add_argument("--ids", default="note-001,note-006,note-007,note-008,note-009", help="notes shown (comma-separated ids)")
    ap.add_argument("--html", type=Path, default=RESULTS / "viewer.html")
    ap.add_argument("--png", type=Path, default=RESULTS / "viewer.png")
    args = ap.parse_args()
    notes = read_jsonl(args.tagged)
    genia = next(d for d in load_corpus("genia", "test") if nesting_depth(d) >= 2 and len({e.type for e in d.entities}) >= 2)
    genia.id = f"GENIA test {genia.id} (gold, nested)"
    by_id = {d.id: d for d in notes}
    docs = [genia, *(by_id[i] for i in args.ids.split(","))]
    args.html.write_text(render_html(docs, ViewConfig(title="llmner view: GENIA nested + sample notes", show_dropped=True)),
                         encoding="utf-8")
    screenshot(args.html, args.png, width=1100, height=1250)
    print(f"{len(docs)} documents -> {args.html}, {args.png} ({args.png.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
