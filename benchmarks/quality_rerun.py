"""A quality.py rerun against the rows it repeats: strict F1 of each row in both runs, with and without the selector.

    .venv/bin/python benchmarks/quality_rerun.py --rows /work/qwork --against benchmarks/campaign/quality_work \\
        --out benchmarks/results/quality_rerun.md

Rows are matched by their cache key (system, corpus, split, documents, bundle fingerprint), so only rows
of the same bundle on the same documents are compared. Each comparison gives the paired document-bootstrap
95 % interval of the F1 difference (``llmner.evaluation.bootstrap``), how many documents have the same
strict counts in both runs, and the documents/s each run recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmner.evaluation.bootstrap import paired_bootstrap_difference  # noqa: E402

READINGS = (("without_selector", "generator alone"), ("with_selector", "with the selector"))


def compare(new: dict, old: dict, samples: int) -> list[str]:
    """Table cells of one row: per reading, F1 old -> new (difference, interval, documents alike)."""
    cells = []
    for key, _ in READINGS:
        a, b = new["per_document"].get(key), old["per_document"].get(key)
        if not a or not b or len(a) != len(b):
            cells.append("–")
            continue
        f_new, f_old = 100 * new[key]["strict"]["micro"]["f1"], 100 * old[key]["strict"]["micro"]["f1"]
        interval = paired_bootstrap_difference(a, b, "all", samples)
        ci = f", {100 * interval[0]:+.1f} to {100 * interval[1]:+.1f}" if interval else ""
        alike = sum(x["all"] == y["all"] for x, y in zip(a, b))
        cells.append(f"{f_old:.1f} -> **{f_new:.1f}** ({f_new - f_old:+.1f}{ci}); alike {alike}/{len(a)}")
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, required=True, help="the rerun's quality.py --work-dir")
    parser.add_argument("--against", type=Path, required=True, help="the earlier run's --work-dir")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    lines = [f"# Quality rerun: `{args.rows}` against `{args.against}`", "",
             f"`python benchmarks/quality_rerun.py --rows {args.rows} --against {args.against}`", "",
             "Strict micro F1, earlier run -> rerun (difference, paired document-bootstrap 95 % interval); "
             "'alike': documents whose strict (tp, fp, fn) are the same in both runs. docs/s is what each run recorded "
             "for its own host and settings: across hosts it is not a speed-up.", "",
             "| row | documents | " + " | ".join(label for _, label in READINGS) + " | docs/s, earlier -> rerun |",
             "|---|---|---|---|---|"]
    for path in sorted((args.rows / "rows").glob("*.json")):
        earlier = args.against / "rows" / path.name
        if not earlier.is_file():
            continue
        new, old = json.loads(path.read_text()), json.loads(earlier.read_text())
        if "per_document" not in new or "per_document" not in old:
            continue
        speed = f"{old['documents_per_second']:.2f} -> {new['documents_per_second']:.2f}"
        lines.append(f"| {new['system']} {new['corpus']} {new['split']} | {new['documents']} | "
                     + " | ".join(compare(new, old, args.bootstrap)) + f" | {speed} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
