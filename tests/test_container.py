"""The Apptainer image (containers/): one recipe for a cluster's Docker base and a local Debian root, installing the
hashed runtime lock as CI installs the dev lock; every result records the image it ran in (`env.container`), the
report shows it; profiles that run tasks through `containers/apptainer.sh`; that script's refusal without root and
without apptainer. The real thing (build the image, `apptainer test`, the smoke grid on the local Slurm inside the
image) is `test_image_built_and_the_smoke_grid_run_in_it`, run only with MRIAUG_CONTAINER_TESTS=1: 27 to 45
minutes on 2 cores, more than CI's budget allows (containers/README.md). (Until issue 23 in test_slurm.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mriaug import slurm
from mriaug.analysis import collect, report
from mriaug.cli import app
from mriaug.data.sources import DataSpec
from mriaug.engine import runtime
from mriaug.errors import ResultError
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from mriaug.slurm.profile import check_image
from mriaug.store import results
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one
from tests.slurm_helpers import ROOT, diagnostics, ensure_cluster, write_grid

APPTAINER_SH = ROOT / "containers" / "apptainer.sh"
runner = CliRunner()


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
    assert "HF_HUB_OFFLINE=1" in recipe
    assert "containers/build.sh containers/mriaug.sif" in makefile


def test_one_recipe_whose_only_choice_is_the_base() -> None:
    """The header is the build's one choice, Docker Hub's Debian 12 by default (Python 3.11, the lock's);
    build.sh swaps in the local root through build arguments and passes nothing else to the recipe."""
    recipe = (ROOT / "containers" / "mriaug.def").read_text()
    build = (ROOT / "containers" / "build.sh").read_text()
    assert re.search(r"^Bootstrap: \{\{ bootstrap \}\}\nFrom: \{\{ from \}\}$", recipe, re.MULTILINE)
    arguments = re.search(r"^%arguments\n((?:[ \t]+\S.*\n)+)", recipe, re.MULTILINE)
    assert arguments and arguments.group(1).split() == ["bootstrap=docker", "from=debian:bookworm-slim"]
    assert re.findall(r"--build-arg \"?(\w+)=", build) == ["bootstrap", "from"]
    # the recipe itself is in the image, so its digest (the image's identity) covers it
    assert "containers/mriaug.def /opt/mriaug/containers/mriaug.def" in recipe


def test_env_container_is_null_outside_an_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({runtime.IMAGE_ID_LABEL: "sha256:ab"}))
    assert runtime.container({}, labels) is None  # labels alone are not an image: Apptainer names the image
    assert runtime.container({"APPTAINER_CONTAINER": ""}, labels) is None
    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    assert runtime.container() is None


def test_env_container_read_from_the_image(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({runtime.IMAGE_ID_LABEL: "sha256:ab12", "org.label-schema.build-date": "Sunday",
                                  "org.label-schema.schema-version": "1.0"}))
    assert runtime.container({"APPTAINER_CONTAINER": "/images/mriaug.sif"}, labels) == {
        "image": "/images/mriaug.sif", "id": "sha256:ab12", "built": "Sunday"}
    # Singularity's name for the same variable
    assert runtime.container({"SINGULARITY_CONTAINER": "/i.sif"}, labels)["id"] == "sha256:ab12"  # type: ignore[index]
    # an image built otherwise: its path, no identity
    for text in ("{}", "not json", "[1]"):
        labels.write_text(text)
        assert runtime.container({"APPTAINER_CONTAINER": "/i.sif"}, labels) == {"image": "/i.sif", "id": None,
                                                                                 "built": None}
    assert runtime.container({"APPTAINER_CONTAINER": "/i.sif"}, tmp_path / "missing.json") == {
        "image": "/i.sif", "id": None, "built": None}


def test_a_run_records_its_container_and_the_report_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    data = DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32})
    spec = [make_spec("cnn", scenarios.SCENARIOS["1"], "none", s, tiny_hparams("cnn", epochs=1), data) for s in (0, 1)]
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/mriaug.sif")
    in_image = train_one(spec[0], tmp_path, log=lambda m: None)
    monkeypatch.delenv("APPTAINER_CONTAINER")
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    outside = train_one(spec[1], tmp_path, log=lambda m: None)
    expected = runtime.container({"APPTAINER_CONTAINER": "/images/mriaug.sif"})  # this machine has no labels file
    written = json.loads(results.path_for(tmp_path, in_image.run_id).read_text())
    assert written["env"]["container"] == expected and expected["image"] == "/images/mriaug.sif"  # type: ignore[index]
    assert results.read(results.path_for(tmp_path, outside.run_id)).env["container"] is None

    # The report's provenance names each image (with its identity), runs outside one, and older results.
    older = json.loads(json.dumps(written))
    older["env"].pop("container")
    older_result = results.RunResult.from_dict(older, results.path_for(tmp_path, in_image.run_id))
    provenance = report._provenance(tmp_path, collect.gather(tmp_path), [in_image, outside, older_result], [])
    assert [row[1] for row in provenance.tables[0].rows if row[0] == "container images"] == [
        f"/images/mriaug.sif ({expected['id'] or 'no id'}), none, not recorded"]  # type: ignore[index]

    # The results module checks the key: absent (older results) and null read, anything else is named.
    path = tmp_path / f"{in_image.run_id}.json"
    value: Any
    for value in ("absent", None, {"image": "/i.sif", "id": "sha256:ab", "built": "Sunday"}):
        doc = json.loads(json.dumps(written))
        doc["env"].pop("container") if value == "absent" else doc["env"].update(container=value)
        path.write_text(json.dumps(doc))
        assert results.read(path).env.get("container", "absent") == value
    for value, message in (("/i.sif", r"'env\.container' is neither null nor an image \('/i\.sif'\)"),
                           ({"id": "x"}, r"'env\.container' is neither null nor an image"),
                           ({"image": "/i.sif", "id": 5}, r"'env\.container\.id' is not a string \(5\)")):
        doc = json.loads(json.dumps(written))
        doc["env"]["container"] = value
        path.write_text(json.dumps(doc))
        with pytest.raises(ResultError, match=rf"^{re.escape(str(path))}: {message}"):
            results.read(path)


def _profile(tmp_path: Path, container: str) -> Path:
    p = tmp_path / "p.toml"
    p.write_text(f'[resources.default]\ncpus = 1\n[container]\n{container}\n')
    return p


def test_profile_names_the_apptainer_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    image = tmp_path / "x.sif"
    image.write_bytes(b"an image")
    assert slurm.load_profile(_profile(tmp_path, f'image = "{image}"')).container.apptainer == "apptainer"  # type: ignore[union-attr]
    # a path is taken from where you submit and written absolute into the job scripts
    prof = slurm.load_profile(_profile(tmp_path, f'image = "{image}"\napptainer = "containers/apptainer.sh"'))
    assert prof.container and prof.container.apptainer == str(APPTAINER_SH)
    assert check_image(prof) == []
    with pytest.raises(slurm.ProfileError, match=r"p\.toml, line 5: container\.apptainer: must name the apptainer"):
        slurm.load_profile(_profile(tmp_path, f'image = "{image}"\napptainer = ""'))
    # a command given as a path that is not there: refused before anything is submitted, a warning on a dry run
    prof = slurm.load_profile(_profile(tmp_path, f'image = "{image}"\napptainer = "containers/no-such.sh"'))
    with pytest.raises(slurm.ProfileError, match=r"p\.toml: container\.apptainer: .*/containers/no-such\.sh is not an "
                                                 r"executable file"):
        check_image(prof)
    assert len(check_image(prof, need_image=False)) == 1
    # and a missing image, naming the file and what makes it
    prof = slurm.load_profile(_profile(tmp_path, f'image = "{tmp_path / "none.sif"}"'))
    with pytest.raises(slurm.ProfileError, match=rf"container\.image: {re.escape(str(tmp_path))}/none\.sif does not "
                                                 r"exist; build it with `make container`"):
        check_image(prof)


def test_the_local_apptainer_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    prof = slurm.load_profile(ROOT / "slurm" / "local-apptainer.toml")
    c = prof.container
    assert c and c.image == Path("containers/mriaug.sif") and c.apptainer == str(APPTAINER_SH) and not c.nv
    assert c.binds == (f"{os.environ['HOME']}/.cache", "/work/shared")
    local = slurm.load_profile(ROOT / "slurm" / "local.toml")  # the same cluster and resources, no container
    assert (prof.resources, prof.collector, prof.pass_env) == (local.resources, local.collector, local.pass_env)


def test_job_scripts_run_tasks_through_the_apptainer_command(fake_slurm: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "mriaug.sif"
    image.write_bytes(b"an image")
    text = (ROOT / "slurm" / "local-apptainer.toml").read_text()
    text = text.replace('image = "containers/mriaug.sif"', f'image = "{image}"')
    text = text.replace('apptainer = "containers/apptainer.sh"', f'apptainer = "{APPTAINER_SH}"')
    (tmp_path / "p.toml").write_text(text)
    results_dir = tmp_path / "results"
    grid = write_grid(tmp_path / "g.toml", results_dir, seeds=2)
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(tmp_path / "p.toml")])
    assert out.exit_code == 0, out.output
    jobs = sorted(fake_slurm.glob("job_*.sh"))
    assert len(jobs) == 2  # the array, the collector: both in the image
    for job in jobs:
        script = job.read_text()
        line = next(ln for ln in script.splitlines() if ln.startswith("srun "))
        assert f"--cpus-per-task=1 {APPTAINER_SH} exec --bind={os.environ['HOME']}/.cache --bind=/work/shared " \
               f"--bind={tmp_path} --bind={results_dir} --pwd={tmp_path} {image} python -u -m submitit" in line, line
        assert "--nv" not in line
        assert "export APPTAINERENV_HF_HUB_OFFLINE=1" in script
        # the image's mriaug, not the one in the submit directory (the task's working directory)
        assert "export APPTAINERENV_PYTHONSAFEPATH=1" in script


def _as_nobody() -> list[str]:
    """A command prefix that runs as an unprivileged user (root here; a user already needs none)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []


@pytest.mark.parametrize("script", ["containers/apptainer.sh", "containers/build.sh"])
def test_without_root_and_without_apptainer_it_says_what_it_needs(script: str) -> None:
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "MRIAUG_HOST_APPTAINER": "0"}
    out = subprocess.run([*_as_nobody(), "bash", str(ROOT / script), "--version"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"error: (there is no apptainer on this machine|apptainer is not installed here).*needs root",
                     out.stderr), out.stderr
    assert "as root" in out.stderr and "apptainer" in out.stderr


# --- the real image and Slurm inside it (a maintainer's check: MRIAUG_CONTAINER_TESTS=1) -------------------------


@pytest.mark.container
@pytest.mark.skipif(os.environ.get("MRIAUG_CONTAINER_TESTS") != "1",
                    reason="builds the image and runs the smoke grid in it (27 to 45 minutes, root): "
                           "set MRIAUG_CONTAINER_TESTS=1")
@pytest.mark.timeout(5400)
def test_image_built_and_the_smoke_grid_run_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for target in ("container", "container-test"):
        made = subprocess.run(["make", target], capture_output=True, text=True, timeout=3600)
        assert made.returncode == 0, f"make {target}:\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}"
    image = ROOT / "containers" / "mriaug.sif"
    labels = subprocess.run([str(APPTAINER_SH), "inspect", "--labels", "--json", str(image)], capture_output=True,
                            text=True, check=True).stdout
    image_id = json.loads(labels)["data"]["attributes"]["labels"][runtime.IMAGE_ID_LABEL]
    assert image_id.startswith("sha256:")

    ensure_cluster()
    # The smoke grid with its results and pool in this test's folder (bound into the image by the profile).
    smoke = (ROOT / "jobs" / "smoke.toml").read_text()
    smoke = smoke.replace('results = "results/smoke"', f'results = "{tmp_path / "results"}"')
    smoke = smoke.replace('pool = "pools/smoke-transform"', f'pool = "{tmp_path / "pool"}"')
    grid = tmp_path / "smoke.toml"
    grid.write_text(smoke)
    profile = tmp_path / "profile.toml"
    # This test's folder and the session's data cache (MRIAUG_CACHE, passed to the jobs) bound in as well.
    profile.write_text((ROOT / "slurm" / "local-apptainer.toml").read_text().replace(
        '"/work/shared",', f'"/work/shared",\n  "{tmp_path}",\n  "{os.environ["MRIAUG_CACHE"]}",'))
    out = runner.invoke(app, ["synth", "--grid", str(grid), "--generator", "transform", "--classes",
                              "Mild_Demented,Moderate_Demented"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["status", str(grid), "--wait", "--interval", "5", "--timeout", "3000"])
    assert out.exit_code == 0, f"{out.output}\n{diagnostics(tmp_path / 'results')}"
    found = [r for _, r in results.scan(tmp_path / "results")]
    assert len(found) == 72 and all(isinstance(r, results.RunResult) for r in found)
    for r in found:
        assert isinstance(r, results.RunResult)
        assert r.env["container"] == {"image": str(image), "id": image_id, "built": r.env["container"]["built"]}
    # The collector ran in the image too: its tables are there.
    assert (tmp_path / "results" / "tables").is_dir()
