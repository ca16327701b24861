"""VoVNet-39 (Lee et al., 2019, "An Energy and GPU-Computation Efficient Backbone Network"),
as defined by the published checkpoint.

Provenance: `VoVNet.pytorch/models_vovnet/vovnet.py` of AlexanderBurkhart/cnn_train at commit
505637bc (itself a copy of stigma0617/VoVNet.pytorch, MIT), the code the Ascend ModelZoo guide
ACL_PyTorch/contrib/cv/classfication/vovnet39 builds with `vovnet39()`. The module tree and
the module names are kept exactly (names containing '/' included), so the state_dict keys are
those of the checkpoint `vovnet39.pth` once its `module.` prefixes (it was saved from a
DataParallel) are stripped:

    stem.stem_1/conv.weight                                 (64, 3, 3, 3)
    stage2.OSA2_1.layers.0.OSA2_1_0/norm.running_var        (128,)
    stage2.OSA2_1.concat.OSA2_1_concat/conv.weight          (256, 768, 1, 1)
    stage4.OSA4_2.layers.0.OSA4_2_0/conv.weight             (192, 768, 3, 3)
    classifier.weight                                       (1000, 1024)

22,600,296 parameters; 236 state_dict entries (39 of them `num_batches_tracked`).

Behaviour kept from upstream: stages 3-5 start with MaxPool2d(3, 2, ceil_mode=True); every OSA
module concatenates its input with its 5 layer outputs and projects them with a 1x1 unit; only
the non-first module of a stage (OSA4_2, OSA5_2) adds its input back, with no ReLU after the add.
Not kept: upstream's `pretrained=True` path, which is broken there (`load_state_dict_from_url` is
never imported); weights are loaded by pth2onnx.py instead. The head flattens with
`flatten(1)` instead of `view(x.size(0), -1)`: the same values, and a traced batch size is not
baked into the graph. Only torch is imported, so this file works wherever the folder is copied.
"""

from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F

# vovnet39(): per stage 2..5 the channels of each 3x3 layer, of each OSA output, and the number
# of OSA modules; 5 layers per OSA module; a stem of three 3x3 conv-BN-ReLU units.
STAGE_CHANNELS = (128, 160, 192, 224)
CONCAT_CHANNELS = (256, 512, 768, 1024)
BLOCKS_PER_STAGE = (1, 1, 2, 2)
LAYERS_PER_BLOCK = 5
STEM = ((3, 64, 2), (64, 64, 1), (64, 128, 2))  # (in, out, stride) of stem_1..stem_3
NUM_CLASSES = 1000


def conv_unit(in_channels, out_channels, module_name, postfix, stride=1, kernel_size=3, padding=1):
    """(name, module) pairs `{module_name}_{postfix}/conv|/norm|/relu`, as upstream's conv3x3."""
    prefix = f"{module_name}_{postfix}"
    return [
        (f"{prefix}/conv", nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size,
                                     stride=stride, padding=padding, bias=False)),
        (f"{prefix}/norm", nn.BatchNorm2d(out_channels)),
        (f"{prefix}/relu", nn.ReLU(inplace=True)),
    ]


class OSAModule(nn.Module):
    """One-shot aggregation: 5 chained 3x3 units, all outputs (and the input) concatenated once.

    Upstream's `_OSA_module`; children `layers` (ModuleList of Sequentials) and `concat`."""

    def __init__(self, in_channels, stage_channels, concat_channels, layers, module_name,
                 identity=False):
        super().__init__()
        self.identity = identity
        self.layers = nn.ModuleList()
        channels = in_channels
        for i in range(layers):
            self.layers.append(nn.Sequential(OrderedDict(
                conv_unit(channels, stage_channels, module_name, i))))
            channels = stage_channels
        self.concat = nn.Sequential(OrderedDict(conv_unit(
            in_channels + layers * stage_channels, concat_channels, module_name, "concat",
            kernel_size=1, padding=0)))

    def forward(self, x):
        outputs = [x]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        out = self.concat(torch.cat(outputs, dim=1))
        if self.identity:
            out = out + x
        return out


class OSAStage(nn.Sequential):
    """Upstream's `_OSA_stage`: [`Pooling`,] `OSA{n}_1`, `OSA{n}_2`, ..."""

    def __init__(self, in_channels, stage_channels, concat_channels, blocks, layers, stage_num):
        super().__init__()
        if stage_num != 2:
            self.add_module("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        for b in range(blocks):
            name = f"OSA{stage_num}_{b + 1}"
            self.add_module(name, OSAModule(in_channels if b == 0 else concat_channels,
                                            stage_channels, concat_channels, layers, name,
                                            identity=b > 0))


class VoVNet(nn.Module):
    """`stem`, `stage2`..`stage5`, global average pool, `classifier`."""

    def __init__(self, stage_channels=STAGE_CHANNELS, concat_channels=CONCAT_CHANNELS,
                 blocks_per_stage=BLOCKS_PER_STAGE, layers_per_block=LAYERS_PER_BLOCK,
                 num_classes=NUM_CLASSES):
        super().__init__()
        stem = []
        for i, (cin, cout, stride) in enumerate(STEM, start=1):
            stem += conv_unit(cin, cout, "stem", str(i), stride=stride)
        self.stem = nn.Sequential(OrderedDict(stem))
        in_channels = (STEM[-1][1],) + tuple(concat_channels[:-1])
        self.stage_names = []
        for i in range(len(stage_channels)):
            name = f"stage{i + 2}"
            self.stage_names.append(name)
            self.add_module(name, OSAStage(in_channels[i], stage_channels[i], concat_channels[i],
                                           blocks_per_stage[i], layers_per_block, i + 2))
        self.classifier = nn.Linear(concat_channels[-1], num_classes)
        self._init_weights()

    def _init_weights(self):
        """Upstream's initialisation (only matters for `random` weights)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


def vovnet39(num_classes=NUM_CLASSES):
    """The upstream constructor's name and configuration."""
    return VoVNet(num_classes=num_classes)
