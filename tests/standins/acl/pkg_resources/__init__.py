"""Minimal stand-in for setuptools' `pkg_resources`, for interpreters without it (setuptools 81
and later dropped it). The ais_bench front end (`ais_bench/infer/miscellaneous.py`) reads the
aclruntime version with `pkg_resources.get_distribution(name).version` and, failing that, warns
and forces `--run_mode tensor`. Where the interpreter has a real pkg_resources elsewhere on
sys.path, that one is loaded instead and this module steps aside.
"""

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_others = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != os.path.realpath(_HERE)]
_real = importlib.machinery.PathFinder.find_spec(__name__, _others)
if _real is not None and _real.loader is not None:
    _module = importlib.util.module_from_spec(_real)
    sys.modules[__name__] = _module
    _real.loader.exec_module(_module)
else:
    class DistributionNotFound(Exception):
        pass

    class _Distribution:
        def __init__(self, name, version):
            self.project_name = name
            self.key = name.lower()
            self.version = version

    def get_distribution(name):
        try:
            return _Distribution(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            raise DistributionNotFound(name) from None
