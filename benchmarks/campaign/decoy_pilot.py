"""Pilot (session 15, not adopted): decoy types at inference.

The corpus's schema plus extra ``biomedical_en`` types whose predictions are dropped afterwards, so
that a gene in an NCBI-Disease abstract could be written as ``Gene`` instead of ``Disease``. Each arm
is scored against the consistency benchmark's stored dev records of the same models (bundle
ed20314a6436 is the default bundle without its consistency field; consistency off here too), with a
paired document-bootstrap interval. Usage (one thread, about 4-5 CPU minutes per arm):

    PYTHONPATH=. .venv/bin/python benchmarks/campaign/decoy_pilot.py --corpus ncbi_disease \\
        --arm gene=Gene --arm all=Chemical,Gene,Species,CellType,CellLine --work /work/decoy

Results and the decision are in docs/training.md (equal-compute decisions).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

BASELINE = Path(__file__).resolve().parent / "consistency_work"
BASELINE_FINGERPRINT = "ed20314a6436"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--arm", action="append", required=True, help="NAME=Type1,Type2 (biomedical_en types)")
    parser.add_argument("--sentences", type=int, default=300, help="leading dev sentences (as the baseline)")
    parser.add_argument("--work", type=Path, default=Path("/work/decoy"), help="the arms' stored records")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.decoding.consistency import ConsistencyConfig
    from llmner.evaluation.bootstrap import (
        paired_bootstrap_difference,
        per_document_counts,
    )
    from llmner.evaluation.predict import predict_in_parts, predicted_documents
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig
    from llmner.schema import EntitySchema, get_schema

    bio = get_schema("biomedical_en")
    pipe = Pipeline.from_bundle(default_bundle_path(),
                                PipelineConfig(normalize=False, consistency=ConsistencyConfig.off()))

    def evaluate(records, docs, schema):
        # Only the corpus's own types are scored: a decoy's predictions are dropped.
        kept = predicted_documents(docs, records, select=lambda es: pipe.selection([e for e in es if e.type in schema], schema))
        return score(docs, kept).strict, per_document_counts(docs, kept)

    for corpus in args.corpus:
        docs = leading_documents(load_corpus(corpus, "dev"), args.sentences)[0]
        schema = corpus_schema(corpus)
        baseline = BASELINE / f"{corpus}__dev__d{len(docs)}__{BASELINE_FINGERPRINT}.parts"
        if not baseline.exists():
            parser.error(f"no stored baseline records {baseline}")

        base, base_counts = evaluate(predict_in_parts(pipe, docs, schema, baseline)[0], docs, schema)
        print(f"{corpus} off: P {100 * base.precision:.1f} R {100 * base.recall:.1f} F1 {100 * base.f1:.1f}", flush=True)
        for arm in args.arm:
            name, types = arm.split("=", 1)
            extra = tuple(bio.types[bio.type_names.index(t)] for t in types.split(","))
            decoyed = EntitySchema(schema.name, schema.language, schema.types + extra, schema.description)
            started = time.perf_counter()
            records, _ = predict_in_parts(pipe, docs, decoyed, args.work / f"{corpus}__{name}.parts")
            micro, counts = evaluate(records, docs, schema)
            decoy_typed = sum(1 for r in records for e in r.entities if e.type not in schema)
            lo, hi = paired_bootstrap_difference(counts, base_counts, "all", 1000)
            print(f"{corpus} {name}: P {100 * micro.precision:.1f} R {100 * micro.recall:.1f} F1 {100 * micro.f1:.1f}, "
                  f"minus off {100 * (micro.f1 - base.f1):+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}); "
                  f"decoy-typed candidates {decoy_typed}; {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
