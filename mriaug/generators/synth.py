"""`mriaug synth`: make a pool of variations of training images, resumably (done sources are skipped).

Sources come from the train split only. With `kept_for=(scenario, seed)` they come only from the real
images that run keeps, so a pool made for it cannot hold a variation of a dropped image.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import checks, generators
from ..data import pools
from ..data.classes import CLASSES, class_index
from ..data.kept_for import KeptFor
from ..data.pools import PoolWriter
from ..data.sources import Dataset
from ..errors import PoolError, SettingError
from ..plan.scenarios import kept_for_rows
from ..store import locks


def pairs_to_make(dataset: Dataset, classes: list[str] | None, per_source: int, max_sources: int | None,
         seed: int, done: set[tuple[int, int]], allowed: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(train row, variation) pairs still to make. Sources come from the train split only, and from
    `allowed` (train rows) when given."""
    # A 0 would silently make an empty pool; say which option is wrong instead.
    checks.positive_int(per_source, "--per-source")
    if max_sources is not None:
        checks.positive_int(max_sources, "--max-sources")
    checks.seed(seed, "--seed")
    if classes is not None and not classes:
        raise SettingError("--classes is empty; name at least one class or leave it out for all")
    # Duplicates ("Mild,Mild_Demented") would plan the same images twice.
    labels = sorted({class_index(c) for c in classes}) if classes else list(range(len(CLASSES)))
    todo = []
    rng = np.random.default_rng(seed)
    for k in labels:
        rows = np.flatnonzero(dataset.train_y == k)
        if allowed is not None:
            rows = rows[np.isin(rows, allowed)]
        if max_sources is not None and max_sources < len(rows):
            rows = np.sort(rng.choice(rows, max_sources, replace=False))
        todo += [(int(r), v) for r in rows for v in range(per_source) if (int(r), v) not in done]
    return todo


PRICE_KEYS = ("price_usd", "token_prices_usd_per_1m")


def _identity(params: dict[str, Any] | None) -> dict[str, Any] | None:
    # A price update is not another generator; everything else in params() shapes the images.
    return None if params is None else {k: v for k, v in params.items() if k not in PRICE_KEYS}


def _check_overlap(writer: PoolWriter, generator: str, params: dict[str, Any], wanted: list[tuple[int, int]],
                   out: str | Path) -> None:
    """Sources already in a pool are skipped; if they were made by another generator or with other
    settings, this run would silently make nothing for them: refuse, and say what the pool holds."""
    ident = _identity(params) or {}
    wanted_set = set(wanted)
    for e in writer.entries:
        if (e["source_index"], e.get("variation", 0)) not in wanted_set:
            continue
        theirs = e.get("params") or {}
        differs = {k: theirs[k] for k, v in ident.items() if k in theirs and theirs[k] != v}
        if e["generator"] != generator or differs:
            raise PoolError(
                f"pool {out} already holds train row {e['source_index']} (variation {e.get('variation', 0)}) made "
                f"by {e['generator']}" + (f" with {differs}" if differs else "") + f"; this run asks for {generator} "
                f"with {ident} and would skip it. Use another --out, or the pool's settings to extend it"
            )


def make_pool(dataset: Dataset, out: str | Path, generator: str, *, classes: list[str] | None = None,
              per_source: int = 1, max_sources: int | None = None, seed: int = 0,
              options: dict[str, Any] | None = None, progress_bar: bool = True, dry_run: bool = False,
              max_cost: float | None = None, kept_for: KeptFor | None = None) -> dict[str, Any]:
    options = dict(options or {})
    # Prices and budgets are amounts of money: a negative one would make estimates and the budget meaningless.
    for key, value in options.items():
        if key.endswith("_usd"):
            checks.non_negative(value, f"-s {key}")
    if max_cost is not None:
        checks.non_negative(max_cost, "--max-cost")
        if generator != "openai":
            raise SettingError(f"--max-cost applies to the paid generator (openai); {generator} costs nothing")
        options["max_cost_usd"] = max_cost
    gen = generators.get(generator, **options)
    # Sources come from the training part only: never a validation row (and, on a subject split, never a test
    # scan, which is not in the train split at all).
    allowed = np.flatnonzero(dataset.fit_mask) if len(dataset.val_rows) else None
    if kept_for is not None:
        allowed = kept_for_rows(dataset, kept_for)
    if dry_run:
        return _extend(dataset, out, generator, gen, classes, per_source, max_sources, seed, allowed, kept_for,
                       dry_run, progress_bar)

    def waiting(holder: dict[str, Any]) -> None:
        print(f"pool {out} is being extended by {locks.describe(holder)}; waiting for it to finish",
              file=sys.stderr, flush=True)

    # One process extends a pool at a time: a second one waits, then extends what the first left.
    Path(out).mkdir(parents=True, exist_ok=True)
    with pools.locked(out, on_wait=waiting):
        return _extend(dataset, out, generator, gen, classes, per_source, max_sources, seed, allowed, kept_for,
                       dry_run, progress_bar)


def _extend(dataset: Dataset, out: str | Path, generator: str, gen: Any, classes: list[str] | None,
            per_source: int, max_sources: int | None, seed: int, allowed: np.ndarray | None,
            kept_for: KeptFor | None, dry_run: bool, progress_bar: bool) -> dict[str, Any]:
    from tqdm import tqdm

    # A generator trained on this dataset (diffusion) says on which rows, for the leak check at mix time.
    trained = gen.trained_on() if hasattr(gen, "trained_on") else None
    writer = PoolWriter(out, dataset, generator, generator_params=gen.params(), kept_for=kept_for,
                        trained_on=trained)
    every = pairs_to_make(dataset, classes, per_source, max_sources, seed, set(), allowed)
    _check_overlap(writer, generator, gen.params(), every, out)
    todo = pairs_to_make(dataset, classes, per_source, max_sources, seed, writer.done(), allowed)
    if dry_run:
        # The larger of the pool's running figures (usage-based, estimate), as --max-cost counts it.
        spent = max(float(writer.meta.get("spend_usd", 0.0)), float(writer.meta.get("spend_estimate_usd", 0.0)))
        est = gen.estimate(todo, spent) if hasattr(gen, "estimate") else {
            "requests": len(todo), "cost_usd": 0.0, "text": f"{len(todo)} image(s) to make locally, no cost"}
        return {"dry_run": True, "todo": len(todo), "done": len(writer.entries), **est}
    with tqdm(total=len(todo), desc=f"synth {generator}", unit="img", disable=not progress_bar) as bar:
        def progress(n: int) -> None:
            bar.update(n)

        summary = gen.run(writer, todo, progress)
    writer.flush()
    summary["pool_size"] = len(writer.entries)
    summary["todo"] = len(todo)
    return summary
