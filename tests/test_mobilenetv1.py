"""MobileNetV1 model folder (models/mobilenetv1): preprocessing against torchvision pixel for
pixel, the network's checkpoint layout (model_facts §4), checkpoint loading and its errors, the
exported ONNX against the PyTorch module, and the ModelZoo accuracy JSON of the postprocess.

The scripts are run as a user runs them (subprocess, sys.executable) for their command-line
behaviour, and imported by path for their Python API.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_model_script

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "mobilenetv1"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# model_facts §2 (MobileNetV1 = ImageNet mean/std, 256/224), written out independently.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BIN_BYTES = 3 * 224 * 224 * 4  # 602,112
SUMMARY = re.compile(r"^preprocessed (\d+) images to .+ in [\d.]+ s \([\d.]+ images/s\)$")


# -- helpers ------------------------------------------------------------------------------

def load_script(name):
    return load_model_script("mobilenetv1", name)


def run(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(MODEL_DIR / f"{script}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc):
    """The single `error: ...` line of a failed run (exit status 2, nothing else on stderr)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def shared(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real ImageNet samples not found at {path}")
    return path


def reference_preprocess(path):
    """torchvision's Resize(256), CenterCrop(224), ToTensor, Normalize: the independent answer."""
    from torchvision import transforms as T
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    with Image.open(path) as image:
        return transform(image.convert("RGB")).numpy()


def read_bin(path):
    return np.fromfile(path, dtype=np.float32).reshape(3, 224, 224)


def assert_matches_reference(sources, dst):
    for source in sources:
        out = Path(dst) / (Path(source).name.split(".")[0] + ".bin")
        assert out.stat().st_size == BIN_BYTES, out
        diff = np.abs(read_bin(out) - reference_preprocess(source)).max()
        assert diff <= 1e-6, (source, diff)


def noise_image(width, height, mode="RGB", seed=0):
    """Smooth gradients plus noise, so resampling and crop offsets both show in the pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1),
                     (x + y) * 127 / max(width + height - 2, 1)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image if mode == "RGB" else image.convert(mode)


# Sizes: landscape and portrait, short side already 256 (no resize), a square, smaller than 224
# (upscaled), an extreme aspect ratio, and long sides whose crop offsets hit .5 after the resize
# (259 -> 17.5, 261 -> 18.5: Python's round-half-even, as torchvision).
GENERATED = [
    ("landscape.JPEG", 500, 375, "RGB"),
    ("portrait.jpg", 375, 500, "RGB"),
    ("short256.jpeg", 259, 256, "RGB"),
    ("short256b.JPG", 256, 261, "RGB"),
    ("square.png", 300, 300, "RGB"),
    ("small.PNG", 120, 90, "RGB"),
    ("tall.JPEG", 230, 700, "RGB"),
    ("gray.JPEG", 333, 250, "L"),
    ("palette.png", 280, 260, "P"),
    ("alpha.png", 250, 320, "RGBA"),
    ("cmyk.jpg", 320, 240, "CMYK"),
]


def write_generated(folder, specs=GENERATED):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, (name, width, height, mode) in enumerate(specs):
        path = folder / name
        options = {"quality": 92} if path.suffix.lower() in (".jpeg", ".jpg") else {}
        noise_image(width, height, mode, seed).save(path, **options)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return write_generated(tmp_path_factory.mktemp("generated") / "val")


# -- preprocess: values -------------------------------------------------------------------

def test_model_yaml_preprocess_parameters():
    config = load_script("preprocess").load_config()
    assert (config["resize"], config["crop"], config["crop_offset"]) == (256, 224, "round")
    assert tuple(config["mean"]) == MEAN and tuple(config["std"]) == STD
    assert config["interpolation"] == "bilinear"


def test_preprocess_generated_images_match_torchvision(generated, tmp_path):
    proc = run("preprocess", generated[0].parent, tmp_path / "prep", "--workers", 2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 1 and SUMMARY.match(summary[0]), proc.stdout
    assert int(SUMMARY.match(summary[0]).group(1)) == len(generated)
    assert sorted(os.listdir(tmp_path / "prep")) == sorted(p.name.split(".")[0] + ".bin"
                                                            for p in generated)
    assert_matches_reference(generated, tmp_path / "prep")


def test_preprocess_imagenet_val_10_originals_match_torchvision(tmp_path):
    src = shared("imagenet-val-10", "val")
    sources = sorted(src.glob("*.JPEG"))
    assert len(sources) == 10
    sizes = {Image.open(p).size for p in sources}
    assert len(sizes) > 2  # various original sizes
    proc = run("preprocess", src, tmp_path / "prep")
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(tmp_path / "prep")) == 10
    assert_matches_reference(sources, tmp_path / "prep")


@pytest.mark.slow
def test_preprocess_imagenet_val_1300_first_50_match_torchvision(tmp_path):
    src = shared("imagenet-val-1300", "val")
    proc = run("preprocess", src, tmp_path / "prep", "--limit", 50, "--workers", 2)
    assert proc.returncode == 0, proc.stderr
    first = sorted(src.glob("*.JPEG"))[:50]
    assert sorted(os.listdir(tmp_path / "prep")) == sorted(p.stem + ".bin" for p in first)
    assert_matches_reference(first, tmp_path / "prep")


def test_floor_crop_offsets_are_supported(generated):
    """crop_offset: floor gives int((dim - crop) / 2): 17 where round gives 18 on a 259 side."""
    from torchvision.transforms import functional as F
    preprocess = load_script("preprocess")
    config = dict(preprocess.load_config(), crop_offset="floor")
    source = next(p for p in generated if p.name == "short256.jpeg")  # 259x256: no resize
    with Image.open(source) as image:
        image = image.convert("RGB")
        assert image.size == (259, 256)
        floor = F.normalize(F.to_tensor(F.crop(image, 16, 17, 224, 224)), MEAN, STD).numpy()
        rounded = F.normalize(F.to_tensor(F.crop(image, 16, 18, 224, 224)), MEAN, STD).numpy()
    got = preprocess.Preprocessor(config)(str(source))
    assert np.abs(got - floor).max() <= 1e-6
    assert np.abs(got - rounded).max() > 0.01  # the two rules really differ here
    assert np.abs(preprocess.Preprocessor(preprocess.load_config())(str(source))
                  - rounded).max() <= 1e-6


# -- preprocess: files and options --------------------------------------------------------

def test_class_subfolders_and_extensions(tmp_path):
    src = tmp_path / "val"
    write_generated(src / "n01440764", [("a.JPEG", 300, 260, "RGB"), ("b.jpg", 260, 300, "RGB")])
    write_generated(src / "n01443537", [("c.JpEg", 280, 280, "RGB"), ("d.png", 256, 300, "RGB")])
    write_generated(src, [("e.JPG", 320, 240, "RGB")])  # flat files next to class folders
    write_generated(src / "n01443537" / "deeper", [("too_deep.JPEG", 300, 300, "RGB")])
    (src / "n01440764" / "notes.txt").write_text("not an image")
    (src / "n01440764" / "f.gif").write_bytes(b"GIF89a")
    proc = run("preprocess", src, tmp_path / "prep", "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "prep")) == ["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"]
    images = [src / "n01440764" / "a.JPEG", src / "n01440764" / "b.jpg",
              src / "n01443537" / "c.JpEg", src / "n01443537" / "d.png", src / "e.JPG"]
    assert_matches_reference(images, tmp_path / "prep")


def test_limit_takes_the_first_n_in_sorted_path_order(tmp_path):
    src = tmp_path / "val"
    write_generated(src / "b_class", [("z1.JPEG", 300, 260, "RGB"), ("a2.JPEG", 300, 260, "RGB")])
    write_generated(src / "a_class", [("y3.JPEG", 300, 260, "RGB"), ("x4.JPEG", 300, 260, "RGB")])
    write_generated(src, [("c5.JPEG", 300, 260, "RGB")])
    # sorted paths: a_class/x4, a_class/y3, b_class/a2, b_class/z1, c5
    proc = run("preprocess", src, tmp_path / "prep", "--limit", 3)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "prep")) == ["a2.bin", "x4.bin", "y3.bin"]
    assert SUMMARY.match(proc.stdout.strip()).group(1) == "3"


def test_two_workers_write_the_same_bytes_as_one(generated, tmp_path):
    for workers in (1, 2):
        proc = run("preprocess", generated[0].parent, tmp_path / f"w{workers}",
                   "--workers", workers)
        assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(tmp_path / "w1"))
    assert names == sorted(os.listdir(tmp_path / "w2")) and len(names) == len(generated)
    for name in names:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_bad_option_values_are_refused(tmp_path):
    for option in ("--limit", "--workers"):
        proc = run("preprocess", tmp_path, tmp_path / "prep", option, 0)
        assert proc.returncode == 2 and "positive integer" in proc.stderr


# -- preprocess: errors -------------------------------------------------------------------

@pytest.fixture
def dst_with_earlier_output(tmp_path):
    dst = tmp_path / "prep"
    dst.mkdir()
    earlier = dst / "earlier.bin"
    earlier.write_bytes(b"\x01" * BIN_BYTES)
    return dst, earlier


def test_duplicate_stems_fail_naming_both(tmp_path, dst_with_earlier_output):
    dst, earlier = dst_with_earlier_output
    src = tmp_path / "val"
    write_generated(src / "n1", [("ILSVRC2012_val_00000001.JPEG", 300, 260, "RGB")])
    write_generated(src / "n2", [("ILSVRC2012_val_00000001.jpg", 300, 260, "RGB"),
                                 ("other.JPEG", 300, 260, "RGB")])
    line = one_error_line(run("preprocess", src, dst))
    assert str(src / "n1" / "ILSVRC2012_val_00000001.JPEG") in line
    assert str(src / "n2" / "ILSVRC2012_val_00000001.jpg") in line
    assert os.listdir(dst) == ["earlier.bin"] and earlier.read_bytes() == b"\x01" * BIN_BYTES


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_image_stops_and_keeps_earlier_outputs(tmp_path, dst_with_earlier_output,
                                                           workers):
    dst, earlier = dst_with_earlier_output
    src = tmp_path / "val"
    good = write_generated(src, [(f"img{i}.JPEG", 300, 260, "RGB") for i in range(6)])
    bad = src / "img2_broken.JPEG"  # sorts after img2, before img3
    bad.write_bytes(b"this is not a JPEG at all" * 40)
    line = one_error_line(run("preprocess", src, dst, "--workers", workers))
    assert line.startswith(f"error: {bad}: cannot decode image (")
    assert line.endswith("); remove it from the dataset and its line from the label file")
    assert earlier.read_bytes() == b"\x01" * BIN_BYTES
    names = set(os.listdir(dst))
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    written = [p for p in good if p.stem + ".bin" in names]
    if workers == 1:  # stopped right there: the images before it are done, none after
        assert [p.name for p in written] == ["img0.JPEG", "img1.JPEG", "img2.JPEG"]
    assert_matches_reference(written, dst)  # every output that exists is complete and right


def test_truncated_jpeg_is_undecodable(tmp_path):
    src = tmp_path / "val"
    [path] = write_generated(src, [("cut.JPEG", 400, 300, "RGB")])
    path.write_bytes(path.read_bytes()[:2000])
    line = one_error_line(run("preprocess", src, tmp_path / "prep"))
    assert f"{path}: cannot decode image" in line


def test_missing_src_and_no_images(tmp_path, dst_with_earlier_output):
    dst, earlier = dst_with_earlier_output
    missing = tmp_path / "no_such_folder"
    line = one_error_line(run("preprocess", missing, dst))
    assert str(missing) in line and "no such folder" in line
    empty = tmp_path / "empty"
    (empty / "n01").mkdir(parents=True)
    (empty / "labels.txt").write_text("x 1\n")
    line = one_error_line(run("preprocess", empty, dst))
    assert str(empty) in line and "no .jpeg/.jpg/.png/.bmp images" in line
    assert os.listdir(dst) == ["earlier.bin"] and earlier.read_bytes() == b"\x01" * BIN_BYTES


# -- the network and its checkpoints ------------------------------------------------------

def expected_layout():
    """Every state_dict key and shape of upstream `Net` (model_facts §4), in module order."""
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


def test_random_weights_are_seeded_and_say_so(pth2onnx, capsys):
    first = pth2onnx.build_model("random").state_dict()
    second = pth2onnx.build_model("random").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert "accuracy will not be meaningful" in capsys.readouterr().err


def randomised(pth2onnx, seed=1):
    """A module with random conv weights AND random BN statistics/affine, so outputs vary."""
    model = load_script("network").MobileNetV1()
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
    """The three accepted layouts, plus a pre-0.4.1 checkpoint without num_batches_tracked."""
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


@pytest.mark.slow
def test_wrong_keys_name_the_file_and_first_missing_and_unexpected(reference_state, tmp_path):
    state = dict(reference_state)
    state["classifier.weight"] = state.pop("fc.weight")
    state["classifier.bias"] = state.pop("fc.bias")
    path = tmp_path / "wrong_keys.pth"
    torch.save(state, path)
    line = one_error_line(run("pth2onnx", path, tmp_path / "m.onnx"))
    assert str(path) in line
    assert "2 missing (first: fc.weight)" in line and "2 unexpected (first: classifier.weight)" in line
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_wrong_shapes_name_the_key_and_both_shapes(pth2onnx, reference_state, tmp_path):
    state = dict(reference_state)
    state["model.1.3.weight"] = torch.zeros(64, 16, 1, 1)
    path = tmp_path / "wrong_shape.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    line = one_error_line(run("pth2onnx", path, tmp_path / "m.onnx"))
    assert str(path) in line and "model.1.3.weight" in line
    assert "(64, 16, 1, 1)" in line and "(64, 32, 1, 1)" in line
    with pytest.raises(pth2onnx.ExportError, match="model.1.3.weight"):
        pth2onnx.build_model(path)


@pytest.mark.slow
def test_unreadable_and_missing_weights_fail_with_one_line(tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("not a checkpoint\n")
    line = one_error_line(run("pth2onnx", text, tmp_path / "m.onnx"))
    assert str(text) in line and "cannot read as a PyTorch checkpoint" in line
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    line = one_error_line(run("pth2onnx", tensor, tmp_path / "m.onnx"))
    assert str(tensor) in line and "not a state_dict" in line
    missing = tmp_path / "missing.tar"
    line = one_error_line(run("pth2onnx", missing, tmp_path / "m.onnx"))
    assert str(missing) in line and "no such file" in line
    assert not list(tmp_path.glob("*.onnx"))


def test_pickled_objects_are_refused_unless_the_file_is_the_published_one(
        pth2onnx, reference_state, tmp_path, capsys):
    import argparse
    path = tmp_path / "with_objects.tar"
    torch.save({"state_dict": dict(reference_state), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(pth2onnx.ExportError, match="weights_only"):
        pth2onnx.build_model(path)
    trusted = dict(pth2onnx.load_config(), published_md5=hashlib.md5(path.read_bytes()).hexdigest())
    loaded = pth2onnx.build_model(path, trusted).state_dict()
    assert torch.equal(loaded["fc.weight"], reference_state["fc.weight"])
    assert "weights_only=False" in capsys.readouterr().err


# -- the exported ONNX --------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(pth2onnx, tmp_path_factory):
    model = randomised(pth2onnx)
    path = pth2onnx.export(model, tmp_path_factory.mktemp("onnx") / "mobilenetv1.onnx")
    return model, Path(path)


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    """Preprocessed real images (imagenet-val-10), else generated ones, as an (N,3,224,224) batch."""
    dst = tmp_path_factory.mktemp("prep")
    src = SHARED_DATA / "imagenet-val-10" / "val"
    if not src.is_dir():
        src = write_generated(tmp_path_factory.mktemp("gen") / "val")[0].parent
    proc = run("preprocess", src, dst)
    assert proc.returncode == 0, proc.stderr
    return np.stack([read_bin(p) for p in sorted(dst.glob("*.bin"))])


@pytest.mark.slow
def test_onnx_signature_opset_and_checker(exported):
    import onnx
    _, path = exported
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [11]
    onnx.checker.check_model(model, full_check=True)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["class"]
    assert dims(model.graph.input[0]) == ["-1", 3, 224, 224]
    assert dims(model.graph.output[0]) == ["-1", 1000]
    assert not list(path.parent.glob(".*"))  # no temporary file left


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


@pytest.mark.slow
def test_cli_exports_random_weights_atomically(tmp_path):
    out = tmp_path / "sub" / "mobilenetv1.onnx"
    proc = run("pth2onnx", "random", out)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy will not be meaningful" in proc.stderr
    assert out.is_file() and os.listdir(out.parent) == ["mobilenetv1.onnx"]


@pytest.mark.slow
def test_export_refuses_a_model_written_at_another_opset(pth2onnx, monkeypatch, tmp_path):
    """What the default dynamo exporter does silently (opset 18) must not pass."""
    real_export = torch.onnx.export

    def wrong_opset(*args, **kwargs):
        kwargs["opset_version"] = 13
        return real_export(*args, **kwargs)

    monkeypatch.setattr(pth2onnx.torch.onnx, "export", wrong_opset)
    with pytest.raises(pth2onnx.ExportError, match="opset 13"):
        pth2onnx.export(pth2onnx.build_model("random"), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# -- postprocess --------------------------------------------------------------------------

def write_results(folder, scores_by_name):
    folder.mkdir(parents=True, exist_ok=True)
    for name, scores in scores_by_name.items():
        (folder / name).write_text(" ".join(f"{s:.6f}" for s in scores) + " \n0 0 0\n")
    return folder


def write_labels(path, labels):
    path.write_text("".join(f"{name}.JPEG {label}\n" for name, label in labels.items()))
    return path


def test_postprocess_small_case_json_exactly(tmp_path):
    # 6 classes; ground truth ranked 1st, 2nd and 5th (no ties): Top1 1/3, Top2..4 2/3, Top5 3/3.
    results = write_results(tmp_path / "results", {
        "img_a_0.txt": [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],   # truth 0: rank 0
        "img_b_0.txt": [0.1, 0.8, 0.7, 0.2, 0.3, 0.4],   # truth 2: rank 1
        "img_c_0.txt": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # truth 4: rank 4
    })
    (results / "sumary.json").write_text("{}")
    (results / "results_summary.json").write_text("{}")
    labels = write_labels(tmp_path / "val_label.txt", {"img_a": 0, "img_b": 2, "img_c": 4})
    proc = run("postprocess", results, labels, tmp_path / "out", "result.json")
    assert proc.returncode == 0, proc.stderr
    expected = ('{"title": "Overall statistical evaluation", "value": ['
                '{"key": "Number of images", "value": "3"}, '
                '{"key": "Number of classes", "value": "6"}, '
                '{"key": "Top1 accuracy", "value": "33.33%"}, '
                '{"key": "Top2 accuracy", "value": "66.67%"}, '
                '{"key": "Top3 accuracy", "value": "66.67%"}, '
                '{"key": "Top4 accuracy", "value": "66.67%"}, '
                '{"key": "Top5 accuracy", "value": "100.0%"}]}')
    assert (tmp_path / "out" / "result.json").read_text() == expected
    assert os.listdir(tmp_path / "out") == ["result.json"]
    table = proc.stdout.splitlines()
    assert any(re.fullmatch(r"Top1 accuracy\s+33\.33%", line) for line in table)
    assert any(re.fullmatch(r"Top5 accuracy\s+100\.0%", line) for line in table)


def test_postprocess_1001_classes_shift_the_label_by_one(tmp_path):
    scores = np.zeros(1001)
    scores[8] = 5.0  # index 8 of 1001 = class 7 of the label file
    results = write_results(tmp_path / "results", {"x_0.txt": scores})
    labels = write_labels(tmp_path / "labels.txt", {"x": 7})
    proc = run("postprocess", results, labels, tmp_path, "acc.json")
    assert proc.returncode == 0, proc.stderr
    values = {e["key"]: e["value"] for e in json.loads((tmp_path / "acc.json").read_text())["value"]}
    assert values["Number of classes"] == "1001" and values["Top1 accuracy"] == "100.0%"
    # the same scores with 1000 classes: label 7 is not the top score
    results = write_results(tmp_path / "results1000", {"x_0.txt": scores[:1000]})
    run("postprocess", results, labels, tmp_path, "acc1000.json")
    values = {e["key"]: e["value"] for e in json.loads((tmp_path / "acc1000.json").read_text())["value"]}
    assert values["Number of classes"] == "1000" and values["Top1 accuracy"] == "0.0%"


def test_postprocess_fewer_than_five_classes_and_last_file_classes(tmp_path):
    results = write_results(tmp_path / "results", {"a_0.txt": [0.1, 0.9, 0.5, 0.3],
                                                    "b_0.txt": [0.3, 0.2, 0.1]})
    labels = write_labels(tmp_path / "labels.txt", {"a": 2, "b": 1})
    assert run("postprocess", results, labels, tmp_path, "r.json").returncode == 0
    table = json.loads((tmp_path / "r.json").read_text())
    assert [e["key"] for e in table["value"]] == [
        "Number of images", "Number of classes", "Top1 accuracy", "Top2 accuracy", "Top3 accuracy"]
    assert [e["value"] for e in table["value"]] == ["2", "3", "0.0%", "100.0%", "100.0%"]


def modelzoo_reference(result_dir, label_file):
    """imagenet_acc_eval.py's algorithm, written out (sorted order and a stable sort added)."""
    gt = {}
    for line in open(label_file):
        fields = line.strip().split(" ")
        gt[fields[0].split(".")[0]] = fields[1]
    count, hits, n_labels, res = 0, np.zeros(5), 0, 0
    for name in sorted(os.listdir(result_dir)):
        if name.endswith("summary.json") or name == "sumary.json":
            continue
        count += 1
        stem = name.split(".")[0]
        key = stem[:stem.rfind("_")]
        with open(os.path.join(result_dir, name)) as handle:
            fields = handle.readline().strip().split(" ")
        prediction = np.zeros(len(fields), dtype=np.float32)
        for i, text in enumerate(fields):
            prediction[i] = np.float32(text)
        n_labels = len(prediction)
        order = np.argsort(-prediction, kind="stable")
        truth = int(gt[key]) + 1 if n_labels == 1001 else int(gt[key])
        res = min(len(order), 5)
        for i in range(res):
            if str(truth) == str(order[i]):
                hits[i] += 1
                break
    table = {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(count)},
        {"key": "Number of classes", "value": str(n_labels)}]}
    accuracy = np.cumsum(hits) / count
    for i in range(res):
        table["value"].append({"key": "Top" + str(i + 1) + " accuracy",
                               "value": str(round(accuracy[i] * 100, 2)) + "%"})
    return json.dumps(table)


def test_postprocess_matches_the_modelzoo_algorithm_on_random_results(tmp_path):
    rng = np.random.default_rng(7)
    scores, labels = {}, {}
    for i in range(300):
        name = f"ILSVRC2012_val_{i + 1:08d}"
        values = np.round(rng.normal(0, 1, 1000), 1)  # one decimal: many ties
        labels[name] = int(rng.integers(0, 1000))
        values[labels[name]] += rng.choice([0, 1.5, 3])
        scores[f"{name}_0.txt"] = values
    results = write_results(tmp_path / "results", scores)
    label_file = write_labels(tmp_path / "labels.txt", labels)
    assert run("postprocess", results, label_file, tmp_path, "r.json").returncode == 0
    assert (tmp_path / "r.json").read_text() == modelzoo_reference(results, label_file)


def test_rank_is_that_of_a_stable_descending_sort():
    postprocess = load_script("postprocess")
    rng = np.random.default_rng(3)
    for _ in range(300):
        scores = rng.integers(0, 6, 12).astype(np.float32)
        scores[rng.random(12) < 0.15] = np.nan
        scores[rng.random(12) < 0.1] = -0.0
        order = list(np.argsort(-scores, kind="stable"))
        for index in range(12):
            assert postprocess.rank_of(scores, index) == order.index(index)


def test_postprocess_stray_file_is_an_error_naming_it(tmp_path):
    results = write_results(tmp_path / "results", {"img_a_0.txt": [0.1, 0.9],
                                                    "unrelated_0.txt": [0.5, 0.5]})
    labels = write_labels(tmp_path / "labels.txt", {"img_a": 1})
    line = one_error_line(run("postprocess", results, labels, tmp_path / "out", "r.json"))
    assert str(results / "unrelated_0.txt") in line and "no label for unrelated" in line
    assert not (tmp_path / "out" / "r.json").exists()


def test_postprocess_malformed_label_line_names_file_and_line(tmp_path):
    results = write_results(tmp_path / "results", {"img_a_0.txt": [0.1, 0.9]})
    labels = tmp_path / "labels.txt"
    for bad in ("img_b.JPEG\n", "img_b.JPEG seven\n", "img_b.JPEG 1 2\n", "img_b.JPEG -1\n"):
        labels.write_text("img_a.JPEG 1\n" + bad)
        line = one_error_line(run("postprocess", results, labels, tmp_path, "r.json"))
        assert f"{labels}:2:" in line, bad


def test_postprocess_empty_or_missing_result_dir_and_bad_result_file(tmp_path):
    labels = write_labels(tmp_path / "labels.txt", {"img_a": 1})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sumary.json").write_text("{}")
    line = one_error_line(run("postprocess", empty, labels, tmp_path, "r.json"))
    assert str(empty) in line and "no result files" in line
    missing = tmp_path / "missing"
    assert str(missing) in one_error_line(run("postprocess", missing, labels, tmp_path, "r.json"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "img_a_0.txt").write_text("0.1 oops 0.3\n")
    line = one_error_line(run("postprocess", bad, labels, tmp_path, "r.json"))
    assert str(bad / "img_a_0.txt") in line
    line = one_error_line(run("postprocess", bad, tmp_path / "nolabels.txt", tmp_path, "r.json"))
    assert "nolabels.txt" in line
    assert not (tmp_path / "r.json").exists()


# -- requirements -------------------------------------------------------------------------

def test_requirements_pin_the_project_versions():
    root = {line.split("==")[0].lower(): line.strip() for line in
            (MODEL_DIR.parents[1] / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    pins = [line.strip() for line in (MODEL_DIR / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all("==" in pin for pin in pins)
    for pin in pins:
        assert root[pin.split("==")[0].lower()] == pin
    assert {p.split("==")[0].lower() for p in pins} >= {"torch", "onnx", "numpy", "pillow",
                                                       "pyyaml", "tqdm"}


def test_scripts_stand_alone():
    """The folder's scripts import no project package (it must work copied elsewhere)."""
    for script in ("preprocess.py", "pth2onnx.py", "postprocess.py", "network.py"):
        text = (MODEL_DIR / script).read_text()
        assert not re.search(r"^\s*(from|import)\s+npuzoo", text, re.M), script
