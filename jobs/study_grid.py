"""jobs/study-cpu.toml from the search's choice (issue 29): `python jobs/study_grid.py docs/study/tuning.csv`.

The study keeps what the search chose (the `chosen` row of tuning.csv, made from validation numbers only: its
grid file in jobs/study-tune/ gives the [data] and [model.cnn] tables and the augmentation verbatim, the row its
`select`)
and adds what the study asks: 20 seeds, scenario 1 against scenario 3 (+20% synthetic Mild and Moderate) with
the three pools per split (diffusion, copy, transform), and, in files of their own beside it (the same tables and
results folder, so one table): jobs/study-cpu-50.toml, scenario 7 (+50%) with the diffusion pool, and
jobs/study-cpu-pretrain.toml, the synthetic-pretraining arm and its transform control (issue 37), which keeps its
runs' weights for Grad-CAM. The pools hold every class (`--classes all`): mixing draws only Mild and Moderate
from them, pretraining draws every class.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pandas as pd

HEAD = '''# The study's answer on these 2-core CPUs (issues 21 and 29; published in docs/study/, remade with
# `make study`; written by `python jobs/study_grid.py docs/study/tuning.csv` from the search's choice, {config}).
# The basic CNN on subject splits of the real data, scenario 1 (100% real) against scenario 3 (plus 20% synthetic
# Mild and Moderate images) from the on-site diffusion model and its two controls (`copy`: duplicates of kept
# real images, `transform`: a fixed-image transform), 20 seeds per cell. Seed s is tested on its own patients:
# split number s mod 5 (`[data] splits = 5`), each with its own pools and diffusion model trained on that
# split's training part only. Every scenario trains the optimizer steps scenario 1 takes (budget = "steps").
# {arm}.
name = "{name}"
results = "results/study-cpu"
models = ["cnn"]
scenarios = {scenarios}
augmentations = {augmentations}
seeds = 20
budget = "steps"
select = "{select}"{save}

[pool]                 # one folder per split below each (split-0 ... split-4); see `make study`
{pools}

[scenario.7]           # the larger synthetic share: 100% real + 50% synthetic Mild and Moderate
real_fraction = 1.0
synthetic_fraction = {{Mild_Demented = 0.5, Moderate_Demented = 0.5}}
description = "100% real + 50% synthetic for Mild and Moderate"
{extra}
'''

# The pretraining's size, fixed before any of its runs by the CPU time at hand, not searched (no validation
# number was read to choose it): 1,200 synthetic images of every class (in the real training part's class
# proportions), 2 epochs: 38 optimizer steps of 64, 9% of scenario 1's 6 epochs.
PRETRAIN = '''
[scenario.pre-diffusion]  # synthetic pretraining (issue 37): every class from the diffusion pool, then 100% real
description = "pretrained on 1,200 synthetic images of every class (diffusion), then 100% real"
pretrain = {pool = "diffusion", images = 1200, epochs = 2}

[scenario.pre-transform]  # its control: the same counts from the transform pool (no new anatomy)
description = "pretrained on 1,200 transformed images of every class (control), then 100% real"
pretrain = {pool = "transform", images = 1200, epochs = 2}
'''


def main(tuning: str, out: str = "jobs/study-cpu.toml") -> None:
    table = pd.read_csv(tuning)
    chosen = table[table["chosen"]]
    if len(chosen) != 1:
        raise SystemExit(f"{tuning}: {len(chosen)} rows are chosen, expected exactly one")
    config = str(chosen.iloc[0]["config"])
    text = (Path("jobs/study-tune") / f"{config.split('+')[0]}.toml").read_text()
    grid = tomllib.loads(text)
    tables = text[text.index("[data]"):]  # the [data] and [model.cnn] tables, as the search ran them
    pools = {"diffusion": "pools/study-cpu-diffusion", "copy": "pools/study-cpu-copy",
             "transform": "pools/study-cpu-transform"}
    arms = ((out, "study-cpu", ["1", "3"], pools, "",
             "the 50% arm is jobs/study-cpu-50.toml, the pretraining arm jobs/study-cpu-pretrain.toml"),
            (out.replace(".toml", "-50.toml"), "study-cpu-50", ["7"], {"diffusion": pools["diffusion"]}, "",
             "this file: the 50% arm, scenario 7 with the diffusion pool; scenario 1 is jobs/study-cpu.toml's"),
            (out.replace(".toml", "-pretrain.toml"), "study-cpu-pretrain", ["1", "pre-diffusion", "pre-transform"],
             {"diffusion": pools["diffusion"], "transform": pools["transform"]}, PRETRAIN,
             "this file: the pretraining arm and its control beside scenario 1 (the same runs as "
             "jobs/study-cpu.toml's),\n# their weights kept for Grad-CAM (`mriaug cam`)"))
    for path, name, scens, pool, extra, arm in arms:
        head = HEAD.format(config=config, augmentations=str(grid["augmentations"]).replace("'", '"'),
                           select=chosen.iloc[0]["select"], name=name, scenarios=str(scens).replace("'", '"'),
                           pools="\n".join(f'{k} = "{v}"' for k, v in pool.items()), arm=arm, extra=extra,
                           save="\nsave_weights = true" if extra else "")
        Path(path).write_text(head + tables)
        print(f"{path}: the study with configuration {config}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
