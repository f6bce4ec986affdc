from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mriaug import data, phantom
from mriaug.classes import CLASSES, UnknownClassError, class_index
from mriaug.data import DataError, DataSpec


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
