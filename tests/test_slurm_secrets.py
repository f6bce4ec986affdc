"""Against the real single-node Slurm: a secret in a profile's `pass_env` reaches the job through sbatch's
exported environment and is written to no file under the results folder (issue 8, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import grid as grid_mod
from mriaug import results
from mriaug.cli import app
from tests.slurm_helpers import ROOT, diagnostics, ensure_cluster, write_grid

pytestmark = pytest.mark.slurm
runner = CliRunner()
SECRET = "sk-proj-ThisIsASecretThatMustNeverBeOnDisk-4242"


@pytest.mark.timeout(300)
def test_pass_env_secret_reaches_the_job_but_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_cluster()
    monkeypatch.setenv("MRIAUG_TEST_SECRET", SECRET)
    profile = tmp_path / "secret.toml"
    # The job proves it saw the variable (by its length, never its value) in its log.
    profile.write_text((ROOT / "slurm" / "local.toml").read_text().replace(
        'pass_env = ["MRIAUG_CACHE"', 'setup = [\'echo "secret length ${#MRIAUG_TEST_SECRET}" >&2\']\n'
        'pass_env = ["MRIAUG_TEST_SECRET", "MRIAUG_CACHE"'))
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "secret.toml.grid", res, n_train=80, name="secret")
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile)])
    assert out.exit_code == 0, out.output
    st = runner.invoke(app, ["status", str(grid), "--wait", "--interval", "1", "--timeout", "200"])
    assert st.exit_code == 0, f"{st.output}\n{diagnostics(res)}"
    assert results.done_ids(res) == {r.run_id for r in grid_mod.load(grid).runs}
    logs = "".join(p.read_text(errors="replace") for p in (res / ".slurm" / "logs").glob("*_log.err"))
    assert f"secret length {len(SECRET)}" in logs, diagnostics(res)
    files = [f for f in res.rglob("*") if f.is_file()]
    assert any(f.name.endswith("_submission.sh") for f in files)
    leaked = [str(f) for f in files if SECRET.encode() in f.read_bytes()]
    assert not leaked, f"the secret is written in {leaked}"
