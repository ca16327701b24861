"""Export VoVNet39 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX` (WEIGHTS may be `random`).

As the Ascend ModelZoo vovnet39 guide's vovnet39_pth2onnx.py (Apache-2.0), with `vovnet39()` of
AlexanderBurkhart/cnn_train @505637bc VoVNet.pytorch/models_vovnet/vovnet.py (MIT) inlined below.
"""

import argparse
import os
import sys
import warnings
from collections import OrderedDict

import onnx
import torch
import yaml
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "model.yaml"), encoding="utf-8") as handle:
    CONFIG = yaml.safe_load(handle)
# per stage 2..5: channels of each 3x3 layer, of each OSA output, number of OSA modules
STAGES = ((128, 256, 1), (160, 512, 1), (192, 768, 2), (224, 1024, 2))
STEM = ((3, 64, 2), (64, 64, 1), (64, 128, 2))  # (in, out, stride) of stem_1..stem_3


def conv_unit(cin, cout, name, postfix, stride=1, kernel_size=3, padding=1):  # upstream's conv3x3
    """(name, module) pairs `{name}_{postfix}/conv`, `/norm`, `/relu`."""
    unit = f"{name}_{postfix}"
    return [(f"{unit}/conv", nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)),
            (f"{unit}/norm", nn.BatchNorm2d(cout)), (f"{unit}/relu", nn.ReLU(inplace=True))]


class OSAModule(nn.Module):
    """Upstream's `_OSA_module`: 5 chained 3x3 units (`layers`), all concatenated, `concat` 1x1."""

    def __init__(self, cin, channels, concat_channels, name, identity=False):
        super().__init__()
        self.identity = identity
        self.layers = nn.ModuleList(nn.Sequential(OrderedDict(conv_unit(
            cin if i == 0 else channels, channels, name, i))) for i in range(5))
        self.concat = nn.Sequential(OrderedDict(conv_unit(
            cin + 5 * channels, concat_channels, name, "concat", kernel_size=1, padding=0)))

    def forward(self, x):
        outputs = [x]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        out = self.concat(torch.cat(outputs, dim=1))
        return out + x if self.identity else out


class VoVNet(nn.Module):
    """`stem`, `stage2`..`stage5` ([`Pooling`,] `OSA{n}_1`, ...), average pool, `classifier`."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            unit for i, (cin, cout, stride) in enumerate(STEM, 1)
            for unit in conv_unit(cin, cout, "stem", str(i), stride)))
        cin = STEM[-1][1]
        for n, (channels, concat_channels, blocks) in enumerate(STAGES, 2):
            stage = nn.Sequential()
            if n != 2:
                stage.add_module("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            for b in range(blocks):
                name = f"OSA{n}_{b + 1}"
                stage.add_module(name, OSAModule(cin if b == 0 else concat_channels, channels,
                                                 concat_channels, name, b > 0))
            self.add_module(f"stage{n}", stage)
            cin = concat_channels
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():  # upstream's initialisation (BatchNorm's is torch's default)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.stage5(self.stage4(self.stage3(self.stage2(self.stem(x)))))
        return self.classifier(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class UserError(Exception):  # main() prints it as one `error:` line
    pass


def new_network(source=None):
    return VoVNet(num_classes=CONFIG["output"]["classes"])


def build_model(weights, source=None):
    torch.manual_seed(0)
    model = new_network(source)
    if weights == "random":
        print("warning: random weights (seed 0): accuracy means nothing", file=sys.stderr)
        return model.eval()
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # no such file, not a torch.save file, a pickled object...
        raise UserError(f"{weights}: cannot read as a PyTorch checkpoint "
                        f"({(str(err).splitlines() or [type(err).__name__])[0]}); if you trust "
                        "it, save its plain state_dict with torch.save and pass that") from None
    try:  # weights.layout module_prefix: keys prefixed `module.`
        state = {k.removeprefix("module."): v for k, v in checkpoint.items()}
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
