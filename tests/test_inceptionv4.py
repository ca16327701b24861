"""InceptionV4: preprocessing, the declared patch per source, and the export against upstream eager.

What is tested (what every folder must do is tested by test_model_folders.py):
- preprocess.py on the 10 real images of ../shared/data/imagenet-val-10, pixel for pixel against
  an independent PIL + numpy computation of the rules in docs/model_facts.md (InceptionV4,
  "Preprocessing"): shorter side 342 with BILINEAR (long side truncated), crop 299 at FLOORED
  offsets int((W-299)/2)..int((W+299)/2), /255, (x-0.5)/0.5. The test also checks that floor and round offsets differ on these images,
  so a round-offset crop would fail it.
- The declared patches: inceptionv4.patch applies with `patch -p1` to inceptionv4.py as at
  8aae3d8 (the "git" tree, made offline as fixtures/pretrainedmodels_trees.py says) and NOT to
  the 0.7.4 release, for which model.yaml declares no patch.
- The patched 8aae3d8 model still runs in eager mode, at 299 and at another size (the
  ModelZoo's `.item()` patch breaks eager mode).
- A randomly initialised 1001-class checkpoint (BatchNorm statistics calibrated on the images,
  so that the logits vary strongly between images) in the published format (plain
  state_dict, no num_batches_tracked) goes through the real pth2onnx.py, once with --source at
  the patched git tree and once at the release. ONNX Runtime's output on the real preprocessed
  images (batch 10) matches, to 1e-4, the upstream network in eager mode from BOTH trees
  UNPATCHED (8aae3d8's size-dependent pool and the release's fixed 8x8 pool): the patch is exact
  at 299x299.
- The graph is opset 11, input `image` [-1,3,299,299], output `class` [-1,1001], its final pool
  a static 8x8 AveragePool, and the two exports give the same outputs.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import pretrainedmodels_trees as trees  # noqa: E402

REPO = trees.REPO
FOLDER = REPO / "models" / "inceptionv4"
CONFIG = yaml.safe_load((FOLDER / "model.yaml").read_text())
SHAPE = (3, 299, 299)
ATOL = 1e-4
MODEL_FILE = "pretrainedmodels/models/inceptionv4.py"


def declared_patch(kind):
    (entry,) = [s for s in CONFIG["upstream"]["sources"] if s["kind"] == kind]
    return entry["patch"]


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def inc_trees(tmp_path_factory):
    """{"release"|"git": unpatched tree, "git_patched": 8aae3d8 with inceptionv4.patch}."""
    base = tmp_path_factory.mktemp("inceptionv4-trees")
    made = {"release": trees.release_tree(base / "release"), "git": trees.git_tree(base / "git")}
    made["git_patched"] = trees.patch(trees.git_tree(base / "git_patched"),
                                      FOLDER / declared_patch("git"))
    return made


@pytest.fixture(scope="session")
def images(shared_data, tmp_path_factory):
    """(stems, batch) of the 10 real images through the real preprocess.py."""
    out = tmp_path_factory.mktemp("inceptionv4-prep")
    result = trees.run_script(FOLDER / "preprocess.py", shared_data / "imagenet-val-10" / "val", out)
    assert result.returncode == 0, result.stderr
    stems = sorted(p.stem for p in out.glob("*.bin"))
    assert len(stems) == 10
    assert {(out / f"{stem}.bin").stat().st_size for stem in stems} == {1072812}  # float32 CHW
    return stems, trees.read_bins(out, stems, SHAPE)


@pytest.fixture(scope="session")
def checkpoint(inc_trees, images, tmp_path_factory):
    """A random 1001-class checkpoint in the published format, and upstream models holding it."""
    release = trees.load_model_file(inc_trees["release"], "inceptionv4", "_upstream_inc_release")
    git = trees.load_model_file(inc_trees["git"], "inceptionv4", "_upstream_inc_8aae3d8")
    torch.manual_seed(2)
    model = trees.randomize(release.InceptionV4(num_classes=1001), seed=2, calibration=images[1])
    path = trees.save_published_format(model, tmp_path_factory.mktemp("inc-ckpt") / "inc.pth")
    at_commit = git.InceptionV4(num_classes=1001)
    at_commit.load_state_dict(model.state_dict(), strict=True)  # the same keys in both trees
    return path, {"release": model, "git": at_commit.eval()}


@pytest.fixture(scope="session")
def exported(inc_trees, checkpoint, tmp_path_factory):
    """The real pth2onnx.py on the checkpoint: git tree as patched, release as declared (no patch)."""
    out = tmp_path_factory.mktemp("inceptionv4-onnx")
    paths = {}
    for name, tree in (("git", inc_trees["git_patched"]), ("release", inc_trees["release"])):
        paths[name] = out / f"inceptionv4_{name}.onnx"
        result = trees.run_script(FOLDER / "pth2onnx.py", checkpoint[0], paths[name],
                                  "--source", tree)
        assert result.returncode == 0, result.stderr
    return paths


def ort_run(path, batch):
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["class"], {"image": batch})[0]


# -- fast checks ------------------------------------------------------------------------------

def test_model_yaml_facts():
    pre = CONFIG["preprocess"]
    assert (pre["resize"], pre["crop"], pre["crop_offset"], pre["interpolation"]) == \
        (342, 299, "floor", "bilinear")
    assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3
    assert CONFIG["output"]["classes"] == 1001 and CONFIG["input"]["shape"] == list(SHAPE)
    assert CONFIG["reference"]["accuracy"]["top1"] == 79.99
    assert CONFIG["reference"]["perf"]["Ascend310P3"]["fps"][1] == 761.4


def test_declared_patches(inc_trees, tmp_path):
    assert declared_patch("git") == "inceptionv4.patch" and declared_patch("pypi") is None
    patched = (inc_trees["git_patched"] / MODEL_FILE).read_text()
    assert "adaptiveAvgPoolWidth = int(features.shape[2])" in patched
    # The release has the fixed pool; inceptionv4.patch does not apply to it (hence `null`).
    release = trees.release_tree(tmp_path / "release")
    assert "nn.AvgPool2d(8, count_include_pad=False)" in (release / MODEL_FILE).read_text()
    with pytest.raises(AssertionError):
        trees.patch(release, FOLDER / "inceptionv4.patch")


def test_patched_model_runs_in_eager_mode(inc_trees):
    module = trees.load_model_file(inc_trees["git_patched"], "inceptionv4", "_inc_patched_eager")
    torch.manual_seed(0)
    model = module.InceptionV4(num_classes=1001).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 299, 299)).shape == (2, 1001)
        assert model(torch.randn(1, 3, 331, 331)).shape == (1, 1001)  # 9x9 features: any size


def reference_preprocess(path):
    """docs/model_facts.md, InceptionV4 "Preprocessing", computed independently with PIL and numpy."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        if width <= height:
            size = (342, int(342 * height / width))
        else:
            size = (int(342 * width / height), 342)
        image = image.resize(size, Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)  # HWC
    height, width, _ = pixels.shape
    top, left = int((height - 299) / 2), int((width - 299) / 2)
    bottom, right = int((height + 299) / 2), int((width + 299) / 2)
    crop = pixels[top:bottom, left:right] / 255.0
    crop = (crop - 0.5) / 0.5
    short_side_offset = top if height == 342 else left
    return crop.transpose(2, 0, 1).astype(np.float32), short_side_offset


def test_preprocess_matches_the_rules(images, shared_data):
    stems, batch = images
    floor_differs_from_round = 0
    for stem, ours in zip(stems, batch):
        expected, offset = reference_preprocess(shared_data / "imagenet-val-10" / "val" / f"{stem}.JPEG")
        assert expected.shape == SHAPE
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6, err_msg=stem)
        floor_differs_from_round += offset == 21 != int(round((342 - 299) / 2))  # 22 if rounded
    assert floor_differs_from_round == 10


# -- export (slow) ----------------------------------------------------------------------------

@pytest.mark.slow
def test_exported_graph_interface(exported):
    for name, path in exported.items():
        model = onnx.load(str(path), load_external_data=False)
        assert [(o.domain, o.version) for o in model.opset_import
                if o.domain in ("", "ai.onnx")] == [("", 11)]
        (inp,), (out,) = model.graph.input, model.graph.output

        def dims(value):
            return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert inp.name == "image" and dims(inp) == ["-1", 3, 299, 299]
        assert out.name == "class" and dims(out) == ["-1", 1001]
        final_pools = [n for n in model.graph.node if n.op_type == "AveragePool" and any(
            a.name == "kernel_shape" and list(a.ints) == [8, 8] for a in n.attribute)]
        assert len(final_pools) == 1, name  # a static 8x8 kernel: a constant graph for ATC


@pytest.mark.slow
def test_onnx_runtime_matches_upstream_eager(exported, checkpoint, images):
    _, upstream = checkpoint
    _, batch = images
    got = ort_run(exported["git"], batch)
    assert got.shape == (10, 1001)
    for name in ("git", "release"):  # both unpatched: 8aae3d8's pool and the release's
        with torch.no_grad():
            expected = upstream[name](torch.from_numpy(batch)).numpy()
        assert np.abs(expected - expected.mean(0)).max() > 100 * ATOL  # far from trivial
        assert len(set(expected.argmax(1))) > 1
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=name)


@pytest.mark.slow
def test_git_and_release_exports_agree(exported, images):
    _, batch = images
    git, release = ort_run(exported["git"], batch[:4]), ort_run(exported["release"], batch[:4])
    np.testing.assert_allclose(git, release, rtol=0, atol=1e-5)
