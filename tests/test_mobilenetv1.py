"""MobileNetV1 model folder (models/mobilenetv1): the facts of its network and checkpoint.

model.yaml's preprocessing values, the network's state_dict layout against the published
checkpoint's (both in docs/model_facts.md, MobileNetV1), the published checkpoint's formats, and
the exported ONNX against the network in PyTorch eager mode on real images. Everything every folder must do
(preprocessing, postprocessing, checkpoint errors, the export's interface, standing alone) is
tested for all folders by test_model_folders.py.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import load_model_script

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "mobilenetv1"

# docs/model_facts.md, MobileNetV1 "Preprocessing" (ImageNet mean/std, 256/224), written out
# independently.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_script(name):
    return load_model_script("mobilenetv1", name)


def run(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(MODEL_DIR / f"{script}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def read_bin(path):
    return np.fromfile(path, dtype=np.float32).reshape(3, 224, 224)


# -- model.yaml ---------------------------------------------------------------------------

def test_model_yaml_facts():
    data = yaml.safe_load((MODEL_DIR / "model.yaml").read_text())
    pre = data["preprocess"]
    assert (pre["resize"], pre["crop"], pre["crop_offset"], pre["interpolation"]) == \
        (256, 224, "round", "bilinear")
    assert tuple(pre["mean"]) == MEAN and tuple(pre["std"]) == STD
    assert data["weights"]["layout"] == "state_dict_key"  # torch.save({..., state_dict}), module.
    assert data["weights"]["md5"] == "205c493b6582a3e6c3daa66e539eae54"
    assert data["output"]["classes"] == 1000 and data["input"]["shape"] == [3, 224, 224]


# -- the network and its checkpoints ------------------------------------------------------

def expected_layout():
    """Every state_dict key and shape of upstream `Net` (docs/model_facts.md, MobileNetV1
    "Network"), in module order."""
    layout = []

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout.append((f"{prefix}.{name}", (channels,)))
        layout.append((f"{prefix}.num_batches_tracked", ()))

    layout.append(("model.0.0.weight", (32, 3, 3, 3)))
    bn("model.0.1", 32)
    blocks = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)] \
        + [(512, 512)] * 5 + [(512, 1024), (1024, 1024)]
    for i, (inp, oup) in enumerate(blocks, 1):
        layout.append((f"model.{i}.0.weight", (inp, 1, 3, 3)))
        bn(f"model.{i}.1", inp)
        layout.append((f"model.{i}.3.weight", (oup, inp, 1, 1)))
        bn(f"model.{i}.4", oup)
    layout += [("fc.weight", (1000, 1024)), ("fc.bias", (1000,))]
    return layout


@pytest.fixture(scope="module")
def pth2onnx():
    return load_script("pth2onnx")


def test_state_dict_layout_matches_the_published_checkpoint(pth2onnx):
    model = pth2onnx.build_model("random")
    state = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected_layout()
    assert len(state) == 164
    assert sum(k.endswith("num_batches_tracked") for k in state) == 27
    assert sum(p.numel() for p in model.parameters()) == 4_231_976
    named = {"model.0.0.weight": (32, 3, 3, 3), "model.1.0.weight": (32, 1, 3, 3),
             "model.1.3.weight": (64, 32, 1, 1), "model.13.4.running_var": (1024,),
             "fc.weight": (1000, 1024), "fc.bias": (1000,)}
    for key, shape in named.items():
        assert tuple(state[key].shape) == shape
    assert len(model.model) == 15 and isinstance(model.model[14], torch.nn.AvgPool2d)
    assert model.model[14].kernel_size == 7
    assert all(len(model.model[i]) == 6 for i in range(1, 14)) and len(model.model[0]) == 3
    assert model.model[1][0].groups == 32 and model.model[13][0].stride == (1, 1)
    assert not model.training


def randomised(pth2onnx, seed=1):
    """A module with random conv weights AND random BN statistics/affine, so outputs vary."""
    model = load_script("pth2onnx").MobileNetV1()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
            elif isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                module.num_batches_tracked.fill_(1234)
            elif isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.05, generator=gen)
                module.bias.normal_(0, 0.1, generator=gen)
    return model.eval()


@pytest.fixture(scope="module")
def reference_state(pth2onnx):
    return randomised(pth2onnx).state_dict()


def save_layouts(state, folder):
    """The published torch.save dict, the same state_dict alone with and without `module.`, and
    a pre-0.4.1 checkpoint without num_batches_tracked: all taken by `layout: state_dict_key`."""
    module_keys = {f"module.{k}": v for k, v in state.items()}
    paths = {
        "published": folder / "mobilenet_sgd_rmsprop.tar",
        "module_prefix": folder / "module_prefix.pth",
        "plain": folder / "plain.pth",
        "no_nbt": folder / "no_nbt.pth",
    }
    torch.save({"epoch": 90, "arch": "mobilenet", "state_dict": module_keys,
                "best_prec1": 69.526, "optimizer": {"state": {}, "param_groups": [
                    {"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]}}, paths["published"])
    torch.save(module_keys, paths["module_prefix"])
    torch.save(dict(state), paths["plain"])
    torch.save({f"module.{k}": v for k, v in state.items()
                if not k.endswith("num_batches_tracked")}, paths["no_nbt"])
    return paths


def test_the_checkpoint_layouts_load_identical_weights(pth2onnx, reference_state, tmp_path):
    for layout, path in save_layouts(reference_state, tmp_path).items():
        loaded = pth2onnx.build_model(path).state_dict()
        assert list(loaded) == list(reference_state), layout
        for key, value in reference_state.items():
            if layout == "no_nbt" and key.endswith("num_batches_tracked"):
                continue
            assert torch.equal(loaded[key], value), (layout, key)


# -- the exported ONNX against the network in eager mode ----------------------------------

@pytest.fixture(scope="module")
def exported(pth2onnx, tmp_path_factory):
    model = randomised(pth2onnx)
    path = tmp_path_factory.mktemp("onnx") / "mobilenetv1.onnx"
    pth2onnx.export(model, path)
    return model, Path(path)


@pytest.fixture(scope="module")
def real_inputs(shared_data, tmp_path_factory):
    """The 10 real images of imagenet-val-10 through preprocess.py, as an (N,3,224,224) batch."""
    dst = tmp_path_factory.mktemp("prep")
    proc = run("preprocess", shared_data / "imagenet-val-10" / "val", dst)
    assert proc.returncode == 0, proc.stderr
    return np.stack([read_bin(p) for p in sorted(dst.glob("*.bin"))])


@pytest.mark.slow
def test_onnx_runtime_matches_pytorch_on_real_images(exported, real_inputs):
    import onnxruntime as ort
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        (out,) = session.run(["class"], {"image": real_inputs[:batch]})
        assert out.shape == (batch, 1000)
    (ort_out,) = session.run(["class"], {"image": real_inputs})
    with torch.no_grad():
        torch_out = model(torch.from_numpy(real_inputs)).numpy()
    assert np.abs(torch_out).max() > 1  # not a trivial network
    assert np.abs(torch_out - torch_out[0]).max() > 0.1  # outputs depend on the image
    assert np.abs(ort_out - torch_out).max() <= 1e-4
    assert np.array_equal(ort_out.argmax(1), torch_out.argmax(1))


