"""Carry the report's stored parts over to a bundle that differs only by its consistency step.

The report's llmner rows are predicted in parts (``llmner.evaluation.predict.predict_in_parts``) keyed by
the bundle's fingerprint. Turning on the document-level consistency step (``bundle.json``: ``consistency``)
changes the fingerprint, but not the generator or the selector: the step runs in ``Pipeline.assemble`` on
the merged candidates, after both models (``select=False``: every candidate, as evaluation predicts). So a
part of the old bundle, passed through ``propagate`` with the new bundle's setting, holds what the new
bundle predicts (``tests/test_consistency.py`` checks this on a pipeline; the one difference: copies
are not normalized, which strict span scoring does not read). Each derived part records where it came
from and the setting. Parts already there are left alone; rerun it as the old run stores more parts.

    python benchmarks/campaign/derive_consistency_parts.py --work-dir benchmarks/campaign/quality_work \\
        --from-fingerprint ed20314a6436 --bundle llmner/bundles/default
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="the report's row cache (rows/ under it)")
    parser.add_argument("--from-fingerprint", required=True, help="the bundle fingerprint whose parts are carried over")
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle with the consistency step")
    args = parser.parse_args(argv)

    from llmner.bundle import load_manifest
    from llmner.data_processing.corpora import load_corpus
    from llmner.decoding.consistency import ConsistencyConfig, propagate
    from llmner.doc import ResultRecord
    from llmner.evaluation.reports import bundle_fingerprint, cached_row, store_row

    manifest = load_manifest(args.bundle)
    if manifest.consistency is None:
        parser.error(f"{args.bundle} has no consistency setting: nothing to derive")
    config = ConsistencyConfig.from_dict(manifest.consistency)
    target = bundle_fingerprint(args.bundle)
    if target == args.from_fingerprint:
        parser.error("the bundle still has the old fingerprint")
    derived = 0
    for source in sorted((args.work_dir / "rows").glob(f"*__{args.from_fingerprint}.parts")):
        system, corpus, split, _, _ = source.name.split("__")
        texts = {d.id: d.text for d in load_corpus(corpus, split)}
        out_dir = source.with_name(source.name.replace(args.from_fingerprint, target))
        for part in sorted(source.glob("part-*.json")):
            out = out_dir / part.name
            stored = cached_row(part)
            if stored is None or cached_row(out) is not None:
                continue
            records = [ResultRecord.from_dict(r) for r in stored["records"]]
            records = [dataclasses.replace(r, entities=propagate(texts[r.document_id], r.entities, config)) for r in records]
            store_row(out, {**stored, "records": [r.to_dict() for r in records], "consistency": config.to_dict(),
                            "derived_from": f"{source.name}/{part.name}"})
            derived += 1
        print(f"{source.name} -> {out_dir.name}", file=sys.stderr)
    print(f"{derived} parts derived (setting {config.to_dict()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
