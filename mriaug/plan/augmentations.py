"""The augmentation policies by the names grid files and tables use, and their table headers.

The plan reads and checks these names without importing the engine that applies them (`augment` keys its
implementations by the same names and checks it has one for each)."""

from __future__ import annotations

from ..errors import SettingError

# In the order of the thesis tables' columns.
NAMES: tuple[str, ...] = ("none", "hflip", "autoaugment")
# Column headers of the thesis tables.
LABELS = {"none": "No Augmentation", "hflip": "Random Horizontal Augment", "autoaugment": "AutoAugment"}


def check(name: str) -> str:
    """`name` if it is a known policy, else the error listing them."""
    if name not in NAMES:
        raise SettingError(f"unknown augmentation {name!r}; known: {', '.join(NAMES)}")
    return name
