#!/usr/bin/env bash
# The test command: set up .venv, run the default suite (slow tests with the real packaged models
# are deselected; run them with `scripts/test.sh -m slow`). pytest exit code 5 (no tests collected)
# is a failure here, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh || exit 1
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
