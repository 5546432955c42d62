"""The selector's own spans: strict dev F1 when a tokens-head selector also proposes what it tags.

A tokens-head selector labels every word piece O/B/I for a type, so besides judging the generator's
candidates it can propose spans the generator missed (``SelectorRuntime.propose``). The pipeline adds
a proposal when its score reaches the schema's proposal threshold (``BundleManifest.proposal_threshold``
and ``proposal_thresholds``). This script chooses them on dev, on the generator's stored candidates of
the leading dev sentences of each English corpus (the caches of ``benchmarks/selector_judge.py``), so no
generator runs: for each threshold in the grid, the F1 of the generator's candidates kept at the
bundle's selector threshold plus the proposals at or above it.

- per corpus: the dev-best threshold, or none when no threshold beats no proposals;
- global (schemas with no threshold of their own, e.g. a user's): the threshold with the best macro F1.

    python benchmarks/selector_proposals.py --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 \
        --out benchmarks/results/selector_proposals.md [--write-bundle llmner/bundles/default]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle whose selector and chunking to use (default: the shipped one)")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--sentences", type=int, default=200, help="leading dev sentences (as the caches were made)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    parser.add_argument("--write-bundle", type=Path, default=None, help="store the chosen thresholds in this bundle's bundle.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from llmner.bundle import (
        MANIFEST_NAME,
        default_bundle_path,
        load_manifest,
        write_manifest,
    )
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.doc import Document, Entity
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import chunk_candidates
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="torch"))
    selector = pipe.selector
    if selector is None or not selector.can_propose:
        raise SystemExit(f"{bundle}: its selector cannot propose spans (a tokens-head selector can)")
    corpora = args.corpus or ENGLISH
    rows: dict[str, dict[str, object]] = {}
    started = time.process_time()
    for corpus in corpora:
        schema = corpus_schema(corpus)
        pipe.add_schema(schema)
        keep_at = pipe.threshold_for(schema)
        docs, _ = leading_documents(load_corpus(corpus, "dev"), args.sentences)
        stored = {d.id: d for d in PredictionCache(args.candidates).get(corpus, "own") or []}
        kept_docs, proposed = [], []
        corpus_started = time.process_time()
        for doc in docs:
            pred = stored[doc.id]
            parts = chunk_candidates(pipe, doc, pred.entities, schema)
            kept: list[Entity] = []
            found_here: list[tuple[Entity, float]] = []
            proposals = pipe.selector_spans([p.chunk.text for p in parts], [schema] * len(parts),
                                            [{(c.start, c.end, c.type) for c in p.candidates} for p in parts])
            for part, new in zip(parts, proposals.spans, strict=True):
                chunk, cands = part.chunk, part.candidates
                scores = selector.score_with_rows(cands + new, proposals.rows) if cands or new else []
                kept += [e for e, p in zip(part.entities, scores[: len(cands)]) if p >= keep_at]
                found_here += [(Entity(chunk.start + c.start, chunk.start + c.end, c.type, "", source="selector"), float(p))
                               for c, p in zip(new, scores[len(cands):])]
            kept_docs.append(Document(pred.id, pred.text, pred.language, {}, kept))
            proposed.append(found_here)
        row: dict[str, object] = {"gold": sum(len(d.entities) for d in docs),
                                  "proposals": sum(len(p) for p in proposed),
                                  "cpu_s": round(time.process_time() - corpus_started, 1)}
        base = score(docs, kept_docs).strict
        row["none"] = [base.precision * 100, base.recall * 100, base.f1 * 100]
        for threshold in GRID:
            predicted = [Document(k.id, k.text, k.language, {}, k.entities + [e for e, p in found if p >= threshold])
                         for k, found in zip(kept_docs, proposed, strict=True)]
            s = score(docs, predicted).strict
            row[f"{threshold:g}"] = [s.precision * 100, s.recall * 100, s.f1 * 100]
        rows[corpus] = row
        print(f"{corpus}: " + " ".join(f"{k} {v[2]:.1f}" for k, v in row.items() if isinstance(v, list)), flush=True)

    columns = ["none", *[f"{t:g}" for t in GRID]]
    macro = {c: sum(rows[k][c][2] for k in corpora) / len(corpora) for c in columns}   # type: ignore[index]
    global_best = max(columns[1:], key=lambda c: macro[c])
    per_corpus: dict[str, float | None] = {}
    for corpus in corpora:
        best = max(columns, key=lambda c: rows[corpus][c][2])   # type: ignore[index]
        per_corpus[corpus] = None if best == "none" or rows[corpus][best][2] <= rows[corpus]["none"][2] else float(best)  # type: ignore[index]
    result = {"candidates": str(args.candidates), "sentences": args.sentences, "bundle": str(bundle), "rows": rows,
              "macro": macro, "global": float(global_best), "per_corpus": per_corpus,
              "cpu_s": round(time.process_time() - started, 1)}

    lines = ["# The selector's own spans (proposals), chosen on dev", "",
             f"`python benchmarks/selector_proposals.py --candidates {args.candidates} --sentences {args.sentences}"
             + (f" --bundle {args.bundle}" if args.bundle else "") + "".join(f" --corpus {c}" for c in args.corpus or []) + "`", "",
             (f"Strict F1 (%) on the leading {args.sentences} dev sentences of each corpus, own schema: the generator's stored "
              "candidates kept at the bundle's selector threshold, plus the selector's own spans (those the generator did not "
              f"propose) scored at or above each proposal threshold. {result['cpu_s']:.0f} CPU-s on one thread."), "",
             "| corpus | gold | proposals | none | " + " | ".join(columns[1:]) + " | chosen |", "|---" * (len(columns) + 4) + "|"]
    for corpus in corpora:
        r = rows[corpus]
        chosen = per_corpus[corpus]
        lines.append(f"| {corpus} | {r['gold']} | {r['proposals']} | " + " | ".join(f"{r[c][2]:.1f}" for c in columns)   # type: ignore[index]
                     + f" | {'none' if chosen is None else f'{chosen:g}'} |")
    lines += ["| macro | | | " + " | ".join(f"**{macro[c]:.1f}**" for c in columns) + f" | {global_best} (global) |", "",
              ("Per corpus: the dev-best threshold, none where no threshold beats no proposals; global (schemas without "
               "their own): the macro-best threshold."), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    if args.write_bundle:
        manifest = load_manifest(args.write_bundle)
        manifest.proposal_threshold = float(global_best)
        manifest.proposal_thresholds = {corpus: per_corpus[corpus] for corpus in corpora}
        write_manifest(args.write_bundle, manifest)
        print(f"wrote proposal_threshold {global_best} and proposal_thresholds into {args.write_bundle / MANIFEST_NAME}")


if __name__ == "__main__":
    main()
