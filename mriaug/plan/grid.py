"""Grid files (`jobs/*.toml`): models with their hyper-parameters, scenarios, augmentations, seeds,
data source and pool, expanded into run specs. Errors name the file, the key and its line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import checks
from ..data import pools, splits
from ..data.sources import DataSpec
from ..errors import DataError, GridError, PoolError, SettingError
from ..store import ids
from ..store.tomlfile import TomlFile
from . import augmentations, hparams, scenarios
from .hparams import HParamError, HParams
from .spec import BUDGETS, SELECTS, RunSpec

TOP_KEYS = {"name", "results", "seeds", "models", "scenarios", "augmentations", "pool", "save_weights",
            "data", "model", "scenario", "budget", "select"}
SCENARIO_KEYS = {"real_fraction", "synthetic_fraction", "description", "pretrain"}  # of a [scenario.NAME] table


@dataclass
class Grid:
    path: Path
    name: str
    results: Path
    data: DataSpec
    pool: str | None  # the first pool (the only one in most grids)
    save_weights: bool
    hparams: dict[str, HParams]
    runs: list[RunSpec]
    # Every pool by its name in the tables: `pool = "DIR"` is named after the folder; `pool = ["A", "B"]` too;
    # `[pool] name = "DIR"` names them. Scenarios that add synthetic images run once per pool.
    pools: dict[str, str] = field(default_factory=dict)
    budget: str = "epochs"
    select: str = "last"
    # The data of every split the grid's seeds use, in split order: one, or K with `[data] splits = K`.
    split_data: list[DataSpec] = field(default_factory=list)

    def pool_dirs(self, pool: str) -> list[tuple[DataSpec, str]]:
        """(split data, folder) for each split of the grid: where `mriaug synth --grid` makes a pool."""
        data = self.split_data or [self.data]
        return [(d, pool_dir(pool, d, len(data))) for d in data]

    def pool_for(self, generator: str) -> str | None:
        """The pool `mriaug synth --grid` fills: the only one, or the one named after the generator."""
        if len(self.pools) <= 1:
            return self.pool
        if generator in self.pools:
            return self.pools[generator]
        raise GridError(f"{self.path}: the grid names {len(self.pools)} pools ({', '.join(self.pools)}) and none "
                        f"after generator {generator!r}; pass --out POOL")

    # Seeds of one cell trained together in one model (`[model.NAME] pack_seeds = S`, `mriaug.engine.seedpack`).
    pack_seeds: dict[str, int] = field(default_factory=dict)

    def settings(self) -> list[dict[str, Any]]:
        """Each distinct setting the grid trains (model, hyper-parameters, data and split, budget, selection,
        pools, packing) with its number of runs: what `mriaug grid --dry-run` prints before anything trains."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.runs:
            data = r.data.describe()
            opts = {k: v for k, v in data["options"].items() if not (k == "split_seed" and len(self.split_data) > 1)}
            key = ids.content_hash([r.model, r.hparams.to_dict(), opts, data["source"], r.budget, r.select])
            s = out.setdefault(key, {"model": r.model, "hparams": r.hparams.to_dict(), "data": data["source"],
                                     "options": opts, "splits": len(self.split_data) or 1, "budget": r.budget,
                                     "select": r.select, "pack_seeds": self.pack_seeds.get(r.model, 1),
                                     "pools": [], "runs": 0})
            s["runs"] += 1
            label = r.pool_label or (Path(r.pool).name if r.pool else None)
            if label and label not in s["pools"]:
                s["pools"].append(label)
        return list(out.values())

    def units(self, runs: list[RunSpec]) -> list[list[RunSpec]]:
        """`runs` as they are trained: seed packs for models with pack_seeds, else one run each."""
        return seed_packs(runs, self.pack_seeds)


class _Reader(TomlFile):
    error = GridError


def check_training(budget: Any, select: Any, data: DataSpec, what: str = "") -> None:
    """`budget` and `select` are known names, and `best_val` has a validation part to select on."""
    if budget not in BUDGETS:
        raise SettingError(f"{what}budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if select not in SELECTS:
        raise SettingError(f"{what}select must be one of {', '.join(SELECTS)}, got {select!r}")
    if select == "best_val" and not float(splits.options(data.options)["val_fraction"]) > 0:
        raise SettingError(f"{what}select = 'best_val' needs a validation part: set the data option val_fraction "
                           "(it is 0 on the given split) or use split = 'subject'")


def make_spec(model: str, scenario: scenarios.Scenario, augmentation: str, seed: int, hp: HParams,
             data: DataSpec | None = None, pool: str | None = None, *, budget: str = "epochs",
             select: str = "last", pool_label: str | None = None, pretrain_pool: str | None = None) -> RunSpec:
    """A run as planned now: a run that draws from a pool (or pretrains on one) records what the pool holds at
    this moment."""
    augmentations.check(augmentation)
    checks.seed(seed, "seed")
    data = data or DataSpec()
    check_training(budget, select, data, "--")
    if (scenario.pretrain is None) != (pretrain_pool is None):
        raise SettingError(f"scenario {scenario.name}: a pretraining pool goes with a scenario that sets pretrain, "
                           "and only with one")
    fingerprint = pools.manifest_fingerprint(pool) if scenario.needs_pool else None
    return RunSpec(model, scenario, augmentation, seed, hp, data, pool, fingerprint, budget, select, pool_label,
                   pretrain_pool, pools.manifest_fingerprint(pretrain_pool) if pretrain_pool else None)


# Models whose seeds can train together in one model (their cards say so: torch.func over a network without batch norm).
PACKABLE = hparams.packable()


def seed_packs(runs: list[RunSpec], sizes: dict[str, int]) -> list[list[RunSpec]]:
    """Runs that differ only in their seed, in groups of at most `sizes[model]` (in the order given); the
    runs of other models stay alone. Packing is how runs are executed, not what they are: their ids do not
    change."""
    units: list[list[RunSpec]] = []
    open_pack: dict[str, list[RunSpec]] = {}
    for r in runs:
        size = sizes.get(r.model, 1)
        if size <= 1:
            units.append([r])
            continue
        key = ids.content_hash(r.cell)
        pack = open_pack.get(key)
        if pack is None or len(pack) >= size:
            pack = open_pack[key] = []
            units.append(pack)
        pack.append(r)
    return units


def _pack_seeds(r: _Reader, model: str, table: dict[str, Any]) -> int:
    """Pop `pack_seeds` from a model table (it is no hyper-parameter: it does not enter the run id)."""
    if "pack_seeds" not in table:
        return 1
    value = table.pop("pack_seeds")
    n = r.positive_int(f"model.{model}", "pack_seeds", value)
    if n > 1 and model not in PACKABLE:
        raise r.fail(f"model.{model}", "pack_seeds", f"only {', '.join(PACKABLE)} can train seeds together "
                     f"({model}: {hparams.card(model).no_pack_reason})")
    return n


def check_pools(runs: list[RunSpec], missing: dict[str, str] | None = None) -> None:
    """Before any training: every run that adds synthetic images finds enough in its pool (and the pool is
    valid for the data), and every run has training images of every class. Mixing only builds indices, so
    checking every (scenario, seed) is cheap. With `missing` (a dry run), a pool folder that does not exist yet
    is recorded there (folder -> how to make it) instead of stopping the check; the runs that draw from it are
    checked as far as they can be without it."""
    from ..data import sources as data_mod

    datasets: dict[str, data_mod.Dataset] = {}
    loaded: dict[tuple[str, str], pools.Pool | None] = {}
    checked: set[tuple[str, str | None, str, int]] = set()
    for r in runs:
        if r.scenario.needs_pool and r.pool is None:
            raise PoolError(f"{r.label}: scenario {r.scenario.name} adds synthetic images but no pool is set")
        dkey = repr(r.data)
        pool_path = r.pool if r.scenario.needs_pool else None
        key = (dkey, pool_path, repr(r.scenario), r.seed)
        if key in checked:
            continue
        checked.add(key)
        if dkey not in datasets:
            datasets[dkey] = data_mod.load(r.data)
        pool = None
        if pool_path is not None:
            pool = _load_pool(loaded, datasets[dkey], dkey, pool_path, r, missing)
            if pool is None:  # not made yet (dry run): the rest of the check needs its images
                continue
        try:
            scenarios.mix(datasets[dkey], r.scenario, r.seed, pool)
        except SettingError as e:
            raise GridError(f"{r.label}: {e}") from e
        if r.pretrain_pool is not None:
            pre = _load_pool(loaded, datasets[dkey], dkey, r.pretrain_pool, r, missing)
            if pre is not None:
                scenarios.pretrain_mix(datasets[dkey], r.scenario, r.seed, pre)


def _load_pool(loaded: dict[tuple[str, str], pools.Pool | None], dataset: Any, dkey: str, pool_path: str,
               r: RunSpec, missing: dict[str, str] | None) -> pools.Pool | None:
    """A pool as `check_pools` loads it (once per data and folder); None for one not made yet in a dry run."""
    if (dkey, pool_path) not in loaded:
        try:
            loaded[dkey, pool_path] = pools.load(pool_path, dataset)
        except PoolError as e:
            if Path(pool_path).is_dir():
                raise
            made = _not_made(e, r)
            if missing is None:
                raise made from e
            missing[pool_path] = str(made)
            loaded[dkey, pool_path] = None
    return loaded[dkey, pool_path]


def _not_made(e: PoolError, r: RunSpec) -> PoolError:
    """A missing pool's error, naming the one split of a grid's K whose pool it is (`synth --grid --split`)."""
    k = int(splits.options(r.data.options)["splits"])
    if k <= 1:
        return e
    return PoolError(f"{e}; it is split {r.seed % k} of the grid's {k} (`--split {r.seed % k}` on `mriaug synth "
                     "--grid GRID` makes that split's pool alone)")


def missing_pools(runs: list[RunSpec]) -> list[str]:
    """The pool folders the runs draw from that hold no pool yet (a run's id holds its pool's content, so until
    the pool is made the run has another id than the one it will train under)."""
    folders = [p for r in runs for p in ((r.pool if r.scenario.needs_pool else None), r.pretrain_pool) if p]
    return list(dict.fromkeys(p for p in folders if pools.manifest_fingerprint(p) is None))


def load(path: str | Path) -> Grid:
    """A grid file, checked section by section (errors name the file, the key and its line), then expanded
    into its runs."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    r = _Reader(path)
    r.check_keys("", r.doc, TOP_KEYS)
    data = _data(r)
    pool_table = _pools(r)
    scens, scen_names = _scenarios(r, pool_table)
    model_names, hps, pack = _models(r)
    augs = _augmentations(r)
    seeds = _seeds(r)
    budget, select = _training(r, data)
    _plain_keys(r)
    if not pool_table and any(s.needs_pool for s in scens):
        need = [s.name for s in scens if s.needs_pool]
        raise r.fail("", "scenarios", f"scenario(s) {', '.join(need)} add synthetic images but the grid sets no pool")
    for key, values in (("models", model_names), ("scenarios", scen_names), ("augmentations", augs),
                        ("seeds", seeds)):
        if dup := checks.repeated(values):  # the same run twice would be trained twice at once on a cluster
            raise r.fail("", key, f"listed more than once: {', '.join(dup)}")
    # Repeated subject splits (`[data] splits = K`): seed s uses split number s mod K and that split's pools.
    split_opts = splits.options(data.options)
    n_splits, first = int(split_opts["splits"]), int(split_opts["split_seed"])
    split_data = [split_spec(data, first + j) if n_splits > 1 else data for j in range(n_splits)]
    runs = expand(model_names, hps, scens, augs, seeds, split_data, pool_table, budget, select)
    doc = r.doc
    return Grid(path=path, name=str(doc.get("name", path.stem)),
                results=Path(str(doc.get("results", f"results/{path.stem}"))), data=data,
                pool=next(iter(pool_table.values()), None), save_weights=bool(doc.get("save_weights", False)),
                hparams=hps, runs=runs, pools=pool_table, budget=budget, select=select,
                pack_seeds={m: n for m, n in pack.items() if n > 1}, split_data=split_data)


def expand(models: list[str], hps: dict[str, HParams], scens: list[scenarios.Scenario], augs: list[str],
           seeds: list[int], split_data: list[DataSpec], pool_table: dict[str, str], budget: str, select: str
           ) -> list[RunSpec]:
    """The runs of a grid, in the order they train: every model x scenario x (pool, for a scenario that adds
    synthetic images) x augmentation x seed; seed s on split s mod K."""
    n_splits = len(split_data)
    # Each pool's content is read once, now: every run of this plan records the same fingerprint.
    fingerprints = {(label, j): pools.manifest_fingerprint(pool_dir(p, d, n_splits))
                    for label, p in pool_table.items() for j, d in enumerate(split_data)}
    # A run that adds synthetic images runs once per pool; the others once (they draw from none).
    choices: list[tuple[str | None, str | None]] = list(pool_table.items()) or [(None, None)]
    named = len(pool_table) > 1 or n_splits > 1  # a per-split folder is not the pool's name in the tables
    runs = []
    for m in models:
        for scen in scens:
            for label, p in (choices if scen.needs_pool else [(None, None)]):
                for a in augs:
                    for seed in seeds:
                        d = split_data[seed % n_splits]
                        folder = pool_dir(p, d, n_splits) if scen.needs_pool and label and p else None
                        pre = scen.pretrain.pool if scen.pretrain else None  # a name in the [pool] table
                        runs.append(RunSpec(m, scen, a, seed, hps[m], d, folder,
                                            fingerprints[(label, seed % n_splits)] if folder and label else None,
                                            budget, select, label if folder and named else None,
                                            pool_dir(pool_table[pre], d, n_splits) if pre else None,
                                            fingerprints[(pre, seed % n_splits)] if pre else None))
    return runs


def _list(r: _Reader, key: str, default: list[Any]) -> list[str]:
    v = r.doc.get(key, default)
    if not isinstance(v, list) or not v:
        raise r.fail("", key, "must be a non-empty list")
    return [str(x) for x in v]


def _data(r: _Reader) -> DataSpec:
    """`data`: a source's name, or a table with `source` and the source's options."""
    data_doc = r.doc.get("data", {})
    if isinstance(data_doc, str):
        data = DataSpec(data_doc)
    elif isinstance(data_doc, dict):
        opts = {k: v for k, v in data_doc.items() if k != "source"}
        data = DataSpec(str(data_doc.get("source", DataSpec().source)), opts)
    else:
        raise r.fail("", "data", "must be a string or a table")
    table, key = ("data", "source") if isinstance(data_doc, dict) else ("", "data")
    try:
        problems = data.problems()
    except DataError as e:  # a local source that does not exist
        raise r.fail(table, key, str(e)) from e
    for option, problem in problems:
        raise r.fail("data", option, problem)
    return data


def _scenarios(r: _Reader, pool_table: dict[str, str]) -> tuple[list[scenarios.Scenario], list[str]]:
    """`[scenario.NAME]` tables, then `scenarios`: presets or those; returns them with their names as listed. A
    `pretrain` names a pool of the grid's `pool_table`."""
    custom: dict[str, scenarios.Scenario] = {}
    for name, table in r.table("", "scenario", r.doc.get("scenario", {})).items():
        if not isinstance(table, dict):
            raise r.fail("scenario", name, "must be a table")
        if name in scenarios.SCENARIOS:
            raise r.fail(f"scenario.{name}", None, f"'{name}' is a preset scenario (1-6); give yours another name")
        r.check_keys(f"scenario.{name}", table, SCENARIO_KEYS)
        if "pretrain" in table:
            try:
                pre = scenarios.parse_pretrain(table["pretrain"])
            except SettingError as e:
                raise r.fail(f"scenario.{name}", "pretrain", str(e)) from e
            if pre.pool not in pool_table:
                why = (f"is not one of the grid's pools ({', '.join(pool_table)})" if pool_table else
                       "is not a pool of the grid, which sets none")
                raise r.fail(f"scenario.{name}", "pretrain", f"pool {pre.pool!r} {why}; name it in a [pool] "
                             "table (NAME = \"DIR\")")
        try:
            custom[name] = scenarios.custom(name, **table)
        except SettingError as e:
            raise r.fail(f"scenario.{name}", None, str(e)) from e
    names = _list(r, "scenarios", ["1", "2", "3", "4"])
    scens = []
    for s in names:
        if s not in custom and s not in scenarios.SCENARIOS:
            raise r.fail("", "scenarios", f"unknown scenario {s!r}; presets {', '.join(scenarios.SCENARIOS)} "
                         "or one defined under [scenario.NAME]")
        scens.append(custom[s] if s in custom else scenarios.SCENARIOS[s])
    return scens, names


def _models(r: _Reader) -> tuple[list[str], dict[str, HParams], dict[str, int]]:
    """`models` and their `[model.NAME]` tables: the names, each one's hyper-parameters and pack size."""
    names = _list(r, "models", list(hparams.MODELS))
    tables = r.table("", "model", r.doc.get("model", {}))
    for name, table in tables.items():
        if name not in hparams.MODELS:
            raise r.fail(f"model.{name}", None, f"unknown model; known: {', '.join(hparams.MODELS)}")
        r.table("model", name, table)
    hps: dict[str, HParams] = {}
    pack: dict[str, int] = {}
    for name in names:
        if name not in hparams.MODELS:
            raise r.fail("", "models", f"unknown model {name!r}; known: {', '.join(hparams.MODELS)}")
        values = dict(tables.get(name, {}))
        pack[name] = _pack_seeds(r, name, values)
        try:
            hps[name] = hparams.resolve(name, values)
        except HParamError as e:
            raise r.fail(f"model.{name}", e.key, e.problem) from e
    return names, hps, pack


def _augmentations(r: _Reader) -> list[str]:
    augs = _list(r, "augmentations", list(augmentations.NAMES))
    for a in augs:
        if a not in augmentations.NAMES:
            raise r.fail("", "augmentations", f"unknown augmentation {a!r}; known: {', '.join(augmentations.NAMES)}")
    return augs


def _seeds(r: _Reader) -> list[int]:
    try:
        return checks.seed_list(r.doc.get("seeds", 20), "value")
    except SettingError as e:
        raise r.fail("", "seeds", str(e).removeprefix("value ")) from e


def _pools(r: _Reader) -> dict[str, str]:
    """`pool`: a folder, a list of folders, or a table of name = folder; every pool by its name in the tables."""
    pool_doc = r.doc.get("pool")
    if pool_doc is None:
        return {}
    if isinstance(pool_doc, str):
        return {Path(pool_doc).name: pool_doc}
    if isinstance(pool_doc, list) and pool_doc and all(isinstance(p, str) for p in pool_doc):
        table = {Path(p).name: p for p in pool_doc}
        if len(table) < len(pool_doc):
            raise r.fail("", "pool", "two pools end in the same folder name; name them in a [pool] table")
        return table
    if isinstance(pool_doc, dict) and pool_doc and all(isinstance(p, str) for p in pool_doc.values()):
        return dict(pool_doc)
    raise r.fail("", "pool", "must be a path string, a list of paths, or a table of name = path")


def _training(r: _Reader, data: DataSpec) -> tuple[Any, Any]:
    """`budget` and `select`, each checked on its own so the error names the key at fault."""
    budget, select = r.doc.get("budget", "epochs"), r.doc.get("select", "last")
    for key in ("budget", "select"):
        try:
            check_training(budget if key == "budget" else "epochs", select if key == "select" else "last", data)
        except SettingError as e:
            raise r.fail("", key, str(e)) from e
    return budget, select


def _plain_keys(r: _Reader) -> None:
    """`name`, `results` and `save_weights`: of their type when given."""
    for key, typ, what in (("name", str, "a string"), ("results", str, "a folder path string"),
                           ("save_weights", bool, "true or false")):
        if key in r.doc and not isinstance(r.doc[key], typ):
            raise r.fail("", key, f"must be {what}, got {r.doc[key]!r}")


def split_spec(data: DataSpec, split_seed: int) -> DataSpec:
    """`data` with its split seed set to `split_seed` (one of a grid's repeated subject splits)."""
    return DataSpec(data.source, {**data.options, "split_seed": split_seed})


def pool_dir(pool: str, data: DataSpec, n_splits: int) -> str:
    """The folder a grid's pool has for one split: the pool itself, or with K > 1 splits its subfolder
    `split-SEED` (a pool's sources are rows of one split's training part, so each split needs its own)."""
    if n_splits <= 1:
        return pool
    return str(Path(pool) / f"split-{splits.options(data.options)['split_seed']}")



def model_hparams(model: str, path: Path | None = None) -> HParams:
    """A model's hyper-parameters: the thesis's (shipped with mriaug), or as the grid file `path` sets them."""
    if path is None:
        return hparams.thesis(model)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    r = _Reader(path)
    table = dict(r.table("model", model, r.doc.get("model", {}).get(model, {})))
    _pack_seeds(r, model, table)
    try:
        return hparams.resolve(model, table)
    except HParamError as e:
        raise r.fail(f"model.{model}", e.key, e.problem) from e
