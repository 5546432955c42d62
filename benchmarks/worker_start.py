"""What a new worker pays before its first result, with and without the artefacts `llmner warm` prebuilds;
writes benchmarks/results/worker_start.{json,md}.

    python benchmarks/worker_start.py [--bundle llmner/bundles/default]

A pod starts with an empty cache volume. Each start below is a fresh process on one thread that loads
the bundle (``llmner.load``) and tags one English and one Chinese note (the Chinese one goes to the
reader in the shipped bundle), timed in wall and CPU seconds:

1. before: an empty ``LLMNER_CACHE_DIR`` and the normalizer's embeddings already stored (what the
   images baked before ``LLMNER_PREBUILT_DIR``): the base models are dequantized from their GGUF (and
   Gemma's assembled from its chunk packages) and the selector exported to ONNX, into the cache;
2. ``llmner warm`` into a separate directory (what an image build does once), timed on its own;
3. now: another empty ``LLMNER_CACHE_DIR`` with that directory as ``LLMNER_PREBUILT_DIR``.

Both starts must tag the notes identically; the ratio of their times to the first result is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
NOTES = {
    "en": "Patients with BRCA1 mutations developed breast cancer after tamoxifen treatment.",
    "zh": "患者高血压病史5年，长期服用氨氯地平，近日头晕乏力。",
}

START = """
import json, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import llmner
pipe = llmner.load(sys.argv[1])
t1 = time.perf_counter(); c1 = time.process_time()
out = {"load_s": t1 - t0, "load_cpu_s": c1 - c0, "notes": {}}
for language, text in json.loads(sys.argv[2]).items():
    doc = pipe(text)
    out["notes"][language] = [[e.start, e.end, e.type, e.source] for e in doc.entities]
out["first_results_s"] = time.perf_counter() - t0
out["first_results_cpu_s"] = time.process_time() - c0
print(json.dumps(out))
"""


def run(args: list[str], env: dict[str, str]) -> tuple[str, str, float, float]:
    """stdout, stderr, wall seconds and CPU seconds (user + system) of a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, done.stderr, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "llmner" / "bundles" / "default")
    parser.add_argument("--out", type=Path, default=RESULTS / "worker_start.md")
    args = parser.parse_args()

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="worker-start-") as tmp:
        work = Path(tmp)
        base = {k: v for k, v in os.environ.items() if k not in ("LLMNER_PREBUILT_DIR", "LLMNER_CACHE_DIR")}
        base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
                    PYTHONPATH=str(ROOT), LLMNER_NORMALIZER_EMBEDDINGS=str(work / "embeddings"))
        # The embeddings stored first, as the images did before: neither start below encodes names.
        if (args.bundle / "normalizer").is_dir():
            run([python, "-m", "llmner.cli.main", "normalizer", "warm", str(args.bundle)],
                {**base, "LLMNER_CACHE_DIR": str(work / "embeddings-only")})
        notes = json.dumps(NOTES, ensure_ascii=False)

        out, _, wall, cpu = run([python, "-c", START, str(args.bundle), notes], {**base, "LLMNER_CACHE_DIR": str(work / "cache-before")})
        before = {**json.loads(out), "process_s": wall, "process_cpu_s": cpu}
        _, warm_said, warm_wall, warm_cpu = run([python, "-m", "llmner.cli.main", "warm", str(args.bundle)],
                                            {**base, "LLMNER_CACHE_DIR": str(work / "prebuilt")})
        out, _, wall, cpu = run([python, "-c", START, str(args.bundle), notes],
                                {**base, "LLMNER_CACHE_DIR": str(work / "cache-now"), "LLMNER_PREBUILT_DIR": str(work / "prebuilt")})
        now = {**json.loads(out), "process_s": wall, "process_cpu_s": cpu}
        written = sorted(str(p.relative_to(work)) for p in (work / "cache-now").rglob("*") if p.is_file()) \
            if (work / "cache-now").exists() else []
        prebuilt_bytes = sum(p.stat().st_size for p in (work / "prebuilt").rglob("*") if p.is_file())

    identical = before["notes"] == now["notes"]
    result = {
        "bundle": str(args.bundle), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": 1,
        "notes": NOTES, "before": before, "now": now, "identical": identical,
        "warm": {"wall_s": warm_wall, "cpu_s": warm_cpu, "prebuilt_bytes": prebuilt_bytes},
        "cache_written_now": written,
        "ratio_first_results_wall": before["first_results_s"] / now["first_results_s"],
        "ratio_first_results_cpu": before["first_results_cpu_s"] / now["first_results_cpu_s"],
    }
    rows = [("before: empty cache, normalizer embeddings stored", before), ("now: empty cache, `llmner warm`'s directory prebuilt", now)]
    lines = [
        "# A new worker's start: empty cache, with and without the prebuilt directory",
        "",
        (f"`python benchmarks/worker_start.py --bundle {args.bundle}` ({result['machine']}; every process on one thread). "
         "Each start is a fresh process that loads the bundle (`llmner.load`) and tags one English and one Chinese note "
         "(the Chinese one goes to the reader); seconds from before `import llmner` to both notes tagged."),
        "",
        "| start | load s (CPU s) | to first results s (CPU s) | process s |",
        "|---|---|---|---|",
        *[f"| {name} | {r['load_s']:.1f} ({r['load_cpu_s']:.1f}) | {r['first_results_s']:.1f} ({r['first_results_cpu_s']:.1f}) | {r['process_s']:.1f} |"
          for name, r in rows],
        "",
        (f"To first results: **{result['ratio_first_results_wall']:.1f}×** faster in wall time, "
         f"{result['ratio_first_results_cpu']:.1f}× less CPU. Same entities from both starts: {'yes' if identical else 'NO'}."),
        (f"`llmner warm` itself (once, at image build): {warm_wall:.1f} s ({warm_cpu:.1f} CPU s), "
         f"{prebuilt_bytes / 1e9:.2f} GB written into the prebuilt directory:"),
        "",
        *[f"    {line}" for line in warm_said.splitlines() if " -> " in line],   # its report, not the conversion bars
        "",
        f"Files the second start wrote into its cache: {len(written)}{' (' + ', '.join(written[:5]) + ')' if written else ''}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
