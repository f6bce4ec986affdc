"""tests/conftest.py's CI rule for tests that need the real dataset (`require_real_data`): missing data fails
under CI, skips elsewhere. (Until issue 23 in test_no_silent_skips.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("ci", "code", "text"), [("true", 1, "CI is set but the real dataset is not at"),
                                                  ("", 0, "skipped")])
def test_missing_data_fails_under_ci_and_skips_elsewhere(tmp_path: Path, ci: str, code: int, text: str) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CI": ci, "MRIAUG_REAL_DATA": str(tmp_path / "absent"), "MRIAUG_CACHE": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "thesis_table",
                        str(root / "tests" / "test_cli_data.py")], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == code, r.stdout + r.stderr
    assert text in r.stdout
