"""TResNet-M: TResNet.patch against the pristine timm 0.4.5 sources, the patched network
(docs/model_facts.md, TResNet-M), the published checkpoint's format (timm train.py's
model_best.pth.tar), preprocessing against timm's own eval transform on real images, the refusal
of a missing or unpatched tree, and the exported ONNX against the patched network in eager mode.
The sources come from the sdist cache that `make venv` fills. What every folder must do is
tested by test_model_folders.py."""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from npuzoo import config

from conftest import load_model_script

MODEL = "tresnet"
SDIST = "timm-0.4.5.tar.gz"
PATCHED_FILES = ["timm/models/layers/anti_aliasing.py", "timm/models/layers/space_to_depth.py",
                 "timm/models/tresnet.py"]


def load_script(repo, name):
    return load_model_script(MODEL, name)


@pytest.fixture(scope="module")
def pth2onnx(repo):
    return load_script(repo, "pth2onnx")


def extract_sdist(repo, dest):
    sdist = repo / ".venv" / "sdists" / SDIST
    if not sdist.is_file():
        pytest.skip(f"{sdist} is absent: run `make venv` (it caches the timm 0.4.5 sdist; "
                    "tests never download)")
    with tarfile.open(sdist) as archive:
        archive.extractall(dest, filter="data")
    return dest / "timm-0.4.5"


def apply_patch(repo, tree, *extra):
    return subprocess.run(["patch", "-p1", "--forward", "--batch", *extra,
                           "-i", str(repo / "models" / MODEL / "TResNet.patch")],
                          cwd=tree, capture_output=True, text=True)


@pytest.fixture(scope="module")
def pristine(repo, tmp_path_factory):
    return extract_sdist(repo, tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def source(repo, tmp_path_factory):
    """The sdist tree with TResNet.patch applied, as npuzoo.source builds it."""
    tree = extract_sdist(repo, tmp_path_factory.mktemp("patched"))
    result = apply_patch(repo, tree)
    assert result.returncode == 0, result.stdout + result.stderr
    return tree


@pytest.fixture(scope="module")
def timm(pth2onnx, source):
    return pth2onnx.import_upstream(source, "timm")


def randomised(model, seed=1):
    """Random BN statistics and affine parameters, so an export that mishandled BN would be
    caught. timm zero-inits the last BN weight of every residual branch, which would hide the
    branches; they get small random weights instead, as in trained networks, which keeps the
    activations bounded; the classifier is scaled so that the logits reach a trained
    network's range (|logit| ~ 10) instead of timm's init (std 0.01, |logit| < 1)."""
    generator = torch.Generator().manual_seed(seed)
    last_bn = {id((block.conv3 if hasattr(block, "conv3") else block.conv2)[1])
               for block in model.modules() if hasattr(block, "conv2") and hasattr(block, "se")}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                low, high = (0.05, 0.2) if id(module) in last_bn else (0.5, 1.0)
                module.weight.uniform_(low, high, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
        model.head.fc.weight.normal_(0, 0.25, generator=generator)
        model.head.fc.bias.normal_(0, 0.1, generator=generator)
    return model.eval()


def run(repo, script, *args):
    return subprocess.run([sys.executable, str(repo / "models" / MODEL / script), *map(str, args)],
                          capture_output=True, text=True)


def main_error(module, capsys, *args):
    """Run a script's main() in this process: exit status 2 and exactly one `error:` line."""
    code = module.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- model.yaml -------------------------------------------------------------------------------

def test_model_yaml_valid_and_reference():
    spec = config.load(MODEL)
    data = yaml.safe_load(open(os.path.join(spec.folder, "model.yaml"), encoding="utf-8"))
    accuracy = data["reference"]["accuracy"]
    assert accuracy["top5"] == 94.43 and "top1" not in accuracy  # no Top-1 is published
    assert data["reference"]["perf"]["Ascend310P3"]["fps"] == {1: 1154, 4: 2552, 8: 3158,
                                                               16: 3249, 32: 2756}
    assert data["preprocess"]["mean"] == [0, 0, 0] and data["preprocess"]["std"] == [1, 1, 1]
    assert (data["preprocess"]["resize"], data["preprocess"]["crop"]) == (256, 224)
    assert data["weights"]["checksum"] == "unpublished"
    assert data["weights"]["url"].endswith("/TResNet/PTH/model_best.pth.tar")
    git, pypi = data["upstream"]["sources"]
    assert git["kind"] == "git" and git["commit"].startswith("5b28ef41")
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"])
    assert pypi == {**pypi, "kind": "pypi", "requirement": "timm==0.4.5"}
    assert git["patch"] == pypi["patch"] == "TResNet.patch"
    assert config.make_variables(spec).count("HAS_UPSTREAM := 1") == 1


# -- the patch ----------------------------------------------------------------------------------

def test_patch_applies_cleanly_to_pristine_sdist(repo, pristine):
    result = apply_patch(repo, pristine, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    touched = re.findall(r"^checking file (\S+)$", result.stdout, re.M)
    assert sorted(touched) == PATCHED_FILES
    assert "offset" not in result.stdout and "fuzz" not in result.stdout, result.stdout


def test_patch_base_blobs_are_the_sdist_files(repo, pristine):
    """The `index <old>..<new>` lines of TResNet.patch are git blob ids: the pristine sdist files
    hash to the same ids as those the ModelZoo's patch lists for the v0.4.5 checkout
    (9d3837e, a7e8e0b, e371292), i.e. the sdist and the tag hold the same bytes."""
    text = (repo / "models" / MODEL / "TResNet.patch").read_text()
    bases = dict(re.findall(r"^diff --git a/(\S+) .*\nindex ([0-9a-f]+)\.\.", text, re.M))
    assert bases == {"timm/models/layers/anti_aliasing.py": "9d3837e",
                     "timm/models/layers/space_to_depth.py": "a7e8e0b",
                     "timm/models/tresnet.py": "e371292"}
    for name, blob in bases.items():
        data = (pristine / name).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().startswith(blob), name


def test_patch_semantics_in_source(source, pristine):
    for name in ("anti_aliasing.py", "space_to_depth.py"):
        before = (pristine / "timm/models/layers" / name).read_text()
        after = (source / "timm/models/layers" / name).read_text()
        assert re.search(r"^@torch\.jit\.script\nclass", before, re.M)
        assert not re.search(r"^@torch\.jit\.script", after, re.M)
    aa = (source / "timm/models/layers/anti_aliasing.py").read_text()
    assert "'reflect'" not in aa and "padding=1" in aa


def test_patched_network_matches_facts(timm):
    model = timm.create_model("tresnet_m", pretrained=False).eval()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 31_389_032
    assert len(state) == 434 and sum(k.endswith("num_batches_tracked") for k in state) == 60
    assert tuple(state["body.layer2.0.conv1.0.0.weight"].shape) == (128, 64, 3, 3)
    assert tuple(state["body.layer2.0.downsample.1.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(state["head.fc.weight"].shape) == (1000, 2048)
    modules = list(model.modules())
    assert not any(isinstance(m, timm.models.layers.InplaceAbn) for m in modules)
    slopes = {m.negative_slope for m in modules if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}  # the ModelZoo patch ignores upstream's act_param=1e-3
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


def test_anti_alias_is_zero_padded_blur(timm):
    """The patched downsample equals an independent stride-2 depthwise blur, zero padding 1."""
    model = timm.create_model("tresnet_m", pretrained=False).eval()
    blurs = [m for m in model.modules()
             if isinstance(m, timm.models.layers.AntiAliasDownsampleLayer)]
    assert len(blurs) == 3  # layer2.0.conv1, layer3.0.conv2, layer4.0.conv2
    x = torch.randn(2, 128, 56, 56)
    taps = torch.tensor([1.0, 2.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 16).expand(128, 1, 3, 3)
    expected = F.conv2d(x, kernel, stride=2, padding=1, groups=128)
    layer2 = model.body.layer2[0].conv1[1]
    torch.testing.assert_close(layer2(x), expected, rtol=0, atol=1e-6)


# -- checkpoint loading -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_state(timm):
    torch.manual_seed(3)
    return randomised(timm.create_model("tresnet_m", pretrained=False)).state_dict()


@pytest.mark.parametrize("layout", ["published", "plain", "module_plain", "inplace_abn"])
def test_checkpoint_layouts_load(reference_state, pth2onnx, source, tmp_path, layout):
    state = reference_state
    if layout == "published":  # timm train.py's model_best.pth.tar, from a DataParallel
        saved = {"epoch": 80, "arch": "tresnet_m", "args": argparse.Namespace(lr=0.1),
                 "state_dict": {f"module.{k}": v for k, v in state.items()}}
    elif layout == "plain":
        saved = dict(state)
    elif layout == "module_plain":
        saved = {f"module.{k}": v for k, v in state.items()}
    else:  # saved from the unpatched network: InplaceAbn has no num_batches_tracked
        saved = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "w.pth.tar"
    torch.save(saved, path)
    loaded = pth2onnx.build_model(path, source).state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        if layout == "inplace_abn" and key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(loaded[key], value), key


def test_missing_source_is_refused(pth2onnx, tmp_path, capsys):
    line = main_error(pth2onnx, capsys, "random", tmp_path / "x.onnx", "--source", tmp_path / "no")
    assert str(tmp_path / "no") in line and "no timm/ in it" in line


@pytest.mark.slow
def test_unpatched_source_is_refused(repo, pristine, tmp_path):
    """Run as a real command (exit 2, one line, no traceback); it imports timm from the
    pristine tree, so it needs its own process."""
    result = run(repo, "pth2onnx.py", "random", tmp_path / "x.onnx", "--source", pristine)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "TResNet.patch is not applied" in errors[0], result.stderr
    assert not (tmp_path / "x.onnx").exists()


# -- preprocessing --------------------------------------------------------------------------------

def test_preprocess_matches_timm_eval_transform(repo, shared_data, timm, tmp_path):
    """preprocess.py (torchvision's Resize(256), CenterCrop(224), ToTensor(), as model.yaml
    says: test_model_folders.py) equals timm 0.4.5's own eval transform, as the ModelZoo's
    create_loader builds it: uint8 CHW for the prefetcher, which then does float() - 0 * 255
    and / (1 * 255)."""
    from PIL import Image
    from timm.data.transforms_factory import transforms_imagenet_eval

    src = shared_data / "imagenet-val-10" / "val"
    result = run(repo, "preprocess.py", src, tmp_path / "prep")
    assert result.returncode == 0, result.stderr
    timm_eval = transforms_imagenet_eval(img_size=224, crop_pct=0.875, interpolation="bilinear",
                                         use_prefetcher=True, mean=(0, 0, 0), std=(1, 1, 1))
    images = sorted(src.glob("*.JPEG"))
    assert len(images) == 10
    for image in images:
        written = tmp_path / "prep" / (image.name.split(".")[0] + ".bin")
        got = np.fromfile(written, dtype=np.float32).reshape(3, 224, 224)
        with Image.open(image) as pil:
            prefetched = torch.from_numpy(np.asarray(timm_eval(pil.convert("RGB")))).float()
        prefetched = prefetched.sub_(0 * 255).div_(1 * 255).numpy()
        np.testing.assert_array_equal(got, prefetched, err_msg=image.name)


# -- export -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_matches_patched_network_on_real_images(repo, shared_data, timm, pth2onnx,
                                                      tmp_path):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = randomised(timm.create_model("tresnet_m", pretrained=False))
    path = tmp_path / "tresnet.onnx"
    pth2onnx.export(model, path)
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [11]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["class"]
    assert dims(proto.graph.input[0]) == ["-1", 3, 224, 224]
    assert dims(proto.graph.output[0]) == ["-1", 1000]
    ops = {node.op_type for node in proto.graph.node}
    assert "Pad" not in ops  # zero padding lives in the Conv; no reflect Pad
    assert "LeakyRelu" in ops

    prep = tmp_path / "prep"
    result = run(repo, "preprocess.py", shared_data / "imagenet-val-10" / "val", prep,
                 "--limit", 4)
    assert result.returncode == 0, result.stderr
    batch = np.stack([np.fromfile(f, dtype=np.float32).reshape(3, 224, 224)
                      for f in sorted(prep.glob("*.bin"))])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["class"], {"image": batch})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).numpy()
    assert got.shape == (4, 1000)
    assert np.abs(want).max() > 5  # a trained network's logit range, not near-zero outputs
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()
