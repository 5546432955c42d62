"""The selector's time when it proposes: candidates read off the rows proposing ran, against encoding
them again, side by side in one run.

A tokens-head selector proposes by reading every chunk once per type. A candidate's row is its
(window, type), and in a chunk of up to ``2 * context_chars`` characters the window is the whole chunk:
the row proposing already read. ``SelectorRuntime.score_with_rows`` reads such candidates off that row;
``score`` encodes them again. For each corpus this script takes the generator's stored candidates of the
leading dev sentences (the caches of ``benchmarks/selector_judge.py``), proposes in every chunk as the
pipeline does, then scores the candidates and the proposals both ways (alternating which goes first),
checks that the scores are the same and prints the selector's seconds and their ratio.

    python benchmarks/selector_reuse.py --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 \
        --sentences 100 --out benchmarks/results/selector_reuse.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]


def propose_then_score(pipe, schema, parts, reuse: bool):
    """Propose in the chunks of ``parts`` (``chunk_candidates``: less the generator's candidates in each),
    then score the generator's candidates and the proposals, reading them off the proposing rows
    (``reuse``) or encoding them again: (seconds, scores, how many)."""
    started = time.perf_counter()
    found = pipe.selector_spans([p.chunk.text for p in parts], [schema] * len(parts),
                                [{(c.start, c.end, c.type) for c in p.candidates} for p in parts])
    candidates = [c for p in parts for c in p.candidates] + [c for spans in found.spans for c in spans]
    scores = pipe.selector.score_with_rows(candidates, found.rows) if reuse else pipe.selector.score(candidates)
    return time.perf_counter() - started, scores, len(candidates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="the selector runtime (the pipeline's default: onnx)")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--sentences", type=int, default=100, help="leading dev sentences per corpus")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the ONNX session takes its default)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import chunk_candidates
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend=args.backend))
    selector = pipe.selector
    if selector is None or not selector.can_propose:
        raise SystemExit(f"{bundle}: its selector cannot propose spans (a tokens-head selector can)")
    rows: dict[str, dict[str, float | int | bool]] = {}
    for n, corpus in enumerate(args.corpus or ENGLISH):
        schema = corpus_schema(corpus)
        pipe.add_schema(schema)
        docs, _ = leading_documents(load_corpus(corpus, "dev"), args.sentences)
        stored = {d.id: d for d in PredictionCache(args.candidates).get(corpus, "own") or []}
        parts = [p for doc in docs for p in chunk_candidates(pipe, doc, stored[doc.id].entities, schema)]

        order = (True, False) if n % 2 == 0 else (False, True)
        timed = {reuse: propose_then_score(pipe, schema, parts, reuse) for reuse in order}
        (reused_s, reused, count), (again_s, again, _) = timed[True], timed[False]
        rows[corpus] = {"chunks": len(parts), "candidates": count, "encoded_again_s": round(again_s, 2),
                        "reused_s": round(reused_s, 2), "speedup": round(again_s / reused_s, 2),
                        "same_scores": bool(np.array_equal(reused, again)),
                        "max_difference": float(np.abs(reused - again).max()) if count else 0.0}
        print(f"{corpus}: {rows[corpus]}", flush=True)
    total_again = sum(r["encoded_again_s"] for r in rows.values())
    total_reused = sum(r["reused_s"] for r in rows.values())
    def same(r: dict) -> str:
        return "yes" if r["same_scores"] else f"max difference {r['max_difference']:.1e}"

    lines = [f"# The selector's time when proposing: reading candidates off the proposing rows ({args.backend}, {args.threads} thread(s))",
             "",
             f"`python {' '.join(sys.argv)}`",
             "",
             (f"Bundle `{bundle}`; the generator's stored candidates of the {args.sentences} leading dev sentences per corpus "
              f"(`{args.candidates}`), plus the selector's own spans. Seconds of proposing and scoring, both ways in one run."),
             "",
             "| corpus | chunks | candidates | encoded again, s | read off the rows, s | speed-up | same scores |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {c} | {r['chunks']} | {r['candidates']} | {r['encoded_again_s']:.2f} | {r['reused_s']:.2f} | "
              f"{r['speedup']:.2f}x | {same(r)} |" for c, r in rows.items()]
    lines += [f"| all | | | {total_again:.2f} | {total_reused:.2f} | {total_again / total_reused:.2f}x | |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
