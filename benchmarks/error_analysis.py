"""Where the shipped bundle's dev errors come from, per corpus: what became of each gold mention and of
each wrongly kept span, on the generator's stored candidates of the leading dev sentences (the caches of
``benchmarks/selector_judge.py``), judged by the bundle's selector at its thresholds. No generator runs;
the selector's own spans are left out (this is about the generator's candidates and the judge).

A gold mention is
- found: kept exactly;
- dropped: among the candidates, scored below the threshold;
- boundary: not a candidate, but a kept span of its type overlaps it (the commonest: a modifier such as
  "human", "inherited" or "acute" put in or left out, against the corpus's convention);
- overlapped, not kept: only candidates that were dropped or of another type overlap it;
- never proposed: no candidate touches it (abbreviations, for instance).
A wrongly kept span either overlaps a gold mention or is spurious.

    python benchmarks/error_analysis.py --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 \
        --out benchmarks/results/error_analysis_dev.md
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]
KINDS = ["found", "dropped", "boundary", "overlapped, not kept", "never proposed"]


def overlaps(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--sentences", type=int, default=200, help="leading dev sentences (as the caches were made)")
    parser.add_argument("--examples", type=int, default=12, help="examples shown per corpus and kind")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import chunk_candidates
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    if pipe.selector is None:
        raise SystemExit(f"{bundle}: no selector")
    lines = ["# Where the dev errors come from", "", f"`python {' '.join(sys.argv)}`", "",
             (f"Bundle `{bundle}`, the generator's stored candidates of the {args.sentences} leading dev sentences per "
              f"corpus (`{args.candidates}`), judged by the bundle's selector at its thresholds; the selector's own spans "
              "left out. Counts of gold mentions by what became of them, and of wrongly kept spans."), "",
             "| corpus | gold | " + " | ".join(KINDS) + " | wrongly kept: overlap gold | spurious |",
             "|---|---|" + "---|" * (len(KINDS) + 2)]
    shown: list[str] = []
    for corpus in args.corpus or ENGLISH:
        schema = corpus_schema(corpus)
        pipe.add_schema(schema)
        threshold = pipe.threshold_for(schema)
        docs, _ = leading_documents(load_corpus(corpus, "dev"), args.sentences)
        stored = {d.id: d for d in PredictionCache(args.candidates).get(corpus, "own") or []}
        kinds: Counter[str] = Counter()
        wrong: Counter[str] = Counter()
        examples: dict[str, list[str]] = {"boundary": [], "never proposed": []}
        for doc in docs:
            parts = chunk_candidates(pipe, doc, stored[doc.id].entities, schema)
            candidates = [c for p in parts for c in p.candidates]
            keys = [e.key for p in parts for e in p.entities]
            best: dict[tuple[int, int, str], float] = {}      # an entity's score: its best over the chunks holding it
            for key, score in zip(keys, pipe.selector.score(candidates) if candidates else [], strict=True):
                best[key] = max(best.get(key, 0.0), float(score))
            kept = {k for k, s in best.items() if s >= threshold}
            gold = {(e.start, e.end, e.type) for e in doc.entities}
            for g in sorted(gold):
                if g in kept:
                    kind = "found"
                elif g in best:
                    kind = "dropped"
                elif any(overlaps(k, g) and k[2] == g[2] for k in kept):
                    kind = "boundary"
                    near = next(k for k in sorted(kept) if overlaps(k, g) and k[2] == g[2])
                    examples[kind].append(f"{doc.text[g[0]:g[1]]!r} kept as {doc.text[near[0]:near[1]]!r}")
                elif any(overlaps(k, g) for k in best):
                    kind = "overlapped, not kept"
                else:
                    kind = "never proposed"
                    examples[kind].append(repr(doc.text[g[0]:g[1]]))
                kinds[kind] += 1
            for k in kept - gold:
                wrong["overlap" if any(overlaps(k, g) for g in gold) else "spurious"] += 1
        total = sum(kinds.values())
        lines.append(f"| {corpus} | {total} | " + " | ".join(str(kinds[k]) for k in KINDS)
                     + f" | {wrong['overlap']} | {wrong['spurious']} |")
        for kind, items in examples.items():
            if items:
                shown.append(f"- {corpus}, {kind}: " + "; ".join(items[: args.examples]))
        print(lines[-1], flush=True)
    text = "\n".join(lines + ["", "Examples:", ""] + shown) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
