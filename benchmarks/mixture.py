"""Training-mixture and curation ablation: dev F1 of generator candidates -> ``results/mixture.md``.

Each candidate is a generator bundle trained with one choice of corpus-sampling temperature and
curation ratio (``docs/training.md`` has the commands). Every candidate is scored on the same dev
subsets: the LAST documents of each corpus's dev split holding ``--sentences`` sentences. The tail,
because the quality report scores CMeEE on its dev split's first documents (its test split has no
labels); choosing on those would select on the report's own data.

The generator is scored alone (every candidate kept, no selector): the question is which training
data makes the better generator. The choice is the highest macro F1 over corpora: every corpus counts
the same, because the shipped model serves all of them and the small ones are the ones a mixture
starves. A paired document bootstrap (the same resampled documents for every candidate) gives the 95%
interval of each candidate's macro-F1 difference from ``--reference``; an interval that holds 0 means
this dev set cannot tell the two apart.

Usage:
  python benchmarks/mixture.py --candidate NAME=BUNDLE [--candidate ...] [--reference NAME] \\
      [--sentences 30] [--corpus ncbi_disease ...] [--threads 2] [--work-dir DIR] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmner.data_processing.corpora import EVALUATION_CORPORA
from llmner.evaluation.bootstrap import macro_f1_comparison, per_document_counts
from llmner.evaluation.reports import (
    CORPUS_LABELS,
    bundle_fingerprint,
    cached_row,
    store_row,
)
from llmner.evaluation.subsets import EvalSubset, evaluation_subset

if TYPE_CHECKING:
    from llmner.pipeline import Pipeline

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    bundle: Path

    def training(self) -> dict[str, Any]:
        """The generator's training card (what distinguishes the candidates), or {} without one."""
        card = self.bundle / "generator" / "training_card.json"
        return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}

    def describe(self) -> str:
        card = self.training()
        t = card.get("training", {})
        if not t:
            return "no training card"
        curated = Path(t["curated"]).name if t.get("curated") else "none"
        start = Path(t["init_from"]).parent.name + "/" + Path(t["init_from"]).name if t.get("init_from") else "base"
        return (f"T={t.get('temperature')}, curated={curated}, {card.get('steps')} steps x {t.get('batch_size')}, "
                f"lr {t.get('lr')}, <= {t.get('max_documents')} docs/corpus, from {start}")


def parse_candidate(text: str) -> Candidate:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"--candidate {text!r}: expected NAME=BUNDLE_DIR")
    bundle = Path(path)
    if not (bundle / "bundle.json").is_file():
        raise SystemExit(f"--candidate {name}: {bundle} is not a bundle (no bundle.json); build one with `llmner bundle`")
    return Candidate(name, bundle)


def run_candidate(pipe: Pipeline, subset: EvalSubset, batch_documents: int) -> dict[str, Any]:
    """Generator-alone predictions on the subset, as per-document strict counts."""
    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.predict import predict_documents

    started = time.perf_counter()
    predicted = predict_documents(pipe, subset.documents, corpus_schema(subset.corpus), batch_documents)
    seconds = time.perf_counter() - started
    return {"corpus": subset.corpus, "split": subset.split, "documents": len(subset.documents), "sentences": subset.sentences,
            "gold_mentions": subset.gold_mentions, "seconds": seconds,
            "per_document": [c["all"] for c in per_document_counts(subset.documents, predicted)]}


def summarise(results: dict[str, dict[str, dict[str, Any]]], corpora: Sequence[str], reference: str,
              samples: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per candidate: P/R/F1 per corpus, macro F1 with its 95% interval, the paired interval of its
    macro-F1 difference from the reference candidate (``macro_f1_comparison``), and its speed."""
    per_document = {name: {c: rows[c]["per_document"] for c in corpora} for name, rows in results.items()}
    compared = macro_f1_comparison(per_document, corpora, reference, samples, seed)
    return {name: {"per_corpus": s["per_corpus"], "macro_f1": s["macro_f1"], "macro_f1_ci": s["macro_f1_ci"],
                   "sentences_per_second": sum(results[name][c]["sentences"] for c in corpora)
                   / max(1e-9, sum(results[name][c]["seconds"] for c in corpora)),
                   "diff_vs_reference": s["diff_vs_reference"], "diff_ci": s["diff_ci"]}
            for name, s in compared.items()}


def markdown(summary: dict[str, dict[str, Any]], candidates: Sequence[Candidate], corpora: Sequence[str],
             reference: str) -> str:
    header = ["candidate", "training"] + [CORPUS_LABELS[c] for c in corpora] + [
        "macro F1 (95% CI)", f"Δ macro vs {reference} (paired 95% CI)", "sents/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cand in candidates:
        s = summary[cand.name]
        lo, hi = s["macro_f1_ci"]
        dlo, dhi = s["diff_ci"]
        lines.append("| " + " | ".join(
            [cand.name, cand.describe()] + [f"{100 * s['per_corpus'][c]['f1']:.1f}" for c in corpora]
            + [f"{100 * s['macro_f1']:.1f} ({100 * lo:.1f}–{100 * hi:.1f})",
               "—" if cand.name == reference else f"{100 * s['diff_vs_reference']:+.1f} ({100 * dlo:+.1f}–{100 * dhi:+.1f})",
               f"{s['sentences_per_second']:.2f}"]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", required=True, help="NAME=BUNDLE_DIR (repeatable)")
    parser.add_argument("--reference", default=None, help="candidate the differences are taken from (default: the first)")
    parser.add_argument("--corpus", action="append", default=None, help=f"default: {' '.join(EVALUATION_CORPORA)}")
    parser.add_argument("--sentences", type=int, default=30, help="dev sentences per corpus (the split's last documents)")
    parser.add_argument("--min-gold", type=int, default=20, help="extend a subset until it holds this many gold mentions")
    parser.add_argument("--mode", default="speculative", help="decoding mode (all modes give the same output but free)")
    parser.add_argument("--batch-documents", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "mixture_work", help="row cache (resumable)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    candidates = [parse_candidate(c) for c in args.candidate]
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise SystemExit(f"candidate names must be unique, got {names}")
    reference = args.reference or names[0]
    if reference not in names:
        raise SystemExit(f"--reference {reference!r} is not a candidate ({', '.join(names)})")
    corpora = args.corpus or list(EVALUATION_CORPORA)
    unknown = sorted(set(corpora) - set(EVALUATION_CORPORA))
    if unknown:
        raise SystemExit(f"unknown corpus {', '.join(unknown)} (known: {', '.join(EVALUATION_CORPORA)})")

    subsets = {c: evaluation_subset(c, args.sentences, split="dev", min_gold=args.min_gold, from_end=True) for c in corpora}
    for s in subsets.values():
        print("subset: " + s.describe().replace(": first", ": last"), file=sys.stderr)

    from llmner.pipeline import Pipeline, PipelineConfig

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for cand in candidates:
        fingerprint = bundle_fingerprint(cand.bundle)
        pipe = None
        results[cand.name] = {}
        for corpus, subset in subsets.items():
            path = args.work_dir / "rows" / f"{cand.name}__{corpus}__dev-tail{len(subset.documents)}__{args.mode}__{fingerprint}.json"
            row = cached_row(path)
            if row is None:
                if pipe is None:
                    pipe = Pipeline.from_bundle(cand.bundle, PipelineConfig(decoding_mode=args.mode,
                                                                            generator_batch_size=args.batch_documents))
                row = run_candidate(pipe, subset, args.batch_documents)
                store_row(path, row)
                print(f"{cand.name} {corpus}: {row['seconds']:.0f} s", file=sys.stderr)
            results[cand.name][corpus] = row

    summary = summarise(results, corpora, reference, args.bootstrap)
    best = max(names, key=lambda n: summary[n]["macro_f1"])
    table = markdown(summary, candidates, corpora, reference)
    subsets_md = "\n".join(f"- {s.describe().replace(': first', ': last')}" for s in subsets.values())
    text = (f"# Training mixture and curation: dev F1 of generator candidates\n\n"
            f"Generated by `python benchmarks/mixture.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({platform.machine()}, "
            f"{torch.get_num_threads()} torch threads), decoding `{args.mode}`, generator alone (no selector).\n\n"
            f"Strict F1 (%) on the tail of each dev split:\n{subsets_md}\n\n{table}\n\n"
            f"Highest macro F1: **{best}**. Δ is each candidate's macro F1 minus {reference}'s over the same "
            f"resampled documents ({args.bootstrap} paired bootstrap samples); an interval holding 0 is a "
            f"difference this dev set cannot resolve.\n")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "mixture.md").write_text(text, encoding="utf-8")
    (args.output_dir / "mixture.json").write_text(json.dumps(
        {"reference": reference, "best": best, "corpora": corpora,
         "candidates": {c.name: {"bundle": str(c.bundle), "training": c.describe(), **summary[c.name]} for c in candidates}},
        indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
