"""The images and who they come from: the sources (`sources`: hub parquet, image folders, the phantom; `bids`),
classes and merges, scan groups and splits, the audit, synthetic pools and the real images they were kept for.

`mriaug.data` was one module before subpackages (issue 33); a job pickled then names `mriaug.data.DataSpec`, so
its classes are still found here (read lazily: importing a sibling module does not load the sources).
"""

from __future__ import annotations

from typing import Any

# The old module's classes a pickled job can hold (in its RunSpec). Only these: a lookup of a submodule's name
# must fail here, so that the import system goes on to import that submodule.
_PICKLED = ("DataSpec", "Dataset")


def __getattr__(name: str) -> Any:
    if name not in _PICKLED:
        raise AttributeError(f"module 'mriaug.data' has no attribute {name!r}")
    from . import sources

    return getattr(sources, name)
