"""Export TResNet-M to ONNX: `python3 pth2onnx.py WEIGHTS ONNX [--source DIR]` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/TResNet/TResNet_pth2onnx.py
(Apache-2.0): with rwightman/pytorch-image-models v0.4.5 (patched with TResNet.patch) on
sys.path, `timm.create_model('tresnet_m', checkpoint_path=WEIGHTS)`, whose timm
`load_checkpoint` takes `['state_dict']` when present, strips a leading `module.` and loads
strictly; `.eval()`, a traced export with input `image`, output `class`, opset 11 and axis 0 of
both named '-1'.

--source DIR is the patched upstream tree (the folder holding `timm/`): the build passes
build/tresnet/src/upstream, made by `python3 -m npuzoo.source fetch tresnet ...` (the git tag
v0.4.5, else the identical PyPI sdist timm==0.4.5); the default is ./pytorch-image-models,
where the ModelZoo guide clones it. It is put FIRST on sys.path (the ModelZoo appends it, so an
installed timm would win there). The tree must be patched: unpatched, InplaceAbn raises
ImportError without the inplace_abn CUDA extension; this script checks the built network (no
InplaceAbn left, anti-alias blur padded with zeros) before loading weights.

The weights are loaded by _zoo.py (beside this file), not by timm: `create_model('tresnet_m',
pretrained=False)`, then the published `model_best.pth.tar` (model.yaml `weights.layout:
state_dict_key`; its 'args' is an argparse.Namespace, the one object allowed besides tensors:
no checksum is published for the file), a plain state_dict with or without `module.`, or the
word `random`; strictly, except that `num_batches_tracked` may be absent (a checkpoint of the
unpatched network, whose InplaceAbn has no such buffer, lacks all 60). _zoo.py lists the other
differences from the ModelZoo script and does the checked, atomic export.

Python API (for tests and benchmark scripts that import this file by path):
    model = build_model(weights, source)   # weights: a path or "random"; the module in eval()
    export(model, onnx_path)
Temporary files: only `.<ONNX name>.<pid>.tmp` beside ONNX, renamed to ONNX once checked and
removed on any failure; it matches `.*.tmp`, which a driver may remove when no run is active.
"""

import argparse
import importlib.util
import os
import re
import sys
import warnings

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

DEFAULT_SOURCE = "pytorch-image-models"  # where the ModelZoo guide clones upstream
ARCH = "tresnet_m"


def import_timm(source):
    """`timm` from the tree `source`, never an installed copy."""
    return zoo.import_tree(source, "timm", "timm/models/tresnet.py", (
        "the patched upstream tree (python3 -m npuzoo.source fetch tresnet DIR, or a clone of "
        "rwightman/pytorch-image-models at v0.4.5 with TResNet.patch applied)"))


def check_patched(model, timm):
    """TResNet.patch must be applied: no InplaceAbn, and a zero-padded anti-alias blur."""
    import torch
    hint = f"apply it with `patch -p1 < {os.path.join(HERE, 'TResNet.patch')}` in the tree"
    layers = importlib.import_module("timm.models.layers")
    if any(isinstance(m, layers.InplaceAbn) for m in model.modules()):
        raise zoo.UserError(f"{os.path.dirname(timm.__file__)}: TResNet.patch is not applied "
                            f"(the network still uses InplaceAbn); {hint}")
    blur = next(m for m in model.modules() if isinstance(m, layers.AntiAliasDownsampleLayer))
    with torch.no_grad():
        corner = blur(torch.ones(1, blur.op.channels, 4, 4))[0, 0, 0, 0].item()
    # zero padding 1 keeps (4 + 2 + 2 + 1) / 16 of the filter at a corner; reflect keeps all
    if abs(corner - 9 / 16) > 1e-6:
        raise zoo.UserError(f"{os.path.dirname(timm.__file__)}: TResNet.patch is not applied "
                            f"(the anti-alias downsample does not pad with zeros); {hint}")


def new_network(classes, source=DEFAULT_SOURCE):
    """A new patched tresnet_m(num_classes=classes) from the tree `source`."""
    timm = import_timm(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(ARCH, pretrained=False, num_classes=classes)
    check_patched(model, timm)
    return model


build_model, export, main = zoo.export_commands(
    HERE, new_network, source=DEFAULT_SOURCE, safe_globals=[argparse.Namespace],
    description="Export TResNet-M (timm 0.4.5 + TResNet.patch) to ONNX "
                "(opset, names and shapes from model.yaml).",
    weights_help="checkpoint (model_best.pth.tar: a dict with 'state_dict', or a state_dict, "
                 "with or without module.)",
    source_help="patched rwightman/pytorch-image-models v0.4.5 tree")

if __name__ == "__main__":
    sys.exit(main())
