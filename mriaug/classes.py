"""The four dementia classes of the study, in the label order of `Falah/Alzheimer_MRI`."""

from __future__ import annotations

import re

from .errors import UnknownClassError

CLASSES: tuple[str, ...] = ("Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented")
NUM_CLASSES = len(CLASSES)

# Spellings seen in the wild (Kaggle folders, OASIS/ADNI-style names), normalised to lowercase
# letters only, so "Very Mild Demented", "VeryMildDemented" and "very_mild" all match.
_ALIASES: dict[str, int] = {
    "milddemented": 0, "mild": 0, "milddementia": 0,
    "moderatedemented": 1, "moderate": 1, "moderatedementia": 1,
    "nondemented": 2, "non": 2, "nodementia": 2, "normal": 2, "healthy": 2, "cn": 2, "control": 2,
    "verymilddemented": 3, "verymild": 3, "verymilddementia": 3,
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def class_index(name: str | int, class_map: dict[str, str] | None = None) -> int:
    """Index of a class given by name (any common spelling), by index, or through an explicit map."""
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        idx = int(name)
        if 0 <= idx < NUM_CLASSES:
            return idx
        raise UnknownClassError(f"class index {idx} is outside 0..{NUM_CLASSES - 1}")
    if class_map and name in class_map:
        return class_index(class_map[name])
    if name in CLASSES:
        return CLASSES.index(name)
    alias = _ALIASES.get(_norm(name))
    if alias is None:
        raise UnknownClassError(
            f"unknown class {name!r}: expected one of {', '.join(CLASSES)} (or a common spelling of one)"
        )
    return alias
