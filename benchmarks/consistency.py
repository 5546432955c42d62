"""Document-level consistency on dev: does tagging every recurrence of a tagged string (and the short
forms of tagged long forms) raise strict F1? (``llmner.decoding.consistency``)

One generator pass per corpus over its leading dev documents (every candidate kept, stored in parts
under ``--work-dir`` so that a killed run resumes); then each variant post-processes the same records
(off; abbreviations only; repeats of every tagged string; repeats only of strings the model tagged at
``--min-share`` of their occurrences or more; both steps with that share), the selector's cut is applied as the pipeline applies it,
and strict micro F1 is scored with a paired document-bootstrap interval of variant - off. Writes
``benchmarks/results/consistency.md`` and ``.json``. Usage:

    .venv/bin/python benchmarks/consistency.py [--bundle B] [--corpus C ...] [--sentences 300] [--threads 1] \\
        [--work-dir benchmarks/campaign/consistency_work]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--corpus", action="append", default=None, help="repeatable (default: all 8)")
    parser.add_argument("--sentences", type=int, default=300, help="leading dev sentences per corpus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--min-share", type=float, default=0.5,
                        help="the majority variants: a string is propagated where the model tagged at least this share "
                             "of its occurrences")
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/campaign/consistency_work"))
    parser.add_argument("--out", type=Path, default=RESULTS / "consistency.md")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.decoding.consistency import ConsistencyConfig, propagate
    from llmner.evaluation.bootstrap import (
        paired_bootstrap_difference,
        per_document_counts,
    )
    from llmner.evaluation.predict import predict_in_parts, predicted_documents
    from llmner.evaluation.reports import bundle_fingerprint
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    fingerprint = bundle_fingerprint(bundle)
    # The raw records: no consistency step inside the pipeline, so that every variant starts from them.
    variants = {"off": ConsistencyConfig.off(),
                "abbreviations": ConsistencyConfig(abbreviations=True, repeats=False),
                "repeats (every)": ConsistencyConfig(repeats=True, min_share=0.0),
                f"repeats (share ≥ {args.min_share:g})": ConsistencyConfig(repeats=True, min_share=args.min_share),
                f"both (share ≥ {args.min_share:g})": ConsistencyConfig(abbreviations=True, repeats=True, min_share=args.min_share)}
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(normalize=False, consistency=variants["off"]))
    rows = []
    for corpus in args.corpus or CORPORA:
        docs = leading_documents(load_corpus(corpus, "dev"), args.sentences)[0]
        schema = corpus_schema(corpus)
        parts = args.work_dir / f"{corpus}__dev__d{len(docs)}__{fingerprint}.parts"
        t0 = time.perf_counter()
        records, seconds = predict_in_parts(pipe, docs, schema, parts)
        print(f"{corpus}: {len(docs)} dev documents predicted ({seconds:.0f} s; this run {time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
        per_variant = {}
        for name, config in variants.items():
            propagated = [dataclasses.replace(r, entities=propagate(d.text, r.entities, config)) for d, r in zip(docs, records)]
            predicted = predicted_documents(docs, propagated, select=lambda es, schema=schema: pipe.selection(es, schema))
            per_variant[name] = (score(docs, predicted).strict, per_document_counts(docs, predicted))
        base_counts = per_variant["off"][1]
        row = {"corpus": corpus, "documents": len(docs), "gold": sum(len(d.entities) for d in docs), "variants": {}}
        for name, (micro, counts) in per_variant.items():
            cell: dict = micro.to_dict()
            if name != "off":
                cell["minus_off_ci"] = paired_bootstrap_difference(counts, base_counts, "all", args.bootstrap)
            row["variants"][name] = cell
        rows.append(row)
        print(json.dumps({k: round(v["f1"] * 100, 1) for k, v in row["variants"].items()}), file=sys.stderr)

    header = "| corpus | dev docs / gold | " + " | ".join(variants) + " |"
    lines = [header, "|" + "---|" * (2 + len(variants))]
    for row in rows:
        cells = []
        for name in variants:
            v = row["variants"][name]
            cell = f"{100 * v['precision']:.1f} / {100 * v['recall']:.1f} / **{100 * v['f1']:.1f}**"
            if "minus_off_ci" in v:
                lo, hi = v["minus_off_ci"]
                cell += f" ({100 * (v['f1'] - row['variants']['off']['f1']):+.1f}; {100 * lo:+.1f} to {100 * hi:+.1f})"
            cells.append(cell)
        lines.append(f"| {row['corpus']} | {row['documents']} / {row['gold']} | " + " | ".join(cells) + " |")
    command = "python benchmarks/consistency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (f"# Document-level consistency on dev\n\nGenerated by `{command}` (do not edit by hand).\n\n"
            f"Bundle `{bundle}` (fingerprint {fingerprint}); leading dev documents up to {args.sentences} sentences per "
            "corpus; one generator pass, every variant post-processes the same records; the selector's cut as shipped. "
            "Cells: strict P / R / **F1**, and for a variant its F1 minus off with the paired document-bootstrap 95% "
            f"interval ({args.bootstrap} resamples).\n\n" + "\n".join(lines) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "bundle": str(bundle),
                                                          "fingerprint": fingerprint, "rows": rows}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
