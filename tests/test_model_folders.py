"""Every model folder, one parametrized suite: models/<name>/ found by its model.yaml, nothing
listed here. What the folders must do alike is checked alike; what docs/model_facts.md says of
one model is its entry in FACTS (below), checked by the same parametrized tests; a few tests of
one folder's own (its upstream tree and patch) close the file.

- A folder stands alone: its scripts import only the standard library, the packages its
  requirements.txt pins (the project's versions), its upstream package (from the --source
  tree) and its own files, never npuzoo; no file of models/ is a copy of another (for Python:
  the same program); a folder is at most 400 lines of Python. Copied alone and run under
  `python3 -I`, it preprocesses, exports and computes accuracy (the slow tests run the copy
  end to end on the CPU).
- Preprocessing, its numbers stated in each script, equals an independent computation of
  model.yaml's parameters (torchvision on the PIL image), float32 and uint8, on generated images
  of every size class and mode and on the real ImageNet samples; the folder's own main and
  npuzoo.prep (two workers) write the same bytes, as do folders whose numbers agree; both refuse
  an undecodable image and two images with one stem with one line.
- Postprocessing: every folder writes the same accuracy JSON, byte for byte, equal to the
  ModelZoo's imagenet_acc_eval.py algorithm written out here and to hand-computed cases. It prints
  the guide's figures, model.yaml's.
- Export: the declared checkpoint layout loads the same tensors, other keys and shapes are one
  line; (slow) the exported ONNX has model.yaml's interface and ONNX Runtime matches the
  PyTorch network on the real images.
- Each model's facts: model.yaml's values, the network's size and keys, the published
  checkpoint's forms (and the refused ones), an unpatched or missing upstream tree refused;
  (slow) with a checkpoint calibrated on the real images, the real pth2onnx.py from every
  source tree that can be made offline matches upstream's own network in eager mode.
"""

import ast
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from npuzoo import config, source
from npuzoo.store import code_fingerprint

from helpers import REPO, SHARED_DATA, load_model_script, one_error_line, scratch_repository

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import pretrainedmodels_trees as trees

MODELS = config.model_names()
SCRIPTS = ("preprocess", "pth2onnx", "postprocess")
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml"}  # import name -> distribution name
MAX_FOLDER_LINES = 400
PARITY_ATOL = 1e-4  # ONNX Runtime against PyTorch eager, on real images


def folder(model):
    return REPO / "models" / model


def cfg(model):
    """model.yaml as the folder's scripts read it (plain YAML)."""
    return yaml.safe_load((folder(model) / "model.yaml").read_text())


def upstream_package(model):
    """The package pth2onnx.py imports from the --source tree (the pypi source's name), or None."""
    for entry in (cfg(model).get("upstream") or {}).get("sources") or []:
        if entry["kind"] == "pypi":
            return entry["requirement"].split("==")[0]
    return None


def run(script, *args, isolated=False, timeout=600):
    """A folder script run as a user runs it (`python3 -I` in its folder when `isolated`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} if isolated else None
    return subprocess.run([sys.executable, *(["-I"] if isolated else []), str(script),
                           *map(str, args)],
                          cwd=Path(script).parent if isolated else None, env=env,
                          capture_output=True, text=True, timeout=timeout)


def prep(model, *args):
    return subprocess.run([sys.executable, "-m", "npuzoo.prep", str(folder(model)),
                           *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


# -- standing alone ---------------------------------------------------------------------------

def imported_modules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the folder is no package)"
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value.split(".")[0])
    return names


def pins(requirements):
    return {line.split("==")[0].strip().lower(): line.strip()
            for line in requirements.read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")}


@pytest.mark.parametrize("model", MODELS)
def test_the_folder_imports_only_its_pins_upstream_and_own_files(model):
    pinned = pins(folder(model) / "requirements.txt")
    project = pins(REPO / "requirements.txt")
    assert pinned and all(project[name] == pin for name, pin in pinned.items()), pinned
    files = sorted(folder(model).glob("*.py"))
    own = {p.stem for p in files}
    assert own >= set(SCRIPTS)
    for path in files:
        for name in imported_modules(path):
            assert name != "npuzoo", f"{path} imports npuzoo: the folder must stand alone"
            if name in sys.stdlib_module_names or name in own or name == upstream_package(model):
                continue
            assert DISTRIBUTIONS.get(name, name).lower() in pinned, \
                f"{path} imports {name}, which {model}/requirements.txt does not pin"


@pytest.mark.parametrize("model", MODELS)
def test_the_folder_is_small_and_its_scripts_say_their_command_line(model):
    lines = sum(len(p.read_text().splitlines()) for p in folder(model).glob("*.py"))
    assert lines <= MAX_FOLDER_LINES, f"models/{model}: {lines} lines of Python"
    usage = {"preprocess": "preprocess.py SRC DST", "pth2onnx": "pth2onnx.py WEIGHTS ONNX",
             "postprocess": "postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME"}
    for name in SCRIPTS:
        assert usage[name] in (folder(model) / f"{name}.py").read_text().split("\n", 1)[0]


def test_no_file_in_models_is_a_copy_of_another():
    """Byte for byte, and for Python the same program: the syntax tree without docstrings
    (comments never reach it), as the cache keys hash it."""
    seen = {}
    for path in sorted(p for p in (REPO / "models").rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest = (code_fingerprint([str(path)]) if path.suffix == ".py"
                  else hashlib.sha256(path.read_bytes()).hexdigest())
        assert digest not in seen, f"{path} is a copy of {seen[digest]}"
        seen[digest] = path


@pytest.fixture(scope="session")
def dropped(tmp_path_factory):
    """{model: a copy of models/<model> alone, in a directory of its own}."""
    base = tmp_path_factory.mktemp("dropped")
    for model in MODELS:
        shutil.copytree(folder(model), base / model / model,
                        ignore=shutil.ignore_patterns("__pycache__", "README.md", "*.png"))
    return {model: base / model / model for model in MODELS}


# -- preprocess -------------------------------------------------------------------------------

def noise_image(width, height, mode="RGB", seed=0):
    """Smooth gradients plus noise, so resampling and crop offsets both show in the pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1),
                     (x + y) * 127 / max(width + height - 2, 1)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "I;16":  # 16-bit grey over the full range (convert('RGB') alone clips it white)
        fine = rng.integers(0, 256, (height, width), dtype=np.uint32)
        return Image.fromarray((pixels[..., 0].astype(np.uint32) * 256 + fine).astype(np.uint16))
    if mode == "P+transparency":
        image = image.convert("P")
        image.info["transparency"] = bytes(range(0, 256, 8))  # tRNS: alpha of 32 entries
        return image
    return image if mode == "RGB" else image.convert(mode)


# Landscape and portrait; a short side already 256 or 342 (no resize); a square; smaller than
# the crop (upscaled); an extreme aspect ratio; long sides whose rounded crop offsets hit .5;
# grey, palette, alpha and CMYK modes; 16-bit grey, grey with alpha, bilevel and a palette with
# transparency; every extension in any case; a class subfolder.
GENERATED = [
    ("landscape.JPEG", 500, 375, "RGB"), ("portrait.jpg", 375, 500, "RGB"),
    ("short256.jpeg", 259, 256, "RGB"), ("short256b.JPG", 256, 261, "RGB"),
    ("short342.png", 342, 401, "RGB"), ("square.png", 300, 300, "RGB"),
    ("small.PNG", 120, 90, "RGB"), ("tall.JPEG", 230, 700, "RGB"),
    ("gray.JPEG", 333, 250, "L"), ("palette.png", 280, 260, "P"),
    ("alpha.png", 250, 320, "RGBA"), ("cmyk.jpg", 320, 240, "CMYK"),
    ("bitmap.bmp", 310, 270, "RGB"), ("n01/bitmap2.BMP", 270, 310, "RGB"),
    ("grey16.png", 300, 270, "I;16"), ("grey_alpha.png", 270, 300, "LA"),
    ("bilevel.png", 290, 260, "1"), ("transparent.png", 260, 290, "P+transparency"),
]


def write_generated(where, specs=GENERATED):
    paths = []
    for seed, (name, width, height, mode) in enumerate(specs):
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"quality": 92} if path.suffix.lower() in (".jpeg", ".jpg") else {}
        noise_image(width, height, mode, seed).save(path, **options)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    """One folder: the generated images, and the 10 real ones of imagenet-val-10 when present."""
    src = tmp_path_factory.mktemp("samples") / "val"
    paths = write_generated(src)
    real = SHARED_DATA / "imagenet-val-10" / "val"
    for path in sorted(real.glob("*.JPEG")) if real.is_dir() else []:
        shutil.copy(path, src / path.name)
        paths.append(src / path.name)
    return src, paths


def reference(path, model, uint8=False):
    """model.yaml's preprocessing computed independently: torchvision on the PIL image."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F
    pre = cfg(model)["preprocess"]
    assert pre["resize_rule"] == "shorter_side"
    with Image.open(path) as image:
        if image.mode.startswith("I;16"):  # 16 bits scaled to 8, not clipped
            image = Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8), "L")
        image = image.convert("RGB")
    image = F.resize(image, pre["resize"], interpolation=InterpolationMode(pre["interpolation"]))
    crop = pre["crop"]
    if pre["crop_offset"] == "round":
        image = F.center_crop(image, crop)  # int(round((dim - crop) / 2))
    else:
        width, height = image.size
        image = F.crop(image, int((height - crop) / 2), int((width - crop) / 2), crop, crop)
    if uint8:
        return np.asarray(image)  # HWC, what AIPP gets
    return F.normalize(F.to_tensor(image), pre["mean"], pre["std"]).numpy()


def read_bin(path, model, uint8=False):
    channels, height, width = cfg(model)["input"]["shape"]
    if uint8:
        return np.fromfile(path, dtype=np.uint8).reshape(height, width, channels)
    return np.fromfile(path, dtype=np.float32).reshape(channels, height, width)


@pytest.mark.parametrize("model", MODELS)
def test_preprocess_equals_the_independent_computation(model, sample_images, dropped, tmp_path):
    src, paths = sample_images
    alone = run(dropped[model] / "preprocess.py", src, tmp_path / "alone", isolated=True)
    assert alone.returncode == 0 and alone.stderr == "", alone.stderr
    assert prep(model, src, tmp_path / "pool", "--workers", "2").returncode == 0
    assert prep(model, src, tmp_path / "u8", "--workers", "2", "--uint8").returncode == 0
    stems = sorted(p.name.split(".")[0] for p in paths)
    for out in ("alone", "pool", "u8"):
        assert sorted(os.listdir(tmp_path / out)) == [f"{s}.bin" for s in stems]  # no temporary
    for path in paths:
        stem = path.name.split(".")[0]
        written = (tmp_path / "alone" / f"{stem}.bin").read_bytes()
        assert written == (tmp_path / "pool" / f"{stem}.bin").read_bytes(), path
        np.testing.assert_allclose(read_bin(tmp_path / "alone" / f"{stem}.bin", model),
                                   reference(path, model), rtol=0, atol=1e-6, err_msg=str(path))
        assert np.array_equal(read_bin(tmp_path / "u8" / f"{stem}.bin", model, uint8=True),
                              reference(path, model, uint8=True)), path


def test_folders_with_the_same_preprocessing_numbers_write_the_same_bytes(sample_images):
    """The transform is repeated in each folder on purpose: where model.yaml's numbers agree
    (float32: MobileNetV1 and VoVNet39; uint8, before normalisation: the 256/224 models), the
    folders' arrays are the same bytes."""
    groups = {}
    for model in MODELS:
        for uint8 in (False, True):
            numbers = {k: v for k, v in cfg(model)["preprocess"].items() if not uint8
                       or k not in ("mean", "std")}
            groups.setdefault((uint8, json.dumps(numbers, sort_keys=True)), []).append(model)
    shared = [(uint8, models) for (uint8, _), models in groups.items() if len(models) > 1]
    assert any(not uint8 for uint8, _ in shared) and any(uint8 for uint8, _ in shared), groups
    for uint8, models in shared:
        scripts = [load_model_script(model, "preprocess") for model in models]
        for path in sample_images[1][:8]:
            arrays = [script.preprocess(str(path), uint8).tobytes() for script in scripts]
            assert arrays.count(arrays[0]) == len(arrays), (models, path, uint8)


@pytest.mark.parametrize("model", MODELS)
def test_the_image_extensions_are_the_dataset_ones(model):
    """An image the dataset step selects but preprocessing skipped would silently shrink the
    accuracy's denominator: the folder's copy of the tuple is npuzoo.dataset's."""
    from npuzoo import dataset
    assert load_model_script(model, "preprocess").IMAGE_EXTENSIONS == dataset.IMAGE_EXTENSIONS


@pytest.mark.parametrize("model", MODELS)
def test_an_undecodable_image_or_a_shared_stem_stops_with_one_line(model, dropped, tmp_path):
    src = tmp_path / "val"
    write_generated(src, GENERATED[:3])
    (src / "zz_broken.JPEG").write_bytes(b"not an image")
    for name, proc in (("alone",
                        run(dropped[model] / "preprocess.py", src, tmp_path / "alone",
                            isolated=True)),
                       ("pool", prep(model, src, tmp_path / "pool", "--workers", "2"))):
        line = one_error_line(proc)
        assert "zz_broken.JPEG: cannot decode image" in line and "label file" in line, line
        written = sorted(os.listdir(tmp_path / name))
        assert written == ["landscape.bin", "portrait.bin", "short256.bin"], \
            written  # complete ones
    (src / "zz_broken.JPEG").unlink()
    write_generated(src, [("n02/portrait.png", 40, 50, "RGB")])
    for proc, dst in ((run(dropped[model] / "preprocess.py", src, tmp_path / "d1", isolated=True),
                       "d1"),
                      (prep(model, src, tmp_path / "d2"), "d2")):
        line = one_error_line(proc)
        assert "portrait.jpg" in line and "n02/portrait.png" in line and "portrait.bin" in line
        assert not (tmp_path / dst).exists()  # nothing written
    assert "no such folder" in one_error_line(prep(model, tmp_path / "nothing", tmp_path / "x"))
    for option, value in (("--workers", "0"), ("--limit", "-3"), ("--workers", "two")):
        proc = prep(model, src, tmp_path / "bad", option, value)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"argument {option}: " in proc.stderr and value in proc.stderr, proc.stderr
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("model", MODELS)
def test_pixels_without_an_8_or_16_bit_scale_are_refused_in_one_line(model, tmp_path):
    """Floating-point or 32-bit pixels (a TIFF under a .png name; Pillow reads by content) have
    no agreed scale to 8 bits: one line, not a guess."""
    for name, pixels in (("float.png", np.full((40, 50), 0.5, np.float32)),
                         ("int32.png", np.full((40, 50), 70000, np.int32))):
        src = tmp_path / name / "val"
        src.mkdir(parents=True)
        Image.fromarray(pixels).save(src / name, format="TIFF")
        for proc in (run(folder(model) / "preprocess.py", src, tmp_path / name / "a"),
                     prep(model, src, tmp_path / name / "b")):
            line = one_error_line(proc)
            assert f"{src / name}: cannot decode image (mode " in line \
                and "not 8- or 16-bit" in line


@pytest.mark.parametrize("size", [(8000, 1), (20000, 1), (1, 30000)])
def test_a_tiny_png_that_would_resize_to_gigabytes_is_refused_in_one_line(size, tmp_path):
    """A ~100-byte PNG of 8000x1 pixels, resized to a 256-pixel short side, is 256x2048000
    pixels (5 GB of work); it is refused from its header, under a 2 GiB address-space limit."""
    import resource

    src = tmp_path / "val"
    src.mkdir()
    Image.new("L", size).save(src / "thin.png")
    assert (src / "thin.png").stat().st_size < 200

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    for model in MODELS:
        proc = subprocess.run([sys.executable, str(folder(model) / "preprocess.py"), str(src),
                               str(tmp_path / model)], capture_output=True, text=True, timeout=120,
                              preexec_fn=limited)
        line = one_error_line(proc)
        assert f"{src / 'thin.png'}: cannot decode image ({size[0]}x{size[1]} pixels, resized to " \
               in line and "over Pillow's limit" in line


@pytest.mark.parametrize("model", MODELS)
def test_pillows_pixel_limit_applies_to_every_image(model, tmp_path, monkeypatch):
    """Between one and two times Image.MAX_IMAGE_PIXELS Pillow only warns: refused here too."""
    path = tmp_path / "big.png"
    noise_image(120, 100).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)
    script = load_model_script(model, "preprocess")
    with pytest.raises(script.DECODE_ERRORS, match="limit of 10000 pixels"):
        script.preprocess(str(path))


def test_ctrl_c_while_prep_workers_run_is_one_line_and_keeps_complete_outputs(tmp_path):
    """npuzoo.prep: the workers ignore SIGINT and finish the file in hand; the parent says one
    line, exits 130 and leaves only complete outputs (no temporary folder)."""
    src = tmp_path / "val"
    src.mkdir()
    noise_image(500, 400).save(src / "img0000.JPEG")
    for i in range(1, 400):
        os.link(src / "img0000.JPEG", src / f"img{i:04d}.JPEG")
    dst = tmp_path / "prep"
    proc = subprocess.Popen([sys.executable, "-m", "npuzoo.prep", str(folder(MODELS[0])), str(src),
                             str(dst), "--workers", "2"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if dst.is_dir() and sum(n.endswith(".bin") for n in os.listdir(dst)) >= 5:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be interrupted")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and stderr == "error: interrupted\n", stderr
    names = os.listdir(dst)
    assert not [n for n in names if not n.endswith(".bin")], names  # no temporary left
    size = (dst / names[0]).stat().st_size
    assert all((dst / n).stat().st_size == size for n in names)  # every output complete


# -- postprocess ------------------------------------------------------------------------------

def write_results(where, scores_by_name):
    where.mkdir(parents=True, exist_ok=True)
    for name, scores in scores_by_name.items():
        (where / name).write_text(" ".join(f"{s:.6f}" for s in scores) + " \n0 0 0\n")
    return where


def write_labels(path, labels, prefix=""):
    path.write_text(prefix + "".join(f"{name}.JPEG {label}\n" for name, label in labels.items()),
                    encoding="utf-8")
    return path


def modelzoo_reference(result_dir, label_file):
    """imagenet_acc_eval.py's algorithm, written out (sorted order and a stable sort added)."""
    gt = {}
    for line in Path(label_file).read_text(encoding="utf-8-sig").splitlines():
        fields = line.strip().split(" ")
        gt[fields[0].split(".")[0]] = fields[1]
    count, hits, n_labels, res = 0, np.zeros(5), 0, 0
    for name in sorted(n for n in os.listdir(result_dir) if not n.endswith("summary.json")):
        count += 1
        stem = name.split(".")[0]
        key = stem[:stem.rfind("_")]
        with open(os.path.join(result_dir, name)) as handle:
            fields = handle.readline().strip().split(" ")
        prediction = np.array([np.float32(text) for text in fields], dtype=np.float32)
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


GOLDEN = ('{"title": "Overall statistical evaluation", "value": ['
          '{"key": "Number of images", "value": "3"}, '
          '{"key": "Number of classes", "value": "6"}, '
          '{"key": "Top1 accuracy", "value": "33.33%"}, '
          '{"key": "Top2 accuracy", "value": "66.67%"}, '
          '{"key": "Top3 accuracy", "value": "66.67%"}, '
          '{"key": "Top4 accuracy", "value": "66.67%"}, '
          '{"key": "Top5 accuracy", "value": "100.0%"}]}')


@pytest.fixture(scope="module")
def result_sets(tmp_path_factory):
    """{name: (result dir, label file)}: hand-computed, 1000 and 1001 random classes with ties."""
    base, sets = tmp_path_factory.mktemp("results"), {}
    # 6 classes; ground truth ranked 1st, 2nd and 5th: Top1 1/3, Top2..4 2/3, Top5 3/3.
    sets["golden"] = (write_results(base / "golden", {
        "img_a_0.txt": [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],
        "img_b_0.txt": [0.1, 0.8, 0.7, 0.2, 0.3, 0.4],
        "img_c_0.txt": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]}),
        write_labels(base / "golden.txt", {"img_a": 0, "img_b": 2, "img_c": 4}, prefix="\ufeff"))
    (sets["golden"][0] / "sumary.json").write_text("{}")  # ais_bench's summaries are skipped
    rng = np.random.default_rng(7)
    for classes in (1000, 1001):
        scores, labels = {}, {}
        for i in range(150):
            name = f"ILSVRC2012_val_{i + 1:08d}"
            values = np.round(rng.normal(0, 1, classes), 1)  # one decimal: many ties
            labels[name] = int(rng.integers(0, 1000))
            values[labels[name] + (classes == 1001)] += rng.choice([0, 1.5, 3])
            scores[f"{name}_0.txt"] = values
        sets[classes] = (write_results(base / str(classes), scores),
                         write_labels(base / f"{classes}.txt", labels))
    return sets


def test_every_folder_writes_the_same_accuracy_json_as_the_modelzoo(result_sets, tmp_path):
    for name, (results, labels) in result_sets.items():
        expected = GOLDEN if name == "golden" else modelzoo_reference(results, labels)
        for model in MODELS:
            proc = run(folder(model) / "postprocess.py", results, labels, tmp_path / model,
                       f"{name}.json")
            assert proc.returncode == 0 and proc.stderr == "", (model, proc.stderr)
            assert (tmp_path / model / f"{name}.json").read_text() == expected, (model, name)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # written under a temporary name, renamed


@pytest.mark.parametrize("model", MODELS)
def test_postprocess_prints_the_guide_s_accuracy_as_model_yaml_states_it(model, result_sets,
                                                                        tmp_path):
    published = {key.capitalize(): value for key, value
                 in cfg(model)["reference"]["accuracy"].items() if key in ("top1", "top5")}
    assert published == load_model_script(model, "postprocess").GUIDE_ACCURACY
    proc = run(folder(model) / "postprocess.py", *result_sets["golden"], tmp_path, "g.json")
    for key, value in published.items():
        assert re.search(rf"^{key} accuracy +\S+%  \(the guide: {value}%\)$", proc.stdout, re.M)


@pytest.mark.parametrize("model", MODELS)
def test_postprocess_errors_are_one_line_naming_the_file(model, tmp_path):
    script = folder(model) / "postprocess.py"
    results = write_results(tmp_path / "r", {"a_0.txt": [0.1, 0.9], "b_0.txt": [0.3, 0.2]})
    labels = write_labels(tmp_path / "l.txt", {"a": 1, "b": 0})
    bad_label = tmp_path / "bad.txt"
    bad_label.write_text("a.JPEG 1\nb.JPEG one\n")
    assert f"{bad_label}: line 2: expected" in one_error_line(run(script, results, bad_label,
                                                                  tmp_path, "x.json"))
    assert "no label for it" in one_error_line(run(script, results,
                                                   write_labels(tmp_path / "e.txt", {}),
                                             tmp_path, "x.json"))
    only_a = write_labels(tmp_path / "a.txt", {"a": 1})
    assert "b_0.txt: no label" in one_error_line(run(script, results, only_a, tmp_path, "x.json"))
    (results / "c_0.txt").write_text("0.1  0.2\n")
    line = one_error_line(run(script, results,
                              write_labels(tmp_path / "c.txt", {"a": 1, "b": 0, "c": 0}),
                              tmp_path, "x.json"))
    assert "c_0.txt: could not convert string to float" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no result files" in one_error_line(run(script, empty, labels, tmp_path, "x.json"))
    (results / "c_0.txt").write_text("nan 0.2\n")
    proc = run(script, results, write_labels(tmp_path / "c.txt", {"a": 1, "b": 0, "c": 0}),
               tmp_path, "n.json")
    assert proc.returncode == 0, proc.stderr  # NaN ranks last (npuzoo.report flags such logits)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# -- export -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def upstream_trees(tmp_path_factory):
    """{model: its patched upstream tree, made as the pipeline makes it (npuzoo.source, the
    cached sdist when GitHub is unreachable)}, for the models with upstream sources."""
    base, trees = tmp_path_factory.mktemp("upstream"), {}
    for model in MODELS:
        upstream = config.load(model).upstream
        if upstream.sources:
            pypi = [s for s in upstream.sources if isinstance(s, config.PypiSource)]
            name, version = pypi[0].requirement.split("==")
            if not os.path.isfile(os.path.join(source.DEFAULT_CACHE, f"{name}-{version}.tar.gz")):
                pytest.skip(f"{model}: its upstream sdist is not cached (run `make venv`)")
            source.fetch(config.UpstreamSpec(sources=tuple(pypi[:1])), str(folder(model)),
                         str(base / model), log=lambda _: None)
            trees[model] = base / model
    return trees


def source_args(model, trees):
    return ["--source", str(trees[model])] if model in trees else []


@functools.cache
def pth2onnx(model):
    return load_model_script(model, "pth2onnx")


def build(model, trees, weights="random"):
    script = pth2onnx(model)
    return script, script.build_model(weights, *([str(trees[model])] if model in trees else []))


def declared_layout(state, layout):
    """The state_dict saved as model.yaml's weights.layout says the published file holds it."""
    if layout == "plain":
        return dict(state)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    return {"epoch": 1, "state_dict": prefixed} if layout == "state_dict_key" else prefixed


@pytest.mark.parametrize("model", MODELS)
def test_the_declared_checkpoint_layout_loads_and_others_are_one_line(model, upstream_trees,
                                                                      tmp_path):
    import torch

    script, model_random = build(model, upstream_trees)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in model_random.state_dict().items()}
    layout = cfg(model)["weights"]["layout"]
    path = tmp_path / "declared.pth"
    torch.save(declared_layout(state, layout) if layout != "state_dict_key"
               else {"state_dict": declared_layout(state, layout)["state_dict"]}, path)
    loaded = build(model, upstream_trees, str(path))[1].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    wrong = tmp_path / "wrong.pth"
    torch.save({**dict(state), "extra.weight": torch.zeros(1)}, wrong)
    with pytest.raises(script.UserError,
                       match=r"not a \w+ checkpoint: keys 1 unexpected \(first: extra.weight\)"):
        build(model, upstream_trees, str(wrong))
    key = next(k for k, v in state.items() if v.ndim > 1)
    torch.save(declared_layout({**state, key: torch.zeros(1)}, layout), wrong)
    with pytest.raises(script.UserError, match=re.escape(key)):
        build(model, upstream_trees, str(wrong))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    proc = run(folder(model) / "pth2onnx.py", tmp_path / "text.pth", tmp_path / "x.onnx",
               *source_args(model, upstream_trees))
    assert "cannot read as a PyTorch checkpoint" in one_error_line(proc)
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A torch.save file rewritten with deflated members plus one of 256 MiB of zeros: about
    300 kB on disk (a 3.9 MB one took torch.load to 4.4 GB)."""
    import zipfile

    import torch

    path = tmp_path_factory.mktemp("bomb") / "bomb.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        with archive.open(members[0][0].split("/")[0] + "/data/1", "w") as member:
            for _ in range(256):
                member.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    return path


def test_a_zip_bomb_checkpoint_is_refused_before_any_step_reads_it(zip_bomb, tmp_path):
    """The pipeline identifies WEIGHTS (npuzoo.weights.identify) before the export runs: a zip
    bomb stops there in one line, nothing copied; a real torch.save file passes."""
    import torch

    from npuzoo import weights
    from npuzoo.errors import UserError

    with pytest.raises(UserError) as caught:
        spec = config.WeightsSpec(file="x.pth", url="https://example.invalid/x.pth", layout="plain")
        weights.identify(spec, str(zip_bomb), str(tmp_path / "w"), {})
    message = str(caught.value)
    assert message.startswith(f"{zip_bomb}: its zip members would inflate to ") and \
        "zip bomb" in message and "\n" not in message
    assert not (tmp_path / "w").exists()
    torch.save({"w": torch.zeros(1000)}, tmp_path / "fine.pth")
    weights.check_not_a_zip_bomb(str(tmp_path / "fine.pth"))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_onnx_has_the_declared_interface_and_matches_pytorch(model, upstream_trees, dropped,
                                                            shared_data, tmp_path):
    import onnx
    import onnxruntime as ort
    import torch

    out = tmp_path / "sub" / f"{model}.onnx"
    proc = run(dropped[model] / "pth2onnx.py", "random", out, *source_args(model, upstream_trees),
               isolated=True)
    assert proc.returncode == 0 and "random weights (seed 0)" in proc.stderr, proc.stderr
    assert "WEIGHTS" not in proc.stderr  # worded for someone running the script, not make
    assert os.listdir(out.parent) == [out.name]  # no temporary left
    c = cfg(model)
    proto = onnx.load(str(out))
    opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    assert opsets == [c["onnx"]["opset"]]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    batch = ["-1"] if c["onnx"]["dynamic_batch"] else [1]
    assert [(i.name, dims(i)) for i in proto.graph.input] == [(c["input"]["name"],
                                                               batch + c["input"]["shape"])]
    assert [(o.name, dims(o)) for o in proto.graph.output] == [(c["output"]["name"],
                                                                batch + [c["output"]["classes"]])]
    assert prep(model, shared_data / "imagenet-val-10" / "val", tmp_path / "prep").returncode == 0
    images = np.stack([read_bin(p, model) for p in sorted((tmp_path / "prep").glob("*.bin"))])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None,
                              {c["input"]["name"]: images if c["onnx"]["dynamic_batch"]
                               else images[:1]})
    with torch.no_grad():
        eager = build(model, upstream_trees)[1](torch.from_numpy(images[:len(onnx_out)])).numpy()
    assert np.abs(eager).max() > 1e-3  # not a degenerate network
    np.testing.assert_allclose(onnx_out, eager, rtol=0, atol=PARITY_ATOL)


# -- each model's own facts ---------------------------------------------------------------------
# What docs/model_facts.md says of each model, written out here independently of its folder and
# checked by the parametrized tests below. A folder without an entry (a model being added) is
# checked by the tests above only.

ABSENT = object()


def prefixed(state):
    return {f"module.{k}": v for k, v in state.items()}


def without_nbt(state):
    """As saved before PyTorch 0.4.1 (or from InplaceAbn): no num_batches_tracked entries."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def conv_bn_layout(layout, prefix, cin, cout, k, bn_prefix):
    layout.append((f"{prefix}.weight", (cout, cin, k, k)))
    layout.extend((f"{bn_prefix}.{name}", (cout,)) for name in ("weight", "bias", "running_mean",
                                                                "running_var"))
    layout.append((f"{bn_prefix}.num_batches_tracked", ()))


def mobilenet_layout():
    """Every state_dict key and shape of upstream `Net` (MobileNetV1 "Network"), in order."""
    layout = []
    conv_bn_layout(layout, "model.0.0", 3, 32, 3, "model.0.1")
    blocks = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)] \
        + [(512, 512)] * 5 + [(512, 1024), (1024, 1024)]
    for i, (inp, oup) in enumerate(blocks, 1):
        conv_bn_layout(layout, f"model.{i}.0", 1, inp, 3, f"model.{i}.1")
        layout[-6] = (f"model.{i}.0.weight", (inp, 1, 3, 3))  # depthwise
        conv_bn_layout(layout, f"model.{i}.3", inp, oup, 1, f"model.{i}.4")
    return layout + [("fc.weight", (1000, 1024)), ("fc.bias", (1000,))]


def vovnet_layout():
    """Every state_dict key and shape of upstream vovnet39() (VoVNet39 "Network"), in order."""
    layout = []

    def unit(prefix, cin, cout, k):
        conv_bn_layout(layout, f"{prefix}/conv", cin, cout, k, f"{prefix}/norm")

    for name, cin, cout in [("stem_1", 3, 64), ("stem_2", 64, 64), ("stem_3", 64, 128)]:
        unit(f"stem.{name}", cin, cout, 3)
    in_ch = 128
    for s, (stage_ch, concat_ch, blocks) in {2: (128, 256, 1), 3: (160, 512, 1),
                                             4: (192, 768, 2), 5: (224, 1024, 2)}.items():
        for b in range(1, blocks + 1):
            block, block_in = f"OSA{s}_{b}", in_ch if b == 1 else concat_ch
            cin = block_in
            for i in range(5):
                unit(f"stage{s}.{block}.layers.{i}.{block}_{i}", cin, stage_ch, 3)
                cin = stage_ch
            unit(f"stage{s}.{block}.concat.{block}_concat", block_in + 5 * stage_ch, concat_ch, 1)
        in_ch = concat_ch
    return layout + [("classifier.weight", (1000, 1024)), ("classifier.bias", (1000,))]


def timm_training_checkpoint(state):
    """timm train.py's model_best.pth.tar, saved from a DataParallel."""
    import argparse

    return {"epoch": 80, "arch": "tresnet_m", "args": argparse.Namespace(lr=0.1),
            "state_dict": prefixed(state)}


def mobilenet_training_checkpoint(state):
    """The published mobilenet_sgd_rmsprop tar: main.py's torch.save, from a DataParallel."""
    return {"epoch": 90, "arch": "mobilenet", "state_dict": prefixed(state), "best_prec1": 69.526,
            "optimizer": {"state": {},
                          "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]}}


FACTS = {
    "dpn131": {
        "yaml": {"preprocess.resize": 256, "preprocess.crop": 224,
                 "preprocess.crop_offset": "round",
                 "preprocess.interpolation": "bilinear", "preprocess.mean": [0.486, 0.459, 0.408],
                 "preprocess.std": [0.235, 0.235, 0.235],
                 "weights.md5": "71e7844aa8646dc75494976c7c86241a",
                 "weights.layout": "plain", "output.classes": 1000, "input.shape": [3, 224, 224],
                 "reference.accuracy.top1": 79.42, "reference.perf.Ascend310P3.fps.4": 550,
                 "upstream.sources.0.patch": "dpn.diff", "upstream.sources.1.patch": "dpn.diff"},
        "requires": ["six"],
        # (parameters, state_dict entries, of which num_batches_tracked), key shapes
        "network": (79_254_504, 811, 135, {"last_linear.weight": (1000, 2688, 1, 1)}),
        # the published file is a plain state_dict without num_batches_tracked (PyTorch 0.3)
        "loads": {"published": without_nbt, "plain": dict},
        "refuses": {"module": (prefixed, [
            "missing (first: features.conv1_1.conv.weight)",
            "unexpected (first: module.features.conv1_1.conv.weight)"])},
        "unpatched": ("pypi", "dpn.diff is not applied"),
        # the unpatched upstream network in eager mode (test-time pooling on, as dpn131() builds it)
        "eager": ("pretrainedmodels.models.dpn", lambda m: m.dpn131(pretrained=None)),
        "ops": {"GlobalAveragePool"},  # dpn.diff's global pool, no test-time-pool tail
        "same_graph": True,  # from both trees (whose dpn.py are identical)
        "slow": {"network", "loads"},  # a network of 79 million parameters
    },
    "inceptionv4": {
        "yaml": {"preprocess.resize": 342, "preprocess.crop": 299,
                 "preprocess.crop_offset": "floor",
                 "preprocess.interpolation": "bilinear", "preprocess.mean": [0.5] * 3,
                 "preprocess.std": [0.5] * 3,
                 "weights.layout": "plain", "output.classes": 1001, "input.shape": [3, 299, 299],
                 "reference.accuracy.top1": 79.99, "reference.perf.Ascend310P3.fps.1": 761.4,
                 "upstream.sources.0.patch": "inceptionv4.patch", "upstream.sources.1.patch": None},
        "network": (42_681_353, 896, 149, {"last_linear.weight": (1001, 1536)}),
        "loads": {"published": without_nbt, "plain": dict},
        "refuses": {},
        # 8aae3d8 pools with kernel features.shape[2]: inceptionv4.patch makes it static
        "unpatched": ("git", "the final pool's kernel is not static"),
        "eager": ("pretrainedmodels.models.inceptionv4", lambda m: m.InceptionV4(num_classes=1001)),
        "static_pool": [8, 8],  # one AveragePool of a constant 8x8 kernel: a static graph for ATC
        "slow": {"network", "loads"},
    },
    "mobilenetv1": {
        "yaml": {"preprocess.resize": 256, "preprocess.crop": 224,
                 "preprocess.crop_offset": "round",
                 "preprocess.interpolation": "bilinear", "preprocess.mean": [0.485, 0.456, 0.406],
                 "preprocess.std": [0.229, 0.224, 0.225], "weights.layout": "state_dict_key",
                 "weights.md5": "205c493b6582a3e6c3daa66e539eae54", "output.classes": 1000,
                 "input.shape": [3, 224, 224]},
        "network": (4_231_976, 164, 27,
                    {"model.1.0.weight": (32, 1, 3, 3), "model.13.4.running_var": (1024,)}),
        "layout": mobilenet_layout,
        "loads": {"published": mobilenet_training_checkpoint, "module": prefixed, "plain": dict,
                  "module_no_nbt": lambda s: prefixed(without_nbt(s))},
        "refuses": {},
    },
    "tresnet": {
        "yaml": {"reference.accuracy.top5": 94.43, "reference.accuracy.top1": ABSENT,
                  # none published
                 "reference.perf.Ascend310P3.fps": {1: 1154, 4: 2552, 8: 3158, 16: 3249, 32: 2756},
                 "preprocess.mean": [0, 0, 0], "preprocess.std": [1, 1, 1],
                 "preprocess.resize": 256,
                 "preprocess.crop": 224, "weights.checksum": "unpublished",
                 "weights.layout": "state_dict_key",
                 "weights.url": "https://ascend-repo-modelzoo.obs.cn-east-2.myhuaweicloud.com/"
                                "model/1_PyTorch_PTH/TResNet/PTH/model_best.pth.tar",
                 "upstream.sources.0.kind": "git",
                 "upstream.sources.0.commit": "5b28ef410062af2a2ab1f27bf02cf33e2ba28ca2",
                 "upstream.sources.0.patch": "TResNet.patch", "upstream.sources.1.kind": "pypi",
                 "upstream.sources.1.requirement": "timm==0.4.5",
                 "upstream.sources.1.patch": "TResNet.patch"},
        "network": (31_389_032, 434, 60, {"body.layer2.0.conv1.0.0.weight": (128, 64, 3, 3),
                                          "body.layer2.0.downsample.1.0.weight": (128, 64, 1, 1),
                                          "head.fc.weight": (1000, 2048)}),
        "loads": {"published": timm_training_checkpoint, "plain": dict, "module": prefixed,
                  "inplace_abn": without_nbt},  # saved from the unpatched network
        "refuses": {},
        "unpatched": ("pypi", "TResNet.patch is not applied"),
        "ops": {"LeakyRelu"}, "no_ops": {"Pad"},  # zero padding in the Conv, no reflect Pad
        "slow": {"unpatched"},  # timm imported from the pristine tree
    },
    "vovnet39": {
        "yaml": {"reference.accuracy.top1": 76.78, "reference.accuracy.top5": 93.43,
                  # the guide's 310 result
                 # the guide's per-card figures (one chip x 4); BS 64 not published there
                 "reference.perf.Ascend310.fps": {1: 1126.432, 4: 1419.168, 8: 1456.516,
                                                  16: 1530.264, 32: 1529.584},
                 "reference.perf.Ascend310P3.fps.4": 1767.6, "reference.perf.T4.fps.64": 1533.7,
                 "preprocess.mean": [0.485, 0.456, 0.406], "preprocess.std": [0.229, 0.224, 0.225],
                 "weights.url": "https://ascend-repo-modelzoo.obs.cn-east-2.myhuaweicloud.com/"
                                "model/1_PyTorch_PTH/VoVnet39/PTH/vovnet39.pth",
                 # no checksum is known for the OBS file; the dropbox md5 is recorded, not enforced
                 "weights.checksum": "unpublished", "weights.md5": ABSENT,
                 "weights.previous.md5": "23717a6cadd9729a704f894381444237",
                 "weights.layout": "module_prefix"},
        "network": (22_600_296, 236, 39, {
            "stage2.OSA2_1.concat.OSA2_1_concat/conv.weight": (256, 768, 1, 1),
            "stage4.OSA4_2.layers.0.OSA4_2_0/conv.weight": (192, 768, 3, 3)}),
        "layout": vovnet_layout,
        "loads": {"published": prefixed, "plain": dict, "plain_no_nbt": without_nbt},
        "refuses": {
            # a training checkpoint is not what is published
            "training": (lambda s: {"epoch": 1, "state_dict": prefixed(s)},
                         ["missing (first: stem.stem_1/conv.weight), "
                          "2 unexpected (first: epoch)"]),
            # timm's vovnet39a names
            "timm": (lambda s: {("stem.0.conv.weight" if k == "stem.stem_1/conv.weight" else k): v
                                for k, v in s.items()},
                     ["1 missing (first: stem.stem_1/conv.weight)",
                      "1 unexpected (first: stem.0.conv.weight)"]),
        },
    },
}
WITH_FACTS = [model for model in MODELS if model in FACTS]


def with_facts(key):
    """The models whose FACTS hold `key`, marked slow where their "slow" names it."""
    return [pytest.param(m, marks=[pytest.mark.slow] if key in FACTS[m].get("slow", ()) else [])
            for m in WITH_FACTS if key in FACTS[m]]


def dig(data, path):
    for key in path.split("."):
        if isinstance(data, list):
            data = data[int(key)]
        elif key in data or not key.isdigit():
            data = data.get(key, ABSENT)
        else:
            data = data.get(int(key), ABSENT)
        if data is ABSENT:
            return ABSENT
    return data


@pytest.mark.parametrize("model", with_facts("yaml"))
def test_model_yaml_holds_the_documented_values(model):
    data = cfg(model)
    for path, value in FACTS[model]["yaml"].items():
        assert dig(data, path) == value, (model, path)
    pinned = pins(folder(model) / "requirements.txt")
    assert all(name in pinned for name in FACTS[model].get("requires", [])), pinned


@pytest.mark.parametrize("model", with_facts("network"))
def test_the_network_has_the_documented_size_and_keys(model, upstream_trees):
    import torch

    parameters, entries, nbt, shapes = FACTS[model]["network"]
    network = build(model, upstream_trees)[1]
    state = network.state_dict()
    assert sum(p.numel() for p in network.parameters()) == parameters
    assert (len(state), sum(k.endswith("num_batches_tracked") for k in state)) == (entries, nbt)
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    if "layout" in FACTS[model]:
        assert [(k, tuple(v.shape)) for k, v in state.items()] == FACTS[model]["layout"]()
    assert not network.training
    with torch.no_grad():
        assert network(torch.zeros(1, *cfg(model)["input"]["shape"])).shape == \
            (1, cfg(model)["output"]["classes"])


@pytest.mark.parametrize("model", with_facts("loads"))
def test_the_published_checkpoint_forms_load_the_same_tensors(model, upstream_trees, tmp_path):
    import torch

    _script, network = build(model, upstream_trees)
    state = {k: v + 1 if v.is_floating_point() else v + 7 for k, v in network.state_dict().items()}
    for form, saved in FACTS[model]["loads"].items():
        torch.save(saved(state), tmp_path / f"{form}.pth")
        loaded = build(model, upstream_trees, str(tmp_path / f"{form}.pth"))[1].state_dict()
        assert list(loaded) == list(state), form
        flat = saved(state)
        kept = {k.removeprefix("module.") for k in flat.get("state_dict", flat)}
        assert kept >= set(without_nbt(state)), form
        for key in kept:
            assert torch.equal(loaded[key], state[key]), (form, key)
    for form, (saved, fragments) in FACTS[model]["refuses"].items():
        path = tmp_path / f"{form}.pth"
        torch.save(saved(state), path)
        proc = run(folder(model) / "pth2onnx.py", path, tmp_path / "x.onnx",
                   *source_args(model, upstream_trees))
        one_error_line(proc, f"error: {path}: not a {model} checkpoint: keys ", *fragments)
        assert not (tmp_path / "x.onnx").exists()


def declared_source(model, kind):
    return next(s for s in cfg(model)["upstream"]["sources"] if s["kind"] == kind)


def offline_kinds(model):
    """The model's declared sources that can be made here without a network: its pypi sdist
    (cached by `make venv`) and, for pretrainedmodels, the 8aae3d8 tree made from it."""
    sources = (cfg(model).get("upstream") or {}).get("sources") or []
    return [s["kind"] for s in sources if s["kind"] == "pypi"
            or upstream_package(model) == "pretrainedmodels"]


@pytest.fixture(scope="session")
def offline_trees(tmp_path_factory):
    """tree(model, kind, patched): the upstream tree of the model's `kind` source, with its
    declared patch or without, made once each."""
    base, made = tmp_path_factory.mktemp("offline-trees"), {}

    def tree(model, kind, patched=True):
        dest = base / f"{model}-{kind}-{'patched' if patched else 'unpatched'}"
        if dest not in made:
            if kind == "git":
                trees.git_tree(dest)
            else:
                name, version = declared_source(model, kind)["requirement"].split("==")
                archive = Path(source.DEFAULT_CACHE) / f"{name}-{version}.tar.gz"
                if not archive.is_file():
                    pytest.skip(f"{archive} is not cached: run `make venv` (tests never download)")
                unpack = base / f"{dest.name}.unpack"
                with tarfile.open(archive) as tar:
                    tar.extractall(unpack, filter="data")
                (top,) = unpack.iterdir()
                top.rename(dest)
            patch = declared_source(model, kind).get("patch")
            if patched and patch:
                trees.patch(dest, folder(model) / patch)
            made[dest] = dest
        return made[dest]
    return tree


@pytest.mark.parametrize("model", with_facts("unpatched"))
def test_an_unpatched_or_missing_upstream_tree_is_refused_in_one_line(model, offline_trees,
                                                                      tmp_path):
    kind, fragment = FACTS[model]["unpatched"]
    for tree, says in ((offline_trees(model, kind, patched=False), fragment),
                       (tmp_path / "none",
                        f"{tmp_path / 'none'}: no {upstream_package(model)}/ in it")):
        proc = run(folder(model) / "pth2onnx.py", "random", tmp_path / "x.onnx", "--source", tree)
        one_error_line(proc, says, alone=False)
        assert not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="session")
def real_batches(shared_data, tmp_path_factory):
    """batch(model): (stems, the 10 real images of imagenet-val-10 through the folder's
    preprocess.py as one float32 batch), made once per model."""
    made = {}

    def batch(model):
        if model not in made:
            out = tmp_path_factory.mktemp(f"{model}-real")
            proc = run(folder(model) / "preprocess.py", shared_data / "imagenet-val-10" / "val",
                       out)
            assert proc.returncode == 0, proc.stderr
            paths = sorted(out.glob("*.bin"))
            assert len(paths) == 10
            made[model] = [p.stem for p in paths], np.stack([read_bin(p, model) for p in paths])
        return made[model]
    return batch


def calibrated(network, seed, calibration):
    """Random BatchNorm affine parameters and running statistics CALIBRATED on `calibration`
    (real preprocessed images; one train-mode pass, cumulative average), so that every layer
    sees normalised activations and the logits depend strongly on the image (default
    initialisation barely moves a deep network's logits between images; statistics from random
    pixels blow up on photographs). BatchNorm biases around +1 keep most units in ReLU's linear
    part (zero-mean biases make a deep random ReLU network chaotic, amplifying float32 rounding
    differences between two correct implementations to ~1e-3). The classifier (the last Linear
    or Conv2d) is then rescaled so that the batch's logits are centred per class with unit
    spread: a 1e-4 comparison stays meaningful and no class wins for every image."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    head = [m for m in network.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
    batch = torch.as_tensor(calibration)
    with torch.no_grad():
        for module in norms:
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.2 + 1.0)
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
        network.train()
        network(batch)
        for module in norms:
            module.momentum = 0.1
            # a little spread, so that the statistics are not exactly the calibration batch's
            module.running_var.mul_(torch.rand(module.num_features,
                                               generator=generator) * 0.2 + 0.9)
            # nearly dead channels would be scaled up by up to 1/sqrt(eps): give them a floor
            module.running_var.clamp_(min=0.1 * float(module.running_var.median()))
        network.eval()
        logits = network(batch)
        mean, spread = logits.mean(0), logits.std()
        head.weight.div_(spread)
        head.bias.copy_((head.bias - mean.reshape(head.bias.shape)) / spread)
    return network


def graph_ops(path):
    import onnx

    return [n for n in onnx.load(str(path), load_external_data=False).graph.node]


@pytest.mark.slow
@pytest.mark.parametrize("model", WITH_FACTS)
def test_onnx_runtime_matches_the_upstream_network_on_real_images(model, upstream_trees,
                                                                  offline_trees,
                                                                   real_batches, tmp_path):
    """A random checkpoint (BatchNorm calibrated on the images), in the published form, through
    the real pth2onnx.py with every source tree that can be made here: ONNX Runtime on the 10
    real preprocessed images equals, to PARITY_ATOL, the upstream network in eager mode (as
    upstream builds it, unpatched, where the folder patches it), and the exports agree."""
    import onnxruntime as ort
    import torch

    _, batch = real_batches(model)
    kinds = offline_kinds(model) or [None]
    if "eager" in FACTS[model]:  # upstream's own network from each unpatched tree
        module, make_network = FACTS[model]["eager"]
        import_upstream = pth2onnx(model).import_upstream
        eager = {kind: make_network(import_upstream(str(offline_trees(model, kind, patched=False)),
                                                    module))
                 for kind in kinds}
    else:  # the folder's network is upstream's (defined in the folder, or the patched tree's)
        eager = {kinds[0]: build(model, upstream_trees)[1]}
    torch.manual_seed(1)
    first, *others = eager.values()
    state = calibrated(first, seed=1, calibration=batch).state_dict()
    for network in others:
        network.load_state_dict(state, strict=True)
        network.eval()
    checkpoint = tmp_path / "published.pth"
    torch.save(FACTS[model]["loads"]["published"](state), checkpoint)
    outputs, classes, name = {}, cfg(model)["output"]["classes"], cfg(model)["input"]["name"]
    for kind in kinds:
        path = tmp_path / f"{kind}.onnx"
        tree = ["--source", offline_trees(model, kind)] if kind else []
        proc = run(folder(model) / "pth2onnx.py", checkpoint, path, *tree)
        assert proc.returncode == 0, proc.stderr
        ops = {n.op_type for n in graph_ops(path)}
        assert FACTS[model].get("ops", set()) <= ops \
            and not FACTS[model].get("no_ops", set()) & ops, ops
        if "static_pool" in FACTS[model]:
            assert len([n for n in graph_ops(path) if n.op_type == "AveragePool" and any(
                a.name == "kernel_shape" and list(a.ints) == FACTS[model]["static_pool"]
                for a in n.attribute)]) == 1
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.run(None, {name: batch[:1]})[0].shape == (1, classes)  # any batch size
        outputs[kind] = session.run(None, {name: batch})[0]
        assert outputs[kind].shape == (len(batch), classes)
    got = outputs[kinds[0]]
    for kind, network in eager.items():
        with torch.no_grad():
            expected = network(torch.from_numpy(batch)).numpy()
        # far from trivial: the logits differ between images by much more than the tolerance
        assert np.abs(expected - expected.mean(0)).max() > 100 * PARITY_ATOL
        assert len(set(expected.argmax(1))) > 1
        np.testing.assert_allclose(got, expected, rtol=0, atol=PARITY_ATOL, err_msg=str(kind))
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * PARITY_ATOL  # not a tie at this precision
        assert (got.argmax(1) == expected.argmax(1))[clear].all()
    for kind in kinds[1:]:  # the same network from every tree
        np.testing.assert_allclose(outputs[kind], got, rtol=0, atol=1e-5, err_msg=kind)
        if FACTS[model].get("same_graph"):
            assert [n.op_type for n in graph_ops(tmp_path / f"{kind}.onnx")] == \
                [n.op_type for n in graph_ops(tmp_path / f"{kinds[0]}.onnx")]


# -- one folder's own checks: its upstream tree, patch and network ------------------------------

def test_dpn131_dpn_diff_applies_to_both_trees_whose_dpn_py_are_identical(offline_trees):
    rel = "pretrainedmodels/models/dpn.py"
    for patched in (False, True):
        pypi, git = (offline_trees("dpn131", kind, patched) / rel for kind in ("pypi", "git"))
        assert pypi.read_bytes() == git.read_bytes()


def test_inceptionv4_patch_applies_to_8aae3d8_only_and_keeps_eager_mode(offline_trees, tmp_path):
    rel = "pretrainedmodels/models/inceptionv4.py"
    patched = offline_trees("inceptionv4", "git") / rel
    assert "adaptiveAvgPoolWidth = int(features.shape[2])" in patched.read_text()
    # The release has the fixed pool; inceptionv4.patch does not apply to it (hence `null`).
    release = offline_trees("inceptionv4", "pypi", patched=False)
    assert "nn.AvgPool2d(8, count_include_pad=False)" in (release / rel).read_text()
    copy = shutil.copytree(release, tmp_path / "release")
    with pytest.raises(AssertionError):
        trees.patch(copy, folder("inceptionv4") / "inceptionv4.patch")
    # the ModelZoo's `.item()` patch breaks eager mode; this one does not, at any size
    import torch

    module = trees.load_model_file(patched.parents[2], "inceptionv4", "_inc_patched_eager")
    torch.manual_seed(0)
    network = module.InceptionV4(num_classes=1001).eval()
    with torch.no_grad():
        assert network(torch.randn(2, 3, 299, 299)).shape == (2, 1001)
        assert network(torch.randn(1, 3, 331, 331)).shape == (1, 1001)  # 9x9 features


def test_inceptionv4_preprocess_matches_the_rules_computed_with_pil_and_numpy(real_batches,
                                                                              shared_data):
    """Shorter side 342 with BILINEAR (long side truncated), crop 299 at FLOORED offsets
    int((W-299)/2)..int((W+299)/2), /255, (x-0.5)/0.5 (InceptionV4 "Preprocessing"); a rounded
    offset (22, not 21, on these images) would fail."""
    stems, batch = real_batches("inceptionv4")
    floored = 0
    for stem, ours in zip(stems, batch, strict=False):
        with Image.open(shared_data / "imagenet-val-10" / "val" / f"{stem}.JPEG") as image:
            image = image.convert("RGB")
            width, height = image.size
            size = (342,
                    int(342 * height / width)) if width <= height else (int(342 * width / height),
                                                                        342)
            pixels = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)  # HWC
        height, width, _ = pixels.shape
        top, left = int((height - 299) / 2), int((width - 299) / 2)
        crop = pixels[top:int((height + 299) / 2), left:int((width + 299) / 2)] / 255.0
        expected = ((crop - 0.5) / 0.5).transpose(2, 0, 1)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6, err_msg=stem)
        floored += (top if height == 342 else left) == 21 != round((342 - 299) / 2)
    assert floored == 10


def test_mobilenetv1_network_structure():
    network = pth2onnx("mobilenetv1").build_model("random")
    import torch

    assert len(network.model) == 15 and isinstance(network.model[14], torch.nn.AvgPool2d)
    assert network.model[14].kernel_size == 7
    assert all(len(network.model[i]) == 6 for i in range(1, 14)) and len(network.model[0]) == 3
    assert network.model[1][0].groups == 32 and network.model[13][0].stride == (1, 1)


def test_vovnet39_network_structure():
    import torch

    script = pth2onnx("vovnet39")
    network = script.VoVNet().eval()
    pools = [m for name, m in network.named_modules() if name.endswith("Pooling")]
    assert [p.ceil_mode for p in pools] == [True, True, True]
    assert not hasattr(network.stage2, "Pooling")
    identity = {name: m.identity for name, m in network.named_modules()
                if isinstance(m, script.OSAModule)}
    assert [n for n, v in identity.items() if v] == ["stage4.OSA4_2", "stage5.OSA5_2"]
    state = network.state_dict()
    for block, channels in {"OSA2_1": 768, "OSA3_1": 1056, "OSA4_1": 1472, "OSA4_2": 1728,
                            "OSA5_1": 1888, "OSA5_2": 2144}.items():
        assert state[f"stage{block[3]}.{block}.concat.{block}_concat/conv.weight"].shape[1] \
            == channels
    sizes, x = [], torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        for name in ("stem", "stage2", "stage3", "stage4", "stage5"):
            x = getattr(network, name)(x)
            sizes.append(x.shape[-1])
        assert network(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    assert sizes == [56, 56, 28, 14, 7]


TRESNET_PATCHED = ["timm/models/layers/anti_aliasing.py", "timm/models/layers/space_to_depth.py",
                   "timm/models/tresnet.py"]


def test_tresnet_patch_applies_cleanly_to_the_sdist_whose_files_are_the_tag_s(offline_trees):
    """`patch --dry-run` touches exactly the three files, without offset or fuzz; the `index
    <old>..` lines of TResNet.patch are git blob ids, which the sdist's files hash to: the sdist
    and the v0.4.5 checkout the ModelZoo patched hold the same bytes."""
    pristine = offline_trees("tresnet", "pypi", patched=False)
    patch = folder("tresnet") / "TResNet.patch"
    result = subprocess.run(["patch", "-p1", "--forward", "--batch", "--dry-run", "-i", str(patch)],
                            cwd=pristine, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(re.findall(r"^checking file (\S+)$", result.stdout, re.M)) == TRESNET_PATCHED
    assert "offset" not in result.stdout and "fuzz" not in result.stdout, result.stdout
    bases = dict(re.findall(r"^diff --git a/(\S+) .*\nindex ([0-9a-f]+)\.\.", patch.read_text(),
                            re.M))
    assert bases == dict(zip(TRESNET_PATCHED, ["9d3837e", "a7e8e0b", "e371292"], strict=False))
    for name, blob in bases.items():
        data = (pristine / name).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().startswith(blob), name


def test_tresnet_patched_network_is_the_modelzoo_s(offline_trees):
    """No jit-scripted classes, zero padding (no reflect), no InplaceAbn, LeakyReLU(0.01) (the
    ModelZoo patch ignores upstream's act_param=1e-3), and the anti-alias downsample equals an
    independent stride-2 depthwise [1 2 1]x[1 2 1]/16 blur with zero padding 1."""
    import torch

    pristine, patched = (offline_trees("tresnet", "pypi", p) for p in (False, True))
    for name in ("anti_aliasing.py", "space_to_depth.py"):
        assert re.search(r"^@torch\.jit\.script\nclass",
                         (pristine / "timm/models/layers" / name).read_text(), re.M)
        assert not re.search(r"^@torch\.jit\.script",
                             (patched / "timm/models/layers" / name).read_text(), re.M)
    aa = (patched / "timm/models/layers/anti_aliasing.py").read_text()
    assert "'reflect'" not in aa and "padding=1" in aa
    timm = pth2onnx("tresnet").import_upstream(str(patched), "timm")
    network = timm.create_model("tresnet_m", pretrained=False).eval()
    modules = list(network.modules())
    assert not any(isinstance(m, timm.models.layers.InplaceAbn) for m in modules)
    assert {m.negative_slope for m in modules if isinstance(m, torch.nn.LeakyReLU)} == {0.01}
    blurs = [m for m in modules if isinstance(m, timm.models.layers.AntiAliasDownsampleLayer)]
    assert len(blurs) == 3  # layer2.0.conv1, layer3.0.conv2, layer4.0.conv2
    x = torch.randn(2, 128, 56, 56)
    taps = torch.tensor([1.0, 2.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 16).expand(128, 1, 3, 3)
    expected = torch.nn.functional.conv2d(x, kernel, stride=2, padding=1, groups=128)
    torch.testing.assert_close(network.body.layer2[0].conv1[1](x), expected, rtol=0, atol=1e-6)


def test_tresnet_preprocess_equals_timm_s_own_eval_transform(offline_trees, real_batches,
                                                             shared_data):
    """timm 0.4.5's eval transform as the ModelZoo's create_loader builds it: uint8 CHW for the
    prefetcher, which then does float() - 0 * 255 and / (1 * 255)."""
    import torch

    pth2onnx("tresnet").import_upstream(str(offline_trees("tresnet", "pypi")), "timm")
    from timm.data.transforms_factory import transforms_imagenet_eval

    timm_eval = transforms_imagenet_eval(img_size=224, crop_pct=0.875, interpolation="bilinear",
                                         use_prefetcher=True, mean=(0, 0, 0), std=(1, 1, 1))
    for stem, ours in zip(*real_batches("tresnet"), strict=False):
        with Image.open(shared_data / "imagenet-val-10" / "val" / f"{stem}.JPEG") as image:
            prefetched = torch.from_numpy(np.asarray(timm_eval(image.convert("RGB")))).float()
        np.testing.assert_array_equal(ours, prefetched.sub_(0 * 255).div_(1 * 255).numpy(),
                                      err_msg=stem)


# -- the runner, installed: CPU inference for a folder copied anywhere --------------------------

@pytest.fixture(scope="session")
def installed_runner(tmp_path_factory):
    """`pip install --no-deps --no-build-isolation --no-index --target T` of a copy of the
    package (pyproject.toml and npuzoo/ alone): offline, and nothing written in the repository."""
    base = tmp_path_factory.mktemp("runner")
    shutil.copy(REPO / "pyproject.toml", base / "pyproject.toml")
    shutil.copytree(REPO / "npuzoo", base / "npuzoo", ignore=shutil.ignore_patterns("__pycache__"))
    target = base / "target"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                           "--quiet", "--target", str(target), str(base)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def runner_env(target):
    return dict({k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
                PYTHONPATH=str(target))


def runner_imports():
    """(required, optional) third-party modules of npuzoo.bench and the npuzoo modules it
    imports, followed statically; optional = imported only under `except ImportError`."""
    def source(name):  # npuzoo/<a/b>.py, or the package npuzoo/<a/b>/__init__.py
        path = REPO / "npuzoo" / name.replace(".", "/")
        return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()),
                    None)

    required, optional, seen, todo = set(), set(), set(), ["bench"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(source(name).read_text())
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node,
                          ast.Try) and any("ImportError" in ast.dump(h) for h in node.handlers):
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for module in modules:
                top, _, rest = module.partition(".")
                if top == "npuzoo":
                    found = next((m for m in (rest, rest.rpartition(".")[0]) if m and source(m)),
                                 None)
                    if found:
                        todo.append(found)
                elif top not in sys.stdlib_module_names:
                    (optional if id(node) in guarded else required).add(top)
    assert {"bench.runner", "bench.inputs", "engines"} <= seen  # the package is followed
    return required, optional - required


def test_pip_install_gives_a_working_npuzoo_bench_with_its_dependencies(installed_runner, tmp_path):
    from importlib import metadata
    (info,) = installed_runner.glob("npuzoo-*.dist-info")
    fields = metadata.PathDistribution(info).metadata
    declared = {re.split(r"[<>=!~; \[]", r)[0].lower() for r in fields.get_all("Requires-Dist")
                if "extra ==" not in r}
    required, _ = runner_imports()
    assert {"numpy", "onnxruntime", "tqdm"} <= required
    missing = {n for n in required if DISTRIBUTIONS.get(n, n).lower() not in declared}
    assert not missing, f"pyproject.toml does not declare what npuzoo-bench imports: {missing}"
    assert {"onnxruntime", "openvino"} <= declared  # both CPU engines come with the runner
    # the real minimum: numpy's own (2.4 needs 3.11)
    assert fields["Requires-Python"] == metadata.metadata("numpy")["Requires-Python"] == ">=3.11"
    proc = subprocess.run([str(installed_runner / "bin" / "npuzoo-bench"), "--help"], cwd=tmp_path,
                          env=runner_env(installed_runner), capture_output=True, text=True)
    assert proc.returncode == 0 and "--model" in proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_copied_folder_runs_cpu_inference_with_the_installed_runner(model, dropped,
                                                                      upstream_trees,
                                                                      installed_runner, tmp_path):
    """The copied folder's README steps on the CPU: preprocess, export (random weights),
    `npuzoo-bench` in place of `python3 -m ais_bench`, postprocess."""
    where, onnx_path = dropped[model], tmp_path / f"{model}.onnx"
    proc = run(where / "pth2onnx.py", "random", onnx_path, *source_args(model, upstream_trees),
               isolated=True)
    assert proc.returncode == 0, proc.stderr
    write_generated(tmp_path / "val", GENERATED[:5])
    assert run(where / "preprocess.py", tmp_path / "val", tmp_path / "prep",
               isolated=True).returncode == 0
    bench = subprocess.run([str(installed_runner / "bin" / "npuzoo-bench"), "--model",
                            str(onnx_path),
                            "--input", str(tmp_path / "prep"), "--output", str(tmp_path / "result"),
                            "--output_dirname", "bs2", "--outfmt", "TXT", "--batchsize", "2"],
                           cwd=where, env=runner_env(installed_runner), capture_output=True,
                           text=True, timeout=600)
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{name} {i}\n" for i, (name, *_) in enumerate(GENERATED[:5])))
    proc = run(where / "postprocess.py", tmp_path / "result" / "bs2", labels, tmp_path, "r.json",
               isolated=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["value"][0]["value"] == "5"


# -- a copied folder, its README's CPU steps as written (issue 21 items 7 and 13) --------------

def readme_cpu_steps(readme):
    """The shell lines of a folder README's CPU route: the preprocess step, the random-weights
    export it names, and the block after "Without an NPU"."""
    text = readme.read_text()
    preprocess = re.search(r"^\s*(python3 preprocess\.py .*)$", text, re.M).group(1)
    export = re.search(r"`(python3 pth2onnx\.py random [^`]+)`", text).group(1)
    block = re.search(r"Without an NPU.*?```bash\n(.*?)```", text, re.S).group(1)
    return [preprocess, export, *block.splitlines()]


@pytest.mark.slow
def test_a_copied_folder_runs_its_readme_cpu_steps_in_a_fresh_environment(tmp_path, shared_data):
    """The folder alone, copied anywhere, and a fresh virtual environment: the README's lines
    as written, `pip install` of the repository included (offline: the packages it needs come
    from the project's environment, linked into the new one, not from an index)."""
    repo = scratch_repository(tmp_path / "npuzoo")
    os.unlink(repo / ".venv")
    work = tmp_path / "anywhere" / "mobilenetv1"
    shutil.copytree(REPO / "models" / "mobilenetv1", work)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    shared = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_path"
                             "('purelib'))"], capture_output=True, text=True).stdout.strip()
    [site] = venv.glob("lib/python*/site-packages")
    (site / "project-environment.pth").write_text(shared + "\n")
    lines = readme_cpu_steps(work / "README.md")
    assert "pip install /path/to/npuzoo     # this repository" in lines
    script = "\n".join(["set -e", "bs=1", f"imagenet={shared_data / 'imagenet-val-10'}"] + [
        line.replace("pip install /path/to/npuzoo",
                     f"python3 -m pip install --no-index --no-build-isolation -q {repo}")
        for line in lines])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (venv / "bin" / "npuzoo-bench").is_file()
    accuracy = json.loads((work / "result_bs1.json").read_text())
    assert {"key": "Number of images", "value": "10"} in accuracy["value"]
    assert (work / "result" / "perf_bs1_summary.json").is_file()
    assert "is not installed; running on" not in proc.stderr  # both engines came with it
    assert not (repo / "npuzoo.egg-info").exists()  # pip install leaves the checkout clean
