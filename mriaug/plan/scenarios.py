"""Mixing policies: which real images a run keeps and which synthetic images it adds, per class.

For class c with n_c training images, a scenario keeps round(real_fraction[c] * n_c) real images
(sampled per seed, without replacement) and adds round(synthetic_fraction[c] * n_c) synthetic
images whose sources are among the kept ones. Rounding is half-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.classes import CLASSES, NUM_CLASSES, class_index
from ..data.kept_for import KeptFor
from ..data.pools import Pool, saw_validation, training_conflicts
from ..data.sources import Dataset
from ..errors import PoolError, SettingError

MILD_MODERATE = ("Mild_Demented", "Moderate_Demented")
PRETRAIN_KEYS = ("pool", "images", "epochs")


@dataclass(frozen=True)
class Pretrain:
    """Training on synthetic images only before a scenario's own training (`[scenario.NAME] pretrain = {pool =
    "NAME", images = N, epochs = E}`): N images of the grid's pool NAME over every class, E passes over them."""

    pool: str  # the pool's name in the grid's `[pool]` table; which folder and content is the run's (`RunSpec`)
    images: int
    epochs: int

    def to_dict(self) -> dict[str, Any]:
        # The pool's name is no part of it: a run depends on the pool's content (`RunSpec.to_dict`), not its name.
        return {"images": self.images, "epochs": self.epochs}

    def steps_per_epoch(self, batch_size: int) -> list[int]:
        """The optimizer steps of each pretraining epoch: E passes of ceil(N / batch); the engine trains them and
        `mriaug plan` counts them."""
        return [math.ceil(self.images / batch_size)] * self.epochs


def parse_pretrain(value: Any) -> Pretrain:
    """A `pretrain` setting from its table; errors name the key of the table at fault (the caller names
    `pretrain`)."""
    if not isinstance(value, dict):
        raise SettingError("must be a table {pool = \"NAME\", images = N, epochs = E}, got " + repr(value))
    unknown = sorted(set(value) - set(PRETRAIN_KEYS))
    missing = [k for k in PRETRAIN_KEYS if k not in value]
    if unknown or missing:
        raise SettingError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(PRETRAIN_KEYS)}" if unknown
                           else f"missing {', '.join(missing)} (give pool, images and epochs)")
    if not isinstance(value["pool"], str) or not value["pool"]:
        raise SettingError(f"pool must be a pool's name in the grid's [pool] table, got {value['pool']!r}")
    for key in ("images", "epochs"):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise SettingError(f"{key} must be a whole number above 0, got {v!r}")
    return Pretrain(value["pool"], value["images"], value["epochs"])


@dataclass(frozen=True)
class Scenario:
    name: str
    real_fraction: tuple[float, ...]
    synthetic_fraction: tuple[float, ...]
    description: str = ""
    pretrain: Pretrain | None = None

    @property
    def needs_pool(self) -> bool:
        return any(f > 0 for f in self.synthetic_fraction)

    def over(self, dataset: Dataset) -> Scenario:
        """The scenario over the dataset's classes: after a data option `merge`, a merged class takes the
        fractions its source classes share (refused where they differ: the mix would be ambiguous)."""
        if dataset.classes == CLASSES:
            return self
        real: list[float] = []
        syn: list[float] = []
        for j, name in enumerate(dataset.classes):
            members = [k for k, n in enumerate(dataset.class_map) if n == j]
            for what, values, out in (("real_fraction", self.real_fraction, real),
                                      ("synthetic_fraction", self.synthetic_fraction, syn)):
                if len({values[k] for k in members}) > 1:
                    raise SettingError(
                        f"scenario {self.name}: {what} differs among the classes merged into {name} ("
                        + ", ".join(f"{CLASSES[k]} {values[k]:g}" for k in members) + "); give them one value")
                out.append(values[members[0]])
        return Scenario(self.name, tuple(real), tuple(syn), self.description, self.pretrain)

    def to_dict(self) -> dict[str, Any]:
        # Without `pretrain`: the run spec holds it with its pool's content, and presets' run ids stay as they were.
        return {"name": self.name,
                "real_fraction": dict(zip(CLASSES, self.real_fraction, strict=True)),
                "synthetic_fraction": dict(zip(CLASSES, self.synthetic_fraction, strict=True))}


def _preset(name: str, real: float, synth: float, synth_classes: tuple[str, ...], desc: str) -> Scenario:
    syn = tuple(synth if c in synth_classes else 0.0 for c in CLASSES)
    return Scenario(name, (real,) * NUM_CLASSES, syn, desc)


# Keyed by the names in grid files and in the rows of the thesis tables.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _preset("1", 1.0, 0.0, (), "100% real, no synthetic"),
        _preset("2", 0.8, 0.0, (), "80% real, no synthetic"),
        _preset("3", 1.0, 0.2, MILD_MODERATE, "100% real + 20% synthetic for Mild and Moderate"),
        _preset("4", 0.8, 0.2, MILD_MODERATE, "80% real + 20% synthetic for Mild and Moderate"),
        _preset("5", 1.0, 0.2, CLASSES, "100% real + 20% synthetic for every class"),
        _preset("6", 0.8, 0.2, CLASSES, "80% real + 20% synthetic for every class"),
    )
}


def _fractions(value: Any, what: str) -> tuple[float, ...]:
    """A fraction for every class from a number or a table {class or 'default': number}."""
    if isinstance(value, int | float):
        table: dict[str, Any] = {"default": value}
    elif isinstance(value, dict):
        table = value
    else:
        raise SettingError(f"{what} must be a number or a table of class = number")
    for key, v in table.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SettingError(f"{what} for {key} must be a number, got {v!r}")
    out = [float(table.get("default", 0.0))] * NUM_CLASSES
    for key, v in table.items():
        if key == "default":
            continue
        out[class_index(key)] = float(v)
    top = 1.0 if what == "real_fraction" else 10.0  # a run cannot keep more real images than there are
    for c, v in zip(CLASSES, out, strict=True):
        if not 0.0 <= v <= top:
            raise SettingError(f"{what} for {c} is {v}; must be between 0 and {top:g}")
    return tuple(out)


def custom(name: str, real_fraction: Any = 1.0, synthetic_fraction: Any = 0.0, description: str = "",
           pretrain: Any = None) -> Scenario:
    pre = None
    if pretrain is not None:
        try:
            pre = parse_pretrain(pretrain)
        except SettingError as e:
            raise SettingError(f"pretrain: {e}") from e
    return Scenario(name, _fractions(real_fraction, "real_fraction"),
                    _fractions(synthetic_fraction, "synthetic_fraction"), description, pre)


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


@dataclass
class Mix:
    """The training set of one run: indices only, so it costs nothing to keep in a result."""

    real_index: np.ndarray  # rows of the train split
    synthetic_index: np.ndarray  # rows of the pool
    counts_real: dict[str, int]
    counts_synthetic: dict[str, int]
    # Per class that adds synthetic images: images, distinct sources used, sources available, and `reused`
    # (images beyond one per source: only when the class needs more images than it has sources).
    pool_sampling: dict[str, dict[str, int]] = field(default_factory=dict)


def _rng(seed: int, label: int, stream: int) -> np.random.Generator:
    # One stream per (seed, class, purpose): which real images a run keeps never depends on the pool.
    return np.random.default_rng([seed, 0x5EED, label, stream])


def kept_class_rows(dataset: Dataset, scenario: Scenario, seed: int, label: int) -> np.ndarray:
    """The real train rows of one class that run (scenario, seed) keeps, sorted."""
    rows = np.flatnonzero((dataset.train_y == label) & dataset.fit_mask)
    k = round_half_up(scenario.real_fraction[label] * len(rows))
    return np.sort(_rng(seed, label, 0).choice(rows, k, replace=False))


def kept_real(dataset: Dataset, scenario: Scenario, seed: int) -> np.ndarray:
    """Every real train row that run (scenario, seed) keeps, sorted."""
    scenario = scenario.over(dataset)
    return np.sort(np.concatenate([kept_class_rows(dataset, scenario, seed, c)
                                   for c in range(len(dataset.classes))]))


def kept_for_rows(dataset: Dataset, kept: KeptFor) -> np.ndarray:
    """The real train rows the preset run `kept` keeps: the only valid sources of a pool (or training
    images of a generator) made for it."""
    if kept.scenario not in SCENARIOS:
        raise SettingError(f"--kept-for {kept}: only the preset scenarios can be named "
                           f"({', '.join(SCENARIOS)}), not {kept.scenario!r}; a grid's own [scenario.*] "
                           "tables are not available here")
    return kept_real(dataset, SCENARIOS[kept.scenario], kept.seed)


def check_generator_training(scenario: Scenario, seed: int, pool: Pool) -> None:
    """A run that drops real images may not use images from a model trained on any of them (e.g. a
    diffusion model trained on all rows, or on another seed's kept set): it would bring them back."""
    if all(f >= 1.0 for f in scenario.real_fraction):
        return
    bad = training_conflicts(pool, KeptFor(scenario.name, seed))
    if bad:
        seen = "all train rows" if bad[0].get("kept_for") is None else f"the kept set of {bad[0]['kept_for']}"
        raise PoolError(
            f"scenario {scenario.name}, seed {seed}: pool {pool.path} has images from a model trained on {seen}, "
            f"which includes real images this run drops; train one with `mriaug synth train-diffusion "
            f"--kept-for {scenario.name}:{seed}` and make this run's pool from it"
        )


def held_out_groups(dataset: Dataset) -> np.ndarray:
    """Scan groups a synthetic source may not belong to: those of validation rows and, where the split is by
    group (subject), of test rows. On the given split every scan has slices on both sides, so test groups
    cannot be held out there (that split measures recognition of seen patients, see the README)."""
    held = []
    if dataset.train_groups is not None:
        held.append(dataset.train_groups[dataset.val_rows])
    if dataset.test_groups is not None and dataset.split.get("kind") == "subject":
        held.append(dataset.test_groups)
    return np.unique(np.concatenate(held)) if held else np.zeros(0, np.int64)


def refused_sources(dataset: Dataset, pool: Pool) -> np.ndarray:
    """Pool rows whose source is a validation row or shares a scan group with a held-out image."""
    bad = np.isin(pool.sources, dataset.val_rows)
    held = held_out_groups(dataset)
    if len(held) and dataset.train_groups is not None:
        bad |= np.isin(dataset.train_groups[pool.sources], held)
    return bad


def sources_first(rows: np.ndarray, sources: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """m of the pool `rows` (whose sources are `sources`): one variation of as many distinct sources as
    possible, drawn at random, and a second (third, ...) variation of a source only once every source has
    given one. Returns the chosen rows, sorted, and how many are such reuses."""
    order = rng.permutation(len(rows))
    rank = np.zeros(len(order), np.int64)
    seen: dict[int, int] = {}
    for i, j in enumerate(order):
        src = int(sources[j])
        rank[i] = seen.get(src, 0)
        seen[src] = rank[i] + 1
    picked = order[np.lexsort((np.arange(len(order)), rank))][:m]
    return np.sort(rows[picked]), max(0, m - len(seen))


def check_generator_validation(dataset: Dataset, pool: Pool) -> None:
    """A run with a validation part may not use images from a model that may have learnt validation images:
    selection (`best_val`) and the validation numbers would then rest on images the generator saw."""
    if not len(dataset.val_rows):
        return
    bad = saw_validation(pool)
    if bad:
        raise PoolError(f"pool {pool.path} has images from a model not recorded as trained on the training part "
                        f"only ({len(bad)} training set(s), e.g. {bad[0].get('n_rows')} rows), so it may have seen "
                        "this split's validation images; retrain it with this mriaug (`mriaug synth "
                        "train-diffusion`, which leaves validation and test out) and re-make the pool")


def _draw(pool: Pool, c: int, name: str, kept: np.ndarray, m: int, refused: np.ndarray | None,
          rng: np.random.Generator, who: str) -> tuple[np.ndarray, dict[str, int]]:
    """m pool lines of class c whose sources are kept real rows and not refused (`sources_first`), with their
    sampling record; too few such lines: a PoolError saying how many there are."""
    avail = pool.available(c, kept)
    n_refused = int(refused[avail].sum()) if refused is not None else 0
    if refused is not None:
        avail = avail[~refused[avail]]
    if len(avail) < m:
        why = (f"; {n_refused} more were refused: their source shares a scan group with a validation or "
               "test image" if n_refused else "")
        raise PoolError(
            f"{who}: needs {m} synthetic {name} images whose sources are among the {len(kept)} kept real ones; "
            f"pool {pool.path} has {len(avail)} such ({int((pool.labels == c).sum())} {name} images in all){why}"
        )
    chosen, reused = sources_first(avail, pool.sources[avail], m, rng)
    # The guard the study rests on: never a variation of a dropped, validation or test image, nor of an
    # image that shares a scan with one held out.
    if not np.isin(pool.sources[chosen], kept).all() or (refused is not None and refused[chosen].any()):
        raise PoolError(f"internal: synthetic image of a dropped or held-out source selected ({name})")
    return chosen, {"images": int(m), "sources": len(np.unique(pool.sources[chosen])),
                    "sources_available": len(np.unique(pool.sources[avail])), "reused": reused}


def pretrain_counts(dataset: Dataset, images: int) -> list[int]:
    """How many of a pretraining's `images` each class gets: in proportion to the class's training images (so
    the synthetic set is as imbalanced as the real one and `class_weight` weighs it alike), by largest remainder
    so that they sum to `images` exactly; ties go to the lower class index."""
    n = np.array([int(((dataset.train_y == c) & dataset.fit_mask).sum()) for c in range(len(dataset.classes))])
    share = images * n / max(int(n.sum()), 1)
    out = np.floor(share).astype(np.int64)
    order = np.lexsort((np.arange(len(n)), -(share - out)))
    out[order[: images - int(out.sum())]] += 1
    return out.tolist()


def pretrain_mix(dataset: Dataset, scenario: Scenario, seed: int, pool: Pool) -> Mix:
    """The synthetic images run (scenario, seed) pretrains on, as a `Mix` without real rows: `pretrain_counts`
    per class, from the pool's lines whose sources the run keeps (and never a held-out one), as `mix` draws
    them, on a stream of their own so the scenario's own mix does not depend on them."""
    pre = scenario.pretrain
    if pre is None:
        raise SettingError(f"scenario {scenario.name} has no pretrain setting")
    scenario = scenario.over(dataset)
    check_generator_training(scenario, seed, pool)
    check_generator_validation(dataset, pool)
    refused = refused_sources(dataset, pool)
    chosen, counts, sampling = [], {}, {}
    for c, (name, m) in enumerate(zip(dataset.classes, pretrain_counts(dataset, pre.images),
                                      strict=True)):
        counts[name] = int(m)
        if m:
            lines, sampling[name] = _draw(pool, c, name, kept_class_rows(dataset, scenario, seed, c), m, refused,
                                          _rng(seed, c, 2), f"scenario {scenario.name}, seed {seed}, pretraining")
            chosen.append(lines)
    empty = np.zeros(0, np.int64)
    return Mix(empty, np.concatenate(chosen) if chosen else empty, dict.fromkeys(dataset.classes, 0), counts,
               sampling)


def mix(dataset: Dataset, scenario: Scenario, seed: int, pool: Pool | None) -> Mix:
    scenario = scenario.over(dataset)
    if pool is not None and scenario.needs_pool:
        check_generator_training(scenario, seed, pool)
        check_generator_validation(dataset, pool)
    real_idx, syn_idx = [], []
    counts_real, counts_syn = {}, {}
    sampling: dict[str, dict[str, int]] = {}
    refused = refused_sources(dataset, pool) if pool is not None and scenario.needs_pool else None
    for c, name in enumerate(dataset.classes):
        n = int(((dataset.train_y == c) & dataset.fit_mask).sum())
        kept = kept_class_rows(dataset, scenario, seed, c)
        m = round_half_up(scenario.synthetic_fraction[c] * n)
        chosen = np.zeros(0, np.int64)
        if m:
            if pool is None:
                raise PoolError(f"scenario {scenario.name} needs {m} synthetic {name} images but no pool was given")
            chosen, sampling[name] = _draw(pool, c, name, kept, m, refused, _rng(seed, c, 1),
                                           f"scenario {scenario.name}, seed {seed}")
        real_idx.append(kept)
        syn_idx.append(chosen)
        counts_real[name] = len(kept)
        counts_syn[name] = int(m)
        if n and not len(kept) and not m:  # nothing to learn the class from: its metrics would be meaningless
            raise SettingError(f"scenario {scenario.name}, seed {seed}: no training images of class {name} (real "
                               f"fraction {scenario.real_fraction[c]:g} and synthetic fraction "
                               f"{scenario.synthetic_fraction[c]:g} of its {n}); raise one of them")
    return Mix(np.concatenate(real_idx), np.concatenate(syn_idx), counts_real, counts_syn, sampling)


def training_arrays(dataset: Dataset, m: Mix, pool: Pool | None) -> tuple[np.ndarray, np.ndarray]:
    """A run's training images and labels in the order the engine trains them (real rows, then pool lines), to
    inspect a mix; the engine itself indexes one device copy of the images its seeds use (`train.prepare`)."""
    x = [dataset.train_x[m.real_index]]
    y = [dataset.train_y[m.real_index]]
    if pool is not None and len(m.synthetic_index):
        x.append(pool.images[m.synthetic_index])
        y.append(pool.labels[m.synthetic_index])
    return np.concatenate(x), np.concatenate(y)
