"""Equal-compute ablation of generator-training choices, decided by dev F1.

Every arm starts from the same adapter, reads the same data stream (same config and seed) and
trains for the same process CPU time, single-threaded and side by side; then each arm (and the
starting adapter) is scored on the same dev slices: strict F1 of each corpus's own types under its
own schema, generator only. Writes benchmarks/results/ablation_<name>.md (and .json). Usage:

    .venv/bin/python benchmarks/ablation.py --name frozen_layers \\
        --config benchmarks/campaign/gen-full/config.yaml --init-from benchmarks/campaign/gen-full/portable \\
        --arm all_layers: --arm layers_20_up:train_layers_from=20 --cpu-minutes 30 --sentences 30

An arm is ``NAME:KEY=VALUE,KEY=VALUE`` over the config's keys (values parsed as YAML). Rerun the
same command to resume: arms and evaluations already finished under ``--work`` are not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from llmner.evaluation.reports import named_settings

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]


def single_threaded_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(Path.cwd())}


def train_arms(args: argparse.Namespace, work: Path) -> dict[str, dict]:
    base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    procs = {}
    for name, overrides in map(named_settings, args.arm):
        config = {**base, "init_from": args.init_from, "output": str(work / name / "run"), "resume": False,
                  "checkpoint_every": 0, "cpu_budget_s": args.cpu_minutes * 60, **overrides}
        if (work / name / "run" / "history.jsonl").is_file():
            procs[name] = (overrides, None)       # trained by an earlier invocation: the ablation resumes
            continue
        (work / name).mkdir(parents=True, exist_ok=True)
        (work / name / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        log = (work / name / "train.log").open("w", encoding="utf-8")
        procs[name] = (overrides, subprocess.Popen(
            [sys.executable, "-m", "llmner.cli.main", "train", "generator", "--config", str(work / name / "config.yaml"),
             "--no-progress"], stdout=log, stderr=subprocess.STDOUT, env=single_threaded_env(args.threads)))
    arms = {}
    for name, (overrides, proc) in procs.items():
        if proc is not None and proc.wait() != 0:
            raise SystemExit(f"arm {name} failed: see {work / name / 'train.log'}")
        run = work / name / "run"
        history = [json.loads(line) for line in (run / "history.jsonl").read_text(encoding="utf-8").splitlines()]
        checkpoint = max((run / "checkpoints").glob("step-*"))
        arms[name] = {"overrides": overrides, "adapter": str(checkpoint), "steps": len(history),
                      "examples": sum(h["examples"] for h in history),
                      "target_tokens": sum(h["target_tokens"] for h in history),
                      "cpu_s": history[-1]["segment_cpu_s"] if history else 0.0,
                      "first_loss": _mean([h["loss"] for h in history[:20]]),
                      "last_loss": _mean([h["loss"] for h in history[-20:]])}
        print(f"{name}: {arms[name]['steps']} steps, {arms[name]['examples']} examples in "
              f"{arms[name]['cpu_s']:.0f} CPU s", flush=True)
    return arms


def evaluate_adapters(adapters: dict[str, str], args: argparse.Namespace, work: Path,
                      per_chunk: dict[str, int] | None = None) -> dict[str, dict]:
    """Each adapter scored in its own single-threaded process, side by side; ``per_chunk``: an arm's
    sentences per chunk (inference chunks as its training did)."""
    procs = {}
    for name, adapter in adapters.items():
        out = work / f"eval-{name}.json"
        if out.is_file():
            procs[name] = (out, None)
            continue
        log = (work / f"eval-{name}.log").open("w", encoding="utf-8")
        cmd = [sys.executable, __file__, "--evaluate", adapter, "--out-json", str(out), "--sentences", str(args.sentences),
               "--sentences-per-chunk", str((per_chunk or {}).get(name, 1))]
        cmd += [a for c in args.corpus or CORPORA for a in ("--corpus", c)]
        procs[name] = (out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=single_threaded_env(args.threads)))
    scores = {}
    for name, (out, proc) in procs.items():
        if proc is not None and proc.wait() != 0:
            raise SystemExit(f"evaluation of {name} failed: see {work / f'eval-{name}.log'}")
        scores[name] = json.loads(out.read_text(encoding="utf-8"))
    return scores


def evaluate_one(adapter: str, corpora: list[str], sentences: int, sentences_per_chunk: int = 1) -> dict:
    """Dev F1 (own schema, generator only) of the shipped generator with ``adapter``'s LoRA weights,
    documents chunked as the arm was trained (``sentences_per_chunk``)."""
    from llmner.data_processing.chunking import ChunkingConfig
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.bootstrap import per_document_counts
    from llmner.evaluation.predict import predict_documents
    from llmner.evaluation.scorer import score
    from llmner.evaluation.subsets import leading_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(None, PipelineConfig(decoding_mode="speculative", selector_backend="none", normalize=False,
                                                     chunking=ChunkingConfig(sentences_per_chunk=sentences_per_chunk)),
                                generator_adapter=adapter)
    result = {}
    for corpus in corpora:
        # The tail of each dev split, as benchmarks/mixture.py: the quality report scores CMeEE on its
        # dev split's first documents, and choices must not be made on what is reported.
        docs, n_sentences = leading_documents(load_corpus(corpus, "dev"), sentences, from_end=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        predicted = predict_documents(pipe, docs, corpus_schema(corpus))
        cpu_s = time.process_time() - cpu_started
        strict = score(docs, predicted).strict
        # strict (tp, fp, fn) per document, for a paired bootstrap
        per_document = [counts["all"] for counts in per_document_counts(docs, predicted)]
        result[corpus] = {"f1": strict.f1, "precision": strict.precision, "recall": strict.recall,
                          "documents": len(docs), "sentences": n_sentences, "seconds": round(time.perf_counter() - started, 1),
                          "cpu_seconds": round(cpu_s, 1),
                          "per_document": per_document}
        print(f"{corpus}: F1 {strict.f1 * 100:.1f}", flush=True)
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def write_report(args: argparse.Namespace, arms: dict[str, dict], scores: dict[str, dict], seconds: float) -> Path:
    from llmner.evaluation.bootstrap import macro_f1_comparison

    corpora = list(next(iter(scores.values())))
    references = [n for n in scores if n not in arms and n != "start"]
    names = (["start"] if "start" in scores else []) + references + list(arms)
    mean = {n: _mean([scores[n][c]["f1"] for c in corpora]) for n in names}
    reference = next(iter(arms))      # the first arm: every other is compared with it, document-paired
    compared = macro_f1_comparison({n: {c: scores[n][c]["per_document"] for c in corpora} for n in names},
                                   corpora, reference, samples=2000)
    lines = [f"# Ablation: {args.name}", "",
             f"`python benchmarks/ablation.py {' '.join(sys.argv[1:])}`", "",
             f"Each arm: {args.cpu_minutes:g} CPU-minutes of training, {args.threads} thread(s) each, from "
             f"`{args.init_from}`; dev F1 = strict F1 of the corpus's own types under its own schema, generator only, "
             f"on the last dev documents with {args.sentences}+ sentences per corpus. This invocation took "
             f"{seconds / 60:.0f} min (arms and evaluations finished earlier are reused)."
             + (f" {args.note}" if args.note else ""), "",
             (f"Macro dev F1: every corpus weighted the same, 95% document-bootstrap interval; the difference from "
              f"{reference} is paired (both scored on the same resampled documents, 2,000 draws)."), "",
             ("| arm | overrides | steps | examples | examples / CPU-min | target tokens | loss first / last 20 steps | "
              f"macro dev F1 (95% CI) | minus {reference} (paired 95% CI) |"),
             "|---|---|---|---|---|---|---|---|---|"]

    def f1_cells(n: str) -> str:
        c = compared[n]
        diff = "—" if n == reference else (f"{c['diff_vs_reference'] * 100:+.1f} "
                                            f"({c['diff_ci'][0] * 100:+.1f} to {c['diff_ci'][1] * 100:+.1f})")
        return f"{c['macro_f1'] * 100:.1f} ({c['macro_f1_ci'][0] * 100:.1f}–{c['macro_f1_ci'][1] * 100:.1f}) | {diff}"

    if "start" in scores:
        lines.append(f"| start | (the starting adapter) | 0 | 0 | — | 0 | — | {f1_cells('start')} |")
    for n in references:
        lines.append(f"| {n} | (reference: `{dict(args.reference)[n]}`) | — | — | — | — | — | {f1_cells(n)} |")
    for n, a in arms.items():
        over = ", ".join(f"{k}={v}" for k, v in a["overrides"].items()) or "(config as is)"
        lines.append(f"| {n} | {over} | {a['steps']} | {a['examples']} | {a['examples'] / max(a['cpu_s'] / 60, 1e-9):.1f} | "
                     f"{a['target_tokens']} | {a['first_loss']:.3f} / {a['last_loss']:.3f} | {f1_cells(n)} |")
    lines += ["", "Dev F1 per corpus (strict, own schema; documents / sentences / gold mentions):", "",
              "| corpus | docs / sents / gold | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for c in corpora:
        first = scores[names[0]][c]
        gold = sum(tp + fn for tp, _fp, fn in first["per_document"])
        lines.append(f"| {c} | {first['documents']} / {first['sentences']} / {gold} | "
                     + " | ".join(f"{scores[n][c]['f1'] * 100:.1f}" for n in names) + " |")
    if all("cpu_seconds" in scores[n][c] for n in names for c in corpora):
        # Inference cost of the same dev documents (process CPU time, single-threaded): what chunking
        # several sentences per prompt saves at serving time.
        docs_total = sum(scores[names[0]][c]["documents"] for c in corpora)
        lines.append(f"| inference CPU s ({docs_total} documents) | | "
                     + " | ".join(f"{sum(scores[n][c]['cpu_seconds'] for c in corpora):.0f}" for n in names) + " |")
    out = RESULTS / f"ablation_{args.name}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"arms": arms, "dev": scores, "mean_dev_f1": mean,
                                                    "compared": compared,
                                                    "cpu_minutes": args.cpu_minutes, "sentences": args.sentences},
                                                   indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ablation")
    parser.add_argument("--config", help="training config (YAML) every arm starts from")
    parser.add_argument("--init-from", help="adapter every arm starts from (bundle or portable checkpoint)")
    parser.add_argument("--arm", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    parser.add_argument("--cpu-minutes", type=float, default=30.0, help="process CPU time of each arm's training")
    parser.add_argument("--threads", type=int, default=1, help="threads per arm (arms run side by side)")
    parser.add_argument("--sentences", type=int, default=30, help="leading dev sentences per corpus")
    parser.add_argument("--corpus", action="append", default=None)
    parser.add_argument("--work", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--no-start", action="store_true", help="do not score the starting adapter")
    parser.add_argument("--reference", action="append", default=[], type=lambda t: tuple(t.split("=", 1)),
                        metavar="NAME=ADAPTER", help="another adapter scored beside the arms (e.g. an earlier stage's)")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. which checkpoint --init-from was)")
    parser.add_argument("--evaluate", metavar="ADAPTER", help=argparse.SUPPRESS)   # one evaluation process
    parser.add_argument("--out-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sentences-per-chunk", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        args.out_json.write_text(json.dumps(evaluate_one(args.evaluate, args.corpus or CORPORA, args.sentences,
                                                              args.sentences_per_chunk)),
                                 encoding="utf-8")
        return
    if not args.config or not args.init_from or not args.arm:
        parser.error("--config, --init-from and at least one --arm are required")
    work = args.work / args.name
    started = time.perf_counter()
    arms = train_arms(args, work)
    adapters = {n: a["adapter"] for n, a in arms.items()}
    if not args.no_start:
        adapters = {"start": args.init_from, **adapters}
    adapters = {**dict(args.reference), **adapters}
    base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    per_chunk = {n: int(a["overrides"].get("sentences_per_chunk", base.get("sentences_per_chunk", 1))) for n, a in arms.items()}
    per_chunk["start"] = int(base.get("sentences_per_chunk", 1))
    scores = evaluate_adapters(adapters, args, work, per_chunk)
    write_report(args, arms, scores, time.perf_counter() - started)


if __name__ == "__main__":
    main()
