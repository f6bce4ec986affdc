"""Merge run results into the thesis tables: per model, rows scenarios, columns augmentations,
cells the median test cross-entropy with the number of seeds behind it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic, augment, hparams, results

BASE_SCENARIOS = ["1", "2", "3", "4"]
LONG_COLUMNS = ["run_id", "model", "scenario", "augmentation", "seed", "test_ce", "accuracy",
                "balanced_accuracy", "macro_f1", "n_real", "n_synthetic", "epochs", "data_fingerprint",
                "pool_fingerprint", "train_s", "file", "status"]


def _thesis_shape(cells: pd.Series) -> pd.DataFrame:
    """(scenario, augmentation) -> cell text, as a table: a row per scenario, the thesis's column names."""
    t = cells.unstack("augmentation")[list(augment.AUGMENTATIONS)].rename(columns=augment.LABELS)
    t.index = [f"Scenario {s}" for s in t.index]
    t.index.name = "scenario"
    return t


@dataclass
class Collected:
    runs: pd.DataFrame
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def medians(self, model: str) -> pd.DataFrame:
        """Median test CE and seed count per (scenario, augmentation) of one model, every cell present."""
        df = self.runs[self.runs["model"] == model]
        scens = BASE_SCENARIOS + sorted(set(df["scenario"]) - set(BASE_SCENARIOS))
        idx = pd.MultiIndex.from_product([scens, list(augment.AUGMENTATIONS)], names=["scenario", "augmentation"])
        g = df.groupby(["scenario", "augmentation"])["test_ce"].agg(["median", "count"])
        # Diverged runs have no test CE: not in the median, but counted beside it, never dropped silently.
        div = df[df["status"] == "diverged"].groupby(["scenario", "augmentation"]).size().rename("diverged")
        g = g.join(div, how="outer") if len(div) else g.assign(diverged=0)
        return g.reindex(idx).fillna({"count": 0, "diverged": 0}).astype({"count": int, "diverged": int})

    def table(self, model: str) -> pd.DataFrame:
        """The thesis's shape: a row per scenario, a column per augmentation, 'median (n=k)' cells."""
        m = self.medians(model)
        def cell(r: pd.Series) -> str:
            n = f"n={int(r['count'])}" + (f" + {int(r['diverged'])} diverged" if r["diverged"] else "")
            return f"— ({n})" if r["count"] == 0 else f"{r['median']:.3f} ({n})"

        return _thesis_shape(m.apply(cell, axis=1))

    def versus_thesis(self, model: str) -> pd.DataFrame:
        """Our median beside the thesis's (Tables 7.x), 'ours / thesis' per cell; '—' where either is missing."""
        ours = self.medians(model)["median"]
        table = thesis_medians()
        th = table[table["model"] == model].set_index(["scenario", "augmentation"])["median_test_ce"]

        def fmt(v: Any) -> str:
            return "—" if v is None or v != v else f"{float(v):.3f}"  # v != v: NaN

        texts: list[str] = [f"{fmt(ours.get(k))} / {fmt(th.get(k))}" for k in ours.index]
        cells = pd.Series(texts, index=ours.index)
        return _thesis_shape(cells)

    def figure(self, model: str, path: Path) -> bool:
        """Box plot of test CE per cell (seeds as points): the spread the medians hide."""
        df = self.runs[self.runs["model"] == model]
        if df.empty:
            return False
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        scens = sorted(df["scenario"].unique())
        augs = list(augment.AUGMENTATIONS)
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(scens), 3.6))
        width = 0.8 / len(augs)
        for j, aug in enumerate(augs):
            pos = [i + (j - (len(augs) - 1) / 2) * width for i in range(len(scens))]
            vals = [df[(df.scenario == s) & (df.augmentation == aug)]["test_ce"].dropna().to_numpy() for s in scens]
            bp = ax.boxplot(vals, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False,
                            medianprops={"color": "black"})
            for patch in bp["boxes"]:
                patch.set_facecolor(f"C{j}")
                patch.set_alpha(0.5)
            for p, v in zip(pos, vals, strict=True):
                ax.plot([p] * len(v), v, ".", color=f"C{j}", ms=3)
            ax.plot([], [], "s", color=f"C{j}", alpha=0.5, label=augment.LABELS[aug])
        ax.set_xticks(range(len(scens)), [f"Scenario {s}" for s in scens])
        ax.set_ylabel("test cross-entropy")
        ax.set_title(f"{model}: test cross-entropy per run")
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        return True

    def models(self) -> list[str]:
        present = sorted(set(self.runs["model"]) - set(hparams.MODELS))
        return list(hparams.MODELS) + present


def thesis_medians() -> pd.DataFrame:
    """The thesis's median test CE per model, scenario and augmentation (empty cells absent)."""
    from importlib.resources import files

    with files("mriaug").joinpath("thesis_tables.csv").open() as fh:
        df = pd.read_csv(fh, dtype={"scenario": str})
    return df.dropna(subset=["median_test_ce"])


def gather(results_dir: str | Path, run_ids: set[str] | None = None) -> Collected:
    """Every valid result in a folder (only `run_ids` when given); invalid files are named in `errors`."""
    rows, errors = [], []
    for path, r in results.scan(results_dir):
        if isinstance(r, results.ResultError):  # named whichever grid it was meant for: it may be one of ours
            errors.append(str(r))
            continue
        if run_ids is not None and path.stem not in run_ids:
            continue
        spec, met = r["spec"], {k: (float("nan") if v is None else v) for k, v in r["metrics"].items()}
        rows.append({
            "run_id": r["run_id"], "model": spec["model"], "scenario": str(spec["scenario"]["name"]),
            "augmentation": spec["augmentation"], "seed": spec["seed"], "test_ce": met["test_ce"],
            "accuracy": met["accuracy"], "balanced_accuracy": met["balanced_accuracy"],
            "macro_f1": met["macro_f1"], "n_real": sum(r["counts"]["real"].values()),
            "n_synthetic": sum(r["counts"]["synthetic"].values()), "epochs": spec["hparams"].get("epochs"),
            "data_fingerprint": r["data"].get("fingerprint"), "pool_fingerprint": r["data"].get("pool_fingerprint"),
            "train_s": r["timings"].get("train_s"), "file": path.name, "status": r.get("status", "done"),
        })
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    # Runs of different specs in one cell and seed (e.g. after editing a grid) would be pooled silently.
    dup = df.groupby(["model", "scenario", "augmentation", "seed"]).size()
    warnings = [f"{len(dup[dup > 1])} cell(s) have several runs for the same seed (e.g. "
                f"{'/'.join(map(str, dup[dup > 1].index[0]))}): results of different settings are mixed; "
                "collect with --grid to keep one grid's runs"] if (dup > 1).any() else []
    return Collected(df, errors, warnings)


def _latex(table: pd.DataFrame, caption: str) -> str:
    cols = " & ".join(["Scenario", *table.columns])
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption}}}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\hline", cols + r" \\", r"\hline"]
    for idx, row in table.iterrows():
        cells = [str(c).replace("—", "--") for c in row]
        lines.append(" & ".join([str(idx).replace("Scenario ", ""), *cells]) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write(c: Collected, out_dir: str | Path) -> list[Path]:
    """CSV, Markdown and LaTeX per model plus the long-form CSV of all runs, each written atomically."""
    out = Path(out_dir)
    written = []
    atomic.write_text(out / "runs.csv", c.runs.to_csv(index=False))
    written.append(out / "runs.csv")
    for model in c.models():
        t = c.table(model)
        caption = f"{model}: median test cross-entropy over seeds (n = seeds per cell)"
        for suffix, text in ((".csv", t.to_csv()), (".md", f"**{caption}**\n\n{t.to_markdown()}\n"),
                             (".tex", _latex(t, caption))):
            atomic.write_text(out / f"{model}{suffix}", text)
            written.append(out / f"{model}{suffix}")
        atomic.write_text(out / f"{model}_vs_thesis.md", c.versus_thesis(model).to_markdown() + "\n")
        written.append(out / f"{model}_vs_thesis.md")
        if c.figure(model, out / f"{model}.png"):
            written.append(out / f"{model}.png")
    return written


def render(c: Collected, versus_thesis: bool = False) -> str:
    parts = []
    for model in c.models():
        parts.append(f"{model} — median test cross-entropy (n = seeds)\n{c.table(model).to_markdown()}\n")
        if versus_thesis:
            parts.append(f"{model} — ours / thesis\n{c.versus_thesis(model).to_markdown()}\n")
    return "\n".join(parts)


def collect(results_dir: str | Path, out: str | Path, *, versus_thesis: bool = False, run_ids: set[str] | None = None,
            echo: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> Collected:
    """`mriaug collect` and the Slurm collector job: gather, print the tables, write them to `out`."""
    c = gather(results_dir, run_ids)
    for warning in c.warnings:
        warn(f"warning: {warning}")
    for err in c.errors:
        warn(f"skipped: {err}")
    echo(render(c, versus_thesis))
    written = write(c, out)
    echo(f"{len(c.runs)} runs; tables written to {out} ({len(written)} files)")
    return c
