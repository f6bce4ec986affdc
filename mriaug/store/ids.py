"""Ids made from content: a short hash of a JSON-able description that does not depend on the order of its keys.
A run's id is the hash of its spec (`run_id`), so the same run is never trained twice; data, splits, pools and
caches are fingerprinted the same way (`content_hash`).

Changing either function changes every id: finished runs would no longer be found and would train again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(obj: Any, length: int = 16) -> str:
    """The first `length` hex digits of the SHA-256 of `obj` as compact JSON with sorted keys (what is not
    JSON, e.g. a Path, as its `str`)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def run_id(description: dict[str, Any]) -> str:
    """A run's id from its description (`RunSpec.to_dict`): 16 hex digits, the name of its result file."""
    return content_hash(description)
