"""What the reader costs and gives on Chinese clinical records: one bundle, served two ways, side by side.

The same pipeline (``Pipeline.from_bundle``) tags the same leading CMeEE dev records twice in one run:

- with its reader (``PipelineConfig.reader=True``, the default): the schemas the bundle's reader covers
  go to the reader alone;
- without it (``reader=False``): the generator proposes and the selector judges and proposes, as before
  the reader existed.

It prints, per way, seconds per record (wall clock, after one warm-up batch), records/s, the
ratio, and strict F1 on those records (``llmner.evaluation.scorer``), and writes the table to ``--out``.

    python benchmarks/reader_cost.py --records 100 --out benchmarks/results/reader_cost.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped bundle")
    parser.add_argument("--records", type=int, default=100, help="leading CMeEE dev records timed")
    parser.add_argument("--batch-documents", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.scorer import score
    from llmner.pipeline import Pipeline, PipelineConfig

    torch.set_num_threads(args.threads)
    schema = corpus_schema("cmeee")
    docs = load_corpus("cmeee", "dev")[: args.records + args.batch_documents]
    warm, timed = docs[: args.batch_documents], docs[args.batch_documents :]
    rows = []
    for name, reader in (("reader", True), ("generator + selector", False)):
        pipe = Pipeline.from_bundle(args.bundle, PipelineConfig(reader=reader))
        pipe.add_schema(schema)
        tagged = [d.without_annotations() for d in docs]
        for d in tagged:
            d.metadata = {**d.metadata, "schema": schema.name}
        pipe.process(tagged[: args.batch_documents])           # warm-up: first-call costs left out
        started = time.perf_counter()
        records = []
        for s in range(args.batch_documents, len(tagged), args.batch_documents):
            records += pipe.process(tagged[s : s + args.batch_documents])
        seconds = time.perf_counter() - started
        predicted = [r.to_document(d.text) for d, r in zip(timed, records)]
        report = score(timed, predicted)
        rows.append((name, seconds / len(timed), len(timed) / seconds, report.strict))
        print(f"{name}: {seconds:.1f} s for {len(timed)} records, strict F1 {100 * report.strict.f1:.1f}", file=sys.stderr)
        del pipe
    base = rows[1][2]
    lines = [(f"CMeEE dev records {len(warm) + 1}-{len(docs)} ({len(timed)} records, {sum(len(d.text) for d in timed)} characters, "
              f"{sum(len(d.entities) for d in timed)} gold mentions); one bundle served two ways in one run; "
              f"{args.threads} threads on {platform.processor() or platform.machine()}, batches of {args.batch_documents} records."),
             "", "| served | s / record | records / s | × generator + selector | strict F1 | P | R |", "|---|---|---|---|---|---|---|"]
    for name, per, rate, c in rows:
        lines.append(f"| {name} | {per:.3f} | {rate:.2f} | {rate / base:.1f}× | {100 * c.f1:.1f} | {100 * c.precision:.1f} | "
                     f"{100 * c.recall:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
