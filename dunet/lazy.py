"""Package namespaces that import their modules on first use: `from dunet.data import LandmarkDataset` still
works, while `import dunet.data.spec` (what inference needs) does not pull in PyTorch through the package."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module `__getattr__` for `package` that finds each name of `exports` (name -> module) on first use."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
