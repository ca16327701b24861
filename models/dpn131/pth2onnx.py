"""Export DPN131 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX [--source DIR]` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/DPN131/dpn131_pth2onnx.py
(Apache-2.0): with Cadene/pretrained-models.pytorch (patched with dpn.diff) first on sys.path,
`pretrainedmodels.dpn131(pretrained=None)` (test_time_pool=True, but dpn.diff disables that
branch), the checkpoint loaded as a plain state_dict (model.yaml `weights.layout: plain`),
strictly, `.eval()`, a traced export with input `image`, output `class`, opset 11 and axis 0 of
both named '-1'.

--source DIR is the patched upstream tree (the folder holding `pretrainedmodels/`): the build
passes build/dpn131/src/upstream, made by `python3 -m npuzoo.source fetch dpn131 ...`; the
default is ./pretrained-models.pytorch, where the ModelZoo guide clones it. `pretrainedmodels`
must come from there (an installed copy shadowing it is an error). The tree must be patched:
unpatched, the dynamic-batch export fails (pool kernels from x.size()), and this script checks
for dpn.diff's change before exporting. The reading of WEIGHTS and the checked, atomic export
are _zoo.py's (beside this file), which lists the differences from the ModelZoo script.

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
PATCH_MARK = "F.adaptive_avg_pool2d(features"  # dpn.diff's change in DPN.logits


def new_network(classes, source=DEFAULT_SOURCE):
    """dpn131(num_classes=classes) from the tree `source`, which dpn.diff must have patched."""
    pretrainedmodels = zoo.import_tree(source, "pretrainedmodels", "pretrainedmodels/__init__.py", (
        "the patched upstream tree (python3 -m npuzoo.source fetch dpn131 DIR, or a clone of "
        "Cadene/pretrained-models.pytorch with dpn.diff applied)"))
    path = importlib.import_module("pretrainedmodels.models.dpn").__file__
    with open(path, encoding="utf-8") as handle:
        if PATCH_MARK not in handle.read():
            raise zoo.UserError(f"{path}: dpn.diff is not applied (apply it with "
                                f"`patch -p1 < {os.path.join(HERE, 'dpn.diff')}` in the tree)")
    return pretrainedmodels.dpn131(num_classes=classes, pretrained=None)


build_model, export, main = zoo.export_commands(
    HERE, new_network, source=DEFAULT_SOURCE,
    description="Export DPN131 to ONNX (opset, names and shapes from model.yaml).",
    weights_help="checkpoint (a plain state_dict .pth)",
    source_help="patched Cadene/pretrained-models.pytorch tree")

if __name__ == "__main__":
    sys.exit(main())
