"""How well a selector judges a generator's own candidates: strict dev F1 of what it keeps, per threshold.

The candidates are a generator's stored predictions on leading dev documents (the ship test's caches,
``benchmarks/campaign/gen-s4/checks/<run>/<corpus>.own.jsonl``, written by ``benchmarks/schemas.py
--cache``), so no generator runs here: each candidate is scored in its chunk (the bundle's own chunking)
by the selector under test, under its corpus's own schema. Prints, per corpus, the F1 of the generator
alone and of the candidates kept at each threshold, the macro over corpora, and the selector's own
threshold's row. Usage:

    .venv/bin/python benchmarks/selector_judge.py --selector runs/sel_tokens \
        --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 --out benchmarks/results/selector_judge_runs/sel_tokens.md

A candidate the consistency step added (a recurrence of a tagged string) is judged in its own chunk
here, while the pipeline gives it its source's score: the numbers are the judge's, not the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selector", type=Path, required=True, action="append",
                        help="selector directory (repeatable: each is judged on the same candidates)")
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--sentences", type=int, default=200, help="leading dev sentences (as the caches were made)")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle whose chunking to use (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.doc import Candidate, Document
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig
    from llmner.runtime.torch_selector import TorchSelectorRuntime

    pipe = Pipeline.from_bundle(args.bundle or default_bundle_path(), PipelineConfig(selector_backend="none"))
    corpora = args.corpus or ENGLISH
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for sel_dir in args.selector:
        selector = TorchSelectorRuntime.from_pretrained(sel_dir)
        name = sel_dir.name
        rows[name] = {}
        started = time.process_time()
        for corpus in corpora:
            schema = corpus_schema(corpus)
            docs, _ = leading_documents(load_corpus(corpus, "dev"), args.sentences)
            path = args.candidates / f"{corpus}.own.jsonl"
            stored = {d["id"]: Document.from_dict(d, validate=False) for d in map(json.loads, path.open())}
            predicted = [stored[d.id] for d in docs]
            scored = []
            for doc, pred in zip(docs, predicted, strict=True):
                chunks = pipe.chunk(doc.without_annotations())
                cands, where = [], []
                for e in pred.entities:
                    chunk = next(c for c in chunks if c.start <= e.start and e.end <= c.end)
                    cands.append(Candidate(chunk.text, e.start - chunk.start, e.end - chunk.start, e.type,
                                           schema.definition(e.type)))
                    where.append(e)
                probs = selector.score(cands) if cands else []
                scored.append((pred, list(zip(where, (float(p) for p in probs), strict=True))))
            row = {"generator": score(docs, predicted).strict.f1 * 100}
            for th in (*GRID, selector.threshold):
                kept = [Document(p.id, p.text, p.language, {}, [e for e, s in pairs if s >= th]) for p, pairs in scored]
                row[f"{th:g}"] = score(docs, kept).strict.f1 * 100
            rows[name][corpus] = row
            print(f"{name} {corpus}: " + " ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
        rows[name]["_cpu_s"] = {"judging": time.process_time() - started}
        rows[name]["_threshold"] = {"own": selector.threshold}
    command = (f"python benchmarks/selector_judge.py {' '.join('--selector ' + str(s) for s in args.selector)} "
               f"--candidates {args.candidates} --sentences {args.sentences}")
    lines = [f"# Selector as judge of the generator's candidates ({args.candidates})", "", f"`{command}`", "",
             "Strict F1 (%) of the candidates kept at each threshold, leading dev sentences of each corpus, own schema.", ""]
    for name, by_corpus in rows.items():
        own = by_corpus["_threshold"]["own"]
        cols = ["generator", *[f"{t:g}" for t in GRID], f"{own:g}"]
        lines += [f"## {name} (its own threshold {own:.3f}; judging took {by_corpus['_cpu_s']['judging']:.0f} CPU-s)", "",
                  "| corpus | generator alone | " + " | ".join(cols[1:-1]) + " | own threshold |",
                  "|---" * (len(cols) + 1) + "|"]
        for corpus in corpora:
            lines.append(f"| {corpus} | " + " | ".join(f"{by_corpus[corpus][c]:.1f}" for c in cols) + " |")
        macro = [sum(by_corpus[c][k] for c in corpora) / len(corpora) for k in cols]
        lines += ["| macro | " + " | ".join(f"**{m:.1f}**" for m in macro) + " |", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
