"""Planning a study before it runs (`mriaug plan`): for each comparison a grid's table makes, the spread of a
pilot's paired differences, the minimum detectable effect at the grid's seeds, and the seeds that detect a given
effect under the table's own test; the pilot grid to run first when there is no pilot; each planned run's
training seconds, measured (the pilot's) or estimated (the model card's GPU throughput).

The seeds come from the code `statistics.mde` uses: `statistics.power` (differences Normal(delta, sd), two-sided
Wilcoxon signed-rank p at most alpha / m, Holm's first step over the m comparisons), solved for the number of
pairs instead of the effect, so that `mde(sd, seeds_needed, m) <= delta < mde(sd, seeds_needed - 1, m)`. Only the
pilot's spread is read, never which scenario came out better: the effect to detect is the user's choice.
`mriaug.slurm.cost` packs the runs into array tasks and sums the hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data import sources
from ..data.classes import CLASSES, merged_classes
from ..errors import DataError, MriaugError, SettingError
from ..generators import GENERATORS
from ..plan import grid as grid_mod
from ..plan import hparams, scenarios
from ..plan.spec import RunSpec
from . import statistics as st

# Pairs a pilot needs for the spread: the standard error of a standard deviation from n values is about
# sd / sqrt(2 (n - 1)), at most 15% of it from 24 pairs; seeds needed grow with sd squared.
PILOT_PAIRS = 24
MIN_PAIRS = 3  # fewer paired seeds give no usable spread
MAX_SEEDS = 2000  # beyond, the answer is "not with this design"; the simulation's memory grows with the seeds
# The control generators (`mriaug.generators`): a grid's pool named after one is that control, as `Grid.pool_for`
# names pools after their generators; every other pool is compared with each control the grid has.
CONTROLS = ("copy", "transform")
assert set(CONTROLS) <= set(GENERATORS)
# A GPU array task's start-up before its first step (imports, data, model, CUDA): 8.6 s warm on one H200
# (benchmarks/README.md, issue 12, task_startup.py).
GPU_TASK_STARTUP_S = 8.6
PILOT_COLUMNS = ("model", "scenario", "augmentation", "pool", "seed")


def seeds_for(delta: float, sd: float, comparisons: int, *, target: float = st.POWER, alpha: float = st.ALPHA,
              sims: int = 4000) -> int | None:
    """The fewest pairs whose differences, Normal(delta, sd), the table's test detects with probability `target`
    (`statistics.power`); None beyond MAX_SEEDS."""
    if not (delta > 0 and math.isfinite(delta)):
        raise SettingError(f"the effect to detect must be a positive number, got {delta}")
    lo = st.seeds_needed(comparisons, alpha) - 1  # fewer pairs never reach alpha / m: power 0
    if sd == 0:
        return lo + 1

    def enough(n: int) -> bool:
        return st.power(delta, sd, n, comparisons, alpha=alpha, sims=sims) >= target

    # A first guess: the normal approximation, with the signed-rank test's efficiency 3 / pi against the t test.
    z = stats.norm.ppf(1 - alpha / comparisons / 2) + stats.norm.ppf(target)
    hi = min(MAX_SEEDS, max(lo + 1, math.ceil((z * sd / delta) ** 2 * math.pi / 3)))
    while not enough(hi):
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while hi - lo > 1:  # lo falls short, hi is enough
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def per_split(seeds: int, splits: int) -> int:
    """`seeds` rounded up to a multiple of the grid's K splits: seed s is tested on split s mod K, so every split
    gets as many seeds as the others."""
    return -(-seeds // splits) * splits


def pilot_seeds(splits: int) -> int:
    """Seeds per cell of a pilot: PILOT_PAIRS, spread evenly over the K splits."""
    return per_split(PILOT_PAIRS, splits)


@dataclass
class Comparison:
    """One paired comparison of a grid's table: `cell` against `against` (scenario 1, or a control pool)."""

    model: str
    augmentation: str
    scenario: str
    pool: str
    against_scenario: str
    against_pool: str
    family: str  # "scenario 1" or "controls": Holm runs over the comparisons of one family of one table
    holm_over: int
    pairs: int = 0
    sd: float = math.nan
    mde_now: float = math.nan
    seeds_min: int | None = None  # what the power asks for
    seeds_needed: int | None = None  # that, spread evenly over the splits
    missing: str = ""  # why the pilot gives this comparison no spread

    @property
    def cell(self) -> str:
        return cell_name(self.model, self.augmentation, self.scenario, self.pool)

    @property
    def against(self) -> str:
        return cell_name(self.model, self.augmentation, self.against_scenario, self.against_pool)

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | str | None:
            return None if math.isnan(v) else "inf" if math.isinf(v) else v

        return {"cell": self.cell, "against": self.against, "family": self.family, "holm_over": self.holm_over,
                "pairs": self.pairs, "sd": num(self.sd), "mde_now": num(self.mde_now), "seeds_min": self.seeds_min,
                "seeds_needed": self.seeds_needed, **({"missing": self.missing} if self.missing else {})}


def cell_name(model: str, augmentation: str, scenario: str, pool: str) -> str:
    return "/".join([model, augmentation, scenario, *([pool] if pool else [])])


Cell = tuple[str, str, str, str]  # model, augmentation, scenario, pool (its name in the tables; "" for none)


def grid_cells(g: grid_mod.Grid) -> list[Cell]:
    """The cells of a grid's tables, in its order; a pool by the name runs record (`pool_label`, "" when the grid
    has one pool and one split)."""
    return list(dict.fromkeys((r.model, r.augmentation, r.scenario.name, r.pool_label or "") for r in g.runs))


def comparisons(g: grid_mod.Grid, holm_over: int | None = None) -> list[Comparison]:
    """Every comparison the grid's tables make: each cell against scenario 1 of its model and augmentation (Holm
    over the model's such comparisons, or `holm_over` where the table will hold more), and each pool that is no
    control against each control pool of the same cell (Holm over the model's such comparisons)."""
    cells = grid_cells(g)
    have = set(cells)
    out: list[Comparison] = []
    for model in dict.fromkeys(c[0] for c in cells):
        versus_1 = [(c, (model, c[1], st.BASELINE, "")) for c in cells if c[0] == model and c[2] != st.BASELINE
                    and (model, c[1], st.BASELINE, "") in have]
        versus_controls = [(c, (model, c[1], c[2], ctrl)) for c in cells if c[0] == model and c[3]
                           and c[3] not in CONTROLS for ctrl in CONTROLS if (model, c[1], c[2], ctrl) in have]
        m = len(versus_1)
        if holm_over is not None and m:
            if holm_over < m:
                raise SettingError(f"--holm-over {holm_over}: the grid's {model} table makes {m} comparisons "
                                   "against scenario 1; Holm runs over at least those")
            m = holm_over
        for family, pairs, k in (("scenario 1", versus_1, m), ("controls", versus_controls, len(versus_controls))):
            out += [Comparison(*c, a[2], a[3], family, k) for c, a in pairs]
    if not out:
        raise SettingError(f"{g.path}: the grid makes no comparison (no scenario besides scenario 1, or no scenario "
                           "1 to compare with)")
    return out


@dataclass
class Pilot:
    """A pilot's runs, one row per run as `mriaug collect` writes runs.csv."""

    source: Path
    runs: pd.DataFrame
    extra_classes: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def metric(self, metric: str) -> str:
        """The canonical metric name, which the pilot's runs must have values of."""
        m = st.metric_name(metric, self.extra_classes)
        if m not in self.runs.columns or pd.to_numeric(self.runs[m], errors="coerce").isna().all():
            have = [x for x in st.all_metrics(self.extra_classes) if x in self.runs.columns
                    and pd.to_numeric(self.runs[x], errors="coerce").notna().any()]
            raise DataError(f"pilot {self.source}: its runs have no {m} (they have: {', '.join(have) or 'no metric'})")
        return m

    def values(self, cell: Cell, metric: str) -> dict[int, float]:
        """seed -> the metric of the cell's run (a diverged run at the metric's worst value; runs without the
        metric left out), as `statistics.stats_table` reads a cell."""
        df = self.runs
        model, aug, scen, pool = cell
        same = (df["model"] == model) & (df["augmentation"] == aug) & (df["scenario"] == scen)
        g = df[same & (df["pool"] == pool)]
        if g.empty and pool:  # a pilot of one pool and one split (`pilot_doc`): its runs name no pool
            g = df[same & (df["pool"] == "")]
        v = pd.to_numeric(g[metric], errors="coerce").astype(float)
        if "status" in g.columns:
            v = v.where(g["status"] != "diverged", st.worst(metric))
        dup = g["seed"][g["seed"].duplicated()]
        if len(dup):
            raise DataError(f"pilot {self.source}: {cell_name(*cell)} has several runs of seed {dup.iloc[0]}; a pilot "
                            "holds one grid's runs (collect with --grid, or give that grid's results folder)")
        return {int(s): float(x) for s, x in zip(g["seed"], v, strict=True) if not math.isnan(x)}

    def seconds(self, cell: Cell, *, cell_only: bool = False) -> float | None:
        """The mean training seconds of the cell's finished runs (both phases of a scenario with `pretrain`: a
        result's train_s is the whole training); of the model's when the pilot lacks the cell, unless
        `cell_only`."""
        if "train_s" not in self.runs.columns:
            return None
        df = self.runs
        done = df[df["status"] != "diverged"] if "status" in df.columns else df
        model = done[done["model"] == cell[0]]
        same = model[(model["augmentation"] == cell[1]) & (model["scenario"] == cell[2]) & (model["pool"] == cell[3])]
        for rows in (same,) if cell_only else (same, model):
            s = pd.to_numeric(rows["train_s"], errors="coerce").dropna()
            if len(s):
                return float(s.mean())
        return None


def read_pilot(path: str | Path) -> Pilot:
    """A pilot: a results folder (read as `mriaug collect` reads it) or a runs.csv (the published study's)."""
    p = Path(path)
    if p.is_dir():
        from .collect import gather

        c = gather(p)
        if c.runs.empty:
            raise DataError(f"pilot {p}: no run results in this folder" + (f" ({len(c.errors)} unreadable)"
                                                                          if c.errors else ""))
        notes = [f"pilot {p}: {len(c.errors)} result file(s) unreadable, left out"] if c.errors else []
        return Pilot(p, c.runs, c.extra_classes, notes)
    if not p.is_file():
        raise DataError(f"pilot {p} does not exist (a results folder, or a runs.csv as `mriaug collect` writes it)")
    try:
        df = pd.read_csv(p, dtype={k: str for k in ("model", "scenario", "augmentation", "pool", "table")},
                         keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"pilot {p}: not a runs.csv ({type(e).__name__}: {e})") from None
    missing = [c for c in PILOT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"pilot {p}: no column {missing[0]!r} (a runs.csv has a row per run with "
                        f"{', '.join(PILOT_COLUMNS)} and a column per metric)")
    df["pool"] = df["pool"].fillna("")
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != seeds.round()) | (seeds < 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"pilot {p}, row {i + 2}: seed {df['seed'].iloc[i]!r} is not a whole number >= 0")
    df["seed"] = seeds.astype(int)
    extra = tuple(c.removeprefix(st.RECALL) for c in df.columns
                  if c.startswith(st.RECALL) and c.removeprefix(st.RECALL) not in CLASSES)
    return Pilot(p, df, extra)


def grid_classes(g: grid_mod.Grid) -> tuple[str, ...]:
    """The classes the grid's runs are scored over (after a data option `merge`)."""
    return merged_classes(g.data.options.get("merge"))[0]


Data = dict[str, sources.Dataset] | str  # each split's data by repr(DataSpec), or why it does not load here


def load_splits(g: grid_mod.Grid) -> Data:
    """The data of each of the grid's splits (read from the cache when warm), or why it does not load here."""
    try:
        return {repr(d): sources.load(d) for d in (g.split_data or [g.data])}
    except MriaugError as e:
        return f"{type(e).__name__}: {e}"


def check_task(pilot: Pilot, g: grid_mod.Grid, data: Data) -> list[str]:
    """Refuse a pilot of another task than the grid's: runs scored over other classes, or trained on other data
    (a data fingerprint none of the grid's splits has). Returns what could not be checked."""
    notes: list[str] = []
    runs = pilot.runs[pilot.runs["model"].isin({r.model for r in g.runs})]
    if runs.empty:
        models = ", ".join(dict.fromkeys(r.model for r in g.runs))
        raise DataError(f"pilot {pilot.source}: no runs of the grid's models ({models}); its models: "
                        + ", ".join(map(str, dict.fromkeys(pilot.runs["model"]))))
    done = runs[runs["status"] != "diverged"] if "status" in runs.columns else runs  # a failure scores every class 0
    scored = tuple(c.removeprefix(st.RECALL) for c in runs.columns if c.startswith(st.RECALL)
                   and pd.to_numeric(done[c], errors="coerce").notna().any())
    want = grid_classes(g)
    if not scored:
        notes.append(f"pilot {pilot.source}: no per-class recall, so its classes are not checked")
    elif set(scored) != set(want):
        raise DataError(f"pilot {pilot.source}: its runs are scored over {', '.join(scored)}; the grid {g.path} over "
                        f"{', '.join(want)}: a pilot of another task (set the grid's [data] merge as the pilot had it, "
                        "or run a pilot of this grid)")
    if "data_fingerprint" not in runs.columns:
        notes.append(f"pilot {pilot.source}: no data_fingerprint column, so its data is not checked")
    elif isinstance(data, str):
        notes.append(f"the pilot's data is not checked: the grid's data does not load here ({data})")
    else:
        have = {d.fingerprint for d in data.values()}
        other = runs[~runs["data_fingerprint"].astype(str).isin(have)]
        if len(other):
            row = other.iloc[0]
            raise DataError(
                f"pilot {pilot.source}: run {row.get('run_id', '')} (seed {row['seed']}) was trained on data "
                f"{row['data_fingerprint']}, which none of the grid's {len(have)} split(s) of "
                f"{g.data.source} is ({', '.join(sorted(have))}): a pilot of another task (other data, split or "
                "image size)")
    return notes


def estimate(comps: list[Comparison], pilot: Pilot, metric: str, detect: float, g: grid_mod.Grid, *,
             target: float = st.POWER) -> None:
    """Fill each comparison from the pilot: paired seeds, the spread of the differences, the mde at the grid's
    seeds and the seeds that detect `detect` with probability `target`."""
    hib = st.higher_is_better(metric)
    splits = len(g.split_data) or 1
    seeds_now = len({r.seed for r in g.runs})
    for c in comps:
        cell: Cell = (c.model, c.augmentation, c.scenario, c.pool)
        base: Cell = (c.model, c.augmentation, c.against_scenario, c.against_pool)
        a, b = pilot.values(base, metric), pilot.values(cell, metric)
        if not a or not b:
            c.missing = f"the pilot has no {metric} of {cell_name(*(base if not a else cell))}"
            continue
        pr = st.paired(a, b, higher_is_better=hib)
        if pr["n"] < MIN_PAIRS:
            seeds = sorted(set(a) & set(b))
            raise DataError(f"pilot {pilot.source}: {c.cell} has {pr['n']} seed(s) paired with {c.against} "
                            f"({', '.join(map(str, seeds)) or 'none'}); a spread needs at least {MIN_PAIRS}")
        if math.isnan(pr["diff_sd"]):
            raise DataError(f"pilot {pilot.source}: {c.cell} against {c.against}: fewer than two pairs in which "
                            "neither run failed, so the differences have no spread")
        c.pairs, c.sd = int(pr["n"]), float(pr["diff_sd"])
        c.mde_now = st.mde(c.sd, seeds_now, c.holm_over, target=target)
        c.seeds_min = seeds_for(detect, c.sd, c.holm_over, target=target)
        c.seeds_needed = None if c.seeds_min is None else per_split(c.seeds_min, splits)
    if all(c.missing for c in comps):
        raise DataError(f"pilot {pilot.source}: no runs of the cells the grid compares ({comps[0].missing}; the "
                        "grid's cells: " + ", ".join(cell_name(*x) for x in grid_cells(g)) + ")")


def with_seeds(g: grid_mod.Grid, seeds: int) -> grid_mod.Grid:
    """The grid with seeds 0 .. seeds-1 in every cell (seed s on split s mod K), as a grid file `seeds = N` gives."""
    scens = list({r.scenario.name: r.scenario for r in g.runs}.values())
    runs = grid_mod.expand(list(dict.fromkeys(r.model for r in g.runs)), g.hparams, scens,
                           list(dict.fromkeys(r.augmentation for r in g.runs)), list(range(seeds)),
                           g.split_data or [g.data], g.pools, g.budget, g.select)
    return replace(g, runs=runs)


def pilot_cells(g: grid_mod.Grid) -> tuple[Cell, Cell]:
    """The two cells a pilot runs: scenario 1, and the grid's first compared cell, preferring one whose pool is
    the thing under study (no control)."""
    first = [c for c in comparisons(g) if c.family == "scenario 1"]
    if not first:
        raise SettingError(f"{g.path}: the grid has no scenario 1 to compare with: a pilot needs it")
    c = next((c for c in first if c.pool not in CONTROLS), first[0])
    return (c.model, c.augmentation, c.against_scenario, c.against_pool), (c.model, c.augmentation, c.scenario, c.pool)


def pilot_doc(doc: dict[str, Any], g: grid_mod.Grid, cells: tuple[Cell, Cell], seeds: int) -> dict[str, Any]:
    """A grid file's document reduced to the pilot's two cells and seeds (other settings as they are). Its runs are
    the full grid's first seeds, in the grid's results folder, unless dropping the other pools renames the pool
    in the tables (one split: a lone pool has no name there); then they go to a folder of their own."""
    (model, aug, base, _), (_, _, scen, pool) = cells
    renamed = bool(pool) and len(g.pools) > 1 and len(g.split_data or [g.data]) == 1
    out = {**doc, "models": [model], "augmentations": [aug], "scenarios": [base, scen], "seeds": seeds,
           "name": f"{g.name}-pilot", "results": f"{g.results}-pilot" if renamed else str(g.results)}
    if "model" in out:
        out["model"] = {k: v for k, v in out["model"].items() if k == model}
    if "scenario" in out:
        out["scenario"] = {k: v for k, v in out["scenario"].items() if k in (base, scen)}
    for key in ("model", "scenario"):
        if key in out and not out[key]:
            del out[key]
    scens = {r.scenario.name: r.scenario for r in g.runs if r.scenario.name in (base, scen)}
    # The pools a pilot scenario pretrains on stay, by their names in the [pool] table (`pretrain` names one).
    pretrains = {s.pretrain.pool for s in scens.values() if s.pretrain is not None}
    if not scens[scen].needs_pool:
        if pretrains:
            out["pool"] = {k: v for k, v in g.pools.items() if k in pretrains}
        else:
            out.pop("pool", None)
    elif pool:  # one of several named pools
        out["pool"] = {k: v for k, v in g.pools.items() if k == pool or k in pretrains}
    return out


def epoch_images(data: sources.Dataset, scenario: scenarios.Scenario, budget: str) -> int:
    """Training images of one epoch of a run: the kept real and the added synthetic images of its scenario
    (`scenarios.mix`'s counts); with budget "steps", scenario 1's (every run takes scenario 1's steps)."""
    s = (scenarios.SCENARIOS[st.BASELINE] if budget == "steps" else scenario).over(data)
    total = 0
    for c in range(len(data.classes)):
        n = int(((data.train_y == c) & data.fit_mask).sum())
        total += scenarios.round_half_up(s.real_fraction[c] * n) + scenarios.round_half_up(s.synthetic_fraction[c] * n)
    return total


def pretrain_steps(r: RunSpec) -> int:
    """Optimizer steps of a run's pretraining, as the engine takes them: E passes of ceil(N / batch) steps of the
    run's own network at its resolution; 0 for a run that does not pretrain."""
    pre = r.scenario.pretrain
    return 0 if pre is None else sum(pre.steps_per_epoch(r.hparams.batch_size))


def own_steps(data: sources.Dataset, r: RunSpec) -> int:
    """Optimizer steps of a run's own training (after any pretraining): its epochs of ceil(images / batch) steps
    (with budget "steps", scenario 1's images: the steps every run takes)."""
    return r.hparams.epochs * math.ceil(epoch_images(data, r.scenario, r.budget) / r.hparams.batch_size)


def run_key(r: RunSpec) -> tuple[str, str]:
    """A planned run's key: its id and pool folder (runs of pools not made yet share ids: no content to hash)."""
    return r.run_id, r.pool or ""


@dataclass
class RunSeconds:
    """Each planned run's training seconds: measured (`cpu`, the pilot's own, on the machine it ran on) and
    estimated (`gpu`, from the model card's measured GPU throughput); None where there is no figure."""

    cpu: dict[tuple[str, str], float | None]  # by `run_key`
    gpu: dict[tuple[str, str], float | None]
    gpu_source: dict[str, str]  # model -> the throughput figure the estimate used, and where it was measured
    notes: list[str] = field(default_factory=list)
    pretraining: dict[str, str] = field(default_factory=dict)  # scenario -> the pretraining steps its runs count

    def cpu_s(self, r: RunSpec) -> float | None:
        return self.cpu.get(run_key(r))

    def gpu_s(self, r: RunSpec) -> float | None:
        return self.gpu.get(run_key(r))


def gpu_rate(model: str, resolution: int) -> float | None:
    """Training images per second on the model card's measured GPU at `resolution`: the measured figure, scaled
    down by the pixels where the resolution is larger than the measured one; at a smaller resolution the figure is
    kept (small models on a GPU are bound by per-step costs, not pixels), so the estimate is an upper bound."""
    tp = hparams.card(model).gpu
    if tp is None:
        return None
    return tp.images_per_s * min(1.0, (tp.resolution / resolution) ** 2)


def run_seconds(runs: list[RunSpec], pilot: Pilot | None, data: Data) -> RunSeconds:
    """Training seconds of each run (by run id): the pilot's mean of the run's cell (its model's where the pilot
    lacks the cell), and the GPU estimate: the run's training images over the card's GPU images per second. A run
    with `pretrain` counts its pretraining steps on top of its own (`pretrain_steps`): in the estimate, and where
    its measured seconds are the model's, not its cell's (a cell's own runs measured both phases)."""
    out = RunSeconds({}, {}, {})
    for model in dict.fromkeys(r.model for r in runs):
        tp = hparams.card(model).gpu
        if tp is None:
            out.notes.append(f"no GPU throughput is recorded for model {model}: no GPU-hours")
        else:
            hp = next(r.hparams for r in runs if r.model == model)
            rate = gpu_rate(model, hp.resolution)
            out.gpu_source[model] = (f"{model}: {tp.images_per_s:,.0f} images/s measured at {tp.resolution} px, "
                                     f"{tp.precision}, {tp.device} ({tp.source})"
                                     + (f"; {rate:,.0f} at {hp.resolution} px" if rate != tp.images_per_s else ""))
    if isinstance(data, str):
        out.notes.append(f"no GPU estimate: the grid's data does not load here ({data})")
    measured: dict[Cell, tuple[float | None, bool]] = {}  # seconds, and whether they are the cell's own
    unscaled: list[Cell] = []
    for r in runs:
        cell: Cell = (r.model, r.augmentation, r.scenario.name, r.pool_label or "")
        if cell not in measured:
            measured[cell] = ((pilot.seconds(cell), pilot.seconds(cell, cell_only=True) is not None)
                              if pilot is not None else (None, False))
        secs, own_cell = measured[cell]
        ds = None if isinstance(data, str) else data.get(repr(r.data))
        pre, steps = pretrain_steps(r), r.scenario.pretrain
        if steps is not None and secs is not None and not own_cell:
            # The model's runs stand in for a cell the pilot lacks; they did not pretrain as this run does: its
            # pretraining steps at their seconds per step, taking them to have trained this run's own steps
            # (with budget "steps" every run does).
            secs = secs * (1 + pre / own_steps(ds, r)) if ds is not None else None
            if ds is None and cell not in unscaled:
                unscaled.append(cell)
        out.cpu[run_key(r)] = secs
        if steps is not None and r.scenario.name not in out.pretraining:
            own = f" {own_steps(ds, r)}" if ds is not None else ""
            out.pretraining[r.scenario.name] = (
                f"scenario {r.scenario.name}: {steps.epochs} x ceil({steps.images} / {r.hparams.batch_size}) = {pre} "
                f"pretraining steps of {r.model} per run, on top of its own{own}")
        rate = gpu_rate(r.model, r.hparams.resolution)
        # A pretraining step is a batch of the same network at the same resolution; counted as a full one (a
        # pass's short last batch costs about a step on a GPU bound by per-step costs).
        out.gpu[run_key(r)] = ((r.hparams.epochs * epoch_images(ds, r.scenario, r.budget) + pre * r.hparams.batch_size)
                               / rate if rate and ds is not None else None)
    out.notes += [f"no measured seconds of {cell_name(*c)}: the pilot lacks the cell, and its pretraining steps are "
                  "not counted without the grid's data" for c in unscaled]
    return out
