"""Export MobileNetV1 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/MobileNet-v1/
mobilenet-v1_pth2onnx.py (Apache-2.0): the network of wjc852456/pytorch-mobilenet-v1 @8b3bde3e
`main.py` (here in network.py beside this file), the checkpoint's `state_dict` with `module.`
stripped and loaded strictly (model.yaml `weights.layout: state_dict_key`), `.eval()`, a traced
export with input `image`, output `class`, opset 11 and axis 0 of both named '-1'. The reading
of WEIGHTS and the checked, atomic export are _zoo.py's (beside this file), which lists the
differences from the ModelZoo script (weights_only loading, strict keys, `random`, opset check).

Python API, used by benchmark scripts that import this file by path:
    model = build_model(weights)   # weights: a path or "random"; returns the module in eval()
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


def new_network(classes, source=None):
    """network.py's MobileNetV1 (this folder's own file, imported by path)."""
    spec = importlib.util.spec_from_file_location("_mobilenetv1_network",
                                                  os.path.join(HERE, "network.py"))
    network = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(network)
    return network.MobileNetV1(num_classes=classes)


build_model, export, main = zoo.export_commands(
    HERE, new_network, description="Export MobileNetV1 to ONNX (opset, names and shapes from model.yaml).",
    weights_help="checkpoint (.tar/.pth: torch.save dict with 'state_dict', or a state_dict)")

if __name__ == "__main__":
    sys.exit(main())
