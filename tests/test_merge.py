"""The data option `merge` (issue 28): classes relabelled after the split; everything after follows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import classes
from mriaug.data import sources as data
from mriaug.data.sources import DataSpec
from mriaug.errors import DataError, SettingError
from mriaug.plan import scenarios

BASE = {"n_train": 480, "n_test": 160, "size": 32, "split": "subject", "val_fraction": 0.2}
MERGE = {"Moderate_Demented": "Mild_Demented"}


def test_merged_classes_and_their_problems() -> None:
    names, to_new = classes.merged_classes(MERGE)
    assert names == ("Mild_Demented", "Non_Demented", "Very_Mild_Demented") and to_new == (0, 0, 1, 2)
    two, m2 = classes.merged_classes({"mild": "Demented", "Moderate_Demented": "Demented", "very mild": "Demented"})
    assert two == ("Demented", "Non_Demented") and m2 == (0, 0, 1, 0)
    assert classes.merge_problem(MERGE) is None
    assert "unknown class 'Severe'" in str(classes.merge_problem({"Severe": "Mild_Demented"}))
    assert classes.merge_problem({"Moderate_Demented": "Mild_Demented", "Mild_Demented": "Demented"}) == (
        "Moderate_Demented joins Mild_Demented, which itself joins Demented: name the final class directly")
    assert classes.merge_problem({c: "All" for c in classes.CLASSES}) == "leaves fewer than two classes"
    assert classes.merge_problem([]) is not None
    with pytest.raises(DataError, match="option merge: leaves fewer than two classes"):
        data.load(DataSpec("phantom", {**BASE, "merge": {c: "All" for c in classes.CLASSES}}))


def test_a_merge_target_is_a_class_or_a_shared_new_name_never_a_near_miss_nor_the_class_itself() -> None:
    """Issue 32: a typo in a target made a class of its own; a class merged into itself changed the fingerprint."""
    typo = classes.merge_problem({"Moderate_Demented": "Mild_Demeted"})
    assert typo is not None and "'Mild_Demeted' is no class but resembles Mild_Demented" in typo
    # A near-miss is refused even where it would be a shared new name.
    shared_typo = {"Moderate_Demented": "Non_Dementd", "Very_Mild_Demented": "Non_Dementd"}
    assert "resembles Non_Demented" in str(classes.merge_problem(shared_typo))
    # A new name is for several classes merged into one, not for renaming one.
    lone = classes.merge_problem({"Moderate_Demented": "Demented"})
    assert lone is not None and "'Demented' is not one of the source's classes" in lone
    assert classes.merge_problem({"Mild_Demented": "Demented", "Moderate_Demented": "Demented"}) is None
    assert classes.merge_problem({"Mild_Demented": "Dementia", "Moderate": "Dementia", "very mild": "Dementia"}) is None
    for itself in ({"Mild_Demented": "Mild_Demented"}, {"mild": "Mild_Demented"},
                   {"Moderate_Demented": "Mild_Demented", "Mild_Demented": "mild demented"}):
        assert "merges a class into itself" in str(classes.merge_problem(itself)), itself
    # A source class misspelt is named with the class it resembles; a chain is found through any spelling.
    assert "unknown class 'Moderate_Demeted' (did you mean Moderate_Demented?)" in str(
        classes.merge_problem({"Moderate_Demeted": "Mild_Demented"}))
    chain = {"Moderate": "Mild_Demented", "Mild": "Demented", "Very_Mild": "Demented"}
    assert classes.merge_problem(chain) == (
        "Moderate joins Mild_Demented, which itself joins Demented: name the final class directly")
    with pytest.raises(DataError, match="option merge: Moderate_Demented = 'Mild_Demeted'"):
        data.load(DataSpec("phantom", {**BASE, "merge": {"Moderate_Demented": "Mild_Demeted"}}))


def test_a_merge_relabels_the_same_split_and_its_counts_add_up() -> None:
    plain = data.load(DataSpec("phantom", BASE))
    merged = data.load(DataSpec("phantom", {**BASE, "merge": MERGE}))
    # The same images and split (stratified by the source's four classes), other labels and fingerprint.
    np.testing.assert_array_equal(plain.train_x, merged.train_x)
    np.testing.assert_array_equal(plain.val_rows, merged.val_rows)
    assert merged.fingerprint != plain.fingerprint and merged.unmerged_fingerprint == plain.fingerprint
    assert merged.classes == ("Mild_Demented", "Non_Demented", "Very_Mild_Demented")
    for part in ("train", "test"):
        before, after = plain.counts(part), merged.counts(part)
        assert after == {"Mild_Demented": before["Mild_Demented"] + before["Moderate_Demented"],
                         "Non_Demented": before["Non_Demented"], "Very_Mild_Demented": before["Very_Mild_Demented"]}
        assert sum(after.values()) == sum(before.values())
    assert merged.label("Moderate_Demented") == 0 and merged.label("Very_Mild_Demented") == 2


def test_a_scenario_over_merged_classes() -> None:
    merged = data.load(DataSpec("phantom", {**BASE, "merge": MERGE}))
    s3 = scenarios.SCENARIOS["3"].over(merged)
    assert s3.real_fraction == (1.0, 1.0, 1.0) and s3.synthetic_fraction == (0.2, 0.0, 0.0)
    two = data.load(DataSpec("phantom", {**BASE, "merge": {"Mild_Demented": "Demented", "Moderate_Demented":
                                                           "Demented", "Very_Mild_Demented": "Demented"}}))
    with pytest.raises(SettingError, match="synthetic_fraction differs among the classes merged into Demented "
                                           r"\(Mild_Demented 0.2, Moderate_Demented 0.2, Very_Mild_Demented 0\)"):
        scenarios.SCENARIOS["3"].over(two)


def test_a_merged_phantom_grid_records_three_classes_and_its_report_three_way_chance(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(f"""
name = "merged"
results = "{tmp_path / 'results'}"
models = ["cnn"]
scenarios = ["1", "3"]
augmentations = ["none"]
seeds = 2
pool = "{tmp_path / 'pool'}"
select = "best_val"

[data]
source = "phantom"
n_train = 480
n_test = 160
size = 32
split = "subject"
val_fraction = 0.2
merge = {{Moderate_Demented = "Mild_Demented"}}

[model.cnn]
epochs = 1
batch_size = 32
resolution = 32
class_weight = "balanced"
""")
    run = CliRunner()
    # The pool is made for the source's four classes; the merged runs map its Moderate images to Mild.
    made = run.invoke(app, ["synth", "--grid", str(grid), "--generator", "copy", "--classes",
                            "Mild_Demented,Moderate_Demented"])
    assert made.exit_code == 0, made.output
    res = run.invoke(app, ["grid", str(grid)])
    assert res.exit_code == 0, res.output
    import json

    files = sorted((tmp_path / "results").glob("*.json"))
    assert len(files) == 4
    three = ["Mild_Demented", "Non_Demented", "Very_Mild_Demented"]
    for f in files:
        r = json.loads(f.read_text())
        assert list(r["metrics"]["per_class"]) == three and r["metrics"]["confusion_labels"] == three
        assert len(r["metrics"]["confusion"]) == 3
        for part in ("real", "synthetic", "test", "val"):
            assert list(r["counts"][part]) == three
        if r["spec"]["scenario"]["name"] == "3":
            # 20% of the merged Mild class's training images, from Mild and Moderate sources alike
            n_mild = r["counts"]["real"]["Mild_Demented"]
            assert r["counts"]["synthetic"] == {"Mild_Demented": round(0.2 * n_mild), "Non_Demented": 0,
                                                "Very_Mild_Demented": 0}
    runs = (tmp_path / "results" / "tables" / "runs.csv").read_text().splitlines()
    header = runs[0].split(",")
    moderate = header.index("recall:Moderate_Demented")
    assert all(line.split(",")[moderate] == "" for line in runs[1:])
    rep = run.invoke(app, ["report", str(tmp_path / "results"), "--out", str(tmp_path / "report")])
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "chance (uniform over 3 classes)" in md and "chance (uniform over 4 classes)" not in md
    thesis = run.invoke(app, ["collect", str(tmp_path / "results"), "--out", str(tmp_path / "t"), "--thesis"])
    assert "its classes are merged" in thesis.output
