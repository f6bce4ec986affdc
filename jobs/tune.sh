#!/usr/bin/env bash
# The classifier search of docs/study/tuning.md (issue 29), resumable: every configuration in jobs/study-tune/
# (scenario 1, 3 seeds on each of the 5 subject splits), then docs/study/tuning.csv from the runs' VALIDATION
# numbers only. The grid command also prints its test tables: they go to a log nobody reads for the choice
# (results/study-tune/LOG), and tuning.py reads no test key of a result.
set -euo pipefail
MRIAUG=${MRIAUG:-.venv/bin/mriaug}
OUT=${OUT:-docs/study}
CONFIGS=${CONFIGS:-$(ls jobs/study-tune/*.toml)}
mkdir -p results/study-tune
for grid in $CONFIGS; do
  echo "[$(date -u +%H:%M:%S)] $grid"
  "$MRIAUG" grid "$grid" > "results/study-tune/$(basename "$grid" .toml).log" 2>&1
done
"${PYTHON:-.venv/bin/python}" docs/study/tuning.py jobs/study-tune results/study-tune "$OUT/tuning.csv"
echo "[$(date -u +%H:%M:%S)] done: $OUT/tuning.csv"
