"""`mriaug report`: one self-contained HTML document (and a Markdown twin) with everything a results folder
holds: the thesis tables with intervals, forest plots of each scenario against scenario 1, per-seed box
plots, the data (class counts, leakage, examples), the pools (real beside synthetic, fidelity), the
augmentations, Grad-CAM, and provenance.

The HTML embeds every figure as a data URI and refers to nothing outside itself (it opens offline, can be
mailed); the Markdown refers to the same figures as files in `figures/`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import audit, bids, pools
from ..data import sources as data_mod
from ..data.classes import CLASSES, class_index
from ..engine import augment, batches
from ..errors import MriaugError, SettingError
from ..plan import augmentations
from ..store import atomic, results
from . import collect, statistics
from .plots import png, pyplot

HTML = "report.html"
MARKDOWN = "report.md"
METRICS = {"test_ce": "test cross-entropy (lower is better)", "accuracy": "accuracy",
           "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1",
           # per whole test scan (a scan's prediction: the mean of its slices' probabilities), beside the per-image
           "scan_ce": "cross-entropy per scan (lower is better)", "scan_accuracy": "accuracy per scan",
           "scan_balanced_accuracy": "balanced accuracy per scan"}
Log = Callable[[str], None]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |\n|" + "---|" * len(self.columns) + "\n"
        return f"**{self.caption}**\n\n" + head + "".join("| " + " | ".join(r) + " |\n" for r in self.rows)


@dataclass
class Figure:
    name: str  # file name in figures/
    caption: str
    data: bytes

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.data).decode()


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    figures_first: bool = False  # the forest plots are the answer; their table is the detail


@dataclass
class Loaded:
    """A dataset the runs name, with its data fingerprint (runs.csv's `data_fingerprint`) and, with repeated
    subject splits (`splits = K`), which split it is: seed s is tested on split s mod K."""
    ds: data_mod.Dataset
    spec: dict[str, Any]
    fingerprint: str
    split: int | None = None  # 0..K-1; None for a grid with one split
    splits: int = 1

    @property
    def name(self) -> str:
        """How the report names it: `split 2 of 5 (data 9954105153af1e1e)`, or `data 9954105153af1e1e`."""
        data = f"data {self.fingerprint}"
        return data if self.split is None else f"split {self.split} of {self.splits} ({data})"


Datasets = dict[str, Loaded]


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{float(v):.{digits}f}"


# --- tables with intervals and forest plots --------------------------------------------------------------


DIFF_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece", "scan_ce", "scan_balanced_accuracy")


def _label(scen: str, pool: str, aug: str) -> str:
    """A comparison's name as the tables name its row and column: scenario, pool, augmentation."""
    return " · ".join([f"Scenario {scen}", *([pool] if pool else []), augmentations.LABELS.get(aug, aug)])


def _stats_sections(c: collect.Collected) -> tuple[Section, Section]:
    """The tables exactly as `mriaug collect` prints them (one block per collect table, its name, caption, cells
    and legend), then per table the paired differences of every metric and a forest plot in the same order."""
    tables = Section("intervals", "Results: the thesis tables with 95% confidence intervals")
    forest = Section("scenarios", "Each scenario against scenario 1: paired differences", figures_first=True)
    if c.runs.empty:
        tables.paragraphs.append("No runs in this folder yet.")
        forest.paragraphs.append("No runs in this folder yet.")
        return tables, forest
    tables.paragraphs.append(
        "One block per table of mriaug collect (runs of one model and setting), with the same cells: the median "
        "over seeds, its distribution-free 95% interval, the number of seeds n and the failed (diverged) runs "
        "among them; * marks a Holm-corrected Wilcoxon signed-rank p < 0.05 against scenario 1 of the column.")
    for name in c.table_names():
        _table_block(c, name, tables)
    forest.paragraphs.append(
        "Per table, each scenario's paired difference from scenario 1 (same seed, same augmentation and, with "
        "repeated splits, the same test patients): the median difference and its distribution-free 95% interval, "
        "for every metric, with the raw and the Holm-corrected Wilcoxon p. For test cross-entropy and ECE, left of "
        "zero is better; for the others, right of zero.")
    for name in c.table_names():
        _differences_block(c, name, forest)
    return tables, forest


def _table_block(c: collect.Collected, name: str, tables: Section) -> None:
    """One collect table in `tables`: its cells per metric, its legend, its recalls and its baselines."""
    info = c.tables[name]
    where = f" [{info.setting}]" if info.setting else ""
    for metric, label in METRICS.items():
        if c.runs.loc[c.runs["table"] == name, metric].isna().all():
            continue  # results from before per-scan scores
        t = c.table(name, metric)
        tables.tables.append(Table(f"{name}{where}: median {label}", ["scenario", *t.columns],
                                   [[str(i), *map(str, r)] for i, r in zip(t.index, t.values, strict=True)]))
    tables.paragraphs.append(f"{name}: {c.legend(name)}")
    recall = _recall_table(c, name)
    if recall is not None:
        tables.tables.append(recall)
    baselines = _baselines(c, name)
    if baselines is not None:
        tables.tables.append(baselines)


def _differences_block(c: collect.Collected, name: str, forest: Section) -> None:
    """One table's paired differences from scenario 1 in `forest`: the forest plot of test CE and the rows of
    every metric."""
    rows = []
    first: pd.DataFrame | None = None
    for metric in DIFF_METRICS:
        d = c.stats(metric)
        d = d[(d["table"] == name) & (d["scenario"] != statistics.BASELINE)].dropna(subset=["diff_median"])
        if metric == "test_ce":
            first = d
        rows += [[_label(str(r["scenario"]), str(r["pool"]), str(r["augmentation"])), metric,
                  _f(r["diff_median"]), f"[{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}]",
                  str(r["n_pairs"]), _f(r["p_wilcoxon"], 4), _f(r["p_holm"], 4), _f(r["prob_improvement"], 2),
                  _f(r["mde"])]
                 for _, r in d.iterrows()]
    if first is not None:
        fig = _forest(first, name)
        if fig is not None:
            forest.figures.append(fig)
    if rows:
        forest.tables.append(Table(f"{name}: paired differences from scenario 1 (other minus scenario 1)",
                                   ["comparison", "metric", "median diff", "95% interval", "pairs", "p",
                                    "p (Holm)", "P(improvement)", "detectable (80%)"], rows))


def _classes(c: collect.Collected, name: str) -> list[str]:
    """The classes of a table's runs (after a data option `merge`, fewer than the four), from their test counts."""
    files = set(c.runs.loc[c.runs["table"] == name, "file"])
    found = dict.fromkeys(k for r in c.counts if r["file"] in files for k in r["test"])
    return list(found) or list(CLASSES)


def _recall_table(c: collect.Collected, name: str) -> Table | None:
    """Median recall of each class per cell: whether a model finds the rare classes at all."""
    rows = []
    classes = _classes(c, name)
    for label, scen, pool in c.rows(name):
        for aug in c.augmentations(name):
            cells = []
            for cls in classes:
                s = c.stats(statistics.RECALL + cls)
                r = s[(s["table"] == name) & (s["scenario"] == scen) & (s["pool"] == pool) & (s["augmentation"] == aug)]
                cells.append(_f(r.iloc[0]["median"]) if len(r) else "—")
            rows.append([f"{label} · {augmentations.LABELS.get(aug, aug)}", *cells])
    return Table(f"{name}: median recall per class", ["cell", *classes], rows) if rows else None


def _baselines(c: collect.Collected, name: str) -> Table | None:
    """What a classifier that learnt nothing scores on the same test images: chance (uniform over the four
    classes) and the majority class of the training part (medians over the table's runs, whose test sets may
    differ with repeated splits)."""
    files = set(c.runs.loc[c.runs["table"] == name, "file"])
    counts = [r for r in c.counts if r["file"] in files]
    if not counts:
        return None
    acc_major, ce_prior = [], []
    classes = _classes(c, name)
    for r in counts:
        test = np.array([r["test"].get(k, 0) for k in classes], dtype=float)
        train = np.array([r["train"].get(k, 0) for k in classes], dtype=float)
        if test.sum() == 0 or train.sum() == 0:
            continue
        prior = train / train.sum()
        acc_major.append(test[int(prior.argmax())] / test.sum())
        with np.errstate(divide="ignore"):
            ce_prior.append(float(-(test / test.sum() * np.log(prior)).sum()))
    if not acc_major:
        return None
    k = len(classes)
    return Table(f"{name}: baselines on the same test images", ["baseline", "test CE", "accuracy",
                                                                 "balanced accuracy", "macro F1"],
                 [[f"chance (uniform over {k} classes)", _f(math.log(k)), _f(1 / k), _f(1 / k), "—"],
                  ["majority class of the training part (its class priors for CE)", _f(float(np.median(ce_prior))),
                   _f(float(np.median(acc_major))), _f(1 / k),
                   _f(float(np.median([2 * a / (1 + a) / k for a in acc_major])))]])


def _forest(d: pd.DataFrame, name: str) -> Figure | None:
    """Paired differences of test CE, one line per comparison, top to bottom in the order of the table."""
    d = d.dropna(subset=["diff_median"])
    if d.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(d)))
    augs = list(augmentations.NAMES)
    labels = []
    for i, (_, r) in enumerate(d.iterrows()):
        y = len(d) - 1 - i  # the first row of the table at the top
        color = f"C{augs.index(r['augmentation']) if r['augmentation'] in augs else 3}"
        lo, hi = float(r["diff_ci_low"]), float(r["diff_ci_high"])
        span = [v if math.isfinite(v) else (ax.get_xlim()[1] if v > 0 else ax.get_xlim()[0]) for v in (lo, hi)]
        ax.plot(span, [y, y], color=color, lw=2)
        if math.isfinite(float(r["diff_median"])):
            ax.plot([r["diff_median"]], [y], "o", color=color)
        labels.append((y, _label(str(r["scenario"]), str(r["pool"]), str(r["augmentation"]))))
    ax.axvline(0, color="black", lw=0.8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))  # small differences print long tick labels: keep them apart
    ax.tick_params(axis="x", labelsize=8)
    ax.set_yticks([y for y, _ in labels], [t for _, t in labels], fontsize=7)
    ax.set_xlabel("test cross-entropy minus scenario 1 (paired by seed)")
    ax.set_title(f"{name}: difference from scenario 1 with 95% interval", fontsize=9)
    fig.tight_layout()
    return Figure(f"forest_{name}.png", f"{name}: each scenario's paired difference from scenario 1", png(fig))


def _box_section(c: collect.Collected, out: Path) -> Section:
    s = Section("boxplots", "Per-seed results (box plots)")
    s.paragraphs.append("Test cross-entropy of every run, one box per row and augmentation of each table, seeds as "
                        "points.")
    for name in c.table_names():
        tmp = out / "figures" / f"box_{name}.png"
        if c.figure(name, tmp):
            s.figures.append(Figure(tmp.name, f"{name}: test cross-entropy per run", tmp.read_bytes()))
    return s


def _methods_section(c: collect.Collected, raw: list[results.RunResult]) -> Section:
    """What a methods reader needs per table: the hyper-parameters, the budget, which weights were tested and
    the epochs selection chose, the seeds and the splits."""
    s = Section("methods", "Methods: hyper-parameters, budget, selection")
    by_id = {r.run_id: r for r in raw}
    rows = []
    for name in c.table_names():
        info = c.tables[name]
        mine = [by_id[i] for i in c.runs.loc[c.runs["table"] == name, "run_id"] if i in by_id]
        if not mine:
            continue
        hp = mine[0].hparams
        # Results from before training was recorded: the only budget and selection there were then.
        training = [r.training or results.Training() for r in mine]
        epochs = [t.selected_epoch for t in training if isinstance(t.selected_epoch, int)]
        selected = (f"median {float(np.median(epochs)):g} (range {min(epochs)}-{max(epochs)}) of {hp.get('epochs')}"
                    if epochs else "—")
        # What the runs ran in (a bf16 grid runs in fp32 where the device has no bf16); the grid's ask only where
        # no run of the table recorded it (results from before it was recorded, diverged runs).
        ran = sorted({t.precision for t in training if t.precision})
        precision = ", ".join(ran) if ran else f"{hp.get('precision')} (asked)"
        rows.append([name, str(hp.get("arch")), str(hp.get("resolution")), str(hp.get("epochs")),
                     str(hp.get("batch_size")), f"{hp.get('lr'):g}", f"{hp.get('weight_decay', 0.0):g}",
                     precision, "yes" if hp.get("pretrained") else "no",
                     str(training[0].budget), str(training[0].select), selected,
                     str(c.runs.loc[c.runs["table"] == name, "seed"].nunique()), str(info.splits)])
    s.tables.append(Table("Per table", ["table", "architecture", "pixels", "epochs", "batch", "lr", "weight decay",
                                        "precision", "pretrained", "budget", "weights tested", "selected epoch",
                                        "seeds", "splits"], rows))
    s.paragraphs.append("Budget steps: every scenario trains the optimizer steps scenario 1 takes in its epochs; "
                        "weights tested best_val: those of the epoch with the lowest validation loss, per run.")
    s.paragraphs.append("Precision: what the runs ran in, which is fp32 where a grid asked for bf16 on a device "
                        "without it; \"(asked)\" marks the grid's setting where no run recorded what ran.")
    return s


# --- data: counts, leakage, examples -------------------------------------------------------------------------


def nearest_neighbour_leakage(ds: data_mod.Dataset) -> dict[str, Any]:
    """The audit's leakage check (`mriaug data audit`, one computation for both): 1-NN accuracy from the training
    split to every test image on 32x32 pixels, and the nearest distances test->train and train->train."""
    acc, test_dist, train_dist = audit.pixel_leakage(ds)
    return {"test_images": int(len(ds.test_y)), "nn_accuracy": acc,
            "median_nn_distance_test": float(np.median(test_dist)),
            "median_nn_distance_train": float(np.median(train_dist)),
            "distances_test": test_dist.tolist(), "distances_train": train_dist.tolist()}


def _split_words(ds: data_mod.Dataset) -> str:
    """The split in words, from the split's own record."""
    sp = ds.split
    if sp.get("kind") != "subject":
        return (f"the source's given train/test split (validation: {len(ds.val_rows)} training images held out)")
    g = sp.get("groups_per_part") or {}
    grouping = sp.get("grouping") or {}
    # A BIDS cohort's groups are its participants as written; only an image folder's are recovered from pixels.
    groups = ("participants (as the cohort's folders name them)" if grouping.get("method") == bids.METHOD
              else "scan groups recovered from the images")
    words = (f"a subject split (split seed {sp.get('seed')}): {grouping.get('groups', '?')} {groups}, "
             f"whole groups to train / validation / test ({g.get('train', '?')} / "
             f"{g.get('val', '?')} / {g.get('test', '?')}), so no scan has images on two sides")
    if int(sp.get("splits", 1)) > 1:
        words += f"; one of {sp['splits']} such splits the runs use (seed s on split s mod {sp['splits']})"
    return words


def _test_name(d: Loaded) -> str:
    """Which runs are tested on `d`, for a caption: `split 2 of 5 (seeds s with s mod 5 = 2)`."""
    if d.split is None:
        return d.name
    return f"{d.name}; the runs with seed mod {d.splits} = {d.split}"


def _counts_table(d: Loaded) -> Table:
    """Images per class in the training, validation and test parts of one dataset."""
    ds, spec = d.ds, d.spec
    fit = {name: int(((ds.train_y == k) & ds.fit_mask).sum()) for k, name in enumerate(ds.classes)}
    val = {name: int((ds.train_y[ds.val_rows] == k).sum()) for k, name in enumerate(ds.classes)}
    te = ds.counts("test")
    return Table(f"Images per class and part ({spec['source']}, {d.name})",
                 ["class", "train", "validation", "test"],
                 [[k, str(fit[k]), str(val[k]), str(te[k])] for k in fit] +
                 [["total", str(sum(fit.values())), str(sum(val.values())), str(sum(te.values()))]])


def _leakage_table(d: Loaded, split: str, leak: dict[str, Any]) -> Table:
    return Table(f"Leakage check, {d.name} (the numbers of mriaug data audit): nearest training image "
                 "of every test image, 32x32 pixels",
                 ["split", "test images", "1-NN accuracy", "median distance test→train",
                  "median distance train→other train"],
                 [[split if d.split is None else f"{d.split} ({split})", str(leak["test_images"]),
                   _f(leak["nn_accuracy"]), _f(leak["median_nn_distance_test"], 1),
                   _f(leak["median_nn_distance_train"], 1)]])


def _leakage_figure(key: str, d: Loaded, leak: dict[str, Any], where: str) -> Figure:
    """Histograms of the test images' and the training images' distances to their nearest training image."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 2.8))
    bins = np.linspace(0, max(max(leak["distances_test"]), max(leak["distances_train"])) + 1e-9, 40)
    ax.hist(leak["distances_train"], bins=bins, alpha=0.6, label="train → nearest other train image")
    ax.hist(leak["distances_test"], bins=bins, alpha=0.6, label="test → nearest train image")
    ax.set_xlabel("Euclidean pixel distance (32x32, 0-255 scale, as mriaug data audit)")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    ax.set_title(f"Leakage{where}: how close test images are to training images", fontsize=9)
    fig.tight_layout()
    return Figure(f"leakage_{key}.png", f"Nearest-neighbour distances, {_test_name(d)}; test images "
                  "as close to training images as training images to each other signal shared scans", png(fig))


def _data_sections(datasets: Datasets, seed: int) -> tuple[Section, Section]:
    """Per dataset (per split, in split order): class counts, the leakage check and its histogram, examples;
    each named by its split number and the data fingerprint runs.csv holds."""
    s = Section("data", "Data: class counts and leakage")
    ex = Section("examples", "Example images per class")
    if not datasets:
        s.paragraphs.append("No dataset is named by the runs in this folder.")
        return s, ex
    for key, d in datasets.items():
        ds, spec = d.ds, d.spec
        s.tables.append(_counts_table(d))
        split = str(ds.split.get("kind", "given"))
        s.paragraphs.append(f"{d.name[0].upper()}{d.name[1:]}: {_split_words(ds)}.")
        leak = nearest_neighbour_leakage(ds)
        s.tables.append(_leakage_table(d, split, leak))
        if split != "subject":
            s.warnings.append(
                f"The train/test split of {spec['source']} is not by subject (split = {split!r}). MRI slices of one "
                "scan are near copies of each other, and this split puts slices of the same scans on both sides: "
                f"the nearest training image alone labels {leak['nn_accuracy']:.0%} of the probed test images "
                "correctly. Test scores then measure recognition of patients already seen in training, not "
                "generalisation to new patients; draw conclusions about synthetic images from a split by subject.")
        where = "" if d.split is None else f", split {d.split} of {d.splits}"
        s.figures.append(_leakage_figure(key, d, leak, where))
        ex.figures.append(Figure(f"examples_{key}.png", f"Training images per class ({spec['source']}, "
                                 f"{_test_name(d)})", _examples(ds, seed, where[2:])))
    s.paragraphs.append("Image counts per class of each split (thesis Table 2.1), and a leakage check: a "
                        "1-nearest-neighbour classifier on raw pixels. Near-perfect 1-NN accuracy means the test "
                        "split shares scans with the training split.")
    return s, ex


def _examples(ds: data_mod.Dataset, seed: int, title: str = "", per_class: int = 6) -> bytes:
    plt = pyplot()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(ds.classes), per_class, figsize=(1.4 * per_class, 1.5 * len(ds.classes)),
                             squeeze=False)
    for k, name in enumerate(ds.classes):
        rows = np.flatnonzero(ds.train_y == k)
        pick = rng.choice(rows, min(per_class, len(rows)), replace=False) if len(rows) else rows
        for j in range(per_class):
            ax = axes[k, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(ds.train_x[pick[j]], cmap="gray", vmin=0, vmax=255)
        axes[k, 0].set_title(name, fontsize=8, loc="left")
    if title:  # which split, on the picture too: the splits' grids look alike
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png(fig)


def _augment_section(datasets: Datasets, seed: int, used: Sequence[str]) -> Section:
    """The augmentation policies the runs used (`used`, "none" aside), each drawn three times on one training
    image per class of the first dataset (split 0 with repeated splits)."""
    import torch

    s = Section("augmentations", "Augmentation examples")
    policies = [a for a in augmentations.NAMES if a != "none" and a in set(used)]
    if datasets and not policies:
        s.paragraphs.append("The runs in this folder use no augmentation policy (none): nothing to show.")
        return s
    s.paragraphs.append("One training image per class under each augmentation policy the runs used, three draws "
                        "each (thesis Fig. 6.1); augmentation is applied to training batches only, never to test.")
    plt = pyplot()
    for key, d in list(datasets.items())[:1]:
        ds = d.ds
        rng = np.random.default_rng(seed)
        picks = [int(rng.choice(np.flatnonzero(ds.train_y == k))) for k in range(len(ds.classes))
                 if (ds.train_y == k).any()]
        x = torch.from_numpy(ds.train_x[picks])[:, None]
        cols = [("original", x)]
        ids = torch.as_tensor(np.asarray(picks, dtype=np.int64))
        for name in policies:
            for draw in range(3):  # three epochs' draws of the same images, as a run would make them
                keys = batches.image_keys(seed, draw, ids)
                cols.append((f"{name} #{draw + 1}", augment.get(name)(x.clone(), keys)))
        fig, axes = plt.subplots(len(picks), len(cols), figsize=(1.25 * len(cols), 1.35 * len(picks)), squeeze=False)
        for j, (title, imgs) in enumerate(cols):
            for i in range(len(picks)):
                axes[i, j].imshow(imgs[i, 0].numpy(), cmap="gray", vmin=0, vmax=255)
                axes[i, j].axis("off")
                if i == 0:
                    axes[i, j].set_title(title, fontsize=6)
        fig.tight_layout()
        s.figures.append(Figure(f"augmentations_{key}.png", f"{d.name[0].upper()}{d.name[1:]}; rows: classes " +
                                ", ".join(ds.classes[int(ds.train_y[p])] for p in picks), png(fig)))
    if not datasets:
        s.paragraphs.append("No dataset is named by the runs in this folder.")
    return s


# --- pools ------------------------------------------------------------------------------------------------------


def _pool_section(pool_paths: Sequence[Path], datasets: Datasets, log: Log) -> Section:
    from . import pool_report

    s = Section("pools", "Real beside synthetic per pool")
    if not pool_paths:
        s.paragraphs.append("No pool: the runs in this folder add no synthetic images (scenarios 1 and 2 only).")
        return s
    s.paragraphs.append("Per pool: real sources (upper rows) above their variations (lower rows), thesis Fig. 2.2 "
                        "(for a pool made per split, the first split's); per class: SSIM to the source, KID on "
                        "features of a CNN trained on the real training part, real against synthetic beside real "
                        "against real (the floor), the share of near-copies of training images (memorisation) and "
                        "class fidelity (that CNN's agreement with the intended class, beside its recall on real "
                        "held-out images), each with its verdict.")
    pictured: set[Path] = set()
    for path in pool_paths:
        name = f"{path.parent.name}/{path.name}" if path.name.startswith("split-") else path.name
        ds = _dataset_for_pool(path, datasets)
        if ds is None:
            s.warnings.append(f"pool {path}: its dataset is not among the runs' datasets; left out")
            continue
        try:
            pool = pools.load(path, ds)
        except Exception as e:  # a moved or re-made pool must not stop the report
            s.warnings.append(f"pool {path}: cannot be read ({e}); left out")
            continue
        report_file = path / pool_report.REPORT_JSON
        rep = json.loads(report_file.read_text()) if report_file.exists() else {}
        if rep.get("pool_fingerprint") != pool.fingerprint or not all(
                "kid_real_vs_synthetic" in v and "near_copy_share" in v for v in rep.get("per_class", {}).values()):
            log(f"pool {path}: computing its quality numbers")
            rep = pool_report.quality(pool, ds)
        if path.parent not in pictured or not path.name.startswith("split-"):
            pictured.add(path.parent)
            s.figures.append(Figure(f"pool_{name.replace('/', '_')}.png", f"{name} ({pool.meta.get('generator', '?')}, "
                                    f"{len(pool.labels)} images, fingerprint {pool.fingerprint})",
                                    pool_report.figure(pool, ds)))
        rows = [[cls, str(v["images"]), _f(v["ssim_to_source_mean"]), _f(v.get("kid_real_vs_synthetic"), 2),
                 _f(v.get("kid_real_vs_real"), 2), _f(v.get("near_copy_share"), 2), _f(v.get("class_fidelity"), 2),
                 _f(v.get("held_out_recall"), 2)]
                for cls, v in rep["per_class"].items()]
        columns = ["class", "images", "SSIM to source", "KID real vs synthetic", "KID real vs real (floor)",
                   "near-copy share", "class fidelity", "recall on real held-out"]
        s.tables.append(Table(f"{name}: quality per class", columns, rows))
        for line in pool_report.verdicts(rep):
            s.paragraphs.append(f"{name}: {line}")
    return s


def _dataset_for_pool(path: Path, datasets: Datasets) -> data_mod.Dataset | None:
    meta = path / pools.META
    if not meta.exists():
        return None
    src = pools.read_meta(path).get("data_source") or {}
    for d in datasets.values():
        if d.spec.get("source") == src.get("source") and dict(d.spec.get("options") or {}) == {
                **(data_mod.PHANTOM_DEFAULTS if src.get("source") == "phantom" else {}), **(src.get("options") or {})}:
            return d.ds
    return next(iter(datasets.values())).ds if len(datasets) == 1 else None


# --- Grad-CAM ---------------------------------------------------------------------------------------------------


def cam_outputs(cam_dirs: Sequence[Path]) -> list[Path]:
    """The `mriaug cam` outputs under each given folder (the folder itself, or one holding a cam output per cell,
    e.g. docs/study/cam/), each once, in order; a folder with none is refused (a mistyped path)."""
    from . import cam

    found: list[Path] = []
    for d in cam_dirs:
        d = Path(d)
        here = sorted({f.parent for f in d.rglob(cam.CAM_JSON)}) if d.is_dir() else []
        if not here:
            raise SettingError(f"--cam {d}: no {cam.CAM_JSON} in or below it; give a `mriaug cam --out` folder")
        found += [f for f in here if f not in found]
    return found


def _auto_cam(results_dir: Path, out: Path, pool_paths: Sequence[Path], c: collect.Collected,
              raw: Sequence[results.RunResult], datasets: Datasets, s: Section, log: Log) -> Path | None:
    """A small cam output of the first run of each model that kept weights, where no cam.json is given; None
    (and the reason in `s`) where there are no such runs or no pool of their data."""
    from . import cam

    has = [results.weights_for(results_dir, r).exists() for r in c.runs["run_id"]]
    kept = c.runs[has] if len(c.runs) else c.runs
    pool = None
    if not kept.empty:
        first = kept.sort_values(["model", "scenario", "augmentation", "seed"]).groupby("model").head(1)
        pool = _pool_of(next(r for r in raw if r.run_id == first["run_id"].iloc[0]), pool_paths, datasets)
    if kept.empty or pool is None:
        why = "no run in this folder kept its weights" if kept.empty else "no pool to pair real images with"
        s.paragraphs.append(f"No Grad-CAM maps: {why}. Train runs with `mriaug run ... --save-weights` (or "
                            "`save_weights = true` in the grid), then `mriaug cam RESULT_JSON... --pool POOL "
                            "--out DIR`; the report includes any `cam.json` under the results folder, or those "
                            "given with `--cam DIR`.")
        return None
    have = _pool_classes(pool)
    classes = [k for k in cam.DEFAULT_CLASSES if k in have] or have
    target = out / "cam"
    log(f"Grad-CAM of {len(first)} run(s) that kept weights, pool {pool}")
    try:
        cam.run_cam([results_dir / f for f in first["file"]], pool, target, classes=classes, pairs=4,
                    panel_pairs=3, road_images=2)
    except MriaugError as e:  # runs of several datasets, a pool moved: the report goes on without maps
        s.warnings.append(f"No Grad-CAM maps made here: {e}")
        return None
    return target


def _pool_of(r: results.RunResult, pool_paths: Sequence[Path], datasets: Datasets) -> Path | None:
    """A pool whose sources are rows of run `r`'s data: the one it mixed in or pretrained on, else one made from
    its split (a pool made for the source's classes serves a merge of them), else the first there is."""
    for own in (r.data.pool_path, r.pretraining.pool_path if r.pretraining else None):
        if own and Path(own).is_dir():
            return Path(own)
    d = datasets.get(str(r.data.fingerprint))
    ok = {d.ds.fingerprint, d.ds.unmerged_fingerprint} - {None} if d else {r.data.fingerprint}
    for p in pool_paths:
        if pools.read_meta(p).get("data_fingerprint") in ok:
            return p
    return pool_paths[0] if pool_paths else None


def _cam_section(results_dir: Path, out: Path, cam_dirs: Sequence[Path] | None, pool_paths: Sequence[Path],
                 c: collect.Collected, raw: Sequence[results.RunResult], datasets: Datasets, log: Log) -> Section:
    from . import cam

    s = Section("gradcam", "Grad-CAM: where the models look on real and synthetic images")
    found = cam_outputs(cam_dirs) if cam_dirs else sorted({p.parent for p in results_dir.rglob(cam.CAM_JSON)})
    if not found:
        made = _auto_cam(results_dir, out, pool_paths, c, raw, datasets, s, log)
        if made is None:
            return s
        found = [made]
    reps = [(d, json.loads((d / cam.CAM_JSON).read_text())) for d in found]
    targets = sorted({str(rep.get("target", "true class")) for _, rep in reps})
    s.paragraphs.append(
        f"Maps for {' / '.join(targets).replace('true class', 'the true class')} on real training images "
        "beside their variations in a pool (thesis Figs 3.1-3.4), one `mriaug cam` output per cell. Per source "
        "class, over every run's pairs: Pearson correlation of a real image's map and its variation's, IoU of their "
        "top-20% regions (1 = the model looks at the same places), ROAD (combined; higher = the map marks what the "
        "prediction rests on) on the real images and on the variations, the model's mean probability of the task "
        "class on each, and the seed stability: the mean correlation of one real image's maps from runs of "
        "different seeds. Under a merge a source keeps its own class and is scored on the task class it joined.")
    rows: list[list[str]] = []
    for i, (d, rep) in enumerate(reps):
        cells = _cam_cells(rep)
        s.paragraphs.append(_cam_words(d, rep, cells))
        stability: dict[str, list[str]] = {}  # per class, one value per cell of several seeds
        for st in rep.get("seed_stability", {}).values():
            for k, v in st["per_class"].items():
                stability.setdefault(k, []).append(_f(v["pearson"]))
        name = "; ".join(f"{x['name']} (seeds {', '.join(map(str, x['seeds']))})" for x in cells)
        for cls, v in rep["per_class"].items():
            task = v.get("task_class", cls)
            rows.append([name, cls if task == cls else f"{cls} (as {task})", str(v["pairs"]), str(v.get("runs", 1)),
                         _f(v["pearson"]), _f(v["iou"]), _f(v.get("road_real")), _f(v.get("road_synthetic")),
                         _f(v.get("p_target_real")), _f(v.get("p_target_synthetic")),
                         " / ".join(stability.get(cls, ["—"])), str(v.get("flat_maps", 0))])
        s.figures += _cam_figures(i, d, rep)
    s.tables.append(Table("Grad-CAM per cell and source class (means over the cell's runs)",
                          ["cell", "source class", "pairs", "runs", "pearson", "IoU top 20%", "ROAD real",
                           "ROAD variation", "P(class) real", "P(class) variation", "seed stability", "flat maps"],
                          rows))
    return s


def _cam_cells(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of a cam output as cam.json names them, or, in one written before it did, from its runs."""
    if rep.get("cells"):
        return list(rep["cells"])
    by: dict[str, dict[str, Any]] = {}
    for r in rep["runs"]:
        label = str(r.get("label", r["run_id"]))
        cell = by.setdefault(label.rsplit("/seed", 1)[0], {"name": label.rsplit("/seed", 1)[0], "seeds": []})
        cell["seeds"].append(label.rsplit("/seed", 1)[1] if "/seed" in label else "?")
    return list(by.values())


def _cam_words(d: Path, rep: dict[str, Any], cells: Sequence[dict[str, Any]]) -> str:
    """One cam output in words: its cells, seeds and runs, the pool and split, where its files are."""
    from .cam import pool_name

    split = rep.get("split") or {}
    where = f", split {split['seed']} of {split.get('splits', 1)}" if split.get("kind") == "subject" else ""
    parts = []
    for x in cells:  # the name says scenario, mixing pool and pretraining (`cam.cell_name`)
        text = (f"{x['name']}, seeds {', '.join(map(str, x['seeds']))}"
                + (f" (runs {', '.join(x['run_ids'])})" if x.get("run_ids") else ""))
        if x.get("trained_on_pool"):
            text += "; these runs trained on this pool's images, so the variations are not new to them"
        parts.append(text)
    return (f"`{d}`: {rep['method']} over {len(rep['runs'])} run(s), variations from pool "
            f"{pool_name(rep['pool'])} (`{rep['pool']}`, fingerprint {rep.get('pool_fingerprint', '?')}{where}). "
            + "; ".join(parts) + f". Every panel is in `{d}/panels/`.")


def _cam_figures(i: int, d: Path, rep: dict[str, Any]) -> list[Figure]:
    """Per cam output, each source class's panel of its first run: the classes side by side, not every seed."""
    from .cam import pool_name

    runs = {r["run_id"]: r for r in rep["runs"]}
    shown: set[str] = set()
    out = []
    for p in rep["panels"]:
        f = d / p["file"]
        if p["class"] in shown or not f.exists():
            continue
        shown.add(p["class"])
        r = runs.get(p["run_id"], {})
        cell = r.get("cell") or str(r.get("label", p["run_id"])).rsplit("/seed", 1)[0]
        seed = r.get("seed", str(r.get("label", "")).rsplit("/seed", 1)[-1])
        out.append(Figure(f"cam{i}_{Path(p['file']).name}", f"{cell}, seed {seed}: {p['class']} sources beside "
                          f"their variations from {pool_name(rep['pool'])}", f.read_bytes()))
    return out


def _pool_classes(pool: Path) -> list[str]:
    labels = {class_index(e["class"]) for e in pools.read_manifest(pool)} if (pool / pools.MANIFEST).exists() else set()
    return [CLASSES[k] for k in sorted(labels)]


# --- provenance ---------------------------------------------------------------------------------------------


def _provenance(results_dir: Path, c: collect.Collected, raw: list[results.RunResult],
                pool_paths: Sequence[Path]) -> Section:
    s = Section("provenance", "Data provenance: fingerprints, versions, runs")
    df = c.runs
    failed = sorted((results_dir / ".slurm" / "failed").glob("*.json"))
    diverged = df[~np.isfinite(df["test_ce"].astype(float))] if len(df) else df
    envs = pd.DataFrame([r.env for r in raw]) if raw else pd.DataFrame()

    def values(col: str) -> str:
        if col not in envs:
            return "—"
        v = sorted({str(x) for x in envs[col].dropna()})
        return ", ".join(v[:4]) + (f" (+{len(v) - 4} more)" if len(v) > 4 else "") if v else "—"

    rows = [
        ["results folder", str(results_dir)],
        ["runs", str(len(df))],
        ["models / scenarios / augmentations", f"{df['model'].nunique() if len(df) else 0} / "
         f"{df['scenario'].nunique() if len(df) else 0} / {df['augmentation'].nunique() if len(df) else 0}"],
        ["seeds per cell (min-max)", "—" if df.empty else
         f"{df.groupby(['table', 'scenario', 'pool', 'augmentation']).size().min()}-"
         f"{df.groupby(['table', 'scenario', 'pool', 'augmentation']).size().max()}"],
        ["failed runs (Slurm failure records)", str(len(failed))],
        ["diverged runs (counted as failed: the worst value of every metric)", str(len(diverged))],
        ["unreadable result files", str(len(c.errors))],
        ["data fingerprints", ", ".join(sorted({str(x) for x in df["data_fingerprint"].dropna()})) if len(df) else "—"],
        ["data sources", ", ".join(sorted({json.dumps(r.data.source, sort_keys=True) for r in raw})) or "—"],
        ["split", ", ".join(sorted({str((r.data_spec.get("options") or {}).get("split", "given"))
                                   for r in raw})) or "—"],
        ["pool fingerprints", ", ".join(sorted({str(x) for x in df["pool_fingerprint"].dropna()})) or "—"],
        ["pools", ", ".join(str(p) for p in pool_paths) or "—"],
        ["mriaug", values("mriaug")], ["git commit", values("git_commit")],
        ["container images", _container_images(raw)], ["torch", values("torch")],
        ["timm", values("timm")], ["python", values("python")], ["devices", values("device")],
        ["report written", datetime.now(UTC).isoformat(timespec="seconds")],
    ]
    s.tables.append(Table("Provenance", ["what", "value"], rows))
    for f in failed[:20]:
        try:
            rec = json.loads(f.read_text())
            s.warnings.append(f"failed: {rec.get('label', f.stem)} [{f.stem}]: {rec.get('error', '?')}")
        except (OSError, json.JSONDecodeError):
            s.warnings.append(f"failed: {f.stem} (record unreadable)")
    s.warnings += [f"unreadable result: {e}" for e in c.errors[:20]] + [f"warning: {w}" for w in c.warnings]
    return s


def _container_images(raw: list[results.RunResult]) -> str:
    """Each Apptainer image the runs ran in (path and identity); "none" for runs outside one, "not recorded"
    for results written before `env.container` existed."""
    seen = set()
    for r in raw:
        c = r.env.get("container", "not recorded")
        seen.add(c if isinstance(c, str) else "none" if c is None else f"{c['image']} ({c.get('id') or 'no id'})")
    return ", ".join(sorted(seen)) or "—"


# --- assembly ---------------------------------------------------------------------------------------------------


def _datasets(raw: list[results.RunResult], log: Log) -> Datasets:
    """Each dataset the runs name, once, keyed by its data fingerprint; with repeated splits in split order
    (0..K-1), each knowing its split number: a run of seed s with `splits = K` is tested on split s mod K."""
    found: dict[str, tuple[dict[str, Any], int | None, int]] = {}
    for r in raw:
        spec = r.data_spec
        key = str(r.data.fingerprint or atomic.stable_hash(spec))
        if key in found or "source" not in spec:
            continue
        k = int((spec.get("options") or {}).get("splits", 1))
        found[key] = (spec, r.seed % k if k > 1 else None, k)

    def order(key: str) -> tuple[str, int]:  # one source's splits together, each source's in split order
        spec, split, _ = found[key]
        rest = {o: v for o, v in (spec.get("options") or {}).items() if o != "split_seed"}
        return json.dumps([spec["source"], rest], sort_keys=True, default=str), -1 if split is None else split

    out: Datasets = {}
    for key in sorted(found, key=order):
        spec, split, k = found[key]
        try:
            ds = data_mod.load(data_mod.DataSpec(spec["source"], dict(spec.get("options") or {})))
        except Exception as e:  # a dataset moved since the runs: the report goes on without its pictures
            log(f"dataset {spec['source']}: not loadable here ({e}); its figures are left out")
            continue
        out[key] = Loaded(ds, spec, key, split, k)
    return out


def build(results_dir: str | Path, out: str | Path, *, pools_: Sequence[Path] | None = None,
          cam_dirs: Sequence[Path] | None = None, seed: int = 0, log: Log = lambda m: None) -> list[Section]:
    results_dir, out = Path(results_dir), Path(out)
    c = collect.gather(results_dir)
    raw = [r for _, r in results.scan(results_dir) if not isinstance(r, results.ResultError)]
    datasets = _datasets(raw, log)
    pool_paths: list[Path] = [Path(p) for p in pools_] if pools_ else sorted(
        {Path(r.data.pool_path) for r in raw if r.data.pool_path})
    if not pools_:  # pools a Grad-CAM output paired images from belong in the report too
        cams = [d / "cam.json" for d in cam_outputs(cam_dirs or [])] + list(results_dir.rglob("cam.json"))
        for f in cams:
            try:
                pool_paths.append(Path(json.loads(f.read_text())["pool"]))
            except (OSError, KeyError, TypeError, json.JSONDecodeError):
                continue
    pool_paths = list(dict.fromkeys(p for p in pool_paths if p.is_dir()))
    tables, forest = _stats_sections(c)
    data_s, examples = _data_sections(datasets, seed)
    return [tables, forest, _box_section(c, out), _methods_section(c, raw), data_s, examples,
            _pool_section(pool_paths, datasets, log),
            _augment_section(datasets, seed, list(c.runs["augmentation"]) if len(c.runs) else []),
            _cam_section(results_dir, out, cam_dirs, pool_paths, c, raw, datasets, log),
            _provenance(results_dir, c, raw, pool_paths)]


def inline(text: str) -> Any:
    """Text for HTML: escaped, with `code` spans (the Markdown twin's notation) as <code> instead of backticks."""
    import markupsafe

    parts = str(markupsafe.escape(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick is a character, not markup
        return markupsafe.Markup(str(markupsafe.escape(text)))
    return markupsafe.Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mriaug", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["inline"] = inline
    return env


def render_html(sections: Sequence[Section], title: str) -> str:
    return _environment().get_template("report.html.j2").render(title=title, sections=sections)


def render_markdown(sections: Sequence[Section], title: str) -> str:
    parts = [f"# {title}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        parts += [f"{p}\n" for p in s.paragraphs]
        parts += [f"> **Warning:** {w}\n" for w in s.warnings]
        tables = [t.markdown() for t in s.tables]
        figures = [f"![{f.caption}](figures/{f.name})\n\n*{f.caption}*\n" for f in s.figures]
        parts += figures + tables if s.figures_first else tables + figures
    return "\n".join(parts)


def write_report(results_dir: str | Path, out: str | Path, *, pools: Sequence[Path] | None = None,
                 cam_dirs: Sequence[Path] | None = None, seed: int = 0, log: Log = lambda m: None) -> list[Path]:
    """Write DIR/report.html (self-contained), DIR/report.md and the figures it refers to (DIR/figures/)."""
    out = Path(out)
    sections = build(results_dir, out, pools_=pools, cam_dirs=cam_dirs, seed=seed, log=log)
    title = f"mriaug report: {Path(results_dir).resolve().name}"
    for s in sections:
        for f in s.figures:
            atomic.write_bytes(out / "figures" / f.name, f.data)
    atomic.write_text(out / HTML, render_html(sections, title))
    atomic.write_text(out / MARKDOWN, render_markdown(sections, title))
    return [out / HTML, out / MARKDOWN]
