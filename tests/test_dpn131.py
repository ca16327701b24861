"""DPN131: preprocessing, the declared patch per source, and the export against upstream eager.

What is tested (what every folder must do is tested by test_model_folders.py):
- model.yaml's preprocessing values are the guide's (docs/model_facts.md, DPN131
  "Preprocessing"); preprocess.py turns them into torchvision's computation
  (test_model_folders.py), and its output feeds the parity below.
- dpn.diff applies with `patch -p1` to both declared trees (the 0.7.4 release, and dpn.py as at
  8aae3d8: see fixtures/pretrainedmodels_trees.py for how that tree is made offline), whose
  dpn.py files are identical.
- The published layout is a plain state_dict (`weights.layout: plain`): `module.` keys are
  refused naming the first missing and unexpected key.
- A randomly initialised checkpoint (BatchNorm statistics calibrated on the images, so that the
  logits vary strongly between images; see fixtures/pretrainedmodels_trees.randomize) in the
  published format
  (plain state_dict, no prefix, no num_batches_tracked) goes through the real pth2onnx.py with
  --source pointing at each patched tree. ONNX Runtime's output on the real preprocessed
  images (batch 10) matches the UNPATCHED upstream network in eager mode (test-time pooling on,
  as upstream's dpn131 builds it) to 1e-4: dpn.diff is exact at 224x224.
- The graph is opset 11, input `image` [-1,3,224,224], output `class` [-1,1000], and the exports
  from the two trees give the same outputs.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import pretrainedmodels_trees as trees  # noqa: E402

REPO = trees.REPO
FOLDER = REPO / "models" / "dpn131"
CONFIG = yaml.safe_load((FOLDER / "model.yaml").read_text())
MEAN, STD = [0.486, 0.459, 0.408], [0.235, 0.235, 0.235]
SHAPE = (3, 224, 224)
ATOL = 1e-4


def declared_patch(kind):
    (entry,) = [s for s in CONFIG["upstream"]["sources"] if s["kind"] == kind]
    return entry["patch"]


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dpn_trees(tmp_path_factory):
    """{"release"|"git": unpatched tree, "release_patched"|"git_patched": with its patch}."""
    base = tmp_path_factory.mktemp("dpn131-trees")
    made = {"release": trees.release_tree(base / "release"), "git": trees.git_tree(base / "git")}
    for kind, name in (("pypi", "release"), ("git", "git")):
        tree = trees.release_tree(base / f"{name}_patched")
        if name == "git":
            trees.patch(tree, trees.TO_GIT_DIFF)
        made[f"{name}_patched"] = trees.patch(tree, FOLDER / declared_patch(kind))
    return made


@pytest.fixture(scope="session")
def images(shared_data, tmp_path_factory):
    """(stems, batch) of the 10 real images through the real preprocess.py."""
    out = tmp_path_factory.mktemp("dpn131-prep")
    result = trees.run_script(FOLDER / "preprocess.py", shared_data / "imagenet-val-10" / "val", out)
    assert result.returncode == 0, result.stderr
    stems = sorted(p.stem for p in out.glob("*.bin"))
    assert len(stems) == 10
    assert {(out / f"{stem}.bin").stat().st_size for stem in stems} == {602112}  # float32 CHW
    return stems, trees.read_bins(out, stems, SHAPE)


@pytest.fixture(scope="session")
def checkpoint(dpn_trees, images, tmp_path_factory):
    """A random checkpoint in the published format, and the unpatched upstream model holding it."""
    dpn = trees.load_model_file(dpn_trees["release"], "dpn", "_upstream_dpn_release")
    torch.manual_seed(1)
    model = trees.randomize(dpn.dpn131(pretrained=None), seed=1, calibration=images[1])
    assert model.test_time_pool  # upstream's dpn131 as the ModelZoo builds it
    path = trees.save_published_format(model, tmp_path_factory.mktemp("dpn131-ckpt") / "dpn131.pth")
    return path, model


@pytest.fixture(scope="session")
def exported(dpn_trees, checkpoint, tmp_path_factory):
    """The real pth2onnx.py on the checkpoint, once per patched tree."""
    out = tmp_path_factory.mktemp("dpn131-onnx")
    paths = {}
    for name in ("release", "git"):
        paths[name] = out / f"dpn131_{name}.onnx"
        result = trees.run_script(FOLDER / "pth2onnx.py", checkpoint[0], paths[name],
                                  "--source", dpn_trees[f"{name}_patched"])
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
        (256, 224, "round", "bilinear")
    assert pre["mean"] == MEAN and pre["std"] == STD
    assert CONFIG["weights"]["md5"] == "71e7844aa8646dc75494976c7c86241a"
    assert CONFIG["output"]["classes"] == 1000
    assert CONFIG["reference"]["accuracy"]["top1"] == 79.42
    assert CONFIG["reference"]["perf"]["Ascend310P3"]["fps"][4] == 550
    assert "six" in (FOLDER / "requirements.txt").read_text()


def test_declared_patches_apply_and_dpn_py_is_the_same_in_both_trees(dpn_trees):
    assert declared_patch("git") == declared_patch("pypi") == "dpn.diff"
    rel = "pretrainedmodels/models/dpn.py"
    assert (dpn_trees["release"] / rel).read_bytes() == (dpn_trees["git"] / rel).read_bytes()
    assert (dpn_trees["release_patched"] / rel).read_bytes() == \
        (dpn_trees["git_patched"] / rel).read_bytes()


def test_unpatched_tree_is_refused(dpn_trees, tmp_path):
    result = trees.run_script(FOLDER / "pth2onnx.py", "random", tmp_path / "x.onnx",
                              "--source", dpn_trees["release"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "dpn.diff is not applied" in result.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_module_prefixed_keys_are_not_the_plain_layout(dpn_trees, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"module.features.conv1_1.conv.weight": torch.zeros(1)}, bad)
    result = trees.run_script(FOLDER / "pth2onnx.py", bad, tmp_path / "x.onnx",
                              "--source", dpn_trees["release_patched"])
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {bad}: not a dpn131 checkpoint: keys ")
    assert "missing (first: features.conv1_1.conv.weight)" in line
    assert "unexpected (first: module.features.conv1_1.conv.weight)" in line


# -- export (slow) ----------------------------------------------------------------------------

@pytest.mark.slow
def test_exported_graph_interface(exported):
    model = onnx.load(str(exported["release"]), load_external_data=False)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] \
        == [("", 11)]
    (inp,), (out,) = model.graph.input, model.graph.output

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    assert inp.name == "image" and dims(inp) == ["-1", 3, 224, 224]
    assert out.name == "class" and dims(out) == ["-1", 1000]
    ops = [n.op_type for n in model.graph.node]
    assert "GlobalAveragePool" in ops  # dpn.diff's global pool; no test-time-pool MaxPool tail


@pytest.mark.slow
def test_onnx_runtime_matches_upstream_eager(exported, checkpoint, images):
    _, upstream = checkpoint  # unpatched dpn.py, test_time_pool on
    _, batch = images
    with torch.no_grad():
        expected = upstream(torch.from_numpy(batch)).numpy()
    got = ort_run(exported["release"], batch)
    assert got.shape == (10, 1000)
    # far from trivial: the logits differ between images by much more than the tolerance
    assert np.abs(expected - expected.mean(0)).max() > 100 * ATOL
    assert len(set(expected.argmax(1))) > 1
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_git_and_release_exports_agree(exported, images):
    _, batch = images
    release, git = ort_run(exported["release"], batch[:4]), ort_run(exported["git"], batch[:4])
    np.testing.assert_allclose(git, release, rtol=0, atol=1e-6)
    ops = [[n.op_type for n in onnx.load(str(p), load_external_data=False).graph.node]
           for p in (exported["release"], exported["git"])]
    assert ops[0] == ops[1]
