"""Compare generators on the schema check, with paired intervals: per condition ((a) own schema, (b) the
language default, (c) held-out names), the macro F1 over corpora with its 95% document-bootstrap
interval and each system's paired difference from the first. Reads the predictions that
``benchmarks/schemas.py --cache DIR`` kept (one directory per system, the same corpora and slice
size). Usage:

    .venv/bin/python benchmarks/schema_ablation.py --system start=DIR --system arm=DIR ... \\
        --sentences 40 --corpus jnlpba --corpus genia ... --out benchmarks/results/ablation_X.md --note "..."
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import build_judge  # noqa: E402  (benchmarks/ is on sys.path when a script here runs)

TITLES = {"own": "(a) own schema", "default": "(b) default schema", "held_out": "(c) held-out names"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", required=True, help="NAME=CACHE_DIR (the first is the reference)")
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--sentences", type=int, required=True, help="the slice size the caches were made with")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="")
    parser.add_argument("--condition", action="append", choices=list(TITLES), default=None,
                        help="conditions to compare (default: all three)")
    parser.add_argument("--selector", action="store_true",
                        help="compare what the bundle's selector keeps of each system's candidates, as the pipeline would")
    parser.add_argument("--judge-model", default=None, help="with --selector: the bundle whose selector and settings judge "
                        "(default: the shipped bundle)")
    args = parser.parse_args()

    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.bootstrap import macro_f1_comparison, per_document_counts
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import selected_documents
    from llmner.evaluation.schema_check import namings_for, renamed_gold, scored_predictions
    from llmner.evaluation.subsets import leading_documents

    systems = dict(s.split("=", 1) for s in args.system)
    judge = build_judge(args.judge_model) if args.selector else None
    judged_by = (f"candidates judged by the selector of {args.judge_model or 'the shipped bundle'} as the pipeline judges them"
                 if judge else "generator only")
    reference = next(iter(systems))
    gold = {c: leading_documents(load_corpus(c, "dev"), args.sentences)[0] for c in args.corpus}
    lines = [f"# Schema-check ablation: {', '.join(systems)}", "", args.note, "",
             f"`python benchmarks/schema_ablation.py {' '.join(sys.argv[1:])}`", "",
             f"Dev split, leading documents with {args.sentences}+ sentences per corpus, {judged_by}; strict F1 of "
             f"each corpus's own types, macro over {len(args.corpus)} corpora; 95% document-bootstrap intervals "
             f"({args.samples} draws, paired across systems).", ""]
    summary = {}
    for condition, title in TITLES.items():
        if args.condition and condition not in args.condition:
            continue
        per_document: dict[str, dict[str, list]] = {}
        entity_sets: dict[str, dict[str, list[set]]] = {}   # per system and corpus: each document's scored entities
        for name, cache_dir in systems.items():
            cache = PredictionCache(Path(cache_dir))
            per_document[name], entity_sets[name] = {}, {}
            for c in args.corpus:
                naming = next(n for n in namings_for(corpus_schema(c)) if n.condition == condition)
                predicted = cache.get(c, condition)
                if predicted is None:
                    raise SystemExit(f"{cache_dir} has no {c} {condition} predictions")
                if judge is not None:
                    predicted = selected_documents(judge, gold[c], predicted, naming.schema)
                mapped = renamed_gold(gold[c], naming.gold_map)
                kept = scored_predictions(predicted, set(naming.gold_map.values()))
                per_document[name][c] = [d["all"] for d in per_document_counts(mapped, kept)]
                entity_sets[name][c] = [{(e.start, e.end, e.type) for e in d.entities} for d in kept]
        result = macro_f1_comparison(per_document, args.corpus, reference, args.samples)
        summary[condition] = result
        lines += [f"## {title}", "", "| system | " + " | ".join(args.corpus) + f" | macro F1 (95% CI) | minus {reference} (paired 95% CI) |",
                  "|---|" + "---|" * len(args.corpus) + "---|---|"]
        for name, r in result.items():
            cells = " | ".join(f"{r['per_corpus'][c]['f1'] * 100:.1f}" for c in args.corpus)
            lo, hi = r["macro_f1_ci"]
            diff = "—" if name == reference else (f"{r['diff_vs_reference'] * 100:+.1f} ({r['diff_ci'][0] * 100:+.1f} to "
                                                   f"{r['diff_ci'][1] * 100:+.1f})")
            lines.append(f"| {name} | {cells} | {r['macro_f1'] * 100:.1f} ({lo * 100:.1f}–{hi * 100:.1f}) | {diff} |")
        gold_counts = ", ".join(f"{c} {sum(x[0] + x[2] for x in per_document[reference][c])}" for c in args.corpus)
        lines += ["", f"Gold mentions: {gold_counts}.", ""]
        for name in systems:
            if name == reference:
                continue
            same = {c: sum(a == b for a, b in zip(entity_sets[reference][c], entity_sets[name][c], strict=True))
                    for c in args.corpus}
            total = sum(len(entity_sets[reference][c]) for c in args.corpus)
            lines += [f"Documents where {name} predicts exactly {reference}'s entities: "
                      + ", ".join(f"{c} {same[c]}/{len(entity_sets[reference][c])}" for c in args.corpus)
                      + f"; all {sum(same.values())}/{total}.", ""]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
