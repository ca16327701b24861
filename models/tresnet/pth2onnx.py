"""Export TResNet-M to ONNX: `python3 pth2onnx.py WEIGHTS ONNX [--source DIR]`, or `random`.

As the Ascend ModelZoo TResNet guide's TResNet_pth2onnx.py (Apache-2.0): timm 0.4.5's `tresnet_m`
from the --source tree patched with TResNet.patch (no InplaceAbn, a zero-padded blur: no CUDA).
"""

import argparse
import importlib
import os
import sys
import warnings

import onnx
import torch
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "model.yaml"), encoding="utf-8") as handle:
    CONFIG = yaml.safe_load(handle)
DEFAULT_SOURCE = "pytorch-image-models"
torch.serialization.add_safe_globals([argparse.Namespace])  # the published file's `args`


class UserError(Exception):  # main() prints it as one `error:` line
    pass


def import_upstream(source, module):
    """`module` imported from the upstream tree `source`, first on sys.path."""
    source, package = os.path.abspath(source), module.split(".")[0]
    if not os.path.isdir(os.path.join(source, package)):
        raise UserError(f"{source}: no {package}/ in it; pass --source with the patched upstream "
                        f"tree (python3 -m npuzoo.source fetch {CONFIG['name']} DIR)")
    for name in [n for n in sys.modules if n.split(".")[0] == package]:
        del sys.modules[name]  # another tree may have been imported before
    sys.path.insert(0, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's deprecation noise
        return importlib.import_module(module)


def new_network(source=DEFAULT_SOURCE):
    timm = import_upstream(source, "timm")
    layers = importlib.import_module("timm.models.layers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model("tresnet_m", num_classes=CONFIG["output"]["classes"])
    blur = next(m for m in model.modules() if isinstance(m, layers.AntiAliasDownsampleLayer))
    with torch.no_grad():  # zero padding keeps (4 + 2 + 2 + 1) / 16 of the filter at a corner
        corner = blur(torch.ones(1, blur.op.channels, 4, 4))[0, 0, 0, 0].item()
    inplace_abn = any(isinstance(m, layers.InplaceAbn) for m in model.modules())
    if inplace_abn or abs(corner - 9 / 16) > 1e-6:
        raise UserError(f"{os.path.dirname(timm.__file__)}: TResNet.patch is not applied (`patch "
                        f"-p1 < {os.path.join(HERE, 'TResNet.patch')}` in the tree)")
    return model


def build_model(weights, source=DEFAULT_SOURCE):
    torch.manual_seed(0)
    model = new_network(source)
    if weights == "random":
        print("warning: random weights (seed 0): accuracy means nothing", file=sys.stderr)
        return model.eval()
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # no such file, not a torch.save file, a pickled object...
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{weights}: cannot read as a PyTorch checkpoint ({reason})") from None
    try:  # weights.layout state_dict_key: under `state_dict`, keys prefixed `module.`
        state = checkpoint.get("state_dict", checkpoint)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        tracked = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
        keys = model.load_state_dict({**tracked, **state}, strict=False)  # old files lack them
    except (RuntimeError, AttributeError, TypeError, ValueError) as err:  # shapes, not a dict
        raise UserError(f"{weights}: not a {CONFIG['name']} checkpoint: "
                        f"{' '.join(str(err).split())[:300]}") from None
    wrong = [f"{len(k)} {kind} (first: {k[0]})"
             for kind, k in zip(("missing", "unexpected"), keys, strict=True) if k]
    if wrong:  # (the model, partly loaded, is thrown away)
        raise UserError(f"{weights}: not a {CONFIG['name']} checkpoint: keys {', '.join(wrong)}")
    return model.eval()


def export(model, onnx_path):
    inp, out = CONFIG["input"]["name"], CONFIG["output"]["name"]
    axes = {inp: {0: "-1"}, out: {0: "-1"}} if CONFIG["onnx"]["dynamic_batch"] else None
    tmp = f"{onnx_path}.{os.getpid()}.tmp"  # then renamed: never a partial .onnx
    try:
        os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's: Python-computed shapes become constants
            torch.onnx.export(model, torch.randn(1, *CONFIG["input"]["shape"]), tmp,
                              input_names=[inp], output_names=[out], dynamic_axes=axes,
                              opset_version=CONFIG["onnx"]["opset"], dynamo=False)  # not opset 18
        onnx.checker.check_model(tmp, full_check=True)
        os.replace(tmp, onnx_path)
    except OSError as err:
        raise UserError(f"{onnx_path}: cannot write ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", metavar="WEIGHTS")
    parser.add_argument("onnx", metavar="ONNX")
    parser.add_argument("--source", default=DEFAULT_SOURCE, metavar="DIR")
    args = parser.parse_args()
    try:
        export(build_model(args.weights, args.source), args.onnx)
    except UserError as err:
        parser.exit(2, f"error: {err}\n")  # a user's error, as in npuzoo
    print(f"exported {args.weights} to {args.onnx}")


if __name__ == "__main__":
    main()
