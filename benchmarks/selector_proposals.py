"""The selector's own spans: strict dev F1 when a tokens-head selector also proposes what it tags.

A tokens-head selector labels every word piece O/B/I for a type, so besides judging the generator's
candidates it can propose spans the generator missed (``SelectorRuntime.propose``). The pipeline adds
a proposal when its score reaches the schema's proposal threshold (``BundleManifest.proposal_threshold``
and ``proposal_thresholds``), and where a kept proposal overlaps a kept generator candidate of its type
the schema's overlap rule decides which stays (``proposal_overlap[s]``, ``llmner.decoding.overlaps``:
both, the generator's, the selector's). This script chooses both on dev, on the generator's stored
candidates of the leading dev sentences of each English corpus (the caches of
``benchmarks/selector_judge.py``), so no generator runs: for each threshold of the grid and each rule,
the F1 of the generator's candidates kept at the bundle's selector threshold plus the proposals at or
above it, selected under the rule (``Pipeline.selection``).

- per corpus: the dev-best threshold with both kept and the generator's candidates kept at the bundle's
  global selector threshold (none when no threshold beats no proposals), as before rules existed; a rule
  other than both, or a selector threshold of the corpus's own (``SELECTOR_GRID``; the bundle's
  ``selector_thresholds``), replaces that choice only when choosing them together with the proposal
  threshold beats choosing the proposal threshold alone out of bag, on at least ``--min-evidence`` of the
  document resamples (``llmner.evaluation.calibration.choice_evidence``): 200 dev sentences hold 100-850
  gold mentions, and a rule or a threshold moves a few dozen of them;
- global (schemas with no setting of their own, e.g. a user's): the threshold with the best macro F1,
  both kept.

    python benchmarks/selector_proposals.py --candidates benchmarks/campaign/gen-s4/checks/step2000-own200 \
        --out benchmarks/results/selector_proposals.md [--write-bundle llmner/bundles/default]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
RULES = ("both", "generator", "selector")     # llmner.decoding.overlaps.OVERLAP_RULES, "both" first (ties)
SELECTOR_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)   # the generator's candidates kept from (with the global one)
ENGLISH = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]


def option_key(threshold: float | None, rule: str, keep: float, global_keep: float) -> str:
    """A row's column name: "none" or "<proposal threshold> <rule>", with "@<selector threshold>" when the
    generator's candidates are kept from other than the global selector threshold."""
    key = "none" if threshold is None else f"{threshold:g} {rule}"
    return key if keep == global_keep else f"{key} @{keep:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="directory of <corpus>.own.jsonl predictions")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle whose selector and chunking to use (default: the shipped one)")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 7 English corpora")
    parser.add_argument("--sentences", type=int, default=200, help="leading dev sentences (as the caches were made)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (and .json beside it)")
    parser.add_argument("--min-evidence", type=float, default=0.8, help="share of resamples a rule must win out of bag")
    parser.add_argument("--bootstrap", type=int, default=200, help="document resamples for the out-of-bag evidence")
    parser.add_argument("--write-bundle", type=Path, default=None, help="store the chosen thresholds in this bundle's bundle.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import numpy as np

    from llmner.bundle import (
        MANIFEST_NAME,
        default_bundle_path,
        load_manifest,
        write_manifest,
    )
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.decoding.overlaps import resolve_proposal_overlaps
    from llmner.doc import Document
    from llmner.evaluation.bootstrap import per_document_counts
    from llmner.evaluation.calibration import best_option, choice_evidence
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import judge_stored
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = args.bundle or default_bundle_path()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="torch"))
    selector = pipe.selector
    if selector is None or not selector.can_propose:
        raise SystemExit(f"{bundle}: its selector cannot propose spans (a tokens-head selector can)")
    corpora = args.corpus or ENGLISH
    keep_grid = sorted(set(SELECTOR_GRID) | {pipe.threshold})
    rows: dict[str, dict[str, object]] = {}
    started = time.process_time()
    for corpus in corpora:
        schema = corpus_schema(corpus)
        pipe.add_schema(schema)
        docs, _ = leading_documents(load_corpus(corpus, "dev"), args.sentences)
        stored = {d.id: d for d in PredictionCache(args.candidates).get(corpus, "own") or []}
        kept_docs, proposed = [], []
        corpus_started = time.process_time()
        for doc in docs:
            pred = stored[doc.id]
            judged = judge_stored(pipe, doc, pred.entities, schema, propose=True)
            kept_docs.append((pred, [e for e in judged if e.source != "selector" and e.score is not None]))
            proposed.append([(e, e.score) for e in judged if e.source == "selector"])
        row: dict[str, object] = {"gold": sum(len(d.entities) for d in docs),
                                  "proposals": sum(len(p) for p in proposed),
                                  "cpu_s": round(time.process_time() - corpus_started, 1)}
        # Every option: (proposal threshold, rule, selector threshold); None: no proposals. Ordered for ties:
        # the global selector threshold first, then none, then both first.
        options = [(t, rule, keep) for keep in sorted(keep_grid, key=lambda k: k != pipe.threshold)
                   for t, rule in [(None, "both")] + [(t, rule) for rule in RULES for t in GRID]]
        counts = {}
        for threshold, rule, keep in options:
            at = 2.0 if threshold is None else threshold       # None: no proposal is kept
            predicted = [Document(p.id, p.text, p.language, {},
                                  resolve_proposal_overlaps([e for e in judged if e.score >= keep]
                                                            + [e for e, s in found if s >= at], rule))
                         for (p, judged), found in zip(kept_docs, proposed, strict=True)]
            s = score(docs, predicted).strict
            row[option_key(threshold, rule, keep, pipe.threshold)] = [s.precision * 100, s.recall * 100, s.f1 * 100]
            counts[(threshold, rule, keep)] = np.array([c["all"] for c in per_document_counts(docs, predicted)],
                                                       dtype=np.float64)
        alone = [o for o in options if o[1] == "both" and o[2] == pipe.threshold]
        everything = np.arange(len(docs))
        plain, best = best_option(counts, alone, everything), best_option(counts, options, everything)
        evidence, gain = choice_evidence(counts, options, alone, args.bootstrap)
        row["plain"], row["best"], row["evidence"], row["oob_gain"] = list(plain), list(best), evidence, gain
        moves = best not in alone and evidence is not None and evidence >= args.min_evidence
        row["chosen"] = list(best if moves else plain)
        rows[corpus] = row
        print(f"{corpus}: " + " ".join(f"{k} {v[2]:.1f}" for k, v in row.items() if isinstance(v, list) and len(v) == 3
                                       and isinstance(v[2], float)) + f"; chosen {row['chosen']} (evidence {evidence})", flush=True)

    columns = ["none", *[f"{t:g} both" for t in GRID]]
    macro = {c: sum(rows[k][c][2] for k in corpora) / len(corpora) for c in columns}   # type: ignore[index]
    global_best = max(GRID, key=lambda t: macro[f"{t:g} both"])
    chosen = {corpus: rows[corpus]["chosen"] for corpus in corpora}
    result = {"candidates": str(args.candidates), "sentences": args.sentences, "bundle": str(bundle), "rows": rows,
              "macro": macro, "global": float(global_best), "chosen": chosen, "min_evidence": args.min_evidence,
              "cpu_s": round(time.process_time() - started, 1)}

    def label(option: list) -> str:
        proposals = "none" if option[0] is None else f"{option[0]:g}, {option[1]}"
        return proposals if option[2] == pipe.threshold else f"{proposals}; selector {option[2]:g}"

    lines = ["# The selector's own spans (proposals) and the overlap rule, chosen on dev", "",
             f"`python benchmarks/selector_proposals.py --candidates {args.candidates} --sentences {args.sentences}"
             + (f" --bundle {args.bundle}" if args.bundle else "") + "".join(f" --corpus {c}" for c in args.corpus or []) + "`", "",
             (f"Strict F1 (%) on the leading {args.sentences} dev sentences of each corpus, own schema: the generator's stored "
              f"candidates kept at the bundle's global selector threshold ({pipe.threshold:g}), plus the selector's own spans (those the "
              f"generator did not propose) scored at or above each proposal threshold. {result['cpu_s']:.0f} CPU-s on one thread."), "",
             "Both kept where a proposal overlaps a candidate of its type (the rule before rules existed):", "",
             "| corpus | gold | proposals | none | " + " | ".join(f"{t:g}" for t in GRID) + " |", "|---" * (len(columns) + 3) + "|"]
    for corpus in corpora:
        r = rows[corpus]
        lines.append(f"| {corpus} | {r['gold']} | {r['proposals']} | " + " | ".join(f"{r[c][2]:.1f}" for c in columns) + " |")   # type: ignore[index]
    lines += ["| macro | | | " + " | ".join(f"**{macro[c]:.1f}**" for c in columns) + " |", "",
              ("Each rule at its dev-best threshold (`generator`: a proposal that overlaps a kept candidate of its type goes; "
               "`selector`: the candidates it overlaps go). Evidence: the share of document resamples in which choosing "
               "proposal threshold, rule and selector threshold on the drawn documents beat choosing the proposal threshold "
               f"alone (both kept, candidates from {pipe.threshold:g}), on the documents left out ({args.bootstrap} resamples); a "
               f"rule or a corpus's own selector threshold is chosen at {args.min_evidence:.0%} or more. 'Selector from t': the "
               "best proposal threshold's F1 (both kept) with the generator's candidates kept from t."), "",
              "| corpus | both | generator | selector | " + " | ".join(f"selector from {k:g}" for k in keep_grid)
             + " | evidence (mean gain) | chosen |", "|---" * (len(RULES) + len(keep_grid) + 3) + "|"]
    for corpus in corpora:
        r = rows[corpus]
        cells = []
        for rule in RULES:
            t = max(GRID, key=lambda t: r[f"{t:g} {rule}"][2])   # type: ignore[index]
            cells.append(f"{r[f'{t:g} {rule}'][2]:.1f} ({t:g})")   # type: ignore[index]
        for keep in keep_grid:   # the best proposal threshold (both kept) with candidates kept from `keep`
            keys = [option_key(t, "both", keep, pipe.threshold) for t in (None, *GRID)]
            cells.append(f"{max(r[k][2] for k in keys):.1f}")   # type: ignore[index]
        evidence = "—" if r["evidence"] is None else f"{r['evidence']:.0%} ({r['oob_gain'] * 100:+.1f})"   # type: ignore[operator]
        lines.append(f"| {corpus} | " + " | ".join(cells) + f" | {evidence} | {label(r['chosen'])} |")   # type: ignore[arg-type]
    lines += ["", f"Global (schemas without their own): proposals kept from {global_best:g} (the macro-best threshold), both kept.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    if args.write_bundle:
        manifest = load_manifest(args.write_bundle)
        manifest.proposal_threshold = float(global_best)
        manifest.proposal_thresholds = {corpus: chosen[corpus][0] for corpus in corpora}
        manifest.proposal_overlap = "both"
        manifest.proposal_overlaps = {corpus: chosen[corpus][1] for corpus in corpora if chosen[corpus][1] != "both"}
        manifest.selector_thresholds = {
            **{k: v for k, v in manifest.selector_thresholds.items() if k not in corpora},
            **{corpus: chosen[corpus][2] for corpus in corpora if chosen[corpus][2] != pipe.threshold}}
        write_manifest(args.write_bundle, manifest)
        print(f"wrote proposal_threshold {global_best}, proposal_thresholds, proposal_overlaps and selector_thresholds "
              f"into {args.write_bundle / MANIFEST_NAME}")


if __name__ == "__main__":
    main()
