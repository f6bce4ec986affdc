"""Old module paths, resolved to where their code lives now.

Jobs queued on a cluster were pickled with their classes' module paths (`mriaug.spec.RunSpec`, ...), and those
paths moved when `mriaug/` was grouped into subpackages (issue 33). A queued job must still load after the
image or environment is updated, so each old path imports as an alias of its new module. New code never uses
them (tests/test_layout.py checks)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_TIERS = {"store": "atomic ids locks results tomlfile",
          "data": "audit classes kept_for phantom pools splits",
          "plan": "augmentations grid hparams scenarios spec",
          "engine": "augment batches checkpoints metrics models nets runtime seedpack speed train",
          "generators": "synth"}
# old dotted path -> new one (`mriaug.data`, the old sources module, is the package `mriaug.data` now, which
# finds the old module's names itself).
MOVED: dict[str, str] = {f"mriaug.{m}": f"mriaug.{tier}.{m}" for tier, mods in _TIERS.items() for m in mods.split()}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the target module ran when it was imported


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds `mriaug.spec` & co. as their new modules: the same module object under both names, so a class
    unpickled by its old path is the class new code checks against."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before the path finders: an old file left behind never wins
