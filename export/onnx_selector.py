"""Build and check the ONNX variants of a selector.

    python -m export.onnx_selector SELECTOR_DIR OUT_DIR [--variants fp32,int8,fp16] [--corpus ncbi_disease --split dev]

This is the command-line layer; the export code is ``llmner.modeling.selector_export`` (the library
builds the same files into its cache on first use, see ``llmner.runtime.onnx_selector``). It prints
the fp32 parity against PyTorch (max abs difference, must be <= 1e-4) and, for int8, the share of
candidates whose accept/reject decision agrees with fp32 (target >= 99 %), measured on dev
candidates of a corpus (gold mentions and their constructed negatives) or on built-in samples.
``SELECTOR_DIR`` may also be a model bundle (its ``selector/`` sub-directory is used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def dev_candidates_for(corpus: str, split: str, limit: int, schema_name: str | None):
    from llmner.data_processing.corpora import load_corpus
    from llmner.schema import get_schema
    from llmner.training.negatives import NegativeConfig
    from llmner.training.selector import dev_candidates

    docs = load_corpus(corpus, split)[:limit]
    schema = get_schema(schema_name or corpus)
    cands, _, _ = dev_candidates(docs, schema, NegativeConfig())
    return cands


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.onnx_selector", description=__doc__.splitlines()[0])
    ap.add_argument("selector", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", default="fp32,int8,fp16")
    ap.add_argument("--corpus", help="corpus for the int8 agreement check (e.g. ncbi_disease)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--schema", help="schema name (default: the corpus name)")
    ap.add_argument("--limit", type=int, default=50, help="documents of the corpus split to use")
    args = ap.parse_args(argv)

    from llmner.errors import LlmnerError
    from llmner.modeling.selector import SelectorModel
    from llmner.modeling.selector_export import (
        _SAMPLE,
        batched_feeds,
        build_variants,
        check_agreement,
        check_parity,
        onnx_scores,
    )

    try:
        src = args.selector / "selector" if (args.selector / "bundle.json").is_file() else args.selector
        model = SelectorModel.from_pretrained(src)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        wanted = sorted(set(variants) | {"fp32"})
        paths = build_variants(model, args.out, wanted)
        for name, path in paths.items():
            print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
        cands = dev_candidates_for(args.corpus, args.split, args.limit, args.schema) if args.corpus else list(_SAMPLE)
        parity = check_parity(model, paths["fp32"], cands)
        print(f"fp32 parity vs PyTorch on {parity.candidates} candidates: max |dp| {parity.max_abs_diff_probability:.2e}, "
              f"max |dlogit| {parity.max_abs_diff_logit:.2e} -> {'OK' if parity.ok else 'FAILED'} (<= 1e-4)")
        ok = parity.ok
        if "int8" in paths:
            feeds = batched_feeds(model, cands)
            p32 = onnx_scores(paths["fp32"], feeds)
            p8 = onnx_scores(paths["int8"], feeds)
            agree = check_agreement(p32, p8, model.threshold)
            print(f"int8 vs fp32 on {agree.candidates} candidates at threshold {agree.threshold:.3f}: "
                  f"{agree.agreement:.2%} decisions agree, max |dp| {agree.max_abs_diff:.4f} -> {'OK' if agree.ok else 'BELOW 99%'}")
            ok = ok and agree.ok
        return 0 if ok else 1
    except LlmnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
