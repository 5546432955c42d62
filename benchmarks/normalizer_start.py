"""What the encoder neighbour costs the shipped normalizer: CPU seconds (one thread) to start it, and
CPU milliseconds per document, character n-grams against the packaged MiniLM side by side in one run;
writes benchmarks/results/normalizer_start.{json,md}.

    python benchmarks/normalizer_start.py [--bundle llmner/bundles/default] [--max-docs N]

Three starts, each in a fresh process (nothing memoized, vocabularies read again), the libraries
imported before the clock starts (a worker has them loaded for its generator already):

1. n-gram only: the bundle's normalizer with every type's step 4 by character n-grams (a type that
   ships another step 4 at its n-gram threshold from benchmarks/results/normalization.json);
2. MiniLM, first start: the normalizer as shipped, with an empty LLMNER_NORMALIZER_EMBEDDINGS
   directory (every name of an encoder type is encoded, then stored there);
3. MiniLM, warm start: the same directory, now holding the embeddings (what `llmner normalizer warm`
   leaves, and what the images bake in).

Then one process holds both normalizers and normalizes the gold spans of every test document of
NCBI-Disease and BC5CDR with one and then the other (alternating, so that both see the same load on
a shared machine): CPU milliseconds per document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
CORPORA = ("ncbi_disease", "bc5cdr")


def ngram_variant(shipped: Path, target: Path) -> Path:
    """A copy of the normalizer folder ``shipped`` whose every type's step 4 is the character n-gram
    neighbour, at the n-gram threshold the normalization benchmark chose on dev."""
    from llmner.normalization.store import SPEC_NAME, read_spec

    spec = read_spec(shipped)
    chosen = json.loads((RESULTS / "normalization.json").read_text())["ngram_thresholds"]
    shutil.copytree(shipped, target)
    for etype, tspec in spec.types.items():
        if tspec.neighbour != "ngram":
            tspec.neighbour, tspec.encoder, tspec.ngram_threshold = "ngram", "", chosen[etype]
    (target / SPEC_NAME).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def import_libraries() -> None:
    """What a worker has imported before it loads a normalizer (its generator needs them)."""
    import sklearn.feature_extraction.text  # noqa: F401
    import torch
    import transformers  # noqa: F401

    import llmner.normalization.encoder  # noqa: F401

    torch.set_num_threads(1)


def child_start(folder: Path) -> dict:
    import_libraries()
    from llmner.normalization import load_normalizer

    cpu0, wall0 = time.process_time(), time.perf_counter()
    norm = load_normalizer(folder)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    encoded = {t: {"names": len(n.encoder_index().ids), "read_back": n.encoder_index().cached}
               for t, n in norm.by_type.items() if n.config.neighbour == "encoder"}   # type: ignore[attr-defined]
    return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "encoder_types": encoded}


def child_per_document(ngram: Path, shipped: Path, max_docs: int) -> dict:
    import_libraries()
    from llmner.data_processing.corpora import load_corpus
    from llmner.normalization import load_normalizer

    norms = {"ngram": load_normalizer(ngram), "minilm": load_normalizer(shipped)}
    out = {}
    for corpus in CORPORA:
        docs = load_corpus(corpus, "test")[: max_docs or None]
        cpu = {name: 0.0 for name in norms}
        for i, doc in enumerate(docs):
            order = list(norms) if i % 2 == 0 else list(norms)[::-1]
            for name in order:
                ents = [e.__class__(e.start, e.end, e.type, e.text) for e in doc.entities]   # gold spans, no identifiers
                t0 = time.process_time()
                norms[name].normalize(ents, doc)
                cpu[name] += time.process_time() - t0
        out[corpus] = {"documents": len(docs), "entities": sum(len(d.entities) for d in docs),
                       **{f"{name}_ms_per_document": round(1000 * s / len(docs), 2) for name, s in cpu.items()}}
    return out


def run_child(args: list[str], embeddings: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LLMNER_NORMALIZER_EMBEDDINGS": str(embeddings)}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the installed default bundle)")
    ap.add_argument("--max-docs", type=int, default=0, help="test documents per corpus for the per-document cost (0: all)")
    ap.add_argument("--json", type=Path, default=RESULTS / "normalizer_start.json")
    ap.add_argument("--md", type=Path, default=RESULTS / "normalizer_start.md")
    ap.add_argument("--from-json", action="store_true", help="only re-render the markdown from --json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        res = child_start(Path(rest[0])) if kind == "start" else child_per_document(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(res))
        return
    if args.from_json:
        args.md.write_text(markdown(json.loads(args.json.read_text())))
        print(args.md.read_text())
        return

    from llmner.bundle import NORMALIZER_DIR, default_bundle_path
    from llmner.normalization.store import read_spec

    bundle = args.bundle or default_bundle_path()
    if bundle is None:
        raise SystemExit("no default bundle installed: pass --bundle")
    shipped = bundle / NORMALIZER_DIR
    spec = read_spec(shipped)
    if not any(t.neighbour == "encoder" for t in spec.types.values()):
        raise SystemExit(f"{shipped}: no type's step 4 encodes its names; nothing to compare")
    with tempfile.TemporaryDirectory(prefix="normalizer-start-") as tmp:
        ngram = ngram_variant(shipped, Path(tmp) / "ngram")
        embeddings = Path(tmp) / "embeddings"
        starts = {}
        for label, folder in (("ngram", ngram), ("minilm_first", shipped), ("minilm_warm", shipped)):
            starts[label] = run_child(["start", str(folder)], embeddings)
            print(f"[start] {label}: {starts[label]}", flush=True)
        per_doc = run_child(["per-document", str(ngram), str(shipped), str(args.max_docs)], embeddings)
        print(f"[per document] {per_doc}", flush=True)
    res = {"bundle": str(bundle),
           "types": {t: {"neighbour": s.neighbour, "threshold": s.ngram_threshold, "encoder": s.encoder} for t, s in spec.types.items()},
           "starts": starts, "per_document": per_doc, "python": platform.python_version(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d")}
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    args.md.write_text(markdown(res))
    print(args.md.read_text())


def markdown(res: dict) -> str:
    s = res["starts"]
    base = s["ngram"]["cpu_s"]
    names = sum(v["names"] for v in s["minilm_first"]["encoder_types"].values())
    encoding_cpu = s["minilm_first"]["cpu_s"] - s["minilm_warm"]["cpu_s"]
    enc_types = ", ".join(f"{t} (cosine threshold {v['threshold']}) with "
                          + ("the packaged `all-MiniLM-L6-v2`" if not v.get("encoder") or v["encoder"].startswith("packaged:")
                             else f"the encoder `{v['encoder']}`")
                          for t, v in res["types"].items() if v["neighbour"] == "encoder")
    rows = [("n-gram only (every type's step 4 by character 3-grams)", s["ngram"], "–"),
            ("MiniLM, first start (no stored embeddings: every name encoded)", s["minilm_first"], f"{names:,} encoded"),
            ("MiniLM, warm start (embeddings stored by the first start or `llmner normalizer warm`)", s["minilm_warm"],
             "read back" if all(v["read_back"] for v in s["minilm_warm"]["encoder_types"].values()) else "ENCODED AGAIN")]
    lines = ["# Normalizer start and cost per document: character n-grams against the packaged MiniLM", "",
             ("Generated by `benchmarks/normalizer_start.py` (do not edit by hand). The shipped normalizer "
              f"(`{Path(res['bundle']).name}` bundle) encodes every dictionary name of {enc_types} "
              "for its step 4 (kept on dev: `benchmarks/results/normalization.md`); the n-gram variant "
              "is the same normalizer with character 3-grams there instead. Each start is a fresh process on one thread "
              "(`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`), timed around `load_normalizer` after the libraries are "
              "imported; CPU seconds, which a machine shared with other jobs disturbs less than wall seconds."), "",
             "## Start", "",
             "| start | CPU s | wall s | names | CPU × n-gram start |", "|---|---|---|---|---|"]
    for label, r, what in rows:
        lines.append(f"| {label} | {r['cpu_s']} | {r['wall_s']} | {what} | {r['cpu_s'] / base:.2f} |")
    lines += ["", (f"First start against warm start: {s['minilm_first']['cpu_s'] / s['minilm_warm']['cpu_s']:.1f}× the CPU. "
                   f"Encoding {names:,} names took {encoding_cpu:.1f} CPU s (first start − warm start): "
                   f"{names / encoding_cpu:.0f} names per CPU second on one thread. `llmner normalizer warm` pays that once "
                   "(the images at build time, into `LLMNER_NORMALIZER_EMBEDDINGS`); a worker without stored embeddings pays "
                   "it at its first start and stores them for the next."), "",
              "## Per document", "",
              ("Gold spans of the test documents (identifiers removed), normalized by both normalizers in one process, "
               "alternating which goes first; CPU milliseconds per document."), "",
              "| corpus | documents | entities | n-gram ms / document | MiniLM ms / document | MiniLM × n-gram |", "|---|---|---|---|---|---|"]
    for corpus, r in res["per_document"].items():
        lines.append(f"| {corpus} test | {r['documents']} | {r['entities']:,} | {r['ngram_ms_per_document']} | "
                     f"{r['minilm_ms_per_document']} | {r['minilm_ms_per_document'] / r['ngram_ms_per_document']:.2f} |")
    lines += ["", (f"Python {res['python']}, {res['cpus']} CPUs shared with other jobs, run of {res['date']}. The MiniLM's per-document "
                   "cost is the encoding of the mentions that reach step 4 (queries are not memoized) and their cosine "
                   "against every name."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
