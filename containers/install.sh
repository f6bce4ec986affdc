#!/bin/sh
# The image's install steps (the recipe's %post runs exactly this; `make container-check` runs it in a clean
# Debian root filesystem): Debian's Python 3.11, a venv in /opt/venv with the runtime lock, mriaug itself.
#   sh containers/install.sh SRC      (SRC: the copy of the repository in the image, default /opt/mriaug)
set -eu
SRC="${1:-/opt/mriaug}"
LOCK="$SRC/requirements/runtime.txt"
# The image's identity: a digest of everything %files brought in (the recipe, the lock, the code), taken before
# anything is built from it. Where Apptainer builds, it becomes the label mriaug.image.id, which every result
# records (env.container); `make container-check` (a chroot) has no labels and only prints it.
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
id="sha256:$(cd "$SRC" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-64)"
echo "install: image id $id"
if [ -n "${APPTAINER_LABELS:-}" ]; then echo "mriaug.image.id $id" >> "$APPTAINER_LABELS"; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv ca-certificates
rm -rf /var/lib/apt/lists/*
# The lock is resolved for Python 3.11 (Debian 12's); another Python would not match its pins.
python3 -c 'import sys; v = sys.version_info[:2]; assert v == (3, 11), f"the lock is for Python 3.11, not {v}"'
python3 -m venv /opt/venv
# Exactly the runtime lock, every file checked against its hash; no test or lint tools in the image.
/opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r "$LOCK"
# mriaug itself, not editable: the image keeps the code it was built from. Its build backend (setuptools)
# is in the lock, so nothing unpinned is fetched for the build.
/opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation "$SRC"
rm -rf "$SRC/build" "$SRC"/*.egg-info
# Fails when any installed version differs from the lock; stamps the lock's hash (results record it).
/opt/venv/bin/python -m mriaug.envlock record "$LOCK"
