"""`mriaug.data.sources`, `mriaug.data.phantom`, `mriaug.data.classes`: sources (folders, parquet, the hub at its
pinned commit), the phantom, class spellings, the cache."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mriaug.data import phantom
from mriaug.data import sources as data
from mriaug.data.classes import CLASSES, UnknownClassError, class_index
from mriaug.data.sources import DataError, DataSpec


def test_class_spellings() -> None:
    assert class_index("Very Mild Demented") == 3
    assert class_index("very_mild") == 3
    assert class_index("NonDemented") == 2
    assert class_index("MildDemented") == 0
    assert class_index("Moderate_Demented") == 1
    assert class_index("x", {"x": "Moderate_Demented"}) == 1
    with pytest.raises(UnknownClassError, match="unknown class 'Severe'"):
        class_index("Severe")


def test_phantom_has_real_imbalance_and_is_cached(phantom_spec: DataSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.load(phantom_spec)
    counts = ds.counts("train")
    assert sum(counts.values()) == 240
    assert counts["Non_Demented"] > counts["Very_Mild_Demented"] > counts["Mild_Demented"] > counts["Moderate_Demented"]
    assert ds.train_x.dtype == np.uint8 and ds.train_x.shape[1:] == (32, 32)
    assert list((data.cache_root() / "datasets").glob("*.npz"))

    def no_decoding(*a: object) -> None:
        raise AssertionError("decoded again instead of reading the cache")

    # Read from the cache, not made again (how fast a warm load is: benchmarks/data_cache.py).
    monkeypatch.setattr(phantom, "generate_subjects", no_decoding)
    again = data.load(phantom_spec)
    assert again.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(again.train_x, ds.train_x)


def test_phantom_default_counts_match_thesis_table() -> None:
    assert phantom.class_counts(5120) == list(phantom.REAL_TRAIN_COUNTS)


def test_phantom_classes_differ_like_atrophy() -> None:
    # Ventricles and sulci are dark: more atrophy means a larger dark share of the brain. (Brightness itself
    # is the subject's: gain and coil ramp, so the share is taken relative to each image's own bright level.)
    s = phantom.generate_subjects([60, 60, 60, 60], [4, 4, 4, 4], 64, seed=3, slices=8)
    x, y = s.train_x.astype(float), s.train_y
    top = np.percentile(x.reshape(len(x), -1), 99, axis=1)[:, None, None]
    dark = ((x < 0.5 * top) & (x > 0.05 * top)).sum((1, 2)) / (x > 0.25 * top).sum((1, 2))
    share = [dark[y == k].mean() for k in range(4)]
    assert share[1] > share[0] > share[3] > share[2]  # Moderate > Mild > Very mild > Non


def _write_folder(root: Path, names: list[str], per_class: int, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_imagefolder_with_split_folders(tmp_path: Path) -> None:
    names = ["MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented"]
    _write_folder(tmp_path / "train", names, 5)
    _write_folder(tmp_path / "test", names, 2)
    ds = data.load(DataSpec(str(tmp_path)))
    assert ds.counts("train") == dict.fromkeys(CLASSES, 5)
    assert ds.counts("test") == dict.fromkeys(CLASSES, 2)


def test_imagefolder_without_test_is_split_stratified(tmp_path: Path) -> None:
    _write_folder(tmp_path, ["Mild Demented", "Moderate Demented", "Non Demented", "Very Mild Demented"], 10)
    ds = data.load(DataSpec(str(tmp_path), {"test_fraction": 0.2, "split_seed": 1}))
    assert ds.counts("test") == dict.fromkeys(CLASSES, 2)
    assert ds.counts("train") == dict.fromkeys(CLASSES, 8)


def test_imagefolder_unknown_class_and_corrupt_image(tmp_path: Path) -> None:
    _write_folder(tmp_path / "a", ["Mild", "Severe"], 2)
    with pytest.raises(DataError, match=r"Severe.*unknown class"):
        data.load(DataSpec(str(tmp_path / "a")))
    ds = data.load(DataSpec(str(tmp_path / "a"), {"class_map": {"Severe": "Moderate_Demented"}, "test_fraction": 0.5,
                                                  "classes": ["Mild_Demented", "Moderate_Demented"]}))
    assert ds.counts("train")["Moderate_Demented"] == 1
    _write_folder(tmp_path / "b", ["Mild", "Non"], 3)
    bad = tmp_path / "b" / "Non" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=str(bad)):
        data.load(DataSpec(str(tmp_path / "b"), {"classes": ["Mild", "Non"]}))


def _write_parquet_dataset(root: Path, n: int, corrupt_row: int | None = None) -> None:
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    for split, count in (("train", n), ("test", n // 2)):
        imgs = [Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)) for _ in range(count)]
        ds = datasets.Dataset.from_dict({"image": imgs, "label": [i % 4 for i in range(count)]}, features=features)
        if corrupt_row is not None and split == "train":
            ds = ds.cast_column("image", datasets.Image(decode=False))
            rows = ds.to_list()
            rows[corrupt_row]["image"] = {"bytes": b"garbage", "path": None}
            ds = datasets.Dataset.from_list(rows, features=ds.features)
        (root / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))


def test_parquet_layout_like_the_hub(tmp_path: Path) -> None:
    _write_parquet_dataset(tmp_path / "ok", 16)
    ds = data.load(DataSpec(str(tmp_path / "ok")))
    assert ds.counts("train") == dict.fromkeys(CLASSES, 4)
    assert ds.resolution == 24
    _write_parquet_dataset(tmp_path / "bad", 8, corrupt_row=5)
    with pytest.raises(DataError, match=r"train-00000-of-00001\.parquet, row 5, column image: cannot decode"):
        data.load(DataSpec(str(tmp_path / "bad")))


def test_a_parquet_folder_with_a_plain_readme_loads_without_the_card_warning(tmp_path: Path) -> None:
    """Issue 32: every command that read the local parquet folder printed huggingface_hub's "Repo card metadata
    block was not found"; that one message is dropped where the folder is read, the hub's other messages are not."""
    import logging

    _write_parquet_dataset(tmp_path / "ok", 8)
    (tmp_path / "ok" / "README.md").write_text("# A local copy\n\nPlain text, no metadata block.\n")
    seen: list[str] = []
    hub = logging.getLogger("huggingface_hub")
    catch = logging.Handler()
    catch.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    hub.addHandler(catch)
    try:
        assert data.load(DataSpec(str(tmp_path / "ok")), use_cache=False).counts("train") == dict.fromkeys(CLASSES, 2)
        with data._no_card_warning():
            logging.getLogger("huggingface_hub.repocard").warning("another warning of the card's")
    finally:
        hub.removeHandler(catch)
    assert seen == ["another warning of the card's"], seen
    assert not logging.getLogger("huggingface_hub.repocard").filters


def test_hub_source_offline_with_cold_cache_names_prefetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(DataError, match=r"mriaug prefetch --data hf:Falah/Alzheimer_MRI"):
        data.load(DataSpec("hf:Falah/Alzheimer_MRI"))


def test_unknown_source_and_phantom_option() -> None:
    with pytest.raises(DataError, match="no such folder"):
        DataSpec("./does/not/exist").kind  # noqa: B018
    # A mistyped folder is not taken for a hub repository.
    with pytest.raises(DataError, match=r"no such folder \(for a Hugging Face hub dataset write hf:OWNER/NAME"):
        DataSpec("data/alzheimer").kind  # noqa: B018
    assert DataSpec("hf:Falah/Alzheimer_MRI").kind == "hub"
    with pytest.raises(DataError, match="unknown option"):
        data.load(DataSpec("phantom", {"colour": 1}))


# The data cache. (Until issue 23 in test_layout.py.)

def test_truncated_data_cache_is_rebuilt_naming_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    spec = data.DataSpec("phantom", {"n_train": 40, "n_test": 16, "size": 16, "seed": 7})
    before = set((data.cache_root() / "datasets").glob("*.npz"))
    ds = data.load(spec)
    (cache,) = set((data.cache_root() / "datasets").glob("*.npz")) - before
    cache.write_bytes(cache.read_bytes()[:100])
    again = data.load(spec)
    assert np.array_equal(again.train_x, ds.train_x) and again.fingerprint == ds.fingerprint
    assert f"data cache {cache} is unreadable" in capsys.readouterr().err


# Folder and parquet sources: missing classes, 16-bit images, errors naming file, column and row. (Until issue
# 23 in test_robustness.py.)

def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _folder(root: Path, classes: list[str], per_class: int = 4, empty: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        if c == empty:
            continue
        for i in range(per_class):
            _png(root / c / f"{i}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    return root


def test_missing_or_empty_class_refused_unless_named(tmp_path: Path) -> None:
    three = _folder(tmp_path / "three", list(CLASSES[:3]))
    with pytest.raises(DataError, match=r"no folder for class\(es\) Very_Mild_Demented"):
        data.load(data.DataSpec(str(three)), use_cache=False)
    empty = _folder(tmp_path / "empty", list(CLASSES), empty="Moderate_Demented")
    with pytest.raises(DataError, match=r"Moderate_Demented: class folder without images"):
        data.load(data.DataSpec(str(empty)), use_cache=False)
    ds = data.load(data.DataSpec(str(three), {"classes": list(CLASSES[:3])}), use_cache=False)
    assert ds.counts("train")["Very_Mild_Demented"] == 0 and ds.counts("train")["Mild_Demented"] > 0
    with pytest.raises(DataError, match="classes"):
        data.load(data.DataSpec(str(three), {"classes": ["Mild", "Mild_Demented"]}), use_cache=False)


def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    out = data.decode_image(buf.getvalue(), None, "ramp.png")
    assert out.dtype == np.uint8
    assert np.array_equal(out, np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert (out == 255).mean() < 0.01


def _parquet(root: Path, rows: dict[str, list], split_rows: dict[str, list] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        table = pa.table((split_rows or {}).get(split, rows))
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def _img(v: int) -> dict:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), v, np.uint8)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_parquet_errors_name_file_column_and_row(tmp_path: Path) -> None:
    imgs = [_img(i * 10) for i in range(8)]
    train = "train-00000-of-00001.parquet"
    wrong = _parquet(tmp_path / "img", {"img": imgs, "label": [i % 4 for i in range(8)]})
    with pytest.raises(DataError, match=rf"{train}: no column 'image'"):
        data.load(data.DataSpec(str(wrong)), use_cache=False)
    nolabel = _parquet(tmp_path / "nolabel", {"image": imgs})
    with pytest.raises(DataError, match=rf"{train}: no column 'label'"):
        data.load(data.DataSpec(str(nolabel)), use_cache=False)
    nulls = _parquet(tmp_path / "null", {"image": imgs[:5] + [None] + imgs[6:], "label": [i % 4 for i in range(8)]})
    with pytest.raises(DataError, match=rf"{train}, row 5, column image: no image"):
        data.load(data.DataSpec(str(nulls)), use_cache=False)
    names = ["Mild_Demented", "Moderate Demented", "NonDemented", "very_mild"] * 2
    named = _parquet(tmp_path / "names", {"image": imgs, "label": names})
    ds = data.load(data.DataSpec(str(named)), use_cache=False)
    assert ds.train_y.tolist() == [0, 1, 2, 3] * 2
    unknown = _parquet(tmp_path / "unknown", {"image": imgs, "label": names[:3] + ["Alzheimer"] + names[4:]})
    with pytest.raises(DataError, match=rf"{train}, row 3, column label: unknown class 'Alzheimer'"):
        data.load(data.DataSpec(str(unknown)), use_cache=False)


# The default hub source is read at a pinned commit; the commit read is recorded; labels are checked. The
# hub cannot be reached here, so the tests lay out what `datasets` leaves in its cache after reading a hub
# dataset (`<HF_DATASETS_CACHE>/Falah___alzheimer_mri/default/0.0.0/<commit>/`) and let the real loading code
# read it offline, as a job on a compute node does after `mriaug prefetch`. (Until issue 23 in test_hub_pin.py.)

PINNED = "daac24f9597236b45837d82f7eb9c9ad1f8c60c8"


def _parquet_folder(root: Path, names: list[str]) -> Path:
    import datasets
    from PIL import Image

    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 8)):
        rows: dict[str, list] = {"image": [], "label": []}
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(buf, format="PNG")
            rows["image"].append({"bytes": buf.getvalue(), "path": None})
            rows["label"].append(i % len(names))
        (root / "data").mkdir(parents=True, exist_ok=True)
        out = root / "data" / f"{split}-00000-of-00001.parquet"
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(str(out))
    return root


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a factory
    """A function that caches a small dataset as the hub's Falah/Alzheimer_MRI at a commit, offline."""
    import datasets

    monkeypatch.setenv("MRIAUG_CACHE", str(tmp_path / "mriaug"))  # each test decodes its own hub cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def make(commit: str, names: list[str]) -> None:
        src = _parquet_folder(tmp_path / f"src-{commit[:7]}", names)
        b = datasets.load_dataset_builder(str(src), cache_dir=str(tmp_path / "build"))
        b.download_and_prepare()
        dst = tmp_path / "hf" / "datasets" / "Falah___alzheimer_mri" / "default" / "0.0.0" / commit
        dst.mkdir(parents=True)
        for f in Path(b.cache_dir).iterdir():
            name = "alzheimer_mri-" + f.name.rsplit("-", 1)[1] if f.suffix == ".arrow" else f.name
            shutil.copy(f, dst / name)
        info = json.loads((dst / "dataset_info.json").read_text())
        (dst / "dataset_info.json").write_text(json.dumps({**info, "config_name": "default",
                                                           "dataset_name": "alzheimer_mri"}))
    return make


def test_default_source_is_read_at_the_pinned_commit_and_records_it(hub_cache) -> None:  # noqa: ANN001
    assert data.HUB_REVISIONS["Falah/Alzheimer_MRI"] == PINNED
    hub_cache(PINNED, list(CLASSES))
    ds = data.load(data.DataSpec())
    assert ds.source == {"source": "hf:Falah/Alzheimer_MRI", "options": {}, "revision": PINNED}
    assert ds.train_x.shape == (16, 16, 16)
    assert data.load(data.DataSpec()).source["revision"] == PINNED  # from mriaug's own cache too


def test_a_cache_at_another_commit_is_refused(hub_cache) -> None:  # noqa: ANN001
    other = "1" * 40
    hub_cache(other, list(CLASSES))  # offline, `datasets` would silently read this one instead
    with pytest.raises(DataError, match=f"asked for revision {PINNED}, but the cache holds {other}; run "
                                        r"`mriaug prefetch --data hf:Falah/Alzheimer_MRI`"):
        data.load(data.DataSpec())
    # Asked for by name (a branch), whatever the cache holds is read, and recorded.
    ds = data.load(data.DataSpec("hf:Falah/Alzheimer_MRI", {"revision": "main"}))
    assert ds.source["revision"] == other


def test_a_relabelled_hub_dataset_is_an_error_naming_its_labels(hub_cache) -> None:  # noqa: ANN001
    hub_cache(PINNED, ["Non_Demented", "Mild_Demented", "Moderate_Demented"])
    with pytest.raises(DataError, match=r"split train: labels \['Non_Demented', 'Mild_Demented', "
                                        r"'Moderate_Demented'\] are not the four classes"):
        data.load(data.DataSpec())


def test_unknown_labels_in_a_parquet_folder_are_named(tmp_path: Path) -> None:
    src = _parquet_folder(tmp_path / "pq", ["CN", "MCI", "AD"])
    with pytest.raises(DataError, match=r"labels \['CN', 'MCI', 'AD'\] are not the four classes"):
        data.load(data.DataSpec(str(src)))
