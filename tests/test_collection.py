"""The fast suite collects without the optional packages: a test module that needs one imports
it inside its tests or skips itself (pytest.importorskip), and no test module imports another."""

import ast

from helpers import REPO, python

OPTIONAL = ("onnx", "onnxruntime", "openvino", "torch", "torchvision", "ray", "matplotlib")

# Run in a fresh interpreter: a finder first on sys.meta_path refuses the optional packages as
# if they were not installed, then pytest collects the fast suite.
COLLECT_WITHOUT = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {optional!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Absent())
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider", "tests"]))
"""


def test_the_fast_suite_collects_without_the_optional_packages():
    proc = python("-c", COLLECT_WITHOUT.format(optional=OPTIONAL), timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    collected = proc.stdout.splitlines()
    summary = [line for line in collected if " collected " in line][-1]
    assert "error" not in summary and "ERROR collecting" not in proc.stdout, proc.stdout[-4000:]
    assert "(blocked)" in proc.stdout  # the finder was in place: some module skipped itself
    # a module that does not need them is collected whole
    assert any(line.startswith("tests/test_commands.py::") for line in collected)
    assert any(line.startswith("tests/test_pipeline_units.py::") for line in collected)


def test_no_test_module_imports_another():
    modules = {path.stem for path in (REPO / "tests").glob("*.py")} - {"helpers"}
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.removeprefix("tests.") not in modules, f"{path.name} imports {name}"
