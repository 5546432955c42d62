"""Quality report: strict P/R/F1 of llmner on every corpus, beside a peer baseline and published results.

Writes ``benchmarks/results/quality.md`` (the table, the settings and the caveats), ``quality.json``
(every number), ``quality_f1.png`` (F1 per corpus: llmner, peer baseline, published reference) and
``quality_training.png`` (training curves: each bundle's generator ``history.jsonl`` with its dev
loss, the selector's card, the peer models' loss), and prints the markdown table.

Rows: NCBI-Disease test, BC5CDR test (Chemical, Disease, overall), GENIA test (nested), JNLPBA test,
BC2GM test, LINNAEUS test, S800 test, CMeEE dev (its test set has no labels); plus NCBI-Disease with
``free`` decoding and NCBI-Disease zero-shot with the protocol-(b) bundle (trained without it).

llmner rows go through llmner's own evaluation path (``llmner.evaluation.corpus_eval.evaluate_documents``
with a ``Pipeline.from_bundle`` pipeline): one generator pass per row, scored without and with the
selector. The peer rows come from ``benchmarks/peer_baseline.py`` models (``--peer-dir``, trained
beforehand), scored by that script (``--evaluate-only``): the peer llmner is compared with (paired
intervals, the summary), meant to be trained on the documents the generator drew (equal data,
``--train-documents``); ``--reference-peer-dir`` adds a peer trained on the full training data as
reference columns (P/R/F1 and speed, no intervals). Every system is scored on the same
deterministic subset: the first documents of each split holding ``--sentences`` sentences
(``llmner.evaluation.subsets``); the intervals come from ``llmner.evaluation.bootstrap``. Each finished row is cached
as JSON under ``--work-dir``, so an interrupted run resumes where it stopped.

Usage:
  python benchmarks/quality.py --bundle BUNDLE_A [--zero-shot-bundle BUNDLE_B] [--peer-dir DIR] \\
      [--reference-peer-dir DIR] \\
      [--sentences 200] [--corpus ncbi_disease ...] [--free-corpus ncbi_disease] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmner.data_processing.corpora import EVALUATION_CORPORA
from llmner.evaluation.bootstrap import (
    bootstrap_f1,
    paired_bootstrap_difference,
    per_document_counts,
)
from llmner.evaluation.reports import (
    CORPUS_LABELS,
    bundle_fingerprint,
    cached_row,
    files_fingerprint,
    llmner_system,
    row_cache_path,
    served_fingerprint,
    store_row,
)
from llmner.evaluation.subsets import REPORT_SPLITS, EvalSubset, evaluation_subset

RESULTS = Path(__file__).resolve().parent / "results"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_baseline.py"
# Scopes reported per corpus: "all" is the strict micro score; a type name is that type's strict score.
CORPUS_SCOPES = {"bc5cdr": ("Chemical", "Disease", "all")}
# Published strict F1 on the FULL test sets (other papers' protocols; see the notes in the report).
PUBLISHED: dict[tuple[str, str], tuple[str, float]] = {
    ("ncbi_disease", "all"): ("BioBERT", 89.7),
    ("bc5cdr", "Chemical"): ("PubMedBERT", 93.3),
    ("bc5cdr", "Disease"): ("PubMedBERT", 85.6),
    ("jnlpba", "all"): ("PubMedBERT", 79.1),
    ("bc2gm", "all"): ("PubMedBERT", 84.5),
    ("genia", "all"): ("W2NER", 81.4),
}
PUBLISHED_ZERO_SHOT = ("LLMNER (9B), zero-shot", 69.15)
ZERO_SHOT_CORPUS = "ncbi_disease"


@dataclasses.dataclass(frozen=True, slots=True)
class LlmnerSystem:
    """A bundle run with one decoding mode: one pipeline, evaluated without and with its selector."""

    name: str          # "a" (all corpora) or "b" (zero-shot protocol)
    bundle: Path
    mode: str

    @property
    def key(self) -> str:
        return f"llmner-{self.name}-{self.mode}"

    def row_name(self, selector_backend: str) -> str:
        """The name of this system's cached rows (``llmner.evaluation.reports.llmner_system``)."""
        return llmner_system(self.name, self.mode, selector_backend)


# ---- fingerprints and the row cache ------------------------------------------------------------
def peer_fingerprint(model_dir: Path) -> str:
    root = model_dir.resolve()
    return files_fingerprint([root / "peer_card.json", root / "config.json"], root=root)


def subset_row_path(work_dir: Path, system: str, subset: EvalSubset, fingerprint: str) -> Path:
    return row_cache_path(work_dir, system, subset.corpus, subset.split, len(subset.documents), fingerprint)


# ---- scoring helpers ---------------------------------------------------------------------------
def scope_counts(report: dict[str, Any], scope: str) -> dict[str, float] | None:
    """P/R/F1 + counts of one scope of a scorer report dict (``Report.to_dict``)."""
    if scope == "all":
        return report["strict"]["micro"]
    return report["per_type"].get(scope, {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0})


# ---- running the systems -----------------------------------------------------------------------
class PipelineCache:
    """One loaded pipeline per (bundle, mode), built only when a row needs computing."""

    def __init__(self, selector_backend: str, generator_batch: int) -> None:
        self.selector_backend = selector_backend
        self.generator_batch = generator_batch
        self._pipes: dict[str, Any] = {}

    def get(self, system: LlmnerSystem) -> Any:
        if system.key not in self._pipes:
            from llmner.pipeline import Pipeline, PipelineConfig

            t0 = time.perf_counter()
            self._pipes[system.key] = Pipeline.from_bundle(system.bundle, PipelineConfig(
                decoding_mode=system.mode, selector_backend=self.selector_backend,
                generator_batch_size=self.generator_batch))
            print(f"loaded {system.key} from {system.bundle} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return self._pipes[system.key]


def run_llmner(system: LlmnerSystem, subset: EvalSubset, pipes: PipelineCache, batch_documents: int,
               parts_dir: Path | None = None, part_documents: int = 100,
               parts_from_end: bool = False) -> dict[str, Any]:
    """The subset's evaluation (``llmner.evaluation.corpus_eval``), with per-document counts for the intervals;
    predicted in parts stored under ``parts_dir`` (a whole test split takes hours: a rerun resumes mid-row;
    ``parts_from_end``: a second process fills the same row's parts from the other end)."""
    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.corpus_eval import evaluate_documents

    pipe = pipes.get(system)
    gold = subset.documents
    evaluation = evaluate_documents(pipe, gold, corpus_schema(subset.corpus), subset.corpus, subset.split,
                                    batch_documents=batch_documents, parts_dir=parts_dir, part_documents=part_documents,
                                    parts_from_end=parts_from_end)
    result = evaluation.to_dict()
    seconds = float(result["seconds"])
    out: dict[str, Any] = {
        "system": system.key, "bundle": str(system.bundle), "mode": system.mode, "corpus": subset.corpus,
        "split": subset.split, "documents": len(gold), "sentences": subset.sentences, "gold_mentions": subset.gold_mentions,
        "seconds": seconds, "documents_per_second": len(gold) / seconds if seconds > 0 else 0.0,
        "sentences_per_second": subset.sentences / seconds if seconds > 0 else 0.0,
        "model_ids": result["model_ids"], "without_selector": result["without_selector"],
        "per_document": {"without_selector": per_document_counts(gold, evaluation.alone)},
    }
    if evaluation.selected is not None:
        out["with_selector"] = result["with_selector"]
        out["threshold"] = result["threshold"]
        out["per_document"]["with_selector"] = per_document_counts(gold, evaluation.selected)
    return out


def reader_tags(bundle: Path, corpus: str) -> bool:
    """Whether ``bundle``'s reader tags ``corpus``'s schema (``Pipeline.reads``: the schema as prompted)."""
    from llmner.bundle import load_manifest
    from llmner.data_processing.corpora import corpus_schema

    manifest = load_manifest(bundle)
    name = corpus_schema(corpus).name
    return manifest.prompt_schemas.get(name, name) in manifest.reader_schemas


def source_parts(work_dir: Path, row_name: str, subset: EvalSubset, source_bundle: Path, selector_backend: str) -> Path:
    """The stored parts a row is derived from: the source bundle's row as served (its fingerprint with the
    selector backend's recipe), else its row under the bare fingerprint (rows stored before the recipe
    was part of the key). Only the generator's candidates are read from them, so either serves."""
    served = subset_row_path(work_dir, row_name, subset, served_fingerprint(source_bundle, selector_backend))
    bare = subset_row_path(work_dir, row_name, subset, bundle_fingerprint(source_bundle))
    return next((p for p in (served.with_suffix(".parts"), bare.with_suffix(".parts")) if p.is_dir()),
                bare.with_suffix(".parts"))


def rescore_row(system: LlmnerSystem, subset: EvalSubset, pipes: PipelineCache, source_bundle: Path, source_parts: Path,
                target_parts: Path, part_documents: int) -> dict[str, Any]:
    """Fill ``target_parts`` from the complete parts another bundle with the same generator stored
    (``llmner.evaluation.rescore``): ``run_llmner`` then reads them back without generating. Returns the
    derivation's summary (``undetermined``: keep decisions the stored records leave open, 0 = exact)."""
    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.rescore import rescore_parts, same_generation

    differences = same_generation(source_bundle, system.bundle)
    if differences:
        raise SystemExit(f"--rescore-from {source_bundle}: not the same generation as {system.bundle} ({'; '.join(differences)})")
    summary = rescore_parts(pipes.get(system), subset.documents, corpus_schema(subset.corpus), source_parts, target_parts,
                            part_documents)
    return {**summary, "bundle": str(source_bundle), "fingerprint": bundle_fingerprint(source_bundle)}


def run_peer(model_dir: Path, subset: EvalSubset, sentences: int, min_gold: int, threads: int | None) -> dict[str, Any]:
    """A saved peer model scored on ``subset`` (drawn with ``sentences`` and ``min_gold``) by
    ``peer_baseline.py --evaluate-only``, which draws the same subset."""
    corpus = model_dir.name
    command = [sys.executable, str(PEER_SCRIPT), "--evaluate-only", "--corpus", corpus, "--output", str(model_dir.parent),
               "--eval-sentences", str(sentences), "--eval-min-gold", str(min_gold)]
    proc = subprocess.run(command + (["--threads", str(threads)] if threads else []), capture_output=True, text=True,
                          check=False)
    print(proc.stdout, end="", file=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr}")
    result = json.loads((model_dir / "peer_result.json").read_text())
    if (result["split"], result["documents"], result["gold_mentions"]) != (subset.split, len(subset.documents), subset.gold_mentions):
        raise RuntimeError(f"{corpus}: the peer baseline scored other documents than {subset.describe()}")
    result["per_document"] = {"peer": result["per_document"]}
    return result


def describe_peer(cards: Sequence[dict[str, Any]]) -> str | None:
    """How the peer models of one directory were trained, from their training cards: on the
    documents a list names (``--train-documents``, with the counts per corpus), on a seeded sample
    of chunks, or on every chunk of the training split."""
    if not cards:
        return None
    cfg = cards[0].get("config", {})
    listed = [c for c in cards if c.get("train_documents")]
    sampled = sorted({c.get("config", {}).get("max_train_sentences") for c in cards if not c.get("train_documents")},
                     key=lambda n: (n is None, n or 0))
    parts = []
    if listed:
        counts = ", ".join(f"{CORPUS_LABELS.get(c.get('corpus', '?'), c.get('corpus', '?'))} "
                           f"{c['train_documents']['documents']:,} of {c['train_documents']['split_documents']:,}"
                           for c in listed)
        parts.append(f"trained on every chunk of the training documents listed in `{listed[0]['train_documents']['file']}` "
                     f"(the documents the generator drew; documents per corpus: {counts})")
    if None in sampled:
        parts.append("trained on every chunk of the training split (full data)" if not listed
                     else "the others on every chunk of the training split")
    if any(n is not None for n in sampled):
        sizes = "/".join(str(n) for n in sampled if n is not None)
        parts.append(f"trained on a seeded sample of up to {sizes} training chunks per corpus")
    chunks = sum(c.get("stats", {}).get("chunks_used", 0) for c in cards)
    return ("; ".join(parts) + f"; {chunks:,} training chunks in all, {cfg.get('epochs', '?')} epochs, "
            f"batch {cfg.get('batch_size', '?')}, lr {cfg.get('lr', '?')}; training time "
            f"{sum(c.get('train_seconds', 0) for c in cards):.0f} s in all (torch threads {cards[0].get('torch_threads', '?')})")


# ---- the table ---------------------------------------------------------------------------------
def fmt_prf(c: dict[str, float] | None) -> str:
    if c is None:
        return "—"
    return f"{100 * c['precision']:.1f} / {100 * c['recall']:.1f} / {100 * c['f1']:.1f}"


def fmt_ci(ci: Sequence[float] | None) -> str:
    return "—" if not ci else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def fmt_rate(result: dict[str, Any] | None) -> str:
    if result is None:
        return "—"
    return f"{result['documents_per_second']:.2f} ({result['sentences_per_second']:.1f})"


def build_rows(llmner: dict[tuple[str, str], dict[str, Any]], peers: dict[str, dict[str, Any]],
               subsets: dict[str, EvalSubset], main: LlmnerSystem, extra: Sequence[tuple[LlmnerSystem, str, str]],
               bootstrap: int, reference_peers: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One dict per table row (numbers in percent); ``extra`` = (system, corpus, label) rows.
    ``reference_peers``: the full-data peer's results per corpus (its scores and speed on the main
    rows, no intervals)."""
    reference_peers = reference_peers or {}
    rows: list[dict[str, Any]] = []

    def llmner_cells(result: dict[str, Any] | None, scope: str) -> dict[str, Any]:
        if result is None:
            return {"alone": None, "selector": None, "ci": None, "rate": None, "per_document": None}
        alone = scope_counts(result["without_selector"], scope)
        with_sel = scope_counts(result["with_selector"], scope) if "with_selector" in result else None
        which = "with_selector" if with_sel is not None else "without_selector"
        return {"alone": alone, "selector": with_sel, "ci": bootstrap_f1(result["per_document"][which], scope, bootstrap),
                "rate": result, "shipped": with_sel or alone, "per_document": result["per_document"][which]}

    def add(label: str, corpus: str, scope: str, result: dict[str, Any] | None, peer: dict[str, Any] | None,
            published: tuple[str, float] | None, kind: str, reference: dict[str, Any] | None = None) -> None:
        subset = subsets[corpus]
        cells = llmner_cells(result, scope)
        peer_scores = scope_counts(peer["report"], scope) if peer else None
        gold = (sum(len([e for e in d.entities if e.type == scope]) for d in subset.documents)
                if scope != "all" else subset.gold_mentions)
        rows.append({
            "label": label, "corpus": corpus, "split": subset.split, "scope": scope, "kind": kind,
            "documents": len(subset.documents), "sentences": subset.sentences, "gold_mentions": gold,
            "llmner_alone": cells["alone"], "llmner_selector": cells["selector"], "llmner_f1_ci": cells["ci"],
            "llmner_shipped": cells.get("shipped"), "llmner_rate": _rate(cells["rate"]),
            "peer": peer_scores, "peer_f1_ci": bootstrap_f1(peer["per_document"]["peer"], scope, bootstrap) if peer else None,
            "peer_rate": _rate(peer), "published": published,
            "llmner_minus_peer_ci": (paired_bootstrap_difference(cells["per_document"], peer["per_document"]["peer"], scope, bootstrap)
                                     if peer and cells["per_document"] is not None else None),
            "reference_peer": scope_counts(reference["report"], scope) if reference else None,
            "reference_peer_rate": _rate(reference),
        })

    for corpus, subset in subsets.items():
        for scope in CORPUS_SCOPES.get(corpus, ("all",)):
            label = f"{CORPUS_LABELS[corpus]} {subset.split}" + ("" if scope == "all" else f" ({scope})")
            if corpus in CORPUS_SCOPES and scope == "all":
                label += " (overall)"
            add(label, corpus, scope, llmner.get((main.key, corpus)), peers.get(corpus), PUBLISHED.get((corpus, scope)), "main",
                reference_peers.get(corpus))
    for system, corpus, label in extra:
        if corpus in subsets:
            published = PUBLISHED_ZERO_SHOT if system.name == "b" else None
            add(label, corpus, "all", llmner.get((system.key, corpus)), None, published,
                "zero-shot" if system.name == "b" else f"mode:{system.mode}")
    return rows


def carry_over(rows: list[dict[str, Any]], previous: dict[str, Any], peer_run: bool, zero_shot_run: bool,
               reference_peer_run: bool = True) -> list[str]:
    """Fill what this run did not compute from an earlier ``quality.json`` scored on the same documents:
    the peer cells (no ``--peer-dir``), the full-data peer cells (no ``--reference-peer-dir``) and the
    zero-shot row (no ``--zero-shot-bundle``). Carried cells are marked in ``row["carried"]``; returns
    the labels of the rows that took something."""
    def same_documents(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(a[k] == b[k] for k in ("corpus", "split", "scope", "documents", "sentences", "gold_mentions"))

    settings = previous["settings"]
    origin = {"generated": settings["generated"], "command": settings["command"],
              "zero_shot_bundle": settings.get("zero_shot_bundle"), "peer_dir": settings.get("peer_dir"),
              "reference_peer_dir": settings.get("reference_peer_dir")}
    before = {r["label"]: r for r in previous["rows"]}
    taken = []
    if not peer_run:
        for row in rows:
            old = before.get(row["label"])
            if row["peer"] is None and old and old.get("peer") and same_documents(row, old):
                row.update(peer=old["peer"], peer_f1_ci=old["peer_f1_ci"], peer_rate=old["peer_rate"],
                           carried=[*row.get("carried", []), "peer"], carried_from=old.get("carried_from") or origin)
                taken.append(row["label"])
    if not reference_peer_run:
        for row in rows:
            old = before.get(row["label"])
            if row.get("reference_peer") is None and old and old.get("reference_peer") and same_documents(row, old):
                row.update(reference_peer=old["reference_peer"], reference_peer_rate=old.get("reference_peer_rate"),
                           carried=[*row.get("carried", []), "reference_peer"],
                           carried_from=row.get("carried_from") or old.get("carried_from") or origin)
                if row["label"] not in taken:
                    taken.append(row["label"])
    if not zero_shot_run:
        main_docs = {(r["corpus"], r["scope"]): r for r in rows if r["kind"] == "main"}
        for old in previous["rows"]:
            match = main_docs.get((old["corpus"], old["scope"]))
            if old["kind"] == "zero-shot" and match is not None and same_documents(match, old):
                rows.append({**old, "carried": ["llmner"], "carried_from": old.get("carried_from") or origin})
                taken.append(old["label"])
    return taken


def _rate(result: dict[str, Any] | None) -> dict[str, float] | None:
    if result is None:
        return None
    return {"documents_per_second": result["documents_per_second"], "sentences_per_second": result["sentences_per_second"],
            "seconds": result["seconds"]}


MD_HEADER = ["corpus (split, scope)", "docs / sents / gold", "llmner generator P / R / F1",
             "llmner + selector P / R / F1", "llmner (shipped) F1 95% CI", "llmner docs/s (sents/s)",
             "peer P / R / F1", "peer F1 95% CI", "peer docs/s (sents/s)", "published F1"]


REFERENCE_PEER_NAME = "peer, full data"


def has_reference_peer(rows: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("reference_peer") for r in rows)


def _short(value: Any) -> str:
    """A card's number for prose: 4 significant digits ('?' when the card lacks it)."""
    return "?" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict[str, Any]], peer_name: str = "peer") -> str:
    """The report table; ``peer_name`` heads the compared peer's columns, and when a row has a
    full-data peer (``reference_peer``) two columns after the compared peer's hold it."""
    reference = has_reference_peer(rows)
    header = [h.replace("peer", peer_name, 1) if h.startswith("peer") else h for h in MD_HEADER]
    if reference:
        at = header.index(f"{peer_name} docs/s (sents/s)") + 1
        header[at:at] = [f"{REFERENCE_PEER_NAME} P / R / F1", f"{REFERENCE_PEER_NAME} docs/s (sents/s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        pub = f"{r['published'][1]:.2f} ({r['published'][0]})" if r["published"] else "—"
        carried = r.get("carried", [])
        cells = [
            r["label"] + (" †" if "llmner" in carried else ""), f"{r['documents']} / {r['sentences']} / {r['gold_mentions']}",
            fmt_prf(r["llmner_alone"]), fmt_prf(r["llmner_selector"]), fmt_ci(r["llmner_f1_ci"]),
            fmt_rate(r["llmner_rate"]), fmt_prf(r["peer"]) + (" †" if "peer" in carried else ""), fmt_ci(r["peer_f1_ci"]),
            fmt_rate(r["peer_rate"]),
        ]
        if reference:
            cells += [fmt_prf(r.get("reference_peer")) + (" †" if "reference_peer" in carried else ""),
                      fmt_rate(r.get("reference_peer_rate"))]
        lines.append("| " + " | ".join([*cells, pub]) + " |")
    return "\n".join(lines)


def comparison_summary(rows: Sequence[dict[str, Any]]) -> str:
    """How often the shipped llmner configuration beats the peer baseline (overall row per corpus), and
    where the paired 95% interval of the difference leaves no doubt about the sign."""
    compared = [r for r in rows if r["kind"] == "main" and r["scope"] == "all" and r["llmner_shipped"] and r["peer"]]
    if not compared:
        return "llmner vs peer baseline: no corpus has both rows yet."
    wins = [r for r in compared if r["llmner_shipped"]["f1"] > r["peer"]["f1"]]

    def names(selected: Sequence[dict[str, Any]]) -> str:
        return ", ".join(CORPUS_LABELS[r["corpus"]] for r in selected) or "none"

    text = (f"llmner (shipped configuration) above the peer baseline on {len(wins)} of {len(compared)} corpora"
            + (f": {names(wins)}" if wins else "") + ".")
    with_ci = [r for r in compared if r.get("llmner_minus_peer_ci")]
    if with_ci:
        above = [r for r in with_ci if r["llmner_minus_peer_ci"][0] > 0]
        below = [r for r in with_ci if r["llmner_minus_peer_ci"][1] < 0]
        unclear = [r for r in with_ci if r not in above and r not in below]
        diffs = "; ".join(f"{CORPUS_LABELS[r['corpus']]} {100 * (r['llmner_shipped']['f1'] - r['peer']['f1']):+.1f} "
                          f"({100 * r['llmner_minus_peer_ci'][0]:+.1f} to {100 * r['llmner_minus_peer_ci'][1]:+.1f})" for r in with_ci)
        text += (f" Paired document bootstrap of llmner − peer F1 (95% interval): llmner above on {names(above)}; "
                 f"peer above on {names(below)}; the interval holds 0 on {names(unclear)}.\n\nDifferences, F1 points: {diffs}.")
    return text + reference_summary(rows)


def reference_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The shipped llmner configuration against the peer trained on the full training data (a
    reference: no interval), per corpus; empty when no row has that peer."""
    compared = [r for r in rows if r["kind"] == "main" and r["scope"] == "all" and r["llmner_shipped"]
                and r.get("reference_peer")]
    if not compared:
        return ""
    wins = [r for r in compared if r["llmner_shipped"]["f1"] > r["reference_peer"]["f1"]]
    diffs = "; ".join(f"{CORPUS_LABELS[r['corpus']]} {100 * (r['llmner_shipped']['f1'] - r['reference_peer']['f1']):+.1f}"
                      for r in compared)
    return (f"\n\nReference, the peer trained on the full training data ({REFERENCE_PEER_NAME}; no interval): llmner above it "
            f"on {len(wins)} of {len(compared)} corpora"
            + (f" ({', '.join(CORPUS_LABELS[r['corpus']] for r in wins)})" if wins else "")
            + f". llmner − full-data peer F1, points: {diffs}.")


# ---- plots -------------------------------------------------------------------------------------
def plot_label(row: dict[str, Any]) -> str:
    """A short x-axis label: "BC5CDR Chemical", "NCBI-Disease zero-shot"."""
    name = CORPUS_LABELS[row["corpus"]].replace(" (nested)", "")
    if row["scope"] != "all":
        name += f" {row['scope']}"
    elif row["corpus"] in CORPUS_SCOPES:
        name += " overall"
    if row["kind"] == "zero-shot":
        name += " zero-shot"
    return name


def plot_f1(rows: Sequence[dict[str, Any]], path: Path, peer_name: str = "peer", whole_splits: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in rows if r["kind"] in ("main", "zero-shot")]
    labels = [plot_label(r) for r in shown]
    series = [("llmner", [100 * r["llmner_shipped"]["f1"] if r["llmner_shipped"] else np.nan for r in shown], "#1f77b4"),
              ("peer baseline (MiniLM BIO)" if peer_name == "peer" else f"{peer_name} (MiniLM BIO)",
               [100 * r["peer"]["f1"] if r["peer"] else np.nan for r in shown], "#ff7f0e")]
    if has_reference_peer(shown):
        series.append((f"{REFERENCE_PEER_NAME} (MiniLM BIO)",
                       [100 * r["reference_peer"]["f1"] if r.get("reference_peer") else np.nan for r in shown], "#ffbb78"))
    series.append(("published", [r["published"][1] if r["published"] else np.nan for r in shown], "#7f7f7f"))
    x = np.arange(len(shown))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(shown)), 4.8))
    for i, (name, values, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name, color=color)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("strict F1 (%)")
    ax.set_ylim(0, 100)
    scope = "on the whole splits" if whole_splits else "on the report subsets"
    ax.set_title(f"Strict F1 per corpus (llmner and peer {scope}; published = full test sets)", fontsize=9)
    ax.legend(fontsize=8, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def training_curves(bundles: dict[str, Path], peer_dir: Path | None,
                    reference_peer_dir: Path | None = None) -> dict[str, Any]:
    """Loss histories found on disk: generator history.jsonl per bundle, selector history/card, peers
    (the full-data peers' as "<corpus> (full data)")."""
    curves: dict[str, Any] = {"generator": {}, "selector": {}, "peer": {}, "generator_source": {}}
    for name, bundle in bundles.items():
        history = read_jsonl(bundle / "generator" / "history.jsonl")
        if not history:
            # An exported campaign generator carries its card, not its history: the card names the run
            # directory (in this repository) whose history it was exported from.
            card_file = bundle / "generator" / "training_card.json"
            source = json.loads(card_file.read_text()).get("exported_from") if card_file.is_file() else None
            if source and not Path(source).is_absolute():
                history = read_jsonl(RESULTS.parent.parent / source / "history.jsonl")
                if history:
                    curves["generator_source"][name] = source
        if history:
            curves["generator"][name] = history
        selector_history = read_jsonl(bundle / "selector" / "history.jsonl")
        card_file = bundle / "selector" / "training_card.json"
        card = json.loads(card_file.read_text()) if card_file.is_file() else None
        if (bundle / "selector").is_dir():
            manifest = json.loads((bundle / "bundle.json").read_text()) if (bundle / "bundle.json").is_file() else {}
            curves["selector"][name] = {"history": selector_history, "card": card,
                                        "bundle_threshold": manifest.get("selector_threshold"),
                                        "schema_thresholds": manifest.get("selector_thresholds") or {},
                                        "proposal_threshold": manifest.get("proposal_threshold"),
                                        "proposal_thresholds": manifest.get("proposal_thresholds") or {},
                                        "proposal_overlaps": manifest.get("proposal_overlaps") or {}}
    for directory, suffix in ((peer_dir, ""), (reference_peer_dir, " (full data)")):
        if directory is not None and directory.is_dir():
            for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
                history = read_jsonl(sub / "history.jsonl")
                if history:
                    curves["peer"][sub.name + suffix] = history
    return curves


def _finish_axis(ax: Any, title: str, has_data: bool, empty_text: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    if has_data:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, empty_text, ha="center", transform=ax.transAxes)


def plot_training(curves: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for name, history in curves["generator"].items():
        steps = [h["step"] for h in history]
        losses = [h["loss"] for h in history]
        line, = ax.plot(steps, losses, alpha=0.25)
        ax.plot(steps, _moving_average(losses, 20), color=line.get_color(), label=f"bundle {name}: train (avg 20)")
        dev = [(h["step"], h["dev_loss"]) for h in history if "dev_loss" in h]
        if dev:
            ax.plot(*zip(*dev), "o--", color=line.get_color(), label=f"bundle {name}: dev")
    _finish_axis(ax, "generator (LoRA) loss per step", bool(curves["generator"]), "no generator history.jsonl")

    ax = axes[1]
    drawn = False
    for name, sel in curves["selector"].items():
        if sel["history"]:
            losses = [h["loss"] for h in sel["history"]]
            line, = ax.plot([h["step"] for h in sel["history"]], losses, alpha=0.25)
            ax.plot([h["step"] for h in sel["history"]], _moving_average(losses, 20), color=line.get_color(),
                    label=f"bundle {name} (avg 20)")
            drawn = True
    _finish_axis(ax, "selector loss per step", drawn, "no selector history.jsonl in the bundles")

    ax = axes[2]
    for corpus, history in curves["peer"].items():
        losses = [h["loss"] for h in history]
        ax.plot([h["step"] for h in history], _moving_average(losses, 10), label=corpus)
    _finish_axis(ax, "peer baseline loss per step (avg 10)", bool(curves["peer"]), "no peer models")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the report --------------------------------------------------------------------------------
def write_report(rows: Sequence[dict[str, Any]], settings: dict[str, Any], curves: dict[str, Any],
                 output: Path, f1_png: Path, training_png: Path) -> Path:
    table = markdown_table(rows, settings.get("peer_name", "peer"))
    selector_lines = []
    for name, sel in curves["selector"].items():
        card = sel["card"] or {}
        if not card and not sel["history"]:
            selector_lines.append(f"- bundle {name} selector: no training card or history in the bundle")
            continue
        selector_lines.append(
            f"- bundle {name} selector: {card.get('steps', '?')} steps, loss {_short(card.get('loss_first'))} -> "
            f"{_short(card.get('loss_last_mean10'))} (mean of last 10), its dev threshold {_short(card.get('threshold'))}"
            + (f", the bundle's {_short(sel['bundle_threshold'])}" if sel.get("bundle_threshold") is not None else "")
            + "".join(f", {k} {_short(v)}" for k, v in sorted(sel.get("schema_thresholds", {}).items()))
            + (("; its own spans kept from " + _short(sel["proposal_threshold"]) if sel.get("proposal_threshold") is not None
                else "; its own spans not proposed")
               + "".join(f", {k} {'none' if v is None else _short(v)}" for k, v in sorted(sel.get("proposal_thresholds", {}).items()))
               if sel.get("proposal_threshold") is not None or sel.get("proposal_thresholds") else "")
            + ("; where one overlaps a kept candidate of its type, "
               + ", ".join(f"{k}: {'the ' + v + ' stays' if v != 'both' else 'both stay'}"
                           for k, v in sorted(sel["proposal_overlaps"].items())) + " (llmner.decoding.overlaps)"
               if sel.get("proposal_overlaps") else "") + ", "
            f"per-step history: {'yes' if sel['history'] else 'no (the selector trainer writes only its card)'}")
    generator_lines = []
    for name, history in curves["generator"].items():
        tail = [h["loss"] for h in history[-20:]]
        dev = [h["dev_loss"] for h in history if "dev_loss" in h]
        generator_lines.append(f"- bundle {name} generator: {len(history)} steps, loss {history[0]['loss']:.3f} -> "
                               f"{sum(tail) / len(tail):.3f} (mean of last 20)"
                               + (f", dev loss {dev[0]:.3f} -> {dev[-1]:.3f}" if dev else ", no dev loss logged")
                               + (f" (the history of `{curves['generator_source'][name]}`, the run it was exported from)"
                                  if name in curves.get("generator_source", {}) else ""))
    origins = {json.dumps(r["carried_from"], sort_keys=True): r["carried_from"] for r in rows if r.get("carried_from")}
    carried_note = "".join(
        f"\n† carried over unchanged from the run of {o['generated']} on the same documents (`{o['command']}`; "
        f"zero-shot bundle `{o.get('zero_shot_bundle') or '—'}`, peer models `{o.get('peer_dir') or '—'}`, "
        f"full-data peer models `{o.get('reference_peer_dir') or '—'}`): this run "
        f"was not given the models behind those cells.\n" for o in origins.values())
    rescored = settings.get("rescored") or {}
    rescored_note = "" if not rescored else (
        "\nRows derived from the candidates another bundle with the same generator stored "
        "(`--rescore-from`, `--zero-shot-rescore-from`, `llmner.evaluation.rescore`): each candidate judged again by this "
        "bundle's selector in its own chunk, and where the bundle has a proposal threshold the selector's own spans added "
        "in each chunk as the pipeline adds them, and selected with the bundle's overlap rules ("
        + ", ".join(f"{CORPUS_LABELS.get(c, c)} {r['proposed']}" for c, r in rescored.items() if r.get("proposed"))
        + " proposed, kept or not; consistency's copies of a proposed string are not derived), docs/s with the "
        "selector's time replaced by this one's. Keep decisions the stored candidates leave open "
        "(which of a string's identically scored entities consistency copied is not stored): "
        + ", ".join(f"{CORPUS_LABELS.get(c, c)} {r['undetermined']} of {r['entities']}"
                    + (f" (F1 {100 * r['f1_range'][0]:.1f}-{100 * r['f1_range'][1]:.1f} with all of them dropped or kept)"
                       if r.get("f1_range") else "") for c, r in rescored.items())
        + " (0 = exactly what running the generator again gives).\n")
    zero_shot = settings.get("zero_shot_rescored")
    if zero_shot:
        rescored_note += (f"The zero-shot row likewise, from {zero_shot['source']}: {zero_shot.get('proposed', 0)} of the "
                          f"selector's own spans proposed; keep decisions left open {zero_shot['undetermined']} of "
                          f"{zero_shot['entities']}" + (f" (F1 {100 * zero_shot['f1_range'][0]:.1f}-{100 * zero_shot['f1_range'][1]:.1f})"
                                                         if zero_shot.get("f1_range") else "") + ".\n")
    read = settings.get("reader_corpora") or []
    reader_note = "" if not read else (
        "\nRows the bundle's reader tags (" + ", ".join(CORPUS_LABELS.get(c, c) for c in read) + "; `llmner.modeling.reader`): "
        "the generator and selector do not run there; the \"generator\" cells hold the reader's spans, every one, and the "
        f"\"+ selector\" cells those kept from its span score {settings.get('reader_threshold')} (chosen on held-out "
        "training records, `benchmarks/results/reader_choice.md`).\n")
    peer_card = settings.get("peer_settings")
    reference_card = settings.get("reference_peer_settings")
    published_scope = ("Our rows are on the same whole splits." if not settings["sentences"] else
                       "Our rows are on the subsets above, so the comparison is indicative: see the confidence intervals.")
    subset_text = ("the whole report split of each corpus" if not settings["sentences"] else
                   f"the first documents of each split holding at least {settings['sentences']} sentences\n"
                   f"  and {settings['min_gold']} gold mentions")
    reference_line = (f"- Reference peer, full training data (`{REFERENCE_PEER_NAME}` columns, no intervals): "
                      f"`{settings['reference_peer_dir']}`{(' — ' + reference_card) if reference_card else ''}.\n"
                      if settings.get("reference_peer_dir") or reference_card else "")
    unknown = settings.get("peer_unknown_token_rate", {})
    cmeee_unknown = (f" ({100 * unknown['cmeee']:.0f}% of the word pieces of the CMeEE subset are `[UNK]`)"
                     if "cmeee" in unknown else "")
    text = f"""# Quality report

Generated by `benchmarks/quality.py` on {settings['generated']} ({settings['machine']}, torch threads {settings['torch_threads']}):

    {settings['command']}

- Bundle (a), all training corpora: `{settings['bundle']}` (models: {settings.get('model_ids_a', '?')}), decoding mode `{settings['mode']}`.
- Bundle (b), trained without NCBI-Disease (zero-shot row): `{settings.get('zero_shot_bundle') or '— (not given)'}`.
- Peer baseline models (compared, with intervals): `{settings.get('peer_dir') or '— (not given)'}`{(' — ' + peer_card) if peer_card else ''}.
{reference_line}- Evaluation subset: {subset_text} (`llmner.evaluation.subsets`; the same documents for every system); 95% CI = percentile bootstrap over
  documents ({settings['bootstrap']} resamples).

{table}
{carried_note}{rescored_note}{reader_note}
Cells are strict P / R / F1 in percent (llmner's scorer, `llmner.evaluation.scorer`, exact (start, end, type));
"shipped" = with the selector when the bundle has one, else the generator alone;
docs/s counts documents of the row's corpus (an abstract for NCBI-Disease, BC5CDR and S800, a sentence for
GENIA, JNLPBA, BC2GM and LINNAEUS, a record for CMeEE), sentences/s in brackets.

{comparison_summary(rows)}

## Notes

- **Decoding modes.** `constrained` and `speculative` give identical output by construction (speculative
  verifies the remaining source as a draft and keeps only tokens the constrained greedy step would pick;
  `benchmarks/results/decoding.md` found 124 of 124 sentences identical), so one row covers both. `free` (unconstrained) decoding
  differs and has its own row(s).
- **Published references** are other papers' full-test-set numbers with their own models (BioBERT, PubMedBERT:
  110 M-parameter encoders; W2NER; LLMNER zero-shot with a 9 B model). {published_scope}
- **Peer baseline**: `AutoModelForTokenClassification` on the same MiniLM-L6 encoder as the selector, BIO tags on
  the tokenizer's words (first sub-token labelled), trained per corpus (`benchmarks/peer_baseline.py`; how each
  peer was trained is stated above, from its training card: the peer compared with llmner is meant to see the
  same training documents as the generator, the full-data peer every training document). GENIA is
  nested (and CMeEE nests some mentions too): the peer trains on the outermost mentions only and is scored against
  all gold mentions, so inner mentions count as misses. CMeEE: MiniLM's uncased English WordPiece vocabulary splits Chinese into single
  characters but lacks most of them{cmeee_unknown}: measured on the first 300 CMeEE dev records, 65% of the
  word pieces are `[UNK]` and only 166 of 1,189 distinct characters are in the vocabulary, so the peer's CMeEE row
  is weak because of the encoder's vocabulary (llmner's selector shares it; where the bundle's reader tags CMeEE,
  llmner's row is the reader's, on Gemma-3-270M), not because of the recipe.
- **CMeEE** is reported on dev: its test set has no labels.

## Training curves

![training curves]({training_png.name})

{chr(10).join(generator_lines) or '- no generator history found'}
{chr(10).join(selector_lines) or '- no selector in the bundles'}

## F1 per corpus

![F1 per corpus]({f1_png.name})
"""
    output.write_text(text)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="protocol (a) bundle (default: the shipped default bundle)")
    parser.add_argument("--zero-shot-bundle", type=Path, default=None, help="protocol (b) bundle (trained without NCBI-Disease)")
    parser.add_argument("--peer-dir", type=Path, default=None,
                        help="peer models compared with llmner, paired intervals (peer_baseline.py --output DIR; "
                             "trained with --train-documents: the documents the generator drew)")
    parser.add_argument("--reference-peer-dir", type=Path, default=None,
                        help="peer models trained on the full training data (peer_baseline.py --max-train-sentences 0): "
                             "reference columns, no intervals")
    parser.add_argument("--corpus", action="append", choices=EVALUATION_CORPORA, help="repeatable; default: all 8")
    parser.add_argument("--sentences", type=int, default=200, help="sentences per corpus subset (0 = the whole split)")
    parser.add_argument("--min-gold", type=int, default=0,
                        help="extend each subset until it holds this many gold mentions (LINNAEUS is sparse)")
    parser.add_argument("--mode", default=None, help="decoding mode of the main rows (default: the bundle's)")
    parser.add_argument("--free-corpus", action="append", default=None,
                        help="corpora that also get a free-decoding row (default: ncbi_disease; 'none' for none)")
    parser.add_argument("--selector-backend", default="onnx", choices=("onnx", "torch", "none"))
    parser.add_argument("--batch-documents", type=int, default=8, help="documents per pipeline call")
    parser.add_argument("--generator-batch", type=int, default=8, help="chunks per generation batch")
    parser.add_argument("--part-documents", type=int, default=100,
                        help="documents per stored part of a row (an interrupted row resumes from its parts)")
    parser.add_argument("--parts-from-end", action="store_true",
                        help="predict each row's parts from the last one: a second process on the same --work-dir "
                             "then shares a row with one going forward (they meet in the middle)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the F1 CI (0 = none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "quality_work", help="row cache (resumable)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--peers-only", action="store_true",
                        help="only score the peer models (--peer-dir, --reference-peer-dir) into the row cache and "
                             "print their F1; no llmner rows, no report (peer models are too big to keep: score them "
                             "while they exist, the report reads the cached rows)")
    parser.add_argument("--rescore-from", type=Path, default=None,
                        help="a bundle with the same generator whose rows are complete in --work-dir: a main row not yet "
                             "computed is derived from that bundle's stored candidates, judged by this bundle's selector "
                             "(llmner.evaluation.rescore), instead of running the generator again")
    parser.add_argument("--zero-shot-rescore-from", type=Path, default=None,
                        help="the same for the zero-shot row: a bundle with --zero-shot-bundle's generator whose row is complete")
    parser.add_argument("--carry-over", type=Path, default=None,
                        help="earlier quality.json: take its peer cells and zero-shot row where this run has no "
                             "--peer-dir / --reference-peer-dir / --zero-shot-bundle (same documents only; marked † "
                             "in the report)")
    args = parser.parse_args(argv)

    import torch

    from llmner.bundle import default_bundle_path, load_manifest

    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = args.bundle or default_bundle_path()
    if bundle is None:
        parser.error("no --bundle given and no default bundle is installed")
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    mode = args.mode or manifest.decoding_mode
    main_system = LlmnerSystem("a", bundle, mode)
    free_corpora = [c for c in (args.free_corpus or ["ncbi_disease"]) if c != "none"]
    corpora = [c for c in EVALUATION_CORPORA if c in (args.corpus or EVALUATION_CORPORA)]
    extra: list[tuple[LlmnerSystem, str, str]] = []
    if mode != "free":
        extra += [(LlmnerSystem("a", bundle, "free"), c, f"{CORPUS_LABELS[c]} {REPORT_SPLITS[c]}, free decoding")
                  for c in free_corpora if c in corpora]
    if args.zero_shot_bundle is not None and ZERO_SHOT_CORPUS in corpora:
        zs_mode = args.mode or load_manifest(args.zero_shot_bundle).decoding_mode
        extra.append((LlmnerSystem("b", args.zero_shot_bundle, zs_mode), ZERO_SHOT_CORPUS,
                      f"{CORPUS_LABELS[ZERO_SHOT_CORPUS]} test, zero-shot (bundle b, trained without it)"))

    subsets = {c: evaluation_subset(c, args.sentences or None, min_gold=args.min_gold) for c in corpora}
    for s in subsets.values():
        print(s.describe(), file=sys.stderr)
    pipes = PipelineCache(args.selector_backend, args.generator_batch)
    fingerprints = {str(bundle): served_fingerprint(bundle, args.selector_backend)}
    if args.zero_shot_bundle is not None:
        fingerprints[str(args.zero_shot_bundle)] = served_fingerprint(args.zero_shot_bundle, args.selector_backend)

    llmner_results: dict[tuple[str, str], dict[str, Any]] = {}
    rescore_sources = {str(bundle): args.rescore_from}
    if args.zero_shot_bundle is not None:
        rescore_sources[str(args.zero_shot_bundle)] = args.zero_shot_rescore_from
    jobs = [] if args.peers_only else [(main_system, c) for c in corpora] + [(s, c) for s, c, _ in extra]
    for system, corpus in jobs:
        subset = subsets[corpus]
        path = subset_row_path(args.work_dir, system.row_name(args.selector_backend), subset, fingerprints[str(system.bundle)])
        result = cached_row(path)
        if result is None:
            rescored = None
            source_bundle = rescore_sources.get(str(system.bundle))
            if source_bundle is not None and reader_tags(system.bundle, subset.corpus):
                # The reader tags this corpus's schema: the source's stored generator candidates are not its output.
                print(f"{subset.corpus}: tagged by the bundle's reader, not derived from {source_bundle}", file=sys.stderr)
                source_bundle = None
            if source_bundle is not None:
                source = source_parts(args.work_dir, system.row_name(args.selector_backend), subset, source_bundle,
                                      args.selector_backend)
                print(f"deriving {system.key} on {subset.describe()} from {source.name}", file=sys.stderr)
                rescored = rescore_row(system, subset, pipes, source_bundle, source, path.with_suffix(".parts"),
                                       args.part_documents)
            print(f"running {system.key} on {subset.describe()}", file=sys.stderr)
            result = run_llmner(system, subset, pipes, args.batch_documents, path.with_suffix(".parts"), args.part_documents,
                                args.parts_from_end)
            if rescored is not None:
                result["rescored"] = rescored
            store_row(path, result)
        else:
            print(f"cached: {path.name}", file=sys.stderr)
        if result.get("rescored") and "f1_range" not in result["rescored"]:
            from llmner.evaluation.rescore import undetermined_f1_range

            result["rescored"]["f1_range"] = undetermined_f1_range(path.with_suffix(".parts"), subset.documents)
            store_row(path, result)
        llmner_results[(system.key, corpus)] = result

    def score_peers(peer_dir: Path | None) -> dict[str, dict[str, Any]]:
        scored: dict[str, dict[str, Any]] = {}
        for corpus in corpora if peer_dir is not None else []:
            model_dir = peer_dir / corpus
            if not (model_dir / "config.json").is_file():
                print(f"no peer model for {corpus} under {peer_dir}: its cells left empty", file=sys.stderr)
                continue
            subset = subsets[corpus]
            path = subset_row_path(args.work_dir, "peer", subset, peer_fingerprint(model_dir))
            result = cached_row(path)
            if result is None:
                print(f"running peer {model_dir} on {subset.describe()}", file=sys.stderr)
                result = run_peer(model_dir, subset, args.sentences, args.min_gold, args.threads)
                store_row(path, result)
            scored[corpus] = result
        return scored

    peers = score_peers(args.peer_dir)
    reference_peers = score_peers(args.reference_peer_dir)
    if args.peers_only:
        for label, scored in (("peer", peers), ("reference peer", reference_peers)):
            for corpus, result in scored.items():
                f1 = scope_counts(result["report"], "all")["f1"]
                print(f"{label} {corpus}: strict F1 {100 * f1:.1f} ({result['documents']} documents, cached)")
        return 0

    rows = build_rows(llmner_results, peers, subsets, main_system, extra, args.bootstrap, reference_peers)
    previous = None
    if args.carry_over is not None:
        if not args.carry_over.is_file():
            parser.error(f"--carry-over {args.carry_over}: no such file")
        previous = json.loads(args.carry_over.read_text())
        taken = carry_over(rows, previous, args.peer_dir is not None, args.zero_shot_bundle is not None,
                           args.reference_peer_dir is not None)
        print(f"carried over from {args.carry_over}: {', '.join(taken) or 'nothing (no matching rows)'}", file=sys.stderr)
    out_dir = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    bundles = {"a": bundle} | ({"b": args.zero_shot_bundle} if args.zero_shot_bundle is not None else {})
    curves = training_curves(bundles, args.peer_dir, args.reference_peer_dir)
    training_png = plot_training(curves, out_dir / "quality_training.png")
    first_main = next((r for (k, _), r in llmner_results.items() if k == main_system.key), None)
    peer_cards = [p["card"] for p in peers.values() if p.get("card")]
    peer_settings = describe_peer(peer_cards)
    reference_settings = describe_peer([p["card"] for p in reference_peers.values() if p.get("card")])
    peer_name = "peer"
    if reference_peers or (previous or {}).get("settings", {}).get("reference_peer_dir"):
        equal = bool(peer_cards) and all(c.get("train_documents") for c in peer_cards)
        peer_name = "peer, equal data" if equal else "peer"
    settings = {
        "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch_threads": torch.get_num_threads(),
        "bundle": str(bundle), "mode": mode, "model_ids_a": first_main["model_ids"] if first_main else None,
        "zero_shot_bundle": str(args.zero_shot_bundle) if args.zero_shot_bundle else None,
        "peer_dir": str(args.peer_dir) if args.peer_dir else None, "peer_settings": peer_settings, "peer_name": peer_name,
        "reference_peer_dir": str(args.reference_peer_dir) if args.reference_peer_dir else None,
        "reference_peer_settings": reference_settings,
        "peer_unknown_token_rate": {c: p["unknown_token_rate"] for c, p in peers.items() if "unknown_token_rate" in p},
        "carried_over": str(args.carry_over) if args.carry_over else None,
        "rescored": {corpus: r["rescored"] for (key, corpus), r in llmner_results.items()
                     if key == main_system.key and r.get("rescored")},
        "zero_shot_rescored": next((r["rescored"] for (key, _), r in llmner_results.items()
                                    if key.startswith("llmner-b-") and r.get("rescored")), None),
        "reader_corpora": [c for c in corpora if reader_tags(bundle, c)], "reader_threshold": manifest.reader_threshold,
        "generator_batch": args.generator_batch, "sentences": args.sentences, "min_gold": args.min_gold, "bootstrap": args.bootstrap, "selector_backend": args.selector_backend,
        "subsets": {c: {"split": s.split, "documents": len(s.documents), "split_documents": s.split_documents,
                        "sentences": s.sentences, "gold_mentions": s.gold_mentions} for c, s in subsets.items()},
    }
    if previous is not None:
        old = previous["settings"]
        if args.peer_dir is None:
            settings["peer_settings"] = old.get("peer_settings")
            settings["peer_unknown_token_rate"] = old.get("peer_unknown_token_rate", {})
            settings["peer_name"] = old.get("peer_name", peer_name)
        if args.reference_peer_dir is None and old.get("reference_peer_dir"):
            settings["reference_peer_dir"] = old["reference_peer_dir"]
            settings["reference_peer_settings"] = old.get("reference_peer_settings")
    f1_png = plot_f1(rows, out_dir / "quality_f1.png", settings["peer_name"], whole_splits=not settings["sentences"])
    md = write_report(rows, settings, curves, out_dir / "quality.md", f1_png, training_png)
    (out_dir / "quality.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(markdown_table(rows, settings["peer_name"]))
    print()
    print(comparison_summary(rows))
    print(f"\nwrote {md}, {out_dir / 'quality.json'}, {f1_png}, {training_png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
