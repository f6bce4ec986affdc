"""Merge run results into the thesis tables: per model, rows scenarios (and pools), columns augmentations,
cells the median of a metric with its distribution-free 95% interval, the number of seeds behind it (failed
runs among them, at the metric's worst value) and a mark where the scenario differs from scenario 1 (paired
by seed, Holm-corrected); the numbers come from `statistics`, and `stats.csv` holds them all. A table holds
what was run: its scenarios, pools and augmentations, and only models with runs.

Runs of different data, split or hyper-parameters never share a cell: each setting of a model gets its own
table, named for what sets it apart; pools of one name but different content get different rows. The runs of
a grid's repeated subject splits (`[data] splits = K`) are one setting: their cells span the K splits.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import envlock
from ..data import splits
from ..data.classes import CLASSES
from ..data.sources import HUB_REVISIONS
from ..errors import ResultError
from ..plan import augmentations, hparams
from ..store import atomic, results
from . import statistics as st

BASE_SCENARIOS = ["1", "2", "3", "4"]
METRIC_COLUMNS = st.all_metrics()
LONG_COLUMNS = ["run_id", "table", "model", "scenario", "augmentation", "pool", "pretrain", "seed", *METRIC_COLUMNS,
                "n_real", "n_synthetic", "epochs", "data_fingerprint", "split", "split_index", "pool_fingerprint",
                "train_s", "file", "status"]
# The test split of Falah/Alzheimer_MRI as the thesis used it: a table compares with the thesis only when every
# run read that dataset from the hub at the pinned revision, under its given split, and was tested on these counts
# (a copy with the same counts, e.g. a re-split, is other data).
THESIS_SOURCE = "hf:Falah/Alzheimer_MRI"
THESIS_TEST_COUNTS = {"Mild_Demented": 172, "Moderate_Demented": 15, "Non_Demented": 634, "Very_Mild_Demented": 459}
# The keys of a run spec that vary inside one table; everything else in it is the table's setting.
# A scenario's pretraining (`pretrain`, its own scenario name) is a row of its model's table, beside scenario 1.
CELL_KEYS = ("model", "scenario", "augmentation", "seed", "pool", "pretrain")
SIGNIFICANT = 0.05
MARK = "*"


@dataclass
class TableInfo:
    """One table: a model's runs of one setting (data, split, hyper-parameters)."""

    name: str  # file stem: the model, or the model and what sets this setting apart
    model: str
    setting: str = ""  # e.g. "hparams.lr=0.005"; empty when the model has one setting
    thesis_data: bool = False  # the thesis's test images under the given split: comparable with its tables
    pools: list[str] = field(default_factory=list)
    splits: int = 1  # distinct data splits behind the table's cells (K repeated subject splits: K)
    repeats: int = 1  # the grid's K (`[data] splits`); more than `splits` when fewer seeds than K ran
    why_not_thesis: str = ""  # why the table is not compared with the thesis (first run's reason)

    @property
    def variation(self) -> str:
        """Which sources of variation an interval of this table covers, in words."""
        if self.splits > 1:
            return (f"training randomness and which patients are tested ({self.splits} subject splits, seed s on "
                    f"split s mod {max(self.repeats, self.splits)})")
        return "training randomness only (one data split)"


def _scenario_order(names: set[str]) -> list[str]:
    return BASE_SCENARIOS + sorted(names - set(BASE_SCENARIOS), key=st.scenario_key)


# Rendering (tables as text, LaTeX, captions, the box plot, files) carries `# pragma: no mutate block`: its
# numbers come from what `make mutants` scores (medians, cells, statistics); its text is checked by
# tests/test_collect.py and tests/test_cli_grid.py, and mutating it only cost CPU-hours (see tests/README.md).
@dataclass
class Collected:
    runs: pd.DataFrame
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, TableInfo] = field(default_factory=dict)
    # Per run: its file and class counts (`train`: the real images it trained on, `val`, `test`).
    counts: list[dict[str, Any]] = field(default_factory=list)
    _stats: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    # Classes runs took from a data option `merge` beyond the four ("Demented"): their recall columns follow.
    extra_classes: tuple[str, ...] = ()

    def metric(self, metric: str) -> str:
        """The canonical name of a metric, knowing this collection's classes."""
        return st.metric_name(metric, self.extra_classes)

    def metrics(self) -> list[str]:
        """Every metric some run of this collection has (stats.csv's): no per-scan rows for results from before
        them, no recall of a class a merge removed."""
        return [m for m in st.all_metrics(self.extra_classes) if self.runs[m].notna().any()]

    def stats(self, metric: str = "test_ce") -> pd.DataFrame:
        """`statistics.stats_table` of every cell for one metric (computed once)."""
        m = self.metric(metric)
        if m not in self._stats:
            self._stats[m] = st.stats_table(self.runs, m)
        return self._stats[m]

    def models(self) -> list[str]:
        present = sorted(set(self.runs["model"]) - set(hparams.MODELS))
        return list(hparams.MODELS) + present

    def table_names(self) -> list[str]:
        """Every table with runs, by model."""
        names = []
        for model in self.models():
            names += sorted(n for n, t in self.tables.items() if t.model == model)
        return names

    def rows(self, name: str) -> list[tuple[str, str, str]]:
        """(row label, scenario, pool) of one table: the scenarios it has runs of, in the thesis's order; a
        scenario with synthetic images gets a row per pool when the table has several."""
        info = self.tables[name]
        df = self.runs[self.runs["table"] == name]
        out = []
        for scen in _scenario_order(set(df["scenario"])):
            pools = sorted(set(df.loc[df["scenario"] == scen, "pool"]))
            if not pools:
                continue
            if len(info.pools) > 1 and pools != [""]:
                out += [(f"Scenario {scen} · {p}", scen, p) for p in pools if p]
            else:
                out += [(f"Scenario {scen}", scen, p) for p in pools]
        return out

    def augmentations(self, name: str) -> list[str]:
        """The augmentations a table has runs of, in the thesis's order."""
        present = set(self.runs.loc[self.runs["table"] == name, "augmentation"])
        return [a for a in augmentations.NAMES if a in present] + sorted(present - set(augmentations.NAMES))

    def _cells(self, name: str, metric: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        s = self.stats(metric)
        s = s[s["table"] == name]
        return {(str(r["scenario"]), str(r["pool"]), str(r["augmentation"])): {str(k): v for k, v in r.items()}
                for r in s.to_dict("records")}

    def _shape(self, name: str, texts: dict[tuple[str, str, str], str], empty: str) -> pd.DataFrame:
        """Row per scenario (and pool), column per augmentation with the thesis's column names."""
        augs = self.augmentations(name)
        data = [[texts.get((scen, pool, aug), empty) for aug in augs] for _, scen, pool in self.rows(name)]
        t = pd.DataFrame(data, index=[label for label, _, _ in self.rows(name)],
                         columns=[augmentations.LABELS.get(a, a) for a in augs])
        t.index.name = "scenario"
        return t

    def table(self, name: str, metric: str = "test_ce") -> pd.DataFrame:  # pragma: no mutate block
        """The thesis's shape; cells 'median [95% interval] (n=k, f failed)', marked where scenario 1 differs."""
        return self._shape(name, self.cell_texts(name, metric), "—")

    def cell_texts(self, name: str, metric: str = "test_ce") -> dict[tuple[str, str, str], str]:
        """The text of every cell of one table by (scenario, pool, augmentation): what the table and the
        report print."""
        m = self.metric(metric)
        return {k: cell_text(r, m) for k, r in self._cells(name, m).items()}

    def diverged(self, name: str) -> dict[tuple[str, str, str], int]:
        """Diverged runs per (scenario, pool, augmentation) of one table (in the statistics at their metric's
        worst value; every cell counts them as failed)."""
        df = self.runs[(self.runs["table"] == name) & (self.runs["status"] == "diverged")]
        counts = df.groupby(["scenario", "pool", "augmentation"]).size()
        return {(str(k[0]), str(k[1]), str(k[2])): int(n) for k, n in counts.items()}  # type: ignore[index]

    def medians(self, name: str, metric: str = "test_ce") -> pd.DataFrame:
        """Median and number of runs per (scenario, augmentation) of one table (pools pooled per row label), every
        cell present: the plain numbers behind the table. A diverged run counts at its metric's worst value (test
        CE +inf, accuracy 0), as in the tables' statistics; a run without the metric (NaN) is left out."""
        m = self.metric(metric)
        df = self.runs[self.runs["table"] == name]
        scens = _scenario_order(set(df["scenario"]))
        idx = pd.MultiIndex.from_product([scens, list(augmentations.NAMES)], names=["scenario", "augmentation"])
        g = df.groupby(["scenario", "augmentation"])[m].agg(["median", "count"])
        return g.reindex(idx).fillna({"count": 0}).astype({"count": int})

    def caption(self, name: str, metric: str = "test_ce") -> str:  # pragma: no mutate block
        info = self.tables[name]
        m = self.metric(metric)
        where = f" [{info.setting}]" if info.setting else ""
        pool = f"; pool {info.pools[0]}" if len(info.pools) == 1 else ""
        better = "higher" if st.higher_is_better(m) else "lower"
        return (f"{info.model}{where} — median {st.describe(m)} over seeds [95% interval] (n = seeds){pool}; "
                f"{better} is better")

    def legend(self, name: str, metric: str = "test_ce") -> str:  # pragma: no mutate block
        """What the mark means ('' for a table without comparisons)."""
        s = self.stats(metric)
        mine = s[s["table"] == name]
        info = self.tables[name]
        per_scan = ("Per scan: a test scan's prediction is the mean of its slices' probabilities (on the given split "
                    "scans have slices on both sides, so a scan score there measures recognition of seen patients). "
                    if self.metric(metric) in st.PER_SCAN else "")
        # The ranks the table's largest cell that reaches 95% uses, as the example (not a fixed n = 20).
        full = [n for n in sorted({int(v) for v in mine["n"].dropna()}, reverse=True)
                if n >= 2 and st.median_ci_ranks(n)[2] >= st.LEVEL]
        ranks = ""
        if full:
            lo, hi, _ = st.median_ci_ranks(full[0])
            ranks = f"; n = {full[0]}: the {_ordinal(lo)} and {_ordinal(hi)} smallest"
        text = per_scan + (
            f"Intervals: distribution-free (order statistics of the seeds' values{ranks}); they cover "
            f"{info.variation}. A failed (diverged) run counts as the worst value ({_fmt(st.worst(metric))}).")
        short = mine[(mine["ci_coverage"] < st.LEVEL) & (mine["n"] >= 2)]
        if len(short):
            text += (f" Cells marked 'range' have too few seeds for a 95% interval: they show the range, which "
                     f"covers the median with the probability given ({float(short['ci_coverage'].min()):.0%} "
                     "at least).")
        if (mine["n"] == 1).any():
            text += " A cell of one run has no interval: one value says nothing of how the runs spread."
        k = int(mine["p_wilcoxon"].notna().sum())
        if k == 0:
            return text
        text += (f" {MARK} = differs from scenario 1 of its column (paired by seed, Wilcoxon signed-rank, Holm over "
                 f"the table's {_count(k, 'comparison')}, p < {SIGNIFICANT}).")
        pairs = mine["n_pairs"].dropna()
        need = st.seeds_needed(k, SIGNIFICANT)
        if len(pairs) and int(pairs.max()) < need:
            text += (f" With {_count(int(pairs.max()), 'paired seed')} no difference can reach p < {SIGNIFICANT} "
                     f"after Holm over {_count(k, 'comparison')} (the smallest possible is "
                     f"{min(1.0, k * 2 / 2 ** int(pairs.max())):.4g}); that takes at least {need} seeds.")
        found = [float(v) for v in mine["mde"] if math.isfinite(float(v))]
        if len(found):
            low, high = min(found), max(found)
            text += (f" Minimum detectable effect (the smallest median paired difference this design detects with "
                     f"{st.POWER:.0%} power, Wilcoxon under Holm at {st.ALPHA}; stats.csv `mde`): "
                     + (f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g} to {high:.3g}")
                     + f" in {st.describe(metric)}; a smaller effect could not have been seen.")
        return text + " stats.csv: paired differences, raw and Holm p, IQM, probability of improvement."

    def versus_thesis(self, name: str) -> pd.DataFrame:  # pragma: no mutate block
        """Our median test CE beside the thesis's (Tables 7.x), 'ours / thesis (n=k)' per cell."""
        info = self.tables[name]
        table = thesis_medians()
        th = table[table["model"] == info.model].set_index(["scenario", "augmentation"])["median_test_ce"]

        def fmt(v: Any) -> str:
            return "—" if v is None or v != v else f"{float(v):.3f}"  # v != v: NaN

        texts = {}
        for (scen, pool, aug), r in self._cells(name, "test_ce").items():
            texts[(scen, pool, aug)] = f"{fmt(r['median'])} / {fmt(th.get((scen, aug)))} (n={r['n']})"
        empty = {(scen, pool, aug): f"— / {fmt(th.get((scen, aug)))} (n=0)"
                 for _, scen, pool in self.rows(name) for aug in augmentations.NAMES}
        return self._shape(name, {**empty, **texts}, "— / — (n=0)")

    def box_values(self, name: str, metric: str = "test_ce") -> dict[tuple[str, str, str], list[float]]:
        """Every run's value per (scenario, pool, augmentation) of one table, sorted: what a box plot draws. A
        diverged run is there at its metric's worst value (test CE +inf, accuracy 0), as in `medians` and the
        statistics; a run without the metric (NaN) is left out."""
        m = self.metric(metric)
        df = self.runs[(self.runs["table"] == name) & self.runs[m].notna()]
        return {(str(k[0]), str(k[1]), str(k[2])): sorted(float(v) for v in g)
                for k, g in df.groupby(["scenario", "pool", "augmentation"])[m]}

    @staticmethod
    def box_stats(values: list[float], ceiling: float) -> dict[str, float]:  # pragma: no mutate block
        """Quartiles and median of one box, an infinite value (a diverged run's test CE) drawn at `ceiling`: the
        median is the statistics' median (+inf when half the runs or more diverged), the box's quartiles those of
        the values with +inf at the ceiling (order statistics, so the order is kept)."""
        import numpy as np

        raw = np.asarray(values, dtype=float)
        drawn = np.where(np.isinf(raw), ceiling, raw)
        med = float(np.median(raw)) if len(raw) else math.nan
        return {"med": ceiling if math.isinf(med) else med,
                "q1": float(np.percentile(drawn, 25)), "q3": float(np.percentile(drawn, 75)),
                "whislo": float(drawn.min()), "whishi": float(drawn.max()), "n": len(raw),
                "failed": int(np.isinf(raw).sum())}

    def _draw_box(self, ax: Any, vals: list[float], pos: float, width: float, color: str,
                  ceiling: float) -> bool:  # pragma: no mutate block
        """One cell's box with its finite runs as points and its diverged ones as an x at `ceiling`, their count
        beside it; True when some diverged."""
        b = self.box_stats(vals, ceiling)
        bp = ax.bxp([{**b, "fliers": []}], positions=[pos], widths=width * 0.9, patch_artist=True,
                    showfliers=False, medianprops={"color": "black", "gid": "median"})
        for patch in bp["boxes"]:
            patch.set_facecolor(color)
            patch.set_alpha(0.5)
        fin = [v for v in vals if math.isfinite(v)]
        ax.plot([pos] * len(fin), fin, ".", color=color, ms=3)
        if b["failed"]:
            ax.plot([pos], [ceiling], "x", color=color, ms=6)
            ax.annotate(f"{b['failed']}", (pos, ceiling), textcoords="offset points", xytext=(4, 2),
                        fontsize=7, color=color)
        return bool(b["failed"])

    @staticmethod
    def _label_axes(ax: Any, name: str, m: str, rows: list[tuple[str, str, str]], failed: list[int],
                    ceiling: float | None) -> None:  # pragma: no mutate block
        """The dotted line of diverged runs (at `ceiling`, when some are drawn), the rows' ticks with their failed
        counts, the metric, the title and the legend."""
        if ceiling is not None:
            ax.axhline(ceiling, color="grey", lw=0.6, ls=":")
            ax.text(1.0, ceiling, " diverged\n (∞)", transform=ax.get_yaxis_transform(), fontsize=7, va="center",
                    color="grey")
        ax.set_xticks(range(len(rows)), [label + (f"\n{k} failed" if k else "")
                                         for (label, _, _), k in zip(rows, failed, strict=True)], fontsize=7)
        ax.set_ylabel(st.describe(m))
        note = (f"; n includes {sum(failed)} diverged at the worst value ({_fmt(st.worst(m))})" if sum(failed)
                else "")
        ax.set_title(f"{name}: {st.describe(m)} per run{note}", fontsize=9)
        ax.legend(fontsize=7)

    def figure(self, name: str, path: Path, metric: str = "test_ce") -> bool:  # pragma: no mutate block
        """Box plot of a metric per cell (seeds as points): the spread the medians hide. Diverged runs are in the
        boxes at the metric's worst value, as in the tables; a test CE of +inf is drawn on a dotted line above
        the finite values, marked x with the count beside it."""
        m = self.metric(metric)
        df = self.runs[self.runs["table"] == name]
        if df.empty or df[m].isna().all():
            return False
        from .plots import png, pyplot

        plt = pyplot()

        rows = [r for r in self.rows(name) if ((df["scenario"] == r[1]) & (df["pool"] == r[2])).any()]
        augs = self.augmentations(name)  # the legend names what ran
        values = self.box_values(name, m)
        finite = [v for vs in values.values() for v in vs if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        ceiling = hi + 0.15 * ((hi - lo) or 1.0)  # where +inf (a diverged run's test CE) is drawn
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 3.6))
        width = 0.8 / len(augs)
        any_inf = False
        for j, aug in enumerate(augs):
            for i, (_, scen, pool) in enumerate(rows):
                vals = values.get((scen, pool, aug), [])
                if not vals:
                    continue
                pos = i + (j - (len(augs) - 1) / 2) * width
                if self._draw_box(ax, vals, pos, width, f"C{j}", ceiling):
                    any_inf = True
            ax.plot([], [], "s", color=f"C{j}", alpha=0.5, label=augmentations.LABELS.get(aug, aug))
        failed = [int(((df.scenario == scen) & (df.pool == pool) & (df.status == "diverged")).sum())
                  for _, scen, pool in rows]
        self._label_axes(ax, name, m, rows, failed, ceiling if any_inf else None)
        fig.tight_layout()
        atomic.write_bytes(path, png(fig, dpi=120))
        return True


def _fmt(v: float) -> str:
    return "∞" if v == math.inf else f"{v:.3f}"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def cell_text(r: dict[str, Any], metric: str) -> str:
    """One cell: 'median [low, high] (n=k, f failed)', 'failed' where the median run failed, the interval as
    'range ... covers P' where too few seeds give a 95% one (none for one run), and the mark where scenario 1
    differs."""
    failed, missing = int(r.get("n_failed", 0) or 0), int(r.get("n_missing", 0) or 0)
    n = f"n={r['n']}" + (f", {failed} failed" if failed else "")
    if r["n"] == 0:
        return f"— ({n}; {missing} runs without {metric})" if missing else f"— ({n})"
    # The median run failed: more than half of the seeds failed, or (test CE) half, averaged with +inf.
    median = "failed" if failed and (2 * failed > int(r["n"]) or math.isinf(r["median"])) else _fmt(r["median"])
    cov = r.get("ci_coverage", st.LEVEL)
    interval = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
    if int(r["n"]) == 1:  # one value brackets the median with probability 0: no interval to give
        interval = "[one run: no interval]"
    elif cov == cov and cov < st.LEVEL:  # cov == cov: not NaN
        interval = f"[range {_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}: covers {cov:.0%}]"
    text = f"{median} {interval} ({n})"
    if missing:
        text += f" ({missing} without {metric})"
    p = r["p_holm"]
    return text + (f" {MARK}" if p == p and p < SIGNIFICANT else "")  # p == p: not NaN


def thesis_medians() -> pd.DataFrame:
    """The thesis's median test CE per model, scenario and augmentation (empty cells absent)."""
    from importlib.resources import files

    with files("mriaug").joinpath("thesis_tables.csv").open() as fh:
        df = pd.read_csv(fh, dtype={"scenario": str})
    return df.dropna(subset=["median_test_ce"])


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _why_not_thesis(r: results.RunResult) -> str:
    """'' when a run's data is the thesis's (Falah/Alzheimer_MRI from the hub at the pinned revision, its given
    split, the thesis's test counts); else why it is not."""
    source = r.data.source or {}
    pinned = HUB_REVISIONS[THESIS_SOURCE.removeprefix("hf:")]
    if r.data.split.get("merge"):  # first: whatever the data, a merged task is not the thesis's question
        return "its classes are merged (data option merge): the thesis's tables are over the four classes"
    if source.get("source") != THESIS_SOURCE:
        return f"its data is {source.get('source')!r}, not the thesis's {THESIS_SOURCE} from the hub"
    if source.get("revision") != pinned:
        return f"{THESIS_SOURCE} at revision {source.get('revision')!r}, not the pinned {pinned[:8]}"
    if r.data.split_kind != "given":
        return f"its split is {r.data.split.get('kind')!r}, not the dataset's given train/test split"
    if r.counts.test != THESIS_TEST_COUNTS:
        return "its test images are not the thesis's 1,280 (172/15/634/459)"
    return ""


def split_index(r: results.RunResult) -> int:
    """Which of the grid's K repeated splits (`[data] splits = K`) the run was tested on: seed s on split s mod K
    (`mriaug.plan.grid`); 0 for a run of one split."""
    return r.seed % max(1, int(r.data.split.get("splits", 1) or 1))


def _setting(r: results.RunResult) -> dict[str, Any]:
    """What must be equal for two runs to share a table: the spec without the cell keys (hyper-parameters,
    data source and options, anything a later mriaug adds), the data's content and the split."""
    spec = {k: v for k, v in r.spec.items() if k not in CELL_KEYS}
    split = dict(r.data.split)
    fingerprint = r.data.fingerprint
    if int(split.get("splits", 1)) > 1:
        # One of K repeated splits: the split itself varies with the seed (like the initialisation); the setting
        # is the grid's first split seed and K.
        data = json.loads(json.dumps(spec.get("data") or {}))
        opts = data.get("options") or {}
        opts["split_seed"] = splits.first_split_seed(opts, r.seed)
        spec["data"] = data
        split = {k: v for k, v in split.items() if k not in ("seed", "fingerprint")}
        fingerprint = split.get("source_fingerprint")
    return {"split": split, **spec, "data_fingerprint": fingerprint}


def _flat(d: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(d, dict):
        out: dict[str, str] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d if isinstance(d, str) else json.dumps(d, sort_keys=True)}


def _short(v: str) -> str:
    return v[:8] if re.fullmatch(r"[0-9a-f]{12,}", v) else v


def _priority(key: str) -> int:
    """Which differing keys name a table first: the split, the data, then hyper-parameters; content hashes last
    (they differ because something named earlier does)."""
    if key in ("data_fingerprint", "split.fingerprint"):
        return 6
    for rank, prefix in enumerate(("split.kind", "data.source", "split.", "data.", "hparams.")):
        if key.startswith(prefix):
            return rank
    return 5


def _setting_labels(settings: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """A label per setting naming as few of the differing keys as tell the settings apart, and all those keys."""
    flats = [_flat(s) for s in settings]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    differ = sorted((k for k in keys if len({f.get(k, "—") for f in flats}) > 1), key=_priority)
    shown: list[str] = []
    for k in differ:
        shown.append(k)
        if len({tuple(f.get(s, "—") for s in shown) for f in flats}) == len(flats):
            break
    labels = [", ".join(f"{k}={_short(f.get(k, '—'))}" for k in shown) for f in flats]
    return labels, differ


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "-", text).strip("-")[:60]


def _assign_tables(rows: list[dict[str, Any]], settings: list[str]) -> tuple[dict[str, TableInfo], list[str]]:
    """Give every run its table (per model and setting) and name the tables."""
    tables: dict[str, TableInfo] = {}
    warnings = []
    by_model: dict[str, list[str]] = {}
    for row, s in zip(rows, settings, strict=True):
        by_model.setdefault(row["model"], [])
        if s not in by_model[row["model"]]:
            by_model[row["model"]].append(s)
    for model, keys in by_model.items():
        if len(keys) == 1:
            names = {keys[0]: (model, "")}
        else:
            labels, differ = _setting_labels([json.loads(k) for k in keys])
            names = {}
            for k, label in sorted(zip(keys, labels, strict=True), key=lambda kl: kl[1]):
                name = f"{model}_{_slug(label)}"
                while name in tables or name in [n for n, _ in names.values()]:
                    name += "+"
                names[k] = (name, label)
            warnings.append(f"{model}: runs of {len(keys)} settings (they differ in {', '.join(differ)}) are kept "
                            f"apart, in tables {', '.join(n for n, _ in names.values())}")
        for name, label in names.values():
            tables[name] = TableInfo(name, model, label)
        for row, s in zip(rows, settings, strict=True):
            if row["model"] == model:
                row["table"] = names[s][0]
    return tables, warnings


def _row(path: Path, r: results.RunResult) -> dict[str, Any]:
    """One run's line of the long table."""
    met, data = r.metrics, r.data
    return {
        "run_id": r.run_id, "model": r.model, "scenario": r.scenario, "augmentation": r.augmentation,
        "pool": data.pool_label or "", "pretrain": r.pretraining.pool if r.pretraining else "", "seed": r.seed,
        **{m: _number(met.value(m)) for m in st.METRICS},
        **{st.RECALL + c: _number(met.recall(c)) for c in dict.fromkeys([*CLASSES, *(met.per_class or {})])},
        "n_real": sum(r.counts.real.values()), "n_synthetic": sum(r.counts.synthetic.values()),
        "epochs": r.hparams.get("epochs"), "data_fingerprint": data.fingerprint, "split": data.split_kind,
        "split_index": split_index(r),
        "pool_fingerprint": data.pool_fingerprint, "train_s": r.timings.get("train_s"), "file": path.name,
        "status": r.status,
    }


def _split_pool_contents(rows: list[dict[str, Any]], warnings: list[str]) -> None:
    """One pool name for two contents (a pool re-made in place): rows per content, never one cell.
    (Repeated splits have a pool folder per split: one content per split is one pool.)"""
    contents: dict[tuple[str, str, str], set[str]] = {}
    for row in rows:
        if row["pool"]:
            contents.setdefault((row["table"], row["pool"], row["data_fingerprint"]), set()).add(
                str(row["pool_fingerprint"]))
    for (name, pool, _), fps in sorted(contents.items()):
        if len(fps) > 1:
            warnings.append(f"{name}: pool {pool} has {len(fps)} contents (manifests "
                            f"{', '.join(sorted(f[:8] for f in fps))}); each gets its own rows")
    for row in rows:
        if len(contents.get((row["table"], row["pool"], row["data_fingerprint"]), ())) > 1:
            row["pool"] = f"{row['pool']}@{str(row['pool_fingerprint'])[:8]}"


def _describe_tables(tables: dict[str, TableInfo], rows: list[dict[str, Any]], not_thesis: list[str],
                     repeats: list[int], envs: list[Any], warnings: list[str]) -> None:
    """Each table's thesis-data verdict, pools, splits and repeats from its runs; mixed environments warned."""
    for name, info in tables.items():
        mine = [i for i, row in enumerate(rows) if row["table"] == name]
        reasons = [not_thesis[i] for i in mine if not_thesis[i]]
        info.thesis_data, info.why_not_thesis = not reasons, reasons[0] if reasons else ""
        info.pools = sorted({rows[i]["pool"] for i in mine} - {""})
        info.splits = len({rows[i]["data_fingerprint"] for i in mine})
        info.repeats = max(repeats[i] for i in mine)
        mixed = envlock.mixed_locks(envs[i] for i in mine)
        if mixed:
            warnings.append(f"{name}: {mixed.removeprefix('warning: ')}")


def _frame(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The long table (recall columns of classes beyond the four after the four's) and those extra classes."""
    extra = tuple(dict.fromkeys(k.removeprefix(st.RECALL) for row in rows for k in row
                                if k.startswith(st.RECALL) and k.removeprefix(st.RECALL) not in CLASSES))
    first_recall = LONG_COLUMNS.index(st.RECALL + CLASSES[-1]) + 1
    columns = [*LONG_COLUMNS[:first_recall], *(st.RECALL + c for c in extra), *LONG_COLUMNS[first_recall:]]
    df = pd.DataFrame(rows, columns=columns)
    for m in st.all_metrics(extra):  # a failed run is the worst value of every metric (statistics.WORST)
        df.loc[df["status"] == "diverged", m] = st.worst(m)
    return df, extra


def _same_seed_twice(df: pd.DataFrame, warnings: list[str]) -> None:
    """Several runs of one setting for one cell and seed (files copied in by hand, a run id scheme changed):
    the statistics refuse them, so say so while gathering."""
    dup = df.groupby(["table", "model", "scenario", "pool", "augmentation", "seed"]).size()
    if (dup > 1).any():
        _, model, scen, _, aug, seed = dup[dup > 1].index[0]
        warnings.append(f"{len(dup[dup > 1])} cell(s) have several runs for the same seed (e.g. "
                        f"{model}/{scen}/{aug}/{seed}): results of different settings are mixed; "
                        "collect with --grid to keep one grid's runs")


def gather(results_dir: str | Path, run_ids: set[str] | None = None) -> Collected:
    """Every valid result in a folder (only `run_ids` when given); invalid files are named in `errors`."""
    rows: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    envs: list[Any] = []
    settings: list[str] = []
    not_thesis: list[str] = []
    repeats: list[int] = []
    scenario_defs: dict[tuple[str, str], tuple[str, str]] = {}
    errors = []
    for path, r in results.scan(results_dir):
        if isinstance(r, results.ResultError):  # named whichever grid it was meant for: it may be one of ours
            errors.append(str(r))
            continue
        if run_ids is not None and path.stem not in run_ids:
            continue
        row = _row(path, r)
        setting = json.dumps(_setting(r), sort_keys=True, default=str)
        definition = json.dumps(r.spec["scenario"], sort_keys=True)
        first = scenario_defs.setdefault((setting, row["scenario"]), (definition, path.name))
        if first[0] != definition:
            raise ResultError(f"{path}: scenario {row['scenario']!r} ('spec.scenario') is defined otherwise than in "
                              f"{first[1]}; collect one grid's runs at a time (--grid)")
        rows.append(row)
        counts.append({"file": path.name, "train": dict(r.counts.real), "val": dict(r.counts.val or {}),
                       "test": dict(r.counts.test or {})})
        settings.append(setting)
        envs.append(r.env)
        not_thesis.append(_why_not_thesis(r))
        repeats.append(int(r.data.split.get("splits", 1)))
    tables, warnings = _assign_tables(rows, settings)
    _split_pool_contents(rows, warnings)
    _describe_tables(tables, rows, not_thesis, repeats, envs, warnings)
    df, extra = _frame(rows)
    _same_seed_twice(df, warnings)
    return Collected(df, errors, warnings, tables, counts=counts, extra_classes=extra)


def _latex_escape(text: str) -> str:  # pragma: no mutate block
    return re.sub(r"([_%&#$])", r"\\\1", str(text)).replace("—", "--").replace("·", "/").replace("…", "...")


def _latex(table: pd.DataFrame, caption: str, legend: str) -> str:  # pragma: no mutate block
    cols = " & ".join(["Scenario", *table.columns])
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\hline", cols + r" \\", r"\hline"]
    for idx, row in table.iterrows():
        cells = [_latex_escape(c).replace(f" {MARK}", rf"$^{{{MARK}}}$") for c in row]
        lines.append(" & ".join([_latex_escape(str(idx).replace("Scenario ", "")), *cells]) + r" \\")
    note = _latex_escape(legend).replace(f" {MARK} ", rf" $^{{{MARK}}}$ ")
    lines += [r"\hline", r"\end{tabular}", *([rf"\par\footnotesize{{{note}}}"] if legend else []), r"\end{table}", ""]
    return "\n".join(lines)


def _stem(name: str, metric: str) -> str:  # pragma: no mutate block
    """A table's file stem; `metric` canonical (`Collected.metric`)."""
    return name if metric == "test_ce" else f"{name}_{metric.replace(':', '-')}"


def write(c: Collected, out_dir: str | Path, metric: str = "test_ce") -> list[Path]:  # pragma: no mutate block
    """CSV, Markdown and LaTeX per table, the long-form CSV of all runs and stats.csv (every cell and metric),
    each written atomically. Tables of test CE are named for the table, of other metrics for both."""
    out = Path(out_dir)
    written = []
    atomic.write_text(out / "runs.csv", c.runs.to_csv(index=False))
    written.append(out / "runs.csv")
    stats = pd.concat([c.stats(m) for m in dict.fromkeys([*c.metrics(), c.metric(metric)])], ignore_index=True)
    atomic.write_text(out / "stats.csv", stats.to_csv(index=False))
    written.append(out / "stats.csv")
    for name in c.table_names():
        t, caption, legend = c.table(name, metric), c.caption(name, metric), c.legend(name, metric)
        stem = _stem(name, metric)
        md = f"**{caption}**\n\n{t.to_markdown()}\n" + (f"\n{legend}\n" if legend else "")
        for suffix, text in ((".csv", t.to_csv()), (".md", md),
                             (".tex", _latex(t, caption, legend))):
            atomic.write_text(out / f"{stem}{suffix}", text)
            written.append(out / f"{stem}{suffix}")
        if c.tables[name].thesis_data:
            atomic.write_text(out / f"{name}_vs_thesis.md", c.versus_thesis(name).to_markdown() + "\n")
            written.append(out / f"{name}_vs_thesis.md")
        if c.figure(name, out / f"{stem}.png", metric):
            written.append(out / f"{stem}.png")
    return written


def render(c: Collected, versus_thesis: bool = False, metric: str = "test_ce") -> str:  # pragma: no mutate block
    parts = []
    for name in c.table_names():
        legend = c.legend(name, metric)
        parts.append(f"{c.caption(name, metric)}\n{c.table(name, metric).to_markdown()}\n"
                     + (legend and textwrap.fill(legend, 110) + "\n"))
        if versus_thesis and c.tables[name].thesis_data:
            parts.append(f"{name} — median test CE, ours / thesis (n = our seeds)\n"
                         f"{c.versus_thesis(name).to_markdown()}\n")
    left = [n for n in c.table_names() if not c.tables[n].thesis_data]
    if versus_thesis:
        for n in left:
            parts.append(f"thesis comparison left out for {n}: {c.tables[n].why_not_thesis}; only runs of "
                         f"{THESIS_SOURCE} read from the hub at the pinned revision, on its given split, compare "
                         "with the thesis\n")
    return "\n".join(parts)


# pragma: no mutate start
def collect(
        results_dir: str | Path, out: str | Path, *, versus_thesis: bool = False, run_ids: set[str] | None = None,
        metric: str = "test_ce", echo: Callable[[str], None] = print, warn: Callable[[str], None] = print
) -> Collected:
    """`mriaug collect` and the Slurm collector job: gather, print the tables, write them to `out`."""
    c = gather(results_dir, run_ids)
    m = c.metric(metric)
    missing = int(c.runs[m].isna().sum())
    if missing:
        c.warnings.append(f"{missing} of {len(c.runs)} runs have no {m} (results written before mriaug recorded it); "
                          "their cells say so")
    for warning in c.warnings:
        warn(f"warning: {warning}")
    for err in c.errors:
        warn(f"skipped: {err}")
    echo(render(c, versus_thesis, m))
    written = write(c, out, m)
    echo(f"{len(c.runs)} runs; tables written to {out} ({len(written)} files, stats.csv among them)")
    return c
# pragma: no mutate end
