"""A BIDS folder of NIfTI volumes as a data source: the field's own layout, where every scan's participant is known.

    DIR/dataset_description.json               (marks the folder as BIDS)
    DIR/participants.tsv                       participant_id and a label column (`cdr` by default)
    DIR/sub-*/[ses-*/]anat/*_T1w.nii[.gz]      one T1-weighted volume per session (the first by name if several)

Each volume is reoriented to the closest canonical (RAS+) orientation, so axial is the third axis whatever the
file's affine; its middle `slices` axial slices become the images (rows anterior to posterior, columns the
patient's left to right), scaled to [0, 255] by the volume's 0.5 and 99.5 percentiles, resized to `size` keeping
the in-plane physical aspect, padded to a square. Decoded once and cached (atomically) under `$MRIAUG_CACHE`,
fingerprinted by the content of the files read and the labels used.

Labels come from `participants.tsv`: a column of OASIS Clinical Dementia Ratings (0, 0.5, 1, 2 -> Non, Very mild,
Mild, Moderate, as the Kaggle set was labelled) or of class names. There is no given train / test split: the
source takes `split = "subject"`, whose groups are the participants (every session of a participant in one part),
stratified by class; the scan groups of the rest of the study (scan metrics, pool guards) are the sessions.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError, SettingError, UnknownClassError
from ..store import atomic
from . import phantom, splits
from .classes import CLASSES, class_index

# The grouping a BIDS split records (`data.split.grouping.method`): participants as written, not recovered.
METHOD = "bids-participants"
# Part of every fingerprint: a change to how volumes become images makes new caches and run ids.
DECODER_VERSION = 1
DEFAULTS: dict[str, Any] = {"size": 128, "slices": 32, "label_column": "cdr", "skip_unlabelled": False}
# OASIS's Clinical Dementia Rating to the study's classes (how the Kaggle slices were labelled). CDR 3 (severe)
# has no class: such a participant has no usable label.
CDR = {0.0: "Non_Demented", 0.5: "Very_Mild_Demented", 1.0: "Mild_Demented", 2.0: "Moderate_Demented"}
PERCENTILES = (0.5, 99.5)
PARTS = {splits.TRAIN: "train", splits.VAL: "val", splits.TEST: "test"}
NO_SESSION = "n/a"  # a BIDS folder without a session level: its table's session column (BIDS's missing value)


def is_bids(path: Path) -> bool:
    return (path / "dataset_description.json").is_file()


def options(opts: dict[str, Any]) -> dict[str, Any]:
    """The decoding options with their defaults."""
    return {**DEFAULTS, **{k: opts[k] for k in (*DEFAULTS, "classes") if k in opts}}


def problems(opts: dict[str, Any]) -> list[tuple[str, str]]:
    """(option, problem) of the options only a BIDS source has (`sources.DataSpec` checks the shared ones)."""
    bad = []
    if opts.get("split", "given") != "subject":
        bad.append(("split", "a BIDS folder has no train/test split of its own; set split = 'subject' "
                             "(-o split=subject): its participants are known"))
    col = opts.get("label_column")
    if "label_column" in opts and not (isinstance(col, str) and col.strip()):
        bad.append(("label_column", f"must be the name of a column of participants.tsv, got {col!r}"))
    if "skip_unlabelled" in opts and not isinstance(opts["skip_unlabelled"], bool):
        bad.append(("skip_unlabelled", f"must be true or false, got {opts['skip_unlabelled']!r}"))
    return bad


# --- the folder: scans and labels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    participant: str  # "sub-01"
    session: str  # "ses-01", or NO_SESSION
    path: Path


def _t1w(anat: Path) -> list[Path]:
    return sorted(p for p in anat.glob("*_T1w.nii*") if p.name.endswith((".nii", ".nii.gz")) and p.is_file())


def find_scans(root: Path) -> tuple[list[Scan], int]:
    """One scan per participant and session with a T1w volume, in order; and how many sessions held several
    (runs, acquisitions), of which the first by name is read."""
    scans, several = [], 0
    for sub in sorted(p for p in root.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in sub.glob("ses-*") if p.is_dir())
        for ses in sessions or [sub]:
            files = _t1w(ses / "anat")
            if files:
                scans.append(Scan(sub.name, ses.name if sessions else NO_SESSION, files[0]))
                several += len(files) > 1
    if not scans:
        raise DataError(f"{root}: a BIDS folder (dataset_description.json) without T1-weighted volumes "
                        "(sub-*/[ses-*/]anat/*_T1w.nii[.gz])")
    return scans, several


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _missing(cell: str) -> bool:
    return cell.strip().lower() in ("", "n/a", "na", "nan")


def read_labels(root: Path, participants: list[str], column: str, classes: list[str] | None,
                ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Each participant's class from participants.tsv, and (participant, why) for those without a usable one: no
    row, an empty cell, a CDR with no class, an unknown class name, a class the `classes` option leaves out."""
    tsv = root / "participants.tsv"
    if not tsv.is_file():
        raise DataError(f"{tsv}: not found; a BIDS source needs it, with participant_id and a label column "
                        f"(data option label_column, default {DEFAULTS['label_column']!r})")
    with open(tsv, newline="", encoding="utf-8-sig") as fh:
        table = list(csv.reader(fh, delimiter="\t"))
    head = [h.strip() for h in table[0]] if table else []
    for name in ("participant_id", column):
        if name not in head:
            raise DataError(f"{tsv}, line 1: no column {name!r} (columns: {', '.join(head) or 'none'})"
                            + ("; name the label column with the data option label_column" if name == column else ""))
    pid_at, lab_at = head.index("participant_id"), head.index(column)
    rows: dict[str, tuple[int, str]] = {}
    for line, row in enumerate(table[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        pid = row[pid_at].strip() if pid_at < len(row) else ""
        pid = pid if pid.startswith("sub-") else f"sub-{pid}"  # BIDS writes the prefix; some tables leave it out
        if pid in rows:
            raise DataError(f"{tsv}, line {line}: {pid} again (first on line {rows[pid][0]})")
        rows[pid] = (line, row[lab_at].strip() if lab_at < len(row) else "")
    cells = [c for _, c in rows.values() if not _missing(c)]
    cdr = bool(cells) and all(_number(c) is not None for c in cells)  # a CDR column, else one of class names
    keep = {class_index(c) for c in classes} if classes else set(range(len(CLASSES)))
    labels: dict[str, int] = {}
    unusable: list[tuple[str, str]] = []
    for pid in participants:
        if pid not in rows:
            unusable.append((pid, f"{tsv}: no row for {pid}, whose scans are in {root / pid}"))
            continue
        line, cell = rows[pid]
        at = f"{tsv}, line {line} ({pid}), column {column}"
        if _missing(cell):
            unusable.append((pid, f"{at}: empty ({cell!r})"))
            continue
        if cdr:
            if float(cell) not in CDR:
                unusable.append((pid, f"{at}: CDR {cell} has no class (0, 0.5, 1, 2 -> {', '.join(CDR.values())})"))
                continue
            k = class_index(CDR[float(cell)])
        else:
            try:  # a digit would be read as a class index: a names column holds names only
                if _number(cell) is not None:
                    raise UnknownClassError(f"{cell!r} is a number in a column of class names")
                k = class_index(cell)
            except UnknownClassError as e:
                unusable.append((pid, f"{at}: {e}"))
                continue
        if k not in keep:
            unusable.append((pid, f"{at}: class {CLASSES[k]}, which the data option classes leaves out"))
            continue
        labels[pid] = k
    return labels, unusable


# --- volumes to images ----------------------------------------------------------------------------------------


def read_volume(path: Path, size: int, slices: int) -> np.ndarray:
    """The middle `slices` axial slices of a NIfTI volume as (slices, size, size) uint8, bottom to top."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        vol = np.asarray(img.get_fdata(dtype=np.float32))
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
    except Exception as e:  # nibabel, gzip and zlib raise many types for a damaged or foreign file
        raise DataError(f"{path}: cannot read as a NIfTI volume ({type(e).__name__}: {e})") from e
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise DataError(f"{path}: a volume of shape {vol.shape}; a T1w image is 3-D")
    depth = vol.shape[2]
    if depth < slices:
        raise DataError(f"{path}: {depth} axial slices, fewer than the data option slices = {slices}; lower it")
    vol = np.nan_to_num(vol)
    lo, hi = np.percentile(vol, PERCENTILES)
    if not hi > lo:
        raise DataError(f"{path}: its intensities are constant between the {PERCENTILES[0]} and {PERCENTILES[1]} "
                        "percentiles; not an image")
    vol = np.clip((vol - lo) / (hi - lo), 0.0, 1.0)
    # The longer physical side fills the image; the other keeps its share of it (voxels need not be square).
    ex, ey = vol.shape[0] * zooms[0], vol.shape[1] * zooms[1]
    w, h = (max(1, round(size * e / max(ex, ey))) for e in (ex, ey))
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((slices, size, size), np.uint8)
    start = (depth - slices) // 2
    for i in range(slices):
        # RAS+: x to the patient's right, y to anterior; as an image, anterior on top and left on the left
        im = np.ascontiguousarray(vol[:, :, start + i].T[::-1], np.float32)
        small = np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BILINEAR))
        out[i, top : top + h, left : left + w] = np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)
    return out


@dataclass
class Cohort:
    """A decoded BIDS folder: images, labels, and for every image its participant and scan (indices into
    `participants` and `scans`)."""

    x: np.ndarray
    y: np.ndarray
    participant: np.ndarray
    scan: np.ndarray
    participants: list[str]
    scans: list[tuple[str, str]]  # (participant_id, session)
    skipped: list[str]
    fingerprint: str


def _check_classes(y: np.ndarray, tsv: Path, classes: list[str] | None) -> None:
    """Every class has participants (else balanced accuracy is silently over fewer classes), or exactly those the
    `classes` option names do (participants of other classes are unusable, see `read_labels`)."""
    want = sorted({class_index(c) for c in classes}) if classes else list(range(len(CLASSES)))
    missing = [CLASSES[k] for k in want if not (y == k).any()]
    if missing:
        raise DataError(f"{tsv}: no participant with scans of class(es) {', '.join(missing)}; add them, or name the "
                        "classes the cohort holds with the data option classes (e.g. -o 'classes=[\"Non_Demented\", "
                        "...]') and set skip_unlabelled = true to leave out the others")


def decode(source: str, opts: dict[str, Any]) -> Cohort:
    root = Path(source)
    o = options(opts)
    found, several = find_scans(root)
    labels, unusable = read_labels(root, sorted({s.participant for s in found}), o["label_column"], o.get("classes"))
    if unusable and not o["skip_unlabelled"]:
        more = f" ({len(unusable) - 1} more participant(s) like it)" if len(unusable) > 1 else ""
        raise DataError(f"{unusable[0][1]}{more}; fix participants.tsv, or leave such participants out with the "
                        "data option skip_unlabelled = true")
    if several:
        print(f"note: {root}: {several} session(s) hold several T1w volumes; the first by name is read",
              file=sys.stderr)
    scans = [s for s in found if s.participant in labels]
    if not scans:
        raise DataError(f"{root / 'participants.tsv'}: no participant with scans has a usable label")
    size, slices = int(o["size"]), int(o["slices"])
    participants = sorted({s.participant for s in scans})
    y = np.repeat([labels[s.participant] for s in scans], slices).astype(np.int64)
    _check_classes(y, root / "participants.tsv", o.get("classes"))  # before the volumes: reading them takes time
    x = np.concatenate([read_volume(s.path, size, slices) for s in scans])
    pidx = np.repeat([participants.index(s.participant) for s in scans], slices).astype(np.int64)
    fp = atomic.stable_hash({"decoder": DECODER_VERSION, "options": o,
                             "files": [(str(s.path.relative_to(root)), atomic.sha256_file(s.path)) for s in scans],
                             "labels": {p: labels[p] for p in participants}})
    return Cohort(x, y, pidx, np.repeat(np.arange(len(scans)), slices).astype(np.int64), participants,
                  [(s.participant, s.session) for s in scans], [p for p, _ in unusable], fp)


def _cache_key(source: str, opts: dict[str, Any]) -> str:
    """What the cached decoding depends on: the options and every file it could read, by size and time."""
    root = Path(source).resolve()
    files = [root / "participants.tsv"] + [p for s in find_scans(root)[0] for p in _t1w(s.path.parent)]
    stat = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]
    return atomic.stable_hash({"decoder": DECODER_VERSION, "source": str(root), "options": options(opts),
                               "files": stat}, 24)


def load_cohort(source: str, opts: dict[str, Any], cache_dir: Path | None) -> Cohort:
    """The decoded folder, from the cache in `cache_dir` when warm (None: decoded, not cached)."""
    path = cache_dir / f"bids-{_cache_key(source, opts)}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                return Cohort(z["x"], z["y"], z["participant"], z["scan"], meta["participants"],
                              [tuple(s) for s in meta["scans"]], meta["skipped"], meta["fingerprint"])
        except Exception as e:  # cut short or foreign: numpy and zipfile raise many types; a cache is rebuilt
            print(f"warning: data cache {path} is unreadable ({type(e).__name__}: {e}); decoding the source again",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
    c = decode(source, opts)
    if path is not None:
        meta = json.dumps({"participants": c.participants, "scans": c.scans, "skipped": c.skipped,
                           "fingerprint": c.fingerprint})
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=c.x, y=c.y, participant=c.participant, scan=c.scan, meta=np.array(meta))
    return c


# --- the split by participant ---------------------------------------------------------------------------------


def assign(c: Cohort, opts: dict[str, Any], where: str) -> np.ndarray:
    """TRAIN / VAL / TEST per image: whole participants, stratified by class (`splits.assign_subject`)."""
    o = splits.options(opts)
    for k in np.unique(c.y):
        ids = np.unique(c.participant[c.y == k])
        if len(ids) < 2:
            raise DataError(f"{where}: class {CLASSES[int(k)]} has {len(ids)} participant "
                            f"({', '.join(c.participants[i] for i in ids)}); a subject split needs two, one for "
                            "training and one for test; add participants, or leave the class out (data options "
                            "classes and skip_unlabelled = true)")
    return splits.assign_subject(c.participant, c.y, float(o["test_fraction"]), float(o["val_fraction"]),
                                 int(o["split_seed"]))


def load_split(source: str, opts: dict[str, Any], described: dict[str, Any],
               cache_dir: Path | None) -> dict[str, Any]:
    """The folder under its subject split: the fields of every source's `sources.Dataset` (which builds it; this
    module knows nothing of it). Groups (`train_groups`, `test_groups`) are scans (sessions); the fingerprint
    chains files -> split, validation excluded (as `sources.apply_split`). `described`: the spec as written."""
    c = load_cohort(source, opts, cache_dir)
    root = Path(source)
    if c.skipped:
        shown = ", ".join(c.skipped[:10]) + (" ..." if len(c.skipped) > 10 else "")
        print(f"{root / 'participants.tsv'}: {len(c.skipped)} participant(s) without a usable label left out "
              f"(skip_unlabelled = true): {shown}", file=sys.stderr)
    o = splits.options(opts)
    part = assign(c, opts, str(root / "participants.tsv"))
    tf, vf, seed = float(o["test_fraction"]), float(o["val_fraction"]), int(o["split_seed"])
    train, test = np.flatnonzero(part != splits.TEST), np.flatnonzero(part == splits.TEST)
    val = np.flatnonzero(part[train] == splits.VAL)
    gfp = atomic.stable_hash({"method": METHOD, "data": c.fingerprint, "participant": c.participant.tolist()})
    grouping = {"method": METHOD, "groups": len(c.participants), "scans": len(c.scans), "fingerprint": gfp}
    data_fp = atomic.stable_hash({"kind": "subject", "data": c.fingerprint, "grouping": gfp, "test_fraction": tf,
                                  "seed": seed})
    fp = atomic.stable_hash({"split": data_fp, "val": val.tolist()})
    per_part = {name: len(np.unique(c.participant[part == k])) for k, name in PARTS.items()}
    rec = splits.record("subject", seed, fp, test_fraction=tf, val_fraction=vf, grouping=grouping,
                        source_fingerprint=c.fingerprint, groups_per_part=per_part,
                        **({"splits": int(o["splits"])} if int(o["splits"]) > 1 else {}))
    return {"train_x": c.x[train], "train_y": c.y[train], "test_x": c.x[test], "test_y": c.y[test],
            "source": {**described, "options": {**DEFAULTS, **described["options"]}}, "fingerprint": data_fp,
            "val_rows": val, "split": rec, "train_groups": c.scan[train], "test_groups": c.scan[test]}


def subject_rows(source: str, opts: dict[str, Any], cache_dir: Path | None) -> list[dict[str, str]]:
    """One row per scan and split: participant_id, session, part (train / val / test), and with `splits = K` the
    split (0..K-1: runs with seed s use split s mod K, split seed `split_seed + k`)."""
    c = load_cohort(source, opts, cache_dir)
    o = splits.options(opts)
    k_splits = int(o["splits"])
    first = np.unique(c.scan, return_index=True)[1]  # a scan's images all share its part
    rows = []
    for k in range(k_splits):
        part = assign(c, {**opts, "split_seed": int(o["split_seed"]) + k}, str(Path(source) / "participants.tsv"))
        for s, i in enumerate(first):
            pid, ses = c.scans[s]
            rows.append({"participant_id": pid, "session": ses, **({"split": str(k)} if k_splits > 1 else {}),
                         "part": PARTS[int(part[i])]})
    return rows


def write_subjects(path: Path, rows: list[dict[str, str]]) -> None:
    """The split as a TSV, the way ClinicaDL writes its split files (written atomically)."""
    head = list(rows[0])
    atomic.write_text(path, "".join("\t".join(r[h] for h in head) + "\n" for r in [{h: h for h in head}, *rows]))


# --- the phantom as a BIDS folder -----------------------------------------------------------------------------

# The phantom's participants cycle through the classes, so that every class has participants on both sides.
PHANTOM_ORDER = ("Non_Demented", "Very_Mild_Demented", "Mild_Demented", "Moderate_Demented")
PHANTOM_VOXEL_MM = 3.0


def write_phantom(root: Path, participants: int = 12, longitudinal: int = 2, size: int = 64, depth: int = 48,
                  seed: int = 0) -> list[Scan]:
    """Write the phantom (`phantom.volumes`) as a BIDS folder: participants.tsv with a `cdr` column, one
    session per participant (two for the first `longitudinal`), uint8 volumes in RAS+ as gzipped NIfTI (gzip
    time 0: the same arguments write the same bytes). The folder appears whole or not at all."""
    import nibabel as nib

    if participants < 2 * len(PHANTOM_ORDER):
        raise SettingError(f"--participants {participants}: at least {2 * len(PHANTOM_ORDER)} (two per class, so "
                           "that a subject split has each class in train and test)")
    if not 0 <= longitudinal <= participants:
        raise SettingError(f"--longitudinal {longitudinal}: must be between 0 and --participants ({participants})")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SettingError(f"{root}: exists and is not an empty folder; name a new one")
    width = max(2, len(str(participants)))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(participants)]
    klass = [class_index(PHANTOM_ORDER[i % len(PHANTOM_ORDER)]) for i in range(participants)]
    scans = [(i, s) for i in range(participants) for s in range(2 if i < longitudinal else 1)]
    vols = phantom.volumes([klass[i] for i, _ in scans], [i for i, _ in scans], size, depth, seed)
    cdr = {name: r for r, name in CDR.items()}
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    try:
        tmp.mkdir(parents=True)
        (tmp / "dataset_description.json").write_text(json.dumps(
            {"Name": "mriaug phantom", "BIDSVersion": "1.10.0", "DatasetType": "raw",
             "GeneratedBy": [{"Name": "mriaug", "Description": "mriaug data phantom-bids"}]}, indent=2) + "\n")
        (tmp / "participants.tsv").write_text("participant_id\tcdr\n" + "".join(
            f"{p}\t{cdr[CLASSES[k]]:g}\n" for p, k in zip(ids, klass, strict=True)))
        affine = np.diag([PHANTOM_VOXEL_MM] * 3 + [1.0])
        affine[:3, 3] = -PHANTOM_VOXEL_MM * (np.array([size, size, depth]) - 1) / 2  # the centre at the origin
        for (i, s), vol in zip(scans, vols, strict=True):
            ses = f"ses-{s + 1:02d}"
            name = f"{ids[i]}/{ses}/anat/{ids[i]}_{ses}_T1w.nii.gz"
            # (depth, rows, cols) images -> RAS+ voxels (x, y, z): the inverse of `read_volume`'s view
            img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(vol[:, ::-1, :], (2, 1, 0))), affine)
            img.header.set_xyzt_units("mm")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(gzip.compress(img.to_bytes(), mtime=0))
            written.append(Scan(ids[i], ses, root / name))
        if root.exists():
            root.rmdir()
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
