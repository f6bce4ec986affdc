"""The default hub source is read at a pinned commit; the commit read is recorded; labels are checked.

The hub cannot be reached here, so the tests lay out what `datasets` leaves in its cache after reading
a hub dataset (`<HF_DATASETS_CACHE>/Falah___alzheimer_mri/default/0.0.0/<commit>/`) and let the real
loading code read it offline, as a job on a compute node does after `mriaug prefetch`.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mriaug import data
from mriaug.classes import CLASSES
from mriaug.errors import DataError

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
