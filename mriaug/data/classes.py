"""The four dementia classes of the study, in the label order of `Falah/Alzheimer_MRI`."""

from __future__ import annotations

import re

from ..errors import UnknownClassError

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


def merge_problem(merge: object) -> str | None:
    """Why a `merge` data option ({class = new or existing class name}) is unusable; None when it is fine."""
    if not isinstance(merge, dict) or not merge:
        return "must be a table of class = class it joins, e.g. {Moderate_Demented = \"Mild_Demented\"}"
    try:
        sources = [class_index(k) for k in merge]
    except UnknownClassError as e:
        return str(e)
    if len(set(sources)) != len(sources):
        return "names one class twice"
    targets = [v for v in merge.values()]
    if not all(isinstance(v, str) and v.strip() for v in targets):
        return "every class must map to a class name (a string)"
    for k, v in merge.items():
        if v in merge and CLASSES[class_index(v)] != CLASSES[class_index(k)]:
            return f"{k} joins {v}, which itself joins {merge[v]}: name the final class directly"
    names, _ = merged_classes(merge)
    if len(names) < 2:
        return "leaves fewer than two classes"
    return None


def merged_classes(merge: dict[str, str] | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The classes after a merge (in the order their first member has in CLASSES) and, for each of CLASSES, the
    index of the class it becomes. A class merge names neither keeps its name; a target may be a new name
    ("Demented") or one of CLASSES (any spelling)."""
    if not merge:
        return CLASSES, tuple(range(NUM_CLASSES))
    by_index = {class_index(k): v for k, v in merge.items()}

    def final(name: str) -> str:
        try:  # an existing class in any spelling takes its canonical name
            return CLASSES[class_index(name)]
        except UnknownClassError:
            return name

    target = [final(by_index.get(k, c)) for k, c in enumerate(CLASSES)]
    names = tuple(dict.fromkeys(target))
    return names, tuple(names.index(t) for t in target)
