"""Each corpus's selection settings chosen on dev from stored generator candidates: the report of
``llmner calibrate --candidates``.

A tokens-head selector labels every word piece O/B/I for a type, so besides judging the generator's
candidates it proposes spans the generator missed (``SelectorRuntime.propose``). Per schema, a bundle
keeps the generator's candidates from a selector threshold, the selector's own spans from a proposal
threshold, and where a kept proposal overlaps a kept candidate of its type an overlap rule decides which
stays (``llmner.decoding.selection.SelectionRule``). ``llmner.evaluation.calibration`` chooses the three
together; this script runs that choice on the stored candidates of the leading dev sentences of each
corpus (the caches of ``benchmarks/schemas.py --cache``), so no generator runs, and prints every rule's
F1 beside the choice:

- per corpus, the baseline: the proposal threshold chosen alone (the dev-best, both readings kept, none
  when no threshold beats no proposals) with the candidates kept from the global selector threshold; a
  rule other than both, or a selector threshold of the corpus's own (``SELECTOR_GRID``), replaces it only
  when choosing all three together beats the baseline out of bag, on at least ``--min-evidence`` of the
  document resamples (``choice_evidence``): 200 dev sentences hold 100-850 gold mentions, and a rule or
  a threshold moves a few dozen of them;
- global (schemas with no setting of their own, e.g. a user's): the proposal threshold with the best
  macro F1, both kept.

    python benchmarks/selector_proposals.py --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 \
        --out benchmarks/results/selector_proposals.md [--write-bundle llmner/bundles/default]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle whose selector and chunking to use (default: the shipped one)")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    parser.add_argument("--min-evidence", type=float, default=0.8, help="share of resamples the full choice must win out of bag")
    parser.add_argument("--bootstrap", type=int, default=200, help="document resamples for the out-of-bag evidence")
    parser.add_argument("--selector-backend", default="onnx", help="onnx (as served: the scores the settings will be applied to) or torch")
    parser.add_argument("--write-bundle", type=Path, default=None, help="store the chosen settings in this bundle's bundle.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from llmner.bundle import (
        MANIFEST_NAME,
        default_bundle_path,
        load_manifest,
        write_manifest,
    )
    from llmner.decoding.overlaps import OVERLAP_RULES
    from llmner.evaluation.calibration import (
        PROPOSAL_GRID,
        CalibrationConfig,
        calibrate,
        global_proposal_threshold,
        rule_label,
        store_calibration,
    )
    from llmner.evaluation.predict import PredictionCache
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend=args.selector_backend))
    if pipe.selector is None or not pipe.selector.can_propose:
        raise SystemExit(f"{bundle}: its selector cannot propose spans (a tokens-head selector can)")
    # Against the global settings: the bundle's own per-schema ones must not leak in.
    pipe.thresholds, pipe.proposal_thresholds, pipe.proposal_overlaps = {}, {}, {}
    corpora = args.corpus or ENGLISH
    config = CalibrationConfig(corpora=corpora, bootstrap=args.bootstrap, min_evidence=args.min_evidence)
    started = time.process_time()
    results = calibrate(pipe, config, stored=PredictionCache(args.candidates))
    cpu_s = time.process_time() - started
    global_best = global_proposal_threshold(results)
    keep_grid = sorted(set(config.selector_grid) | {pipe.threshold})

    def f1(r, **change) -> float | None:
        """None for a rule calibration did not score (a corpus with too few candidates keeps the baseline)."""
        prf = r.scores.get(rule_label(dataclasses.replace(r.default, **change), r.default))
        return None if prf is None else prf[2] * 100

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    def label(r) -> str:
        proposals = "none" if r.chosen.proposals is None else f"{r.chosen.proposals:g}, {r.chosen.overlap}"
        return proposals if r.chosen.threshold == r.default.threshold else f"{proposals}; selector {r.chosen.threshold:g}"

    result = {"candidates": str(args.candidates), "bundle": str(bundle), "selector_backend": args.selector_backend,
              "min_evidence": args.min_evidence,
              "global": global_best, "cpu_s": round(cpu_s, 1),
              "rows": {r.corpus: {"gold": r.gold, "documents": r.documents, "proposals": r.proposals,
                                  "scores": {k: [v * 100 for v in prf] for k, prf in r.scores.items()},
                                  "plain": rule_label(r.plain, r.default), "best": rule_label(r.best, r.default),
                                  "evidence": r.evidence, "oob_gain": r.oob_gain,
                                  "chosen": [r.chosen.proposals, r.chosen.overlap, r.chosen.threshold]} for r in results}}
    lines = ["# The selector's own spans (proposals), the overlap rule and the selector threshold, chosen on dev", "",
             f"`python benchmarks/selector_proposals.py --candidates {args.candidates} --selector-backend {args.selector_backend}"
             + (f" --bundle {args.bundle}" if args.bundle else "") + "".join(f" --corpus {c}" for c in args.corpus or []) + "`", "",
             (f"Strict F1 (%) on the documents of the stored candidates of each corpus, own schema "
              f"(`llmner.evaluation.calibration`, as `llmner calibrate --candidates` chooses): the generator's candidates kept "
              f"at the bundle's global selector threshold ({pipe.threshold:g}), plus the selector's own spans (those the "
              f"generator did not propose) scored at or above each proposal threshold, scores from the {args.selector_backend} selector. "
              f"{cpu_s:.0f} CPU-s on one thread."), "",
             "Both kept where a proposal overlaps a candidate of its type (the rule before rules existed):", "",
             "| corpus | docs | gold | proposals | none | " + " | ".join(f"{t:g}" for t in PROPOSAL_GRID) + " |",
             "|---" * (len(PROPOSAL_GRID) + 5) + "|"]
    for r in results:
        lines.append(f"| {r.corpus} | {r.documents} | {r.gold} | {r.proposals} | {cell(f1(r))} | "
                     + " | ".join(cell(f1(r, proposals=t)) for t in PROPOSAL_GRID) + " |")
    by_threshold = [[f1(r, proposals=t) for r in results] for t in (None, *PROPOSAL_GRID)]
    macro = [None if None in values else sum(values) / len(values) for values in by_threshold]
    lines += ["| macro | | | | " + " | ".join("—" if m is None else f"**{m:.1f}**" for m in macro) + " |", "",
              ("Each rule at its dev-best threshold (`generator`: a proposal that overlaps a kept candidate of its type goes; "
               "`selector`: the candidates it overlaps go). Evidence: the share of document resamples in which choosing "
               "proposal threshold, rule and selector threshold on the drawn documents beat choosing the proposal threshold "
               f"alone (both kept, candidates from {pipe.threshold:g}), on the documents left out ({args.bootstrap} resamples); a "
               f"rule or a corpus's own selector threshold is chosen at {args.min_evidence:.0%} or more. 'Selector from t': the "
               "best proposal threshold's F1 (both kept) with the generator's candidates kept from t."), "",
              "| corpus | both | generator | selector | " + " | ".join(f"selector from {k:g}" for k in keep_grid)
              + " | evidence (mean gain) | chosen |", "|---" * (len(OVERLAP_RULES) + len(keep_grid) + 3) + "|"]
    for r in results:
        cells = []
        for rule in OVERLAP_RULES:
            scored = [(v, t) for t in PROPOSAL_GRID if (v := f1(r, proposals=t, overlap=rule)) is not None]
            best = max(scored, key=lambda vt: vt[0]) if scored else None     # the lowest threshold of a tie
            cells.append(f"{best[0]:.1f} ({best[1]:g})" if best else "—")
        for keep in keep_grid:
            scored_keep = [v for t in (None, *PROPOSAL_GRID) if (v := f1(r, threshold=keep, proposals=t)) is not None]
            cells.append(cell(max(scored_keep) if scored_keep else None))
        evidence = "—" if r.evidence is None else f"{r.evidence:.0%} ({r.oob_gain * 100:+.1f})"
        lines.append(f"| {r.corpus} | " + " | ".join(cells) + f" | {evidence} | {label(r)} |")
    lines += ["", f"Global (schemas without their own): proposals kept from {global_best:g} (the macro-best threshold), both kept.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    if args.write_bundle:
        manifest = load_manifest(args.write_bundle)
        store_calibration(manifest, results)
        write_manifest(args.write_bundle, manifest)
        print(f"wrote proposal_threshold {manifest.proposal_threshold}, proposal_thresholds, proposal_overlaps and "
              f"selector_thresholds into {args.write_bundle / MANIFEST_NAME}")


if __name__ == "__main__":
    main()
