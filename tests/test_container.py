"""`make container`'s recipe (containers/): the image installs the hashed runtime lock as CI installs the dev
lock. A check of the repository's files, not of a module. (Until issue 23 in test_slurm.py.)"""

from __future__ import annotations

import re

from tests.slurm_helpers import ROOT


def test_container_recipe_installs_like_ci() -> None:
    recipe = (ROOT / "containers" / "mriaug.def").read_text()
    install = (ROOT / "containers" / "install.sh").read_text()
    makefile = (ROOT / "Makefile").read_text()
    # `make venv` (and so CI) installs the hashed lock, then mriaug without resolving anything
    assert "$(BIN)/pip install -q --require-hashes --no-deps $(TORCH_INDEX) -r $(LOCK)" in makefile
    assert "$(BIN)/pip install -q --no-deps --no-build-isolation -e ." in makefile
    # the image runs containers/install.sh: the runtime part of the same lock (no dev tools), hashes required
    assert re.search(r"^\s*sh /opt/mriaug/containers/install.sh /opt/mriaug$", recipe, re.MULTILINE)
    assert 'LOCK="$SRC/requirements/runtime.txt"' in install
    assert '/opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r "$LOCK"' in install
    assert re.search(r"^From: debian:bookworm-slim$", recipe, re.MULTILINE)  # Python 3.11, the lock's
    assert "HF_HUB_OFFLINE=1" in recipe
    assert "apptainer build containers/mriaug.sif containers/mriaug.def" in makefile
