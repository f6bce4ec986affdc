#!/usr/bin/env bash
# Every GPU measurement of benchmarks/README.md in one go, for a short lease on a GPU machine whose python3
# already has torch, torchvision, timm and pandas (wheels for what it lacks in .whl/, the data in $DATA).
# Each step has its own time limit and log under $OUT, so one failing step costs only itself. The whole
# default list takes about 9 minutes on an H200 (the grid step alone about 5: the ViT at 8 epochs dominates).
#   OUT=/tmp/gpu DATA=path/to/alzheimer_mri bash benchmarks/gpu_session.sh [steps...]
set -u
OUT=${OUT:-/tmp/mriaug-gpu}
DATA=${DATA:-phantom}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export MRIAUG_CACHE=/tmp/mriaug-cache
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
python3 -c "import datasets" 2>/dev/null || { echo "no datasets package: phantom data instead of $DATA"; DATA=phantom; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  local rc=$?
  tail -n 25 "$OUT/$name.txt"
  [ $rc -ne 0 ] && { echo "--- $name failed (rc $rc):"; tail -n 15 "$OUT/$name.err"; }
  echo "--- $name: $((SECONDS - t0)) s"
}

STEPS=${*:-"checks grid aug train settings startup"}
for s in $STEPS; do
  case $s in
    checks) step checks 60 python3 benchmarks/gpu_checks.py --data "$DATA" ;;
    aug) step aug 30 python3 benchmarks/augment_speed.py --data "$DATA" --repeats 9 ;;
    grid) step grid 330 python3 benchmarks/grid_hours.py --data "$DATA" --cnn-seeds 8 --seeds 2 --pack-seeds 8 \
            --json "$OUT/grid.json" ;;
    grid3) step grid3 220 python3 benchmarks/grid_hours.py --data "$DATA" --epochs 3 --cnn-seeds 8 --seeds 2 \
             --pack-seeds 8 --json "$OUT/grid3.json" ;;
    det) MRIAUG_DETERMINISTIC=0 step det 60 python3 benchmarks/grid_hours.py --data "$DATA" --models resnet18,vit \
           --epochs 3 --seeds 1 --pack-seeds 0 ;;
    compile) MRIAUG_COMPILE=1 step compile 90 python3 benchmarks/grid_hours.py --data "$DATA" --models cnn,resnet18 \
               --epochs 3 --seeds 2 --pack-seeds 0 ;;
    vitcompile) MRIAUG_COMPILE=1 step vitcompile 150 python3 benchmarks/grid_hours.py --data "$DATA" --models vit \
                  --epochs 3 --seeds 1 --pack-seeds 0 ;;
    train) step train 90 python3 benchmarks/train_speed.py --data "$DATA" --models cnn,resnet18,vit ;;
    settings)
      step cl_off 30 python3 benchmarks/train_speed.py --data "$DATA" --models cnn,resnet18 --skip-reference --images 5120
      MRIAUG_CHANNELS_LAST=1 step cl_on 30 python3 benchmarks/train_speed.py --data "$DATA" --models cnn,resnet18 \
        --skip-reference --images 5120
      MRIAUG_COMPILE=1 step compile1 45 python3 benchmarks/train_speed.py --data "$DATA" --models cnn --skip-reference \
        --images 5120 ;;
    startup) step startup 50 python3 benchmarks/task_startup.py --data "$DATA" --repeats 1 ;;
  esac
done
# Few files come back from a lease: every log and JSON in one archive beside the session's own log.
(cd "$OUT" && tar czf /tmp/mriaug-logs.tgz --exclude=session.log --exclude=logs.tgz . \
  && find . -type f ! -name session.log -delete && mv /tmp/mriaug-logs.tgz logs.tgz)
