"""Export MobileNetV1 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX` (WEIGHTS may be `random`).

As the Ascend ModelZoo MobileNet-v1 guide's mobilenet-v1_pth2onnx.py (Apache-2.0), with the `Net`
of wjc852456/pytorch-mobilenet-v1 `main.py` @8b3bde3e (MIT) inlined: the published keys, `module.`
stripped.
"""

import argparse
import hashlib
import os
import sys
import warnings
from pathlib import Path

import onnx
import torch
import yaml
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "model.yaml"), encoding="utf-8") as handle:
    CONFIG = yaml.safe_load(handle)
PUBLISHED_MD5 = {CONFIG["weights"].get("md5")}
# (input channels, output channels, stride) of the 13 depthwise-separable blocks model[1..13]
BLOCKS = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
          *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1))


def conv_bn(inp, oup, stride):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


def conv_dw(inp, oup, stride):
    """Depthwise 3x3, BN, ReLU, pointwise 1x1, BN, ReLU."""
    return nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                         nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
                         nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    """Upstream's `Net`: `model` (stem, 13 blocks, AvgPool2d(7)), `fc` = Linear(1024, classes)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.model = nn.Sequential(conv_bn(3, 32, 2), *(conv_dw(*block) for block in BLOCKS),
                                   nn.AvgPool2d(7))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(self.model(x).view(-1, 1024))


class UserError(Exception):  # main() prints it as one `error:` line
    pass


def new_network(source=None):
    return MobileNetV1(num_classes=CONFIG["output"]["classes"])


def build_model(weights, source=None):
    torch.manual_seed(0)
    model = new_network(source)
    if weights == "random":
        print("warning: random weights (seed 0): accuracy means nothing", file=sys.stderr)
        return model.eval()
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # no such file, not a torch.save file, a pickled object...
        if not (os.path.isfile(weights)  # byte for byte a file this model.yaml publishes?
                and hashlib.md5(Path(weights).read_bytes()).hexdigest() in PUBLISHED_MD5):
            raise UserError(f"{weights}: cannot read as a PyTorch checkpoint "
                            f"({(str(err).splitlines() or [type(err).__name__])[0]}); if you trust "
                            "it, save its plain state_dict with torch.save and pass that") from None
        print(f"note: {weights}: a published checkpoint that needs a full unpickle; loading it "
              "with weights_only=False", file=sys.stderr)
        checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
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
    args = parser.parse_args()
    try:
        export(build_model(args.weights), args.onnx)
    except UserError as err:
        parser.exit(2, f"error: {err}\n")  # a user's error, as in npuzoo
    print(f"exported {args.weights} to {args.onnx}")


if __name__ == "__main__":
    main()
