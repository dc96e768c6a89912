"""DROPJ as RLDS: importing this package registers the TFDS builders.

    import dropj_datasets
    import tensorflow_datasets as tfds
    ds = tfds.load('dropj_carracing', data_dir=...)        # config 'real'
    ds = tfds.load('dropj_carracing/dream', data_dir=...)

Importing it stays light: `dropj_datasets.schema` and `dropj_datasets.envs`
load neither TensorFlow nor TFDS. The builders are TFDS classes, so they are
registered the moment TFDS is imported (at once if it already is), in either
order of the two imports. `dropj_datasets.DropjCarracing` imports them too.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import sys

_BUILDERS = {
    "DropjCarracing": "dropj_datasets.dropj_carracing.dropj_carracing_dataset_builder",
    "DropjObstCarracing": "dropj_datasets.dropj_obst_carracing.dropj_obst_carracing_dataset_builder",
}
_TFDS = "tensorflow_datasets"

__all__ = ["schema", "register_builders", "package_version", "DropjCarracing", "DropjObstCarracing"]


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """This package's installed version ('unknown' when run from a tree that was never installed)."""
    from importlib import metadata

    try:
        return metadata.version("dropj-rlds")
    except metadata.PackageNotFoundError:
        return "unknown"


def register_builders() -> None:
    """Defines (and so registers with TFDS) both builders; imports TFDS."""
    base = sys.modules.get("dropj_datasets.builder")
    if base is not None and not hasattr(base, "DropjBuilder"):
        return  # TFDS finished loading inside `dropj_datasets.builder`'s own import, which registers at its end
    for module in _BUILDERS.values():
        importlib.import_module(module)


def __getattr__(name: str):
    if name in _BUILDERS:
        return importlib.import_module(_BUILDERS[name]).Builder
    if name == "schema":
        return importlib.import_module("dropj_datasets.schema")
    raise AttributeError(f"module 'dropj_datasets' has no attribute {name!r}")


class _RegisterWhenTfdsLoads(importlib.abc.MetaPathFinder):
    """Runs `register_builders` right after `tensorflow_datasets` finishes importing, then leaves.

    The finder only wraps the loader that Python's other finders return for
    that one module; it never loads anything itself.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TFDS:
            return None
        sys.meta_path.remove(self)  # one use; the other finders find the real spec
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            register_builders()

        loader.exec_module = exec_module
        return spec


if _TFDS in sys.modules:
    register_builders()
elif not any(isinstance(finder, _RegisterWhenTfdsLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTfdsLoads())
