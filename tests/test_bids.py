"""`mriaug.data.bids`: a BIDS folder of NIfTI volumes as a data source, labelled from participants.tsv and split
by participant; `mriaug data show --subjects`, `mriaug data phantom-bids`, and the audit's comparison with the
known scans. The cohort here is built with nibabel by hand (not the phantom): 15 participants, 17 scans (two
participants with two sessions), 64x64x48 volumes stored left-posterior-superior, `cdr` in participants.tsv."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import audit, bids, phantom, sources
from mriaug.data.classes import CLASSES
from mriaug.data.sources import DataSpec
from mriaug.errors import DataError

runner = CliRunner()

# participant -> CDR; sessions: two for sub-OAS003 (CDR 0) and sub-OAS007 (CDR 0.5), one for everyone else
CDRS = {f"sub-OAS{i:03d}": c for i, c in enumerate(["0"] * 5 + ["0.5"] * 4 + ["1"] * 3 + ["2"] * 3, start=1)}
TWO_SESSIONS = ("sub-OAS003", "sub-OAS007")
SHAPE = (64, 64, 48)
SUBJECT = ["-o", "split=subject", "-o", "size=32"]


def _volume(rng: np.random.Generator, cdr: float) -> np.ndarray:
    """An ellipsoid head with a dark ventricle that widens with the CDR, noise, int16 (a scanner's range)."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    head = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.85) ** 2 < 1
    vent = (x / (0.08 + 0.1 * cdr)) ** 2 + (y / 0.3) ** 2 + (z / 0.4) ** 2 < 1
    v = np.where(head, 600 + rng.normal(0, 30, SHAPE), np.abs(rng.normal(0, 5, SHAPE)))
    v[vent] = 150
    return v.astype(np.int16)


def write_cohort(root: Path, cdrs: dict[str, str] = CDRS) -> None:
    rng = np.random.default_rng(36)
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test cohort", "BIDSVersion": "1.8.0"}))
    (root / "participants.tsv").write_text("participant_id\tsex\tage\tcdr\n" + "".join(
        f"{p}\t{'FM'[i % 2]}\t{70 + i}\t{c}\n" for i, (p, c) in enumerate(cdrs.items())))
    # left-posterior-superior voxels, 1 x 1 x 1.25 mm: reading must flip x and y to reach RAS+
    affine = np.diag([-1.0, -1.0, 1.25, 1.0])
    for i, (p, c) in enumerate(CDRS.items()):
        for ses in ("ses-M000", "ses-M024")[: 2 if p in TWO_SESSIONS else 1]:
            ext = ".nii.gz" if i % 2 else ".nii"  # both spellings BIDS allows
            path = root / p / ses / "anat" / f"{p}_{ses}_T1w{ext}"
            path.parent.mkdir(parents=True)
            nib.save(nib.Nifti1Image(_volume(rng, float(c)), affine), str(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bids") / "cohort"
    write_cohort(root)
    return root


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_data_show_writes_the_split_by_participant_one_row_per_scan(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.tsv"
    r = runner.invoke(app, ["data", "show", "--data", str(cohort), *SUBJECT, "--subjects", str(out)])
    assert r.exit_code == 0, r.output
    total = next(ln.split() for ln in r.output.splitlines() if ln.startswith("total"))
    assert int(total[1]) + int(total[2]) == 17 * 32
    rows = _tsv(out)
    assert list(rows[0]) == ["participant_id", "session", "part"]
    assert len(rows) == 17 and len({(r["participant_id"], r["session"]) for r in rows}) == 17
    parts = {}
    for row in rows:
        assert parts.setdefault(row["participant_id"], row["part"]) == row["part"]  # every session in one part
    assert set(parts) == set(CDRS) and {r["session"] for r in rows if r["participant_id"] == "sub-OAS007"} == \
        {"ses-M000", "ses-M024"}
    # stratified by class: every CDR has test participants and training participants
    for cdr in ("0", "0.5", "1", "2"):
        got = {parts[p] for p, c in CDRS.items() if c == cdr}
        assert "test" in got and "train" in got, (cdr, got)


def test_splits_k_writes_a_split_column_and_each_split_keeps_participants_whole(cohort: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "splits.tsv"
    r = runner.invoke(app, ["data", "show", "--data", str(cohort), *SUBJECT, "-o", "splits=3", "--subjects",
                            str(out)])
    assert r.exit_code == 0, r.output
    rows = _tsv(out)
    assert list(rows[0]) == ["participant_id", "session", "split", "part"] and len(rows) == 3 * 17
    tests = []
    for k in "012":
        mine = [row for row in rows if row["split"] == k]
        assert len(mine) == 17
        assert all(len({row["part"] for row in mine if row["participant_id"] == p}) == 1 for p in CDRS)
        tests.append(frozenset(row["participant_id"] for row in mine if row["part"] == "test"))
        # split k is the split that split seed k loads (runs with seed s use split s mod 3)
        ds = sources.load(DataSpec(str(cohort), {"split": "subject", "size": 32, "split_seed": int(k)}))
        assert len(ds.test_y) == 32 * sum(row["part"] == "test" for row in mine)
    assert len(set(tests)) == 3


def test_a_run_trains_on_every_slice_of_every_scan(cohort: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", "--seed", "0", "--epochs",
                            "1", "--data", str(cohort), *SUBJECT, "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    (path,) = tmp_path.glob("*.json")
    res = json.loads(path.read_text())
    c = res["counts"]
    assert sum(c["real"].values()) + sum(c["val"].values()) + sum(c["test"].values()) == 17 * 32
    split = res["data"]["split"]
    assert split["grouping"]["method"] == bids.METHOD and split["grouping"]["groups"] == 15
    # a scan is a session: the per-scan scores count test sessions, not participants
    rows = bids.subject_rows(str(cohort), {"split": "subject", "size": 32}, sources.cache_root() / "datasets")
    assert res["metrics"]["test_scans"] == sum(row["part"] == "test" for row in rows)


@pytest.mark.parametrize("cell, why", [("3", "CDR 3 has no class"), ("", "empty"), ("n/a", "empty"),
                                       (None, "no row for sub-OAS012")])
def test_a_participant_without_a_usable_label_is_refused_naming_participants_tsv(
        cohort: Path, tmp_path: Path, cell: str | None, why: str) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    lines = (root / "participants.tsv").read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("sub-OAS012\t"))  # CDR 1, one session
    if cell is None:
        del lines[at]
    else:
        lines[at] = "\t".join([*lines[at].split("\t")[:3], cell])
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["data", "show", "--data", str(root), *SUBJECT])
    assert r.exit_code == 2, r.output
    assert "participants.tsv" in r.output and why in r.output, r.output
    if cell is not None:
        assert f"line {at + 1} (sub-OAS012)" in r.output, r.output
    # told to, mriaug leaves such participants out and says how many
    r = runner.invoke(app, ["data", "show", "--data", str(root), *SUBJECT, "-o", "skip_unlabelled=true"])
    assert r.exit_code == 0, r.output
    assert "1 participant(s) without a usable label left out" in r.output and "sub-OAS012" in r.output
    total = next(ln.split() for ln in r.output.splitlines() if ln.startswith("total"))
    assert int(total[1]) + int(total[2]) == 16 * 32


def test_a_class_without_participants_or_with_one_is_refused(cohort: Path, tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    tsv = root / "participants.tsv"
    original = tsv.read_text()
    tsv.write_text(original.replace("\t2\n", "\t1\n"))  # nobody Moderate
    r = runner.invoke(app, ["data", "show", "--data", str(root), *SUBJECT])
    assert r.exit_code == 2, r.output
    assert f"{tsv}: no participant with scans of class(es) Moderate_Demented" in r.output
    lines = original.splitlines()
    tsv.write_text("\n".join(ln.replace("\t2", "\t1") if ln.startswith(("sub-OAS013", "sub-OAS014")) else ln
                             for ln in lines) + "\n")  # one Moderate participant: in train or in test, not both
    r = runner.invoke(app, ["data", "show", "--data", str(root), *SUBJECT])
    assert r.exit_code == 2, r.output
    assert "class Moderate_Demented has 1 participant (sub-OAS015); a subject split needs two" in r.output


def test_a_column_of_class_names_and_the_classes_option(tmp_path: Path) -> None:
    names = {"0": "CN", "0.5": "very mild", "1": "Mild_Demented", "2": "moderate"}
    root = tmp_path / "names"
    write_cohort(root)
    text = (root / "participants.tsv").read_text().replace("\tcdr\n", "\tcdr\tdiagnosis\n", 1)
    (root / "participants.tsv").write_text("\n".join(
        ln + (f"\t{names[ln.split(chr(9))[3]]}" if i else "") for i, ln in enumerate(text.splitlines())) + "\n")
    c = bids.load_cohort(str(root), {"split": "subject", "size": 32, "slices": 2, "label_column": "diagnosis"}, None)
    want = {"0": "Non_Demented", "0.5": "Very_Mild_Demented", "1": "Mild_Demented", "2": "Moderate_Demented"}
    got = {c.participants[int(p)]: CLASSES[int(y)] for p, y in zip(c.participant, c.y, strict=True)}
    assert got == {p: want[cdr] for p, cdr in CDRS.items()}
    # a class the classes option leaves out makes its participants unusable: refused, or left out when told
    three = ["Non_Demented", "Very_Mild_Demented", "Mild_Demented"]
    opts = {"split": "subject", "size": 32, "slices": 2, "classes": three}
    with pytest.raises(DataError, match=r"participants.tsv, line 14 \(sub-OAS013\), column cdr: class "
                                        r"Moderate_Demented, which the data option classes leaves out"):
        bids.load_cohort(str(root), opts, None)
    kept = bids.load_cohort(str(root), {**opts, "skip_unlabelled": True}, None)
    assert kept.skipped == ["sub-OAS013", "sub-OAS014", "sub-OAS015"] and len(kept.scans) == 14


def test_options_a_bids_source_refuses() -> None:
    spec = DataSpec("phantom")
    assert bids.problems({**spec.options, "split": "subject"}) == []
    assert [k for k, _ in bids.problems({})] == ["split"]  # there is no given split to use
    assert [k for k, _ in bids.problems({"split": "subject", "label_column": 3, "skip_unlabelled": "yes"})] == \
        ["label_column", "skip_unlabelled"]


def test_a_damaged_volume_is_named(cohort: Path, tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    bad = root / "sub-OAS002" / "ses-M000" / "anat" / "sub-OAS002_ses-M000_T1w.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    r = runner.invoke(app, ["data", "show", "--data", str(root), *SUBJECT])
    assert r.exit_code == 2 and f"{bad}: cannot read as a NIfTI volume" in r.output, r.output


def test_decoded_once_and_fingerprinted_by_content(cohort: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DataSpec(str(cohort), {"split": "subject", "size": 32})
    first = sources.load(spec)

    def refuse(*_: object) -> None:
        raise AssertionError("a warm cache decodes no volume")

    with monkeypatch.context() as m:
        m.setattr(bids, "read_volume", refuse)
        again = sources.load(spec)
    assert again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.train_x, first.train_x)
    # a copy elsewhere (other paths, other times) is the same data; one changed voxel is other data
    copy = tmp_path / "copy"
    shutil.copytree(cohort, copy)
    assert sources.load(DataSpec(str(copy), spec.options)).fingerprint == first.fingerprint
    f = copy / "sub-OAS001" / "ses-M000" / "anat" / "sub-OAS001_ses-M000_T1w.nii"
    img = nib.load(str(f))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] += 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(f))
    assert sources.load(DataSpec(str(copy), spec.options)).fingerprint != first.fingerprint


def _save(path: Path, vol: np.ndarray, zooms: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    nib.save(nib.Nifti1Image(vol, np.diag([*zooms, 1.0])), str(path))
    return path


def test_any_stored_orientation_gives_the_same_axial_images_anterior_up_left_left(tmp_path: Path) -> None:
    vol = np.zeros((32, 32, 8), np.float32)  # RAS+
    vol[4:12, :, :] = 50.0  # a left band
    vol[:, 24:30, :] = 100.0  # an anterior band
    ras = _save(tmp_path / "ras.nii", vol)
    img = nib.load(str(ras))
    for codes in (("L", "P", "S"), ("P", "S", "L"), ("S", "R", "A")):
        ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                               nib.orientations.axcodes2ornt(codes))
        other = img.as_reoriented(ornt)
        assert nib.aff2axcodes(other.affine) == codes
        nib.save(other, str(tmp_path / f"{''.join(codes)}.nii"))
        np.testing.assert_array_equal(bids.read_volume(tmp_path / f"{''.join(codes)}.nii", 32, 4),
                                      bids.read_volume(ras, 32, 4))
    im = bids.read_volume(ras, 32, 4)[0]
    # anterior (y 24..29) is on top: rows 2..7; the left band (x 4..11) on the left: columns 4..11
    assert (im[2:8, 20:] == 255).all() and (im[12:, 4:12] == 128).all() and (im[12:, 14:] == 0).all()


def test_intensities_scaled_by_robust_percentiles_and_the_middle_slices_taken(tmp_path: Path) -> None:
    vol = np.zeros((16, 16, 10), np.float32)
    vol[:, :, :] = np.arange(10)[None, None, :]  # slice k has value k
    vol[0, 0, 0] = 1e6  # one wild voxel does not set the range
    out = bids.read_volume(_save(tmp_path / "z.nii", vol), 16, 4)
    # 0.5 / 99.5 percentiles: 0 and 9; the middle 4 of 10 slices are 3..6
    assert [int(s[5, 5]) for s in out] == [round(k / 9 * 255) for k in (3, 4, 5, 6)] == [85, 113, 142, 170]
    with pytest.raises(DataError, match=r"z.nii: 10 axial slices, fewer than the data option slices = 11"):
        bids.read_volume(tmp_path / "z.nii", 16, 11)


def test_the_in_plane_physical_aspect_is_kept(tmp_path: Path) -> None:
    vol = np.full((64, 32, 4), 50.0, np.float32)
    vol[32:] = 100.0  # the right half bright
    square_mm = bids.read_volume(_save(tmp_path / "a.nii", vol, (1.0, 2.0, 1.0)), 32, 2)[0]
    assert (square_mm[:, 18:] == 255).all() and (square_mm[:, :14] == 0).all()  # 64 x 64 mm: fills the image
    wide = bids.read_volume(_save(tmp_path / "b.nii", vol, (1.0, 1.0, 1.0)), 32, 2)[0]
    # 64 x 32 mm: 32 x 16 pixels, centred, 8 rows of padding above and below
    assert (wide[8:24, 18:] == 255).all() and (wide[:8] == 0).all() and (wide[24:] == 0).all()


def test_the_phantom_writes_itself_as_bids_and_reads_back_exactly(tmp_path: Path) -> None:
    r = runner.invoke(app, ["data", "phantom-bids", str(tmp_path / "a"), "--participants", "8", "--longitudinal",
                            "1", "--size", "32", "--depth", "6", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "8 participants, 9 scans" in r.output
    rows = _tsv(tmp_path / "a" / "participants.tsv")
    assert [row["cdr"] for row in rows] == ["0", "0.5", "1", "2"] * 2
    scans, _ = bids.find_scans(tmp_path / "a")
    assert [(s.participant, s.session) for s in scans][:3] == [("sub-01", "ses-01"), ("sub-01", "ses-02"),
                                                              ("sub-02", "ses-01")]
    vols = phantom.volumes([2, 2, 3, 0, 1, 2, 3, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6, 7], 32, 6, 3)
    for s, v in zip(scans, vols, strict=True):
        lo, hi = np.percentile(v.astype(np.float32), bids.PERCENTILES)
        scaled = np.clip((v.astype(np.float32) - lo) / (hi - lo), 0, 1).astype(np.float32)
        np.testing.assert_array_equal(bids.read_volume(s.path, 32, 6), np.round(scaled * 255.0).astype(np.uint8))
    # the same arguments write the same bytes (gzip without a time); an existing folder is never written into
    runner.invoke(app, ["data", "phantom-bids", str(tmp_path / "b"), "--participants", "8", "--longitudinal", "1",
                        "--size", "32", "--depth", "6", "--seed", "3"])

    def digest(root: Path) -> list[tuple[str, str]]:
        return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in sorted(root.rglob("*")) if p.is_file()]

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert gzip.decompress(scans[0].path.read_bytes())[:4] == (348).to_bytes(4, "little")  # a NIfTI-1 header
    r = runner.invoke(app, ["data", "phantom-bids", str(tmp_path / "a")])
    assert r.exit_code == 2 and "exists and is not an empty folder" in r.output


def test_the_phantom_cohort_keeps_a_participants_sessions_together(tmp_path: Path) -> None:
    bids.write_phantom(tmp_path / "p", participants=8, longitudinal=4, size=32, depth=4)
    ds = sources.load(DataSpec(str(tmp_path / "p"), {"split": "subject", "size": 32, "slices": 4}))
    rows = bids.subject_rows(str(tmp_path / "p"), {"split": "subject", "size": 32, "slices": 4}, None)
    parts: dict[str, set[str]] = {}
    for row in rows:
        parts.setdefault(row["participant_id"], set()).add(row["part"])
    assert len(rows) == 12 and all(len(v) == 1 for v in parts.values())
    assert ds.test_groups is not None and len(np.unique(ds.test_groups)) == sum(r["part"] == "test" for r in rows)


def test_compare_groups_by_hand() -> None:
    recovered = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    known = np.array([5, 5, 5, 5, 5, 7, 7, 9, 4, 4])
    got = audit.compare_groups(recovered, known)
    # scan 5 split over groups 0 and 1; group 2 joins scans 7 and 9; scan 4 is group 3, alone
    assert {k: v for k, v in got.items() if k != "adjusted_rand"} == {
        "scans": 4, "recovered_groups": 4, "recovered_exactly": 1, "scans_split": 1, "groups_joining_scans": 1}
    # pairs together in both 6, in recovered 8, in known 12, of 45: (6 - 8*12/45) / ((8+12)/2 - 8*12/45)
    assert got["adjusted_rand"] == pytest.approx(174 / 354)
    assert audit.compare_groups(known, known)["adjusted_rand"] == 1.0


def test_audit_compares_recovered_groups_with_the_known_scans(cohort: Path) -> None:
    r = runner.invoke(app, ["data", "audit", "--data", str(cohort), *SUBJECT, "--json"])
    assert r.exit_code == 0, r.output
    k = json.loads(r.output.splitlines()[-1])["known_scans"]
    assert k["scans"] == 17 and 0 <= k["recovered_exactly"] <= 17 and -1 <= k["adjusted_rand"] <= 1
    text = runner.invoke(app, ["data", "audit", "--data", str(cohort), *SUBJECT]).output
    assert "against the 17 scans the source knows" in text
