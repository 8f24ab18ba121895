#!/usr/bin/env bash
# Run tools/benchmark/gpu_check.py with unbuffered output and a hard stop
# at 8 minutes: the script keeps to its own --budget (420 s) and kills a
# part that overruns, so the timeout only guards against a hang outside a
# part (e.g. a stuck driver call while importing).
#
#   tools/benchmark/gpu_check.sh --device cuda
#   tools/benchmark/gpu_check.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
exec timeout --kill-after=10 480 "${PYTHON:-python}" \
    tools/benchmark/gpu_check.py "$@"
