"""Selector throughput: candidates/s for PyTorch eager fp32, ORT fp32 (fused) and ORT int8, same inputs.

Usage: python benchmarks/selector.py [--selector DIR] [--candidates 256] [--batch 32] [--threads 2] [--repeats 3]

Without --selector it benchmarks a fresh selector over the packaged MiniLM-L6 (the head is random,
which does not change the cost). Prints a table with ratios measured side by side in one run and
the int8-vs-fp32 decision agreement on the benchmark candidates. Target on CPU: ORT int8 >= 2x eager.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

SENTENCES = [
    ("Germline mutations in the BRCA1 gene predispose women to early-onset breast cancer and ovarian cancer, "
     "and the lifetime risk among carriers in families with hereditary breast-ovarian cancer syndrome is high."),
    ("The adenomatous polyposis coli (APC) tumour suppressor protein controls the Wnt signalling pathway, and "
     "truncating mutations of APC are found in most sporadic colorectal tumours."),
    ("Myotonic dystrophy (DM) is the most common inherited neuromuscular disease in adults, with a global "
     "incidence of 1 in 8000, and is caused by an expanded CTG repeat."),
    ("We describe two unrelated patients with Wiskott-Aldrich syndrome who presented with eczema, "
     "thrombocytopenia and recurrent infections, and whose cells lacked the WASP protein."),
    ("Treatment with cisplatin induced acute renal failure in rats, which was prevented by co-administration "
     "of the antioxidant N-acetylcysteine at a dose of 150 mg/kg."),
    ("Ataxia-telangiectasia (A-T) is a recessive multi-system disorder caused by mutations in the ATM gene at "
     "11q22-q23, characterised by cerebellar degeneration and immunodeficiency."),
]
TYPES = [("Disease", "a disease, disorder, syndrome, or abnormal condition"),
         ("Gene", "a gene or gene product (protein, RNA) named by symbol or full name"),
         ("Chemical", "a chemical compound, drug, or element")]


def make_candidates(n: int, seed: int = 0):
    from llmner.doc import Candidate

    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", text)]
        a = rng.randrange(len(words))
        b = min(len(words) - 1, a + rng.randrange(3))
        name, definition = TYPES[i % len(TYPES)]
        out.append(Candidate(text, words[a][0], words[b][1], name, definition))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--selector", help="a saved selector directory (default: fresh head over packaged MiniLM)")
    ap.add_argument("--candidates", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from llmner.modeling.selector import (
        ONNX_OUTPUT_NAMES,
        SelectorConfig,
        SelectorModel,
    )
    from llmner.modeling.selector_export import (
        batched_feeds,
        build_variants,
        candidate_probabilities,
        check_agreement,
        check_parity,
        graph_inputs,
    )

    torch.set_num_threads(args.threads)
    model = SelectorModel.from_pretrained(args.selector) if args.selector else SelectorModel.from_encoder(SelectorConfig())
    model.eval()
    cands = make_candidates(args.candidates)
    feeds = batched_feeds(model, cands, args.batch)   # featurization excluded from all timings
    tmp = tempfile.mkdtemp(prefix="llmner-bench-selector-")
    paths = build_variants(model, tmp, ("fp32", "int8"))

    def run_torch():
        with torch.inference_mode():
            return np.concatenate([candidate_probabilities(f, model(**{k: torch.from_numpy(v) for k, v in graph_inputs(f).items()})[1].numpy())
                                   for f in feeds])

    def make_ort(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda: np.concatenate([candidate_probabilities(f, sess.run([ONNX_OUTPUT_NAMES[1]], graph_inputs(f))[0]) for f in feeds])

    runners = {"PyTorch eager fp32": run_torch, "ORT fp32 (fused)": make_ort(paths["fp32"]),
               "ORT int8 (per-channel)": make_ort(paths["int8"])}
    outputs, times = {}, {name: [] for name in runners}
    for name, fn in runners.items():
        outputs[name] = fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in runners.items():  # interleaved so machine noise hits all alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["PyTorch eager fp32"])
    seq = statistics.mean(f["input_ids"].shape[1] for f in feeds)
    print(f"selector benchmark: {len(cands)} candidates, batch {args.batch}, mean padded length {seq:.0f} tokens, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"{'backend':<26}{'seconds':>10}{'cand/s':>10}{'vs eager':>10}")
    for name in runners:
        med = statistics.median(times[name])
        print(f"{name:<26}{med:>10.3f}{len(cands) / med:>10.1f}{base / med:>9.2f}x")
    parity = check_parity(model, paths["fp32"], cands[:64], args.batch)
    print(f"fp32 parity vs PyTorch: max |dp| = {parity.max_abs_diff_probability:.2e} (ok={parity.ok})")
    agree = check_agreement(outputs["ORT fp32 (fused)"], outputs["ORT int8 (per-channel)"], model.threshold)
    print(f"int8 vs fp32 decisions at threshold {agree.threshold:.2f}: {agree.agreement:.2%} agree "
          f"(max |dp| {agree.max_abs_diff:.3f}; ok={agree.ok})")


if __name__ == "__main__":
    main()
