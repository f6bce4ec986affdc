"""The grid-file and cluster-profile reference, generated from mriaug's own definitions at docs build time.

An MkDocs hook (`hooks:` in mkdocs.yml): `on_page_markdown` replaces `<!-- generated: NAME -->` markers in the
pages with the tables `render(NAME)` makes. Which keys exist, their types and defaults come from the code (the
readers' key sets, the HParams dataclass, the model cards, the dataclass defaults of profiles); what a key means
is kept here, in `meaning` tables. A key the code accepts without a meaning here, or a meaning for a key the
code does not accept, stops the build; tests/test_docs.py compares the two sets too.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Key:
    type: str
    default: str  # as written in a TOML file, or a phrase in parentheses
    meaning: str


def toml(value: Any) -> str:
    """A Python value as it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return repr(value)


_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "str | None": "string",
          "float | None": "number", "int | None": "integer", "Path": "string (path)",
          "tuple[str, ...]": "list of strings", "list[str]": "list of strings"}


def _type(annotation: Any) -> str:
    return _TYPES.get(str(annotation), str(annotation))


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _check(what: str, meanings: dict[str, Any], accepted: set[str]) -> None:
    missing, extra = accepted - set(meanings), set(meanings) - accepted
    if missing or extra:
        raise ValueError(f"docs/gen_reference.py, {what}: the code accepts keys without a meaning here: "
                         f"{sorted(missing)}; meanings here for keys it does not accept: {sorted(extra)}")


# --- grid files (mriaug/plan/grid.py) -------------------------------------------------------------------------------

GRID_MEANING = {
    "name": "the grid's name in messages and tables",
    "results": "the results folder: one JSON per run, `tables/`, `.slurm/`, `.checkpoints/`, `.locks/`",
    "seeds": "a count (`20` = seeds 0-19), a list of seeds (`[0, 3]`) or `{start = 20, count = 20}`",
    "models": "the models to train; each takes its hyper-parameters from `[model.NAME]`",
    "scenarios": "rows of the tables: presets (below) or names defined under `[scenario.NAME]`",
    "augmentations": "columns of the tables: `none`, `hflip` (p = 0.5), `autoaugment` (torchvision's ImageNet "
                     "policy), applied per image to the mixed training set only",
    "pool": "the synthetic pool(s) the scenarios that add synthetic images draw from: a folder, a list of "
            "folders (named after the folder) or a table `[pool] NAME = \"DIR\"`; with several, those scenarios "
            "run once per pool and the tables get a row per scenario and pool",
    "save_weights": "keep each run's trained weights as `RESULTS/weights/RUN_ID.safetensors` (for `mriaug cam`)",
    "data": "the data source, as a string (`\"phantom\"`) or a table with `source` and the source's options "
            "(below)",
    "model": "`[model.NAME]` tables: a model's hyper-parameters (below)",
    "scenario": "`[scenario.NAME]` tables: scenarios of your own (below)",
    "budget": "`\"epochs\"`: every run trains its model's epochs over its own images (the thesis); "
              "`\"steps\"`: every scenario gets the optimizer steps scenario 1 takes in those epochs",
    "select": "`\"last\"`: test the last epoch's weights (the thesis); `\"best_val\"`: those of the epoch with the "
              "lowest validation loss (needs a validation part, `val_fraction > 0`)",
}


def grid_keys() -> dict[str, Key]:
    from mriaug.data import sources as data
    from mriaug.plan import augmentations, grid, hparams, spec

    _check("grid keys", GRID_MEANING, set(grid.TOP_KEYS))
    fields = _defaults(grid.Grid)
    types = {
        "name": ("string", "(the file's name without `.toml`)"),
        "results": ("string (folder)", "`\"results/FILE\"` (the file's name without `.toml`)"),
        # grid.load's default when `seeds` is left out (tests/test_docs.py loads a grid without it)
        "seeds": ("integer, list or table", "`20`"),
        "models": ("list of strings", f"`{toml(list(hparams.MODELS))}`"),
        "scenarios": ("list of strings", "`[\"1\", \"2\", \"3\", \"4\"]`"),
        "augmentations": ("list of strings", f"`{toml(list(augmentations.NAMES))}`"),
        "pool": ("string, list or table", "(none)"),
        "save_weights": ("boolean", "`false`"),
        "data": ("string or table", f"`{toml(data.DEFAULT_SOURCE)}`"),
        "model": ("tables", "(the model cards' defaults)"),
        "scenario": ("tables", "(none)"),
        "budget": (" \\| ".join(f"`{toml(b)}`" for b in spec.BUDGETS), f"`{toml(fields['budget'])}`"),
        "select": (" \\| ".join(f"`{toml(s)}`" for s in spec.SELECTS), f"`{toml(fields['select'])}`"),
    }
    return {k: Key(types[k][0], types[k][1], GRID_MEANING[k]) for k in GRID_MEANING}


HPARAM_MEANING = {
    "arch": "the network: `basic-cnn` for the thesis's CNN, else a timm model name",
    "resolution": "side of the square input in pixels (images are resized once per run); a multiple of the "
                  "model's pooling or patch size",
    "epochs": "passes over the run's training images",
    "batch_size": "images per optimizer step",
    "lr": "Adam's learning rate",
    "weight_decay": "decoupled weight decay; above 0 the optimizer is AdamW",
    "precision": "`\"bf16\"` (autocast) or `\"fp32\"`",
    "pretrained": "start from the timm model's pretrained weights (fetched by `mriaug prefetch`)",
    "weights": "a local `.safetensors` file to start from instead of the hub's weights",
    "class_weight": "`\"none\"` (the thesis's plain cross-entropy) or `\"balanced\"`: the training loss, and "
                    "`best_val`'s validation loss, weight each class by the inverse of its frequency in the run's "
                    "own training images (the weights are recorded in the result)",
    "pack_seeds": "train this many seeds of one cell together in one model (`torch.func`; GPUs; the models whose "
                  "cards pack: `cnn`, `vit`); "
                  "not a hyper-parameter: run ids do not change",
}


def model_keys() -> list[list[str]]:
    from mriaug.plan import grid, hparams

    accepted = set(hparams.KEYS) | {"pack_seeds"}
    _check("[model.NAME] keys", HPARAM_MEANING, accepted)
    types = {f.name: _type(f.type) for f in dataclasses.fields(hparams.HParams)}
    rows = []
    for key in hparams.KEYS:
        cells = [f"`{key}`", types[key]]
        for name, card in hparams.MODELS.items():
            default = getattr(card.defaults, key)
            thesis = getattr(hparams.thesis(name), key)  # to_dict leaves a later setting out at its default
            shown = "(none)" if default is None else f"`{toml(default)}`"
            cells.append(shown + ("" if thesis == default else f" (thesis `{toml(thesis)}`)"))
        rows.append([*cells, HPARAM_MEANING[key]])
    packable = ", ".join(grid.PACKABLE)
    rows.append(["`pack_seeds`", "integer"] + ["`1`"] * len(hparams.MODELS)
                + [HPARAM_MEANING["pack_seeds"] + f" (packable: {packable})"])
    return rows


DATA_MEANING = {
    "source": "`phantom` (built in), `hf:OWNER/NAME` (a Hugging Face hub dataset), a folder in the hub's "
              "parquet layout, an image-folder tree (one folder per class, optionally under `train/` and "
              "`test/`), or a BIDS folder of NIfTI volumes (`dataset_description.json`, `participants.tsv`, "
              "`sub-*/[ses-*/]anat/*_T1w.nii[.gz]`; takes `split = \"subject\"`)",
    "n_train": "phantom training images",
    "n_test": "phantom test images",
    "size": "side of the images in pixels (the phantom draws them at it; other sources are resized to it)",
    "seed": "the phantom's seed",
    "slices": "consecutive slices per phantom subject (its scans); of a BIDS volume, the middle axial slices taken",
    "label_column": "the column of `participants.tsv` with the labels: OASIS's CDR (0, 0.5, 1, 2 -> Non, Very "
                    "mild, Mild, Moderate) or class names",
    "skip_unlabelled": "leave out participants without a usable label (no row, an empty cell, a CDR of 3, a class "
                       "`classes` leaves out) and print their count, instead of stopping with an error",
    "revision": "the hub commit, branch or tag to read (default: the pin in `mriaug/data/sources.py: HUB_REVISIONS`)",
    "classes": "the class names the source holds, when it holds fewer than the four",
    "class_map": "`{\"FOLDER\" = \"CLASS\"}` for image folders whose names are not a known spelling",
    "split": "`\"given\"`: the source's own train/test split (the thesis's); `\"subject\"`: scan groups "
             "recovered from the images (a BIDS folder's participants, known), whole groups to train / "
             "validation / test, stratified by class",
    "test_fraction": "share of each class's groups that go to test (`split = \"subject\"`, or an image folder "
                     "without a test folder)",
    "val_fraction": "share of each class's training groups held out for validation",
    "split_seed": "which groups go where (with `splits = K`, the first of K split seeds)",
    "splits": "K subject splits repeated over the seeds: run seed s tests on split `split_seed + s mod K`, so "
              "every split is tested by seeds s, s + K, ...; each split has its own pool folder, `POOL/split-SEED` "
              "(`mriaug synth --grid` makes them); collect puts the K splits' runs in one table "
              "(`split = \"subject\"` only)",
    "merge": "`{CLASS = \"CLASS OR NEW NAME\"}`: classes relabelled after the split, e.g. `{Moderate_Demented = "
             "\"Mild_Demented\"}`; the split is still stratified by the source's own classes, so it is the same "
             "split with and without the merge, and pools made for the four classes serve the merged task",
}


def data_keys() -> list[list[str]]:
    from mriaug.data import bids, splits
    from mriaug.data import sources as data

    accepted = set().union(*data.OPTIONS.values()) | {"source"}
    _check("[data] options", DATA_MEANING, accepted)
    defaults: dict[str, str] = {k: f"`{toml(v)}` (phantom)" for k, v in data.PHANTOM_DEFAULTS.items()}
    for k, v in bids.DEFAULTS.items():
        same = data.PHANTOM_DEFAULTS.get(k) == v
        defaults[k] = f"`{toml(v)}` (phantom, bids)" if same else f"`{toml(v)}` (bids)"
    defaults |= {k: f"`{toml(v)}`" for k, v in splits.SUBJECT_DEFAULTS.items()}
    defaults["val_fraction"] = (f"`{toml(splits.SUBJECT_DEFAULTS['val_fraction'])}` on `subject`, "
                                f"`{toml(splits.GIVEN_VAL_FRACTION)}` on `given`")
    defaults["split"] = f"`{toml(splits.SPLITS[0])}`"
    if "splits" in accepted:
        defaults["splits"] = f"`{toml(splits.options({'split': 'subject'})['splits'])}`"
    defaults["source"] = f"`{toml(data.DEFAULT_SOURCE)}`"
    rows = []
    for key in DATA_MEANING:
        if key not in accepted:
            continue
        kinds = "all" if key == "source" or all(key in o for o in data.OPTIONS.values()) else \
            ", ".join(k for k, o in data.OPTIONS.items() if key in o)
        rows.append([f"`{key}`", kinds, defaults.get(key, "(none)"), DATA_MEANING[key]])
    return rows


SCENARIO_MEANING = {
    "real_fraction": "share X of each class's training images a run keeps: a number, or "
                     "`{default = 0.5, Moderate_Demented = 1.0}`",
    "synthetic_fraction": "synthetic images added per class, as a share Y of the class's training images; "
                          "their sources are among the kept images",
    "description": "free text shown with the scenario",
    "pretrain": "train on synthetic images only first: `{pool = \"NAME\", images = N, epochs = E}`, N images of "
                "the grid's pool NAME (a `[pool]` table name) over every class in proportion to its training "
                "images, E passes over them; then the scenario's own training from those weights with a fresh "
                "optimizer ([study design](study-design.md#pretraining-on-synthetic-images))",
}
SCENARIO_TYPES = {"description": "string", "pretrain": "table"}  # the others: a number or a table of classes


def scenario_keys() -> list[list[str]]:
    from mriaug.plan import scenarios

    params = inspect.signature(scenarios.custom).parameters
    accepted = {p for p in params if p != "name"}
    _check("[scenario.NAME] keys", SCENARIO_MEANING, accepted)
    return [[f"`{k}`", SCENARIO_TYPES.get(k, "number or table"),
             "(none)" if params[k].default is None else f"`{toml(params[k].default)}`", SCENARIO_MEANING[k]]
            for k in SCENARIO_MEANING]


def scenario_presets() -> list[list[str]]:
    from mriaug.data.classes import CLASSES
    from mriaug.plan import scenarios

    def per_class(fractions: tuple[float, ...]) -> str:
        if len(set(fractions)) == 1:
            return f"{fractions[0]:.0%} of every class"
        return ", ".join(f"{c.replace('_Demented', '')} {f:.0%}" for c, f in zip(CLASSES, fractions, strict=True)
                         if f > 0)

    return [[f"`{s.name}`", per_class(s.real_fraction), per_class(s.synthetic_fraction) if s.needs_pool else "—",
             s.description] for s in scenarios.SCENARIOS.values()]


# --- cluster profiles (mriaug/slurm/profile.py) ----------------------------------------------------------------

PROFILE_MEANING = {
    "name": "shown in `mriaug submit`'s output",
    "array_parallelism": "Slurm's `%N` throttle: at most N tasks of each array at once",
    "max_array_size": "cap on tasks per array (the cluster's `MaxArraySize`, read from `scontrol show config`, "
                      "applies anyway; this can only lower it)",
    "max_requeues": "requeues after time-limit signals (submitit's `max_num_timeout`; preemptions do not count)",
    "signal_delay_s": "`USR2` this many seconds before the time limit: the task checkpoints and is requeued",
    "setup": "shell lines run before each task (e.g. `module load apptainer`)",
    "pass_env": "variables passed from the submitting shell to every job through the environment sbatch "
                "exports, never written into a job script (e.g. `MRIAUG_CACHE`, `OPENAI_API_KEY`)",
    "env": "`[env]`: variables exported in every job and into the container; `HF_HUB_OFFLINE=1` is always set",
    "sbatch": "`[sbatch]`: extra sbatch options written verbatim (`mail-type = \"FAIL\"` -> "
              "`#SBATCH --mail-type=FAIL`)",
    "resources": "`[resources.default]` and `[resources.NAME]` tables (below); a model's table starts from "
                 "`default`",
    "collector": "`[collector]`: resources of the collector job (the keys below, without `runs_per_task`)",
    "container": "`[container]`: the Apptainer image tasks run in (below); without it tasks run the python that "
                 "ran `mriaug submit`",
}

RESOURCE_MEANING = {
    "partition": "Slurm partition (a name or a comma-separated list)",
    "account": "Slurm account",
    "qos": "Slurm QOS",
    "constraint": "Slurm `--constraint` (node features)",
    "gpus": "GPUs per task",
    "cpus": "CPUs per task",
    "mem_gb": "memory per task in GB (default: the partition's)",
    "time": "time limit: minutes (`90`) or `\"D-HH:MM:SS\"`",
    "runs_per_task": "runs of the grid one array task trains one after another in one process (data loaded "
                     "once); not for one-off jobs or the collector",
}

CONTAINER_MEANING = {
    "image": "the `.sif` image (required; must exist when submitting)",
    "binds": "absolute `SRC[:DST[:ro]]` paths bound into the container (the submit directory and the results "
             "folder are bound anyway)",
    "nv": "pass `--nv` (the host's NVIDIA driver)",
    "apptainer": "the apptainer command: a name on the job's PATH, or a path (from the submit directory; it must "
                 "exist), e.g. `containers/apptainer.sh` where the host has no apptainer",
    "options": "extra `apptainer exec` options",
    "python": "the python inside the image",
}


def profile_keys() -> list[list[str]]:
    from mriaug.slurm import profile

    _check("profile keys", PROFILE_MEANING, set(profile.TOP_KEYS))
    defaults = _defaults(profile.Profile)
    types = {f.name: _type(f.type) for f in dataclasses.fields(profile.Profile)}
    types |= {"array_parallelism": "integer", "max_array_size": "integer", "env": "table", "sbatch": "table",
              "resources": "tables", "collector": "table", "container": "table"}
    shown = {k: f"`{toml(v)}`" for k, v in defaults.items() if v is not None}
    shown |= {"name": "(the file's name without `.toml`)", "setup": "`[]`", "pass_env": "`[]`", "env": "(none)",
              "sbatch": "(none)", "resources": "(none)", "container": "(none)",
              "collector": "1 CPU, 30 min, the default's partition, account and QOS",
              "array_parallelism": "(none)", "max_array_size": "(none)"}
    return [[f"`{k}`", types.get(k, "?"), shown.get(k, "(none)"), PROFILE_MEANING[k]] for k in PROFILE_MEANING]


def resource_keys() -> list[list[str]]:
    from mriaug.slurm import profile

    _check("[resources.NAME] keys", RESOURCE_MEANING, set(profile.RESOURCE_KEYS))
    defaults = _defaults(profile.Resources)
    types = {f.name: _type(f.type) for f in dataclasses.fields(profile.Resources)}
    types["time"] = "integer or string"
    shown = {k: f"`{toml(v)}`" if v is not None else "(none)" for k, v in defaults.items()}
    shown["time"] = f"`{defaults['time_min']}` (minutes)"
    return [[f"`{k}`", types[k], shown[k], RESOURCE_MEANING[k]] for k in RESOURCE_MEANING]


def resource_tables() -> list[list[str]]:
    from mriaug.plan import hparams
    from mriaug.slurm import profile

    rows = [["`[resources.default]`", "every model and job without a table of its own"]]
    rows += [[f"`[resources.{m}]`", f"the runs of model `{m}`"] for m in hparams.MODELS]
    rows += [[f"`[resources.{j}]`", what] for j, what in profile.COMMAND_JOBS.items()]
    return rows


def container_keys() -> list[list[str]]:
    from mriaug.slurm import profile

    _check("[container] keys", CONTAINER_MEANING, set(profile.CONTAINER_KEYS))
    defaults = _defaults(profile.Container)
    types = {f.name: _type(f.type) for f in dataclasses.fields(profile.Container)}
    return [[f"`{k}`", types[k], f"`{toml(defaults[k])}`" if k in defaults else "(required)", CONTAINER_MEANING[k]]
            for k in CONTAINER_MEANING]


# --- the import layers (pyproject.toml) ------------------------------------------------------------------------

def layers() -> list[list[str]]:
    """The layers of [tool.importlinter], top to bottom."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in doc["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[str(i + 1), " \\| ".join(f"`{m.strip()}`" for m in layer.split("|"))]
            for i, layer in enumerate(contract["layers"])]


# --- the modules (mriaug/**.py), by layer ---------------------------------------------------------------------

def _summary(path: Path) -> str:
    """A module's docstring up to the end of its first sentence (the docstring says what the code does)."""
    import ast
    import re

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.:])\s+(?=[A-Z`])", first)[0] if first else "(no docstring)"
    return sentence[:-1] + "." if sentence.endswith(":") else sentence


def modules() -> list[tuple[str, Path]]:
    """Every module of the package, dotted, with its file."""
    pkg = ROOT / "mriaug"
    out = []
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def module_rows() -> list[list[str]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in doc["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    layer_of = {f"mriaug.{m.strip()}": i + 1 for i, layer in enumerate(contract["layers"]) for m in layer.split("|")}

    def layer(name: str) -> int:
        parts = name.split(".")
        for n in range(len(parts), 1, -1):
            if ".".join(parts[:n]) in layer_of:
                return layer_of[".".join(parts[:n])]
        return 0  # the package itself, and modules no layer names

    mods = sorted(modules(), key=lambda m: (layer(m[0]) or len(layer_of) + 1, m[0]))
    return [[str(layer(name) or "—"), f"`{name}`", _summary(path)] for name, path in mods]


# --- which test files import which module (tests/test_*.py) ----------------------------------------------------

def test_imports() -> dict[str, set[str]]:
    """Module -> the test files that import it by name (`from mriaug.x import ...`, `from mriaug import x`)."""
    import ast

    known = {name for name, _ in modules()}
    found: dict[str, set[str]] = {name: set() for name in known}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mriaug":
                subs = [f"{node.module}.{a.name}" for a in node.names]
                # `from mriaug.analysis import collect` names the module collect, not the package
                names = [n for n in subs if n in known] + ([node.module] if any(n not in known for n in subs) else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name in known and name != "mriaug":
                    found[name].add(path.name)
    return found


def test_map_rows() -> list[list[str]]:
    return [[f"`{m}`", ", ".join(f"`{t}`" for t in sorted(files)) or "— (none by name)"]
            for m, files in sorted(test_imports().items()) if m != "mriaug"]


# --- rendering -------------------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(name: str) -> str:
    from mriaug.plan import hparams

    if name == "grid":
        return table(["key", "type", "default", "meaning"],
                     [[f"`{k}`", v.type, v.default, v.meaning] for k, v in grid_keys().items()])
    if name == "model":
        return table(["key", "type", *(f"`{m}`" for m in hparams.MODELS), "meaning"], model_keys())
    if name == "data":
        return table(["key", "sources", "default", "meaning"], data_keys())
    if name == "scenario":
        return table(["key", "type", "default", "meaning"], scenario_keys())
    if name == "presets":
        return table(["scenario", "real images kept", "synthetic images added", "description"], scenario_presets())
    if name == "profile":
        return table(["key", "type", "default", "meaning"], profile_keys())
    if name == "resources":
        return table(["key", "type", "default", "meaning"], resource_keys())
    if name == "resource-tables":
        return table(["table", "applies to"], resource_tables())
    if name == "container":
        return table(["key", "type", "default", "meaning"], container_keys())
    if name == "modules":
        return table(["layer", "module", "what it does (its docstring's first sentence)"], module_rows())
    if name == "test-map":
        return table(["module", "test files that import it"], test_map_rows())
    if name == "layers":
        return table(["layer", "modules (a module imports only from layers below its own)"], layers())
    raise ValueError(f"docs/gen_reference.py: no generated table {name!r}")


MARKER = "<!-- generated: "


def expand(markdown: str) -> str:
    """Every `<!-- generated: NAME -->` line replaced by its table."""
    out = []
    for line in markdown.splitlines():
        if line.startswith(MARKER) and line.rstrip().endswith("-->"):
            out.append(render(line[len(MARKER):].rstrip()[:-3].strip()))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:  # the MkDocs hook
    return expand(markdown) if MARKER in markdown else markdown


def on_config(config: Any, **kwargs: Any) -> Any:  # the MkDocs hook
    """The study's answer (docs/study/, published by the study's runs) joins the navigation once it exists."""
    if (Path(config["docs_dir"]) / "study" / "README.md").is_file():
        config["nav"].insert(1, {"The study's answer": "study/README.md"})
    return config
