"""`KeptFor`: the run (scenario, seed) whose kept real train rows a pool or a generator is restricted to.

One type for one value: written `4:0` on the command line, `{"scenario": "4", "seed": 0}` in pool.json's
runs, `["4", 0]` in `trained_on` records (the shapes on disk are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import checks
from ..errors import SettingError


@dataclass(frozen=True)
class KeptFor:
    scenario: str
    seed: int

    def __post_init__(self) -> None:
        checks.seed(self.seed, f"kept-for {self.scenario}:{self.seed}: the seed")

    @classmethod
    def parse(cls, text: str | None) -> KeptFor | None:
        """`--kept-for 4:0` -> KeptFor("4", 0); None for an empty value."""
        if not text:
            return None
        scenario, sep, seed = text.partition(":")
        if not sep or not scenario.strip() or not seed.strip().isdigit():
            raise SettingError(f"--kept-for {text!r}: expected SCENARIO:SEED, e.g. 4:0")
        return cls(scenario.strip(), int(seed))

    @classmethod
    def from_any(cls, value: Any) -> KeptFor | None:
        """A KeptFor, a (scenario, seed) pair or a {"scenario", "seed"} record; None stays None."""
        if value is None or isinstance(value, KeptFor):
            return value
        if isinstance(value, dict):
            return cls(str(value["scenario"]), int(value["seed"]))
        scenario, seed = value
        return cls(str(scenario), int(seed))

    def record(self) -> dict[str, Any]:
        """The shape of pool.json's `runs[].kept_for`."""
        return {"scenario": self.scenario, "seed": self.seed}

    def pair(self) -> list[Any]:
        """The shape of `trained_on[].kept_for`."""
        return [self.scenario, self.seed]

    def __str__(self) -> str:
        return f"{self.scenario}:{self.seed}"
