"""The four dementia classes of the study, in the label order of `Falah/Alzheimer_MRI`."""

from __future__ import annotations

import difflib
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
        raise UnknownClassError(_unknown(name))
    return alias


def _spelling(name: str) -> str:
    return re.sub(r"[^a-z]+", "_", name.lower()).strip("_")


# How alike a name and a class name must be (difflib's ratio of their lowercase spellings) to be taken for a
# misspelling of it: "Mild_Demeted" is 0.96 like Mild_Demented, "Mildly_Demented" 0.93; "Demented", a fair new
# name for the demented classes merged, is 0.80 like Non_Demented.
NEAR_MISS = 0.85


def resembles(name: str) -> str | None:
    """The class that `name`, which is none of them in any spelling, looks like a misspelling of; None if none."""
    spelt = {_spelling(c): c for c in CLASSES}
    close = difflib.get_close_matches(_spelling(name), list(spelt), n=1, cutoff=NEAR_MISS)
    return spelt[close[0]] if close else None


def _unknown(name: str) -> str:
    """An unknown class name, with the class it resembles when it looks like a misspelling."""
    near = resembles(name)
    return f"unknown class {name!r}" + (f" (did you mean {near}?)" if near else "") + \
        f": expected one of {', '.join(CLASSES)} (or a common spelling of one)"


def merge_problem(merge: object) -> str | None:
    """Why a `merge` data option ({class = class it joins}) is unusable; None when it is fine. A target is one of
    the source's classes, or a new name shared by several classes merged into one; a near-miss of a class name is
    refused either way (a typo would make a class of its own), and so is a class merged into itself (a no-op
    that would still change the data's fingerprint, and with it every run id of the same task)."""
    if not isinstance(merge, dict) or not merge:
        return "must be a table of class = class it joins, e.g. {Moderate_Demented = \"Mild_Demented\"}"
    try:
        sources = [class_index(k) for k in merge]
    except UnknownClassError as e:
        return str(e)
    if len(set(sources)) != len(sources):
        return "names one class twice"
    if not all(isinstance(v, str) and v.strip() for v in merge.values()):
        return "every class must map to a class name (a string)"
    joined: dict[int, int | None] = {}  # each source class -> the class it joins (None: a new name)
    for k, v in merge.items():
        try:
            joined[class_index(k)] = class_index(v)
        except UnknownClassError:
            joined[class_index(k)] = None
        if joined[class_index(k)] == class_index(k):
            return (f"{k} = {v!r} merges a class into itself: leave it out (it changes nothing but the data's "
                    "fingerprint, so the same task would get new run ids)")
    for k, v in merge.items():
        to = joined[class_index(k)]
        if to is None:
            if (near := resembles(v)) is not None:
                return (f"{k} = {v!r}: {v!r} is no class but resembles {near}; write {near} to merge into it (a "
                        "new name must not be a near-miss of a class name)")
            if sum(w == v for w in merge.values()) < 2:
                return (f"{k} = {v!r}: {v!r} is not one of the source's classes ({', '.join(CLASSES)}); a new "
                        f"name is for several classes merged into one (e.g. {{Mild_Demented = \"{v}\", "
                        f"Moderate_Demented = \"{v}\"}})")
        elif to in joined:
            joins = next(w for m, w in merge.items() if class_index(m) == to)
            return f"{k} joins {v}, which itself joins {joins}: name the final class directly"
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
