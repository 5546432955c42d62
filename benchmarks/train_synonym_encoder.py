"""Train the synonym encoder (SapBERT-style) of the normalizer's neighbour step, from the training
splits only: pairs of names that share an identifier in the train-only dictionaries of
benchmarks/normalization.py (gold mentions of NCBI-Disease and BC5CDR **train** + the vocabularies).
No dev or test mention is ever read, so the encoder can be scored on dev and, unchanged, on test.

    python benchmarks/train_synonym_encoder.py --out runs/synonym-encoder --steps 400 [--max-seconds 1200]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from normalization import CORPORA, TYPES, dictionaries, docs_of

from llmner.training.synonym_encoder import (
    by_head,
    sample_pairs,
    synonym_groups,
    train_synonym_encoder,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", default="packaged:minilm")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--seed", type=int, default=0, help="of the pair sampling (a second run from a trained encoder: another seed)")
    ap.add_argument("--hard", action="store_true", help="batches of concepts whose names share a head word (hard negatives)")
    ap.add_argument("--dry-run", action="store_true", help="only count the groups and pairs")
    args = ap.parse_args()

    dicts = dictionaries(("train",))
    pairs = []
    counts = {}
    for i, t in enumerate(TYPES):
        mentions = [e.text for c in CORPORA for d in docs_of(c, "train") for e in d.entities if e.type == t and e.normalized_id]
        groups = synonym_groups(dicts[t], priority=mentions)
        counts[t] = {"identifiers": len(groups), "with_mentions": sum(1 for _, p in groups.values() if p),
                     "names": sum(len(n) for n, _ in groups.values())}
        # half the pairs per type; a batch mixes the two types (distinct identifiers either way)
        pairs += sample_pairs(groups, args.steps * args.batch_size // len(TYPES), seed=1000 * args.seed + i)
    import random
    random.Random(args.seed).shuffle(pairs)
    if args.hard:
        pairs = by_head(pairs, args.batch_size, seed=args.seed)
    print(json.dumps(counts), len(pairs), "pairs", flush=True)
    if args.dry_run:
        for p in pairs[:20]:
            print(p)
        return
    report = train_synonym_encoder(pairs, args.base, args.out, batch_size=args.batch_size, learning_rate=args.lr,
                                   max_seconds=args.max_seconds, dtype=args.dtype, log_every=20,
                                   sources=[f"{c}/train" for c in CORPORA] + ["vocabularies of benchmarks/normalization.py"]
                                   + (["batches: concepts sharing a head word"] if args.hard else ["batches: random"]))
    print(json.dumps(report.to_dict(), indent=2))


if __name__ == "__main__":
    main()
