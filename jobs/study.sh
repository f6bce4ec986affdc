#!/usr/bin/env bash
# The study, start to end, resumable (every step skips what is done): `make study` (GRID=jobs/study-cpu.toml).
#   1. a diffusion model per split, trained on that split's training part only (no validation or test scan);
#   2. pools per split: diffusion variations and the copy and transform controls, from the same sources, for
#      every class (mixing draws Mild and Moderate from them, pretraining every class);
#   3. every run of the grids (the pretraining arm's first: it keeps the weights of scenario 1 and its own runs);
#   4. the tables (collect), Grad-CAM of kept runs (cam), the pool reports and the report, into docs/study/.
# DIFFUSION_* set the model's size; the defaults are the CPU configuration measured in benchmarks/README.md.
set -euo pipefail
GRID=${GRID:-jobs/study-cpu.toml}
OUT=${OUT:-docs/study}
MRIAUG=${MRIAUG:-.venv/bin/mriaug}
NAME=$(basename "$GRID" .toml)
MODEL_DIR=${MODEL_DIR:-models/$NAME-diffusion}
CLASSES=${CLASSES:-all}                      # one class-conditional model and pools of every class (issue 37)
SOURCES=${SOURCES:-320}                      # sources per class and split (pretraining 1,200 images takes about
PER_SOURCE=${PER_SOURCE:-2}                  # 600 Non_Demented; the 50% arm about 340 Mild)
CAM_SEEDS=${CAM_SEEDS:-0,5,10,15}            # Grad-CAM: these seeds (all split 0) of scenario 1 and pre-diffusion
STOP_AFTER=${STOP_AFTER:-}                   # "pools": stop once the generators and pools are made
: "${DIFFUSION_STEPS:=800}" "${DIFFUSION_BATCH:=16}" "${DIFFUSION_CHANNELS:=16,32,64}" "${DIFFUSION_RES:=64}"
: "${DIFFUSION_ATTENTION:=--no-attention}" "${SAMPLE_STEPS:=20}" "${STRENGTH:=0.5}" "${PRECISION:=fp32}"

stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
stamp "diffusion models ($DIFFUSION_STEPS steps x $DIFFUSION_BATCH, channels $DIFFUSION_CHANNELS, $DIFFUSION_RES px)"
"$MRIAUG" synth train-diffusion --grid "$GRID" --out "$MODEL_DIR" --steps "$DIFFUSION_STEPS" \
  --batch-size "$DIFFUSION_BATCH" --channels "$DIFFUSION_CHANNELS" --resolution "$DIFFUSION_RES" \
  --layers-per-block 1 $DIFFUSION_ATTENTION --classes "$CLASSES" --precision "$PRECISION" --checkpoint-every 100
stamp "pools"
"$MRIAUG" synth --grid "$GRID" --generator diffusion -s checkpoint="$MODEL_DIR" -s strength="$STRENGTH" \
  -s steps="$SAMPLE_STEPS" --classes "$CLASSES" --max-sources "$SOURCES" --per-source "$PER_SOURCE"
"$MRIAUG" synth --grid "$GRID" --generator copy --classes "$CLASSES" --max-sources "$SOURCES" --per-source "$PER_SOURCE"
"$MRIAUG" synth --grid "$GRID" --generator transform --classes "$CLASSES" --max-sources "$SOURCES" \
  --per-source "$PER_SOURCE"
[ "$STOP_AFTER" = pools ] && { stamp "stopped after the pools (STOP_AFTER=pools)"; exit 0; }
stamp "runs"
# the arms in files beside the grid (same results folder and table): pretraining first, as it keeps weights
EXTRA=${EXTRA:-$(ls "${GRID%.toml}-pretrain.toml" "${GRID%.toml}-50.toml" 2>/dev/null || true)}
for g in $EXTRA; do "$MRIAUG" grid "$g"; done
"$MRIAUG" grid "$GRID"
stamp "tables, pool reports and report"
mkdir -p "$OUT"
cp "$GRID" "$OUT/grid.toml"
for g in $EXTRA; do cp "$g" "$OUT/$(basename "$g")"; done
# runs.csv, stats.csv, tables, box plot: every run in the study's results folder (its grids share it)
"$MRIAUG" collect "results/$NAME" --out "$OUT"
for pool in diffusion copy transform; do                                  # pool quality per split, pictures of one
  for d in "pools/$NAME-$pool"/split-*; do
    mkdir -p "$OUT/pools/$pool/$(basename "$d")"
    cp "$d/report.json" "$OUT/pools/$pool/$(basename "$d")/"
  done
  cp "pools/$NAME-$pool/split-0/report.png" "$OUT/pools/$pool/split-0/"
done
CAMS=()                                                # Grad-CAM of the runs that kept their weights
for cell in 1 pre-diffusion; do
  mapfile -t kept < <("${PYTHON:-.venv/bin/python}" - "$OUT/runs.csv" "$cell" "$CAM_SEEDS" "results/$NAME" <<'PY'
import sys
from pathlib import Path
import pandas as pd
runs = pd.read_csv(sys.argv[1], dtype={"scenario": str}, keep_default_na=False)
seeds = {int(s) for s in sys.argv[3].split(",")}
rows = runs[(runs["scenario"] == sys.argv[2]) & (runs["pool"] == "") & runs["seed"].isin(seeds)]
for f in rows.sort_values("seed")["file"]:
    print(Path(sys.argv[4]) / f)
PY
)
  [ "${#kept[@]}" -gt 0 ] || continue
  dest="$OUT/cam/scenario-$cell"
  if [ -f "$dest/cam.json" ] && [ -z "$(find "${kept[@]}" -newer "$dest/cam.json")" ]; then
    stamp "Grad-CAM of $cell: done ($dest/cam.json is newer than its runs)"
  else
    "$MRIAUG" cam "${kept[@]}" --pool "pools/$NAME-diffusion/split-0" --out "$dest" --classes Mild_Demented,Non_Demented
  fi
  CAMS+=(--cam "$dest")
done
"$MRIAUG" report "results/$NAME" --out "$OUT/report" "${CAMS[@]}"
"${PYTHON:-.venv/bin/python}" docs/study/answer.py > "$OUT/answer.md"      # the README's numbers: paste between its answer markers
stamp "done: $OUT"
