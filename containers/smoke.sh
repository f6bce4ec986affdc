#!/bin/sh
# The image's own smoke check (the recipe's %test; `make container-check` runs it after the install):
# imports, the CLI, the environment equal to the lock and free of dev tools, the GPU where the host has one,
# and a one-epoch run on the built-in phantom dataset.
set -eu
SRC="${1:-/opt/mriaug}"
PY=/opt/venv/bin/python
$PY -c "import mriaug, mriaug.slurm, mriaug.engine.train, mriaug.generators.synth, submitit, timm, torch, torchvision, datasets, cv2
print('mriaug', mriaug.__version__, 'torch', torch.__version__, 'CUDA', torch.version.cuda)"
/opt/venv/bin/mriaug --help > /dev/null
$PY -m mriaug.envlock check "$SRC/requirements/runtime.txt"
for tool in pytest mypy ruff mutmut pip-compile mkdocs; do
    if [ -e "/opt/venv/bin/$tool" ]; then echo "smoke: dev tool $tool is in the runtime image" >&2; exit 1; fi
done
# With --nv on a GPU node: the image's torch must see the GPUs and ship kernels for their generation.
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
    $PY - <<'PY'
import torch
assert torch.cuda.is_available(), "nvidia-smi sees a GPU but torch.cuda.is_available() is False (driver too old for CUDA " + str(torch.version.cuda) + "?)"
for i in range(torch.cuda.device_count()):
    major, minor = torch.cuda.get_device_capability(i)
    archs = torch.cuda.get_arch_list()
    assert f"sm_{major}{minor}" in archs or any(a.startswith(f"compute_{major}") for a in archs), \
        f"{torch.cuda.get_device_name(i)} is sm_{major}{minor}; this torch has kernels for {archs}"
    print("gpu", i, torch.cuda.get_device_name(i), f"sm_{major}{minor}", "ok")
PY
else
    echo "smoke: no GPU visible (nvidia-smi): the GPU check runs on a GPU node (apptainer test --nv)"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
MRIAUG_CACHE="$work/cache" OMP_NUM_THREADS=1 /opt/venv/bin/mriaug run --model cnn --scenario 1 --aug none \
    --epochs 1 --resolution 32 --data phantom -o n_train=160 -o n_test=80 -o size=32 --device cpu --out "$work/results"
ls "$work"/results/*.json > /dev/null
$PY - "$work/results" "$SRC/requirements/runtime.txt" <<'PY'
import json, sys
from pathlib import Path
from mriaug import envlock
r = json.loads(next(Path(sys.argv[1]).glob("*.json")).read_text())
want = envlock.pins_hash(envlock.read_pins(Path(sys.argv[2]).read_text()))
assert r["env"]["lock"] == want, (r["env"].get("lock"), want)
# The image the run ran in (Apptainer names it in APPTAINER_CONTAINER; a chroot has none): env.container.
import os
image, c = os.environ.get("APPTAINER_CONTAINER"), r["env"].get("container")
assert (c is not None and c["image"] == image) if image else c is None, (c, image)
print("smoke: one-epoch phantom run, test_ce", round(r["metrics"]["test_ce"], 4), "lock", want, "container", c)
PY
echo "smoke: ok"
