#!/usr/bin/env bash
# The full-data peer (issue 14, docs/training.md §8), one corpus at a time so that a session that ends
# mid-way keeps what it finished: per corpus, train on every training chunk, score the whole split into the
# report's row cache while the weights exist (quality.py --peers-only), and keep the card, config.json and
# history.jsonl in benchmarks/campaign/peer_full/<corpus>/ (the row cache's key). A corpus whose card is
# already kept is skipped; commit benchmarks/campaign/peer_full and quality_work after each session.
# Usage, from a worktree at a fixed commit whose .venv links to the main one:
#   OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE bash benchmarks/campaign/peer_full.sh /work/main /work/peer_full
set -euo pipefail
main=${1:?the main checkout (its quality_work and peer_full receive the results)}
weights=${2:-/work/peer_full}
bundle=$main/llmner/bundles/default
# smallest training sets first: they bank rows soonest
for corpus in ncbi_disease bc5cdr s800 linnaeus bc2gm genia jnlpba cmeee; do
  kept=$main/benchmarks/campaign/peer_full/$corpus
  if [[ -f $kept/peer_card.json ]]; then echo "peer_full: $corpus already kept" >&2; continue; fi
  PYTHONPATH=$PWD .venv/bin/python benchmarks/peer_baseline.py --corpus "$corpus" --max-train-sentences 0 \
    --epochs 1 --lr 5e-4 --batch-size 16 --threads 1 --eval-sentences 20 --output "$weights"
  PYTHONPATH=$PWD .venv/bin/python benchmarks/quality.py --bundle "$bundle" --reference-peer-dir "$weights" \
    --peers-only --corpus "$corpus" --sentences 0 --free-corpus none --threads 1 \
    --work-dir "$main/benchmarks/campaign/quality_work"
  mkdir -p "$kept"
  cp "$weights/$corpus"/{peer_card.json,config.json,history.jsonl} "$kept/"
done
