"""Export InceptionV4 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX [--source DIR]` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/built-in/cv/InceptionV4_for_Pytorch/
inceptionv4_pth2onnx.py (Apache-2.0): with Cadene/pretrained-models.pytorch first on sys.path,
`pretrainedmodels.models.inceptionv4.InceptionV4(num_classes=1001)` (index 0 = background), the
checkpoint loaded as a plain state_dict (model.yaml `weights.layout: plain`), `.eval()`, a
traced export with input `image`, output `class`, opset 11 and axis 0 of both named '-1'.

--source DIR is the upstream tree (the folder holding `pretrainedmodels/`): the build passes
build/inceptionv4/src/upstream, made by `python3 -m npuzoo.source fetch inceptionv4 ...`; the
default is ./pretrained-models.pytorch, where the ModelZoo guide clones it. `pretrainedmodels`
is imported from there only (the ModelZoo script imports an installed copy before extending
sys.path; here an installed copy shadowing it is an error). The final pool must have a static
kernel (ATC needs a constant graph), which holds for exactly two trees, and this script checks
for one of them before exporting:
- commit 8aae3d8 with inceptionv4.patch: `kernel_size=int(features.shape[2])`, a constant 8 in
  the trace, and eager mode still works at any size (the ModelZoo patch's `.item()` breaks it);
- the 0.7.4 release, unpatched: a fixed `nn.AvgPool2d(8, count_include_pad=False)`, the same
  values at 299x299.
The ModelZoo script downloads the published file when no checkpoint is given; here WEIGHTS is
required (or `random`). The reading of WEIGHTS and the checked, atomic export are _zoo.py's
(beside this file), which lists the other differences from the ModelZoo script.

Python API (for tests and benchmark scripts that import this file by path):
    model = build_model(weights, source)   # weights: a path or "random"; the module in eval()
    export(model, onnx_path)
Temporary files: only `.<ONNX name>.<pid>.tmp` beside ONNX, renamed to ONNX once checked and
removed on any failure; it matches `.*.tmp`, which a driver may remove when no run is active.
"""

import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_helper(name="_zoo" + re.sub(r"\W", "_", HERE)):
    """_zoo.py beside this file (a copy of the project's models/_zoo.py), imported by path under
    a name of this folder's own: the folder needs nothing from outside itself."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "_zoo.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)  # first: workers pickle by name
        try:
            spec.loader.exec_module(sys.modules[name])
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


zoo = _load_helper()

DEFAULT_SOURCE = "pretrained-models.pytorch"  # beside the current directory, as the guide clones
# The two upstream trees whose final pool exports with a static kernel (see the docstring).
STATIC_POOL_MARKS = {
    "int(features.shape[2])": "8aae3d8 with inceptionv4.patch",
    "nn.AvgPool2d(8, count_include_pad=False)": "the 0.7.4 release (fixed 8x8 pool)",
}


def new_network(classes, source=DEFAULT_SOURCE):
    """InceptionV4(num_classes=classes) from the tree `source`, whose final pool is static."""
    zoo.import_tree(source, "pretrainedmodels", "pretrainedmodels/__init__.py", (
        "the patched upstream tree (python3 -m npuzoo.source fetch inceptionv4 DIR, or a clone "
        "of Cadene/pretrained-models.pytorch with inceptionv4.patch applied)"))
    # the module, not the function of the same name that pretrainedmodels.models exports
    network = importlib.import_module("pretrainedmodels.models.inceptionv4")
    with open(network.__file__, encoding="utf-8") as handle:
        text = handle.read()
    if not any(mark in text for mark in STATIC_POOL_MARKS):
        raise zoo.UserError(
            f"{network.__file__}: the final pool's kernel is not static: apply inceptionv4.patch "
            f"(`patch -p1 < {os.path.join(HERE, 'inceptionv4.patch')}` in a tree at 8aae3d8), "
            "or use the pretrainedmodels 0.7.4 release")
    return network.InceptionV4(num_classes=classes)


build_model, export, main = zoo.export_commands(
    HERE, new_network, source=DEFAULT_SOURCE,
    description="Export InceptionV4 to ONNX (opset, names and shapes from model.yaml).",
    weights_help="checkpoint (a plain state_dict .pth, 1001 classes)",
    source_help="Cadene/pretrained-models.pytorch tree (8aae3d8 patched, or 0.7.4)")

if __name__ == "__main__":
    sys.exit(main())
