#!/usr/bin/env bash
# One campaign segment on a lent GPU (docs/training.md, "A GPU segment"): the last device call, in the
# repository root there, after benchmarks/campaign/gpu_kit.py packed .carry/ here and the calls it
# printed carried it over. Installs the carried wheels, joins the base model's parts, unpacks the
# corpora, trains for $BUDGET wall-clock seconds and writes the portable adapter, the log and the
# history under $OUT, which the device tool brings back.
#
#   bash benchmarks/campaign/gpu_segment.sh --batch-size 32 --steps 2000 --seed 16
#
# Extra arguments go to `llmner train generator`. On a CPU (the test) set DEVICE=cpu, BASE to a model
# directory, INIT_FROM= (empty) for a model the portable adapter does not fit, and PY to this venv.
set -euo pipefail

OUT=${OUT:?OUT must name the folder that comes back}
CARRY=${CARRY:-.carry}
BUDGET=${BUDGET:-420}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-benchmarks/campaign/gen-distr/config.yaml}
INIT_FROM=${INIT_FROM-benchmarks/campaign/gen-distr/portable}
BASE=${BASE:-}
PY=${PY:-python3}
WORK=${WORK:-/tmp/llmner-gpu}
mkdir -p "$WORK" "$OUT"
started=$(date +%s)

if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$CARRY"/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "$BASE" ]; then
  read -r want name < "$CARRY/gguf.sha256"
  parts=$(ls "$CARRY"/gguf.part-* | sort -V)
  cat $parts > "$WORK/$name"
  got=$(sha256sum "$WORK/$name" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "base model parts do not join into $name (sha256 $got, want $want): a call's carry is missing" >&2; exit 3; }
  BASE="$WORK/$name"
fi

if [ -f "$CARRY/data.tar.xz" ]; then
  mkdir -p "$WORK/data"
  tar -xJf "$CARRY/data.tar.xz" -C "$WORK/data"
  export LLMNER_DATA_DIR="$WORK/data"
fi

# Fail in seconds, not minutes, when the image and the carried packages do not fit together.
"$PY" -c "import torch, transformers, peft, llmner.training.generator as g; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee "$OUT/versions.txt"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/versions.txt"; fi
echo "setup took $(( $(date +%s) - started )) s" | tee -a "$OUT/versions.txt"

set +e
PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE "$PY" -m llmner.cli.main train generator --config "$CONFIG" \
  ${INIT_FROM:+--init-from "$INIT_FROM"} --base "$BASE" --device "$DEVICE" --output "$WORK/run" \
  --time-budget "$BUDGET" --no-progress "$@" > "$OUT/train.log" 2>&1
status=$?
set -e
tail -n 5 "$OUT/train.log"
cp "$WORK/run/history.jsonl" "$OUT/history.jsonl" 2>/dev/null || true
if compgen -G "$WORK/run/checkpoints/step-*" >/dev/null; then
  # Stopped by the budget: the newest checkpoint's adapter comes back (a few MiB; the optimizer state
  # stays there), to resume from or start the next stage with.
  "$PY" -m llmner.cli.main train export-checkpoint "$WORK/run" "$OUT/portable"
elif [ -f "$WORK/run/adapter/adapter_model.safetensors" ]; then
  # The schedule finished: the generator directory comes back as one file (the tool brings back 8).
  tar -cf "$OUT/generator.tar" -C "$WORK" run
fi
echo "segment: exit $status, $(( $(date +%s) - started )) s in all"
exit $status
