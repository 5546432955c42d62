"""The int8 ONNX selector on a CPU: batched runs against one row per run, side by side.

Dynamic int8 quantization scales a run's activations by that run's own range, so a batched candidate's
score depends on its batch neighbours. This measures, on real candidates (gold mentions of leading dev
documents and their one-word boundary errors, in their chunks), how far batched scores move when only the
batching changes, and the time of each way (interleaved repeats, one thread). Usage:

    .venv/bin/python benchmarks/selector_batching.py --out benchmarks/results/selector_batching.md
    .venv/bin/python benchmarks/selector_batching.py --selector runs/sel_tokens   # another selector
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np


def dev_candidates(corpus: str, documents: int) -> list:
    """Gold mentions of the first dev documents and the same spans one word longer, in their chunks."""
    from llmner.data_processing.chunking import ChunkingConfig, chunk_document
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.doc import Candidate

    schema = corpus_schema(corpus)
    out = []
    for doc in load_corpus(corpus, "dev")[:documents]:
        for chunk in chunk_document(doc, ChunkingConfig(sentences_per_chunk=1)):
            for e in doc.entities:
                if chunk.start <= e.start and e.end <= chunk.end and e.type in schema:
                    start, end = e.start - chunk.start, e.end - chunk.start
                    out.append(Candidate(chunk.text, start, end, e.type, schema.definition(e.type)))
                    longer = re.match(r"\s+\w+", chunk.text[end:])
                    if longer:
                        out.append(Candidate(chunk.text, start, end + longer.end(), e.type, schema.definition(e.type)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selector", type=Path, default=None, help="selector directory (default: the shipped bundle's)")
    parser.add_argument("--corpus", default="ncbi_disease")
    parser.add_argument("--documents", type=int, default=30, help="leading dev documents")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    args = parser.parse_args()

    from llmner.bundle import SELECTOR_DIR, default_bundle_path
    from llmner.runtime.onnx_selector import OnnxSelectorRuntime

    selector = args.selector or default_bundle_path() / SELECTOR_DIR
    runtime = OnnxSelectorRuntime(selector, device="cpu", variant="int8", threads=1)
    candidates = dev_candidates(args.corpus, args.documents)
    shuffled = list(range(len(candidates)))
    random.Random(0).shuffle(shuffled)
    runtime.score_row_by_row(candidates[:16])   # warm up the session

    def batched(size: int, order: list[int]) -> np.ndarray:
        runtime.batch_size = size
        out = np.zeros(len(candidates), dtype=np.float32)
        out[order] = runtime.score_in_batches([candidates[i] for i in order])
        return out

    def row_by_row(order: list[int]) -> np.ndarray:
        out = np.zeros(len(candidates), dtype=np.float32)
        out[order] = runtime.score_row_by_row([candidates[i] for i in order])
        return out

    natural = list(range(len(candidates)))
    times: dict[str, list[float]] = {"batches of 32": [], "row by row": []}
    for _ in range(args.repeats):
        for name, run in (("batches of 32", lambda: batched(32, natural)), ("row by row", lambda: row_by_row(natural))):
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    spreads = {
        "batches of 32 vs batches of 8": np.abs(batched(32, natural) - batched(8, natural)),
        "batches of 32 vs batches of 32, shuffled": np.abs(batched(32, natural) - batched(32, shuffled)),
        "row by row vs row by row, shuffled": np.abs(row_by_row(natural) - row_by_row(shuffled)),
    }
    best = {name: min(t) for name, t in times.items()}
    lines = [
        "# int8 selector on a CPU: batched runs against one row per run",
        "",
        (f"`{' '.join(['benchmarks/selector_batching.py', *sys.argv[1:]])}`: selector `{selector}` "
         f"({runtime.config.head} head), {len(candidates)} candidates from {args.documents} {args.corpus} dev documents "
         f"(gold mentions and one-word-longer errors), one thread, best of {args.repeats} interleaved repeats."),
        "",
        "| scoring | seconds | candidates/s |",
        "|---|---|---|",
        *[f"| {name} | {s:.2f} | {len(candidates) / s:.0f} |" for name, s in best.items()],
        "",
        f"Row by row / batches of 32, time: **{best['row by row'] / best['batches of 32']:.2f}x**.",
        "",
        "| same candidates, only the batching changed | max abs score change | mean | candidates moved > 0.01 |",
        "|---|---|---|---|",
        *[f"| {name} | {d.max():.4f} | {d.mean():.4f} | {int((d > 0.01).sum())} of {len(d)} |" for name, d in spreads.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({
            "selector": str(selector), "head": runtime.config.head, "candidates": len(candidates), "seconds": times,
            "spread": {name: {"max": float(d.max()), "mean": float(d.mean()), "moved": int((d > 0.01).sum())}
                       for name, d in spreads.items()}}, indent=1))


if __name__ == "__main__":
    main()
