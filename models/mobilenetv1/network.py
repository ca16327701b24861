"""MobileNetV1 (width 1.0, 224x224), as defined by the published checkpoint.

Provenance: the `Net` class of wjc852456/pytorch-mobilenet-v1 `main.py` at commit
8b3bde3e525ba6d17b9cabb5feb8ee49a9e1e8e0 (MIT), which the Ascend ModelZoo script
ACL_PyTorch/contrib/cv/classfication/MobileNet-v1/mobilenet-v1_pth2onnx.py inlines unchanged.
The module tree is kept exactly, so the state_dict keys are those of the checkpoint
`mobilenet_sgd_rmsprop_69.526.tar` once its `module.` prefixes are stripped:

    model.0.0.weight       (32, 3, 3, 3)    conv 3x3 s2 of the stem
    model.1.0.weight       (32, 1, 3, 3)    depthwise 3x3 of block 1
    model.1.3.weight       (64, 32, 1, 1)   pointwise 1x1 of block 1
    model.13.4.running_var (1024,)          last pointwise BN
    fc.weight, fc.bias     (1000, 1024), (1000,)

4,231,976 parameters; 164 state_dict entries (27 of them `num_batches_tracked`).
Only torch is imported, so this file works wherever the model folder is copied.
"""

import torch
from torch import nn

# (input channels, output channels, stride) of the 13 depthwise-separable blocks model[1..13].
BLOCKS = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
)
FEATURES = 1024
NUM_CLASSES = 1000


def conv_bn(inp, oup, stride):
    """[0] full 3x3 convolution, [1] BN, [2] ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_dw(inp, oup, stride):
    """[0] depthwise 3x3, [1] BN, [2] ReLU, [3] pointwise 1x1, [4] BN, [5] ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """`model` = Sequential of 15 (stem, 13 blocks, AvgPool2d(7)); `fc` = Linear(1024, 1000)."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.model = nn.Sequential(
            conv_bn(3, 32, 2),
            *(conv_dw(inp, oup, stride) for inp, oup, stride in BLOCKS),
            nn.AvgPool2d(7),
        )
        self.fc = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        x = x.view(-1, FEATURES)
        return self.fc(x)


# The upstream name, for readers comparing with main.py.
Net = MobileNetV1
