#!/usr/bin/env bash
# Prints the folder of the shared datasets: $DATA_ROOT when set, else
# ../shared/datasets beside this checkout, else ../shared/datasets beside the
# local checkout this one was cloned from (a fresh clone in a scratch folder).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${DATA_ROOT:-}" ]]; then
  echo "$DATA_ROOT"
  exit 0
fi
if [[ -d ../shared/datasets ]]; then
  echo "$(cd ../shared/datasets && pwd)"
  exit 0
fi
origin=$(git remote get-url origin 2>/dev/null || true)
if [[ -n "$origin" && -d "$origin/../shared/datasets" ]]; then
  echo "$(cd "$origin/../shared/datasets" && pwd)"
  exit 0
fi
# Not found: callers report the missing file with this path in it.
echo "$PWD/../shared/datasets"
