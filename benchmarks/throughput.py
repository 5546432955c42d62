"""Documents/s of the shipped pipeline under pipeline settings side by side, and whether they change the output.

    .venv/bin/python benchmarks/throughput.py --variant unmerged:merge_adapter=false --variant merged: \\
        --sentences 20 --corpus ncbi_disease --corpus jnlpba --corpus cmeee --rounds 2 --threads 1

A variant is ``NAME:FIELD=VALUE,...`` over ``PipelineConfig`` fields (values parsed as YAML); the first
is the reference. Every variant is built once from the same bundle and tags the same leading dev
documents of each corpus; variants alternate within each round (the machine is shared and noisy), and
the table shows the median process CPU time and wall time per round, documents/s, the ratio to the
reference, and how many documents got exactly the reference's entities (start, end, type).
Writes ``--out`` (markdown) when given.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="model bundle (default: the installed default bundle)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:FIELD=VALUE,... (repeatable; first = reference)")
    parser.add_argument("--corpus", action="append", default=None, help="repeatable (default: ncbi_disease, jnlpba, cmeee)")
    parser.add_argument("--sentences", type=int, default=20, help="leading dev sentences per corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from llmner.data_processing.corpora import load_corpus
    from llmner.evaluation.reports import named_settings
    from llmner.evaluation.subsets import leading_documents
    from llmner.modeling.precision import cpu_has_native_bf16
    from llmner.pipeline import Pipeline, PipelineConfig

    variants = [named_settings(v) for v in args.variant]
    pipes = {name: Pipeline.from_bundle(args.bundle, PipelineConfig(**fields)) for name, fields in variants}
    corpora = args.corpus or ["ncbi_disease", "jnlpba", "cmeee"]
    docs = {c: leading_documents(load_corpus(c, "dev"), args.sentences)[0] for c in corpora}
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    outputs: dict[tuple[str, str], list] = {}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for corpus in corpora:
            for name, _ in order:
                t_cpu, t_wall = time.process_time(), time.perf_counter()
                records = pipes[name].process(docs[corpus])
                cpu.setdefault((name, corpus), []).append(time.process_time() - t_cpu)
                wall.setdefault((name, corpus), []).append(time.perf_counter() - t_wall)
                outputs[name, corpus] = [[(e.start, e.end, e.type) for e in d.entities] for d in records]
                print(f"round {r} {corpus} {name}: {cpu[name, corpus][-1]:.1f} CPU s", file=sys.stderr, flush=True)

    reference = variants[0][0]
    native = "yes" if cpu_has_native_bf16() else "no (generator_precision=auto runs fp32)"
    lines = [f"# Throughput: {', '.join(name for name, _ in variants)}", "",
             f"`python benchmarks/throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             (f"{platform.machine()} (native bf16 matrix multiplies: {native}), torch threads {args.threads}, "
              f"{args.rounds} rounds (variants alternate), "
              f"leading dev documents with {args.sentences}+ sentences per corpus; medians per round. "
              f"Ratio = the reference's ({reference}) CPU time / the variant's."), "",
             "| corpus | docs | variant | settings | CPU s | wall s | docs/s (wall) | speed-up (CPU) | same entities as reference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for corpus in corpora:
        ref_cpu = statistics.median(cpu[reference, corpus])
        for name, fields in variants:
            c, w = statistics.median(cpu[name, corpus]), statistics.median(wall[name, corpus])
            same = sum(a == b for a, b in zip(outputs[name, corpus], outputs[reference, corpus]))
            settings = ", ".join(f"{k}={v}" for k, v in fields.items()) or "(defaults)"
            lines.append(f"| {corpus} | {len(docs[corpus])} | {name} | {settings} | {c:.1f} | {w:.1f} | "
                         f"{len(docs[corpus]) / w:.2f} | {ref_cpu / c:.2f}x | {same}/{len(docs[corpus])} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
