"""VoVNet39: the network in models/vovnet39 against the upstream checkpoint's layout
(docs/model_facts.md, VoVNet39 "Network"), the published checkpoint's format (`module.` on every
key, model.yaml `weights.layout: module_prefix`), and the exported ONNX against the network in
PyTorch eager mode on real images. What every folder must do is tested by test_model_folders.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from npuzoo import config

from conftest import load_model_script

MODEL = "vovnet39"

# docs/model_facts.md, VoVNet39 "Network", written out independently of pth2onnx.py.
STEM = [("stem_1", 3, 64), ("stem_2", 64, 64), ("stem_3", 64, 128)]
STAGES = {2: (128, 256, 1), 3: (160, 512, 1), 4: (192, 768, 2), 5: (224, 1024, 2)}
CONCAT_INPUTS = {"OSA2_1": 768, "OSA3_1": 1056, "OSA4_1": 1472, "OSA4_2": 1728,
                 "OSA5_1": 1888, "OSA5_2": 2144}
NAMED = {
    "stem.stem_1/conv.weight": (64, 3, 3, 3),
    "stage2.OSA2_1.layers.0.OSA2_1_0/norm.running_var": (128,),
    "stage2.OSA2_1.concat.OSA2_1_concat/conv.weight": (256, 768, 1, 1),
    "stage4.OSA4_2.layers.0.OSA4_2_0/conv.weight": (192, 768, 3, 3),
    "classifier.weight": (1000, 1024),
}


def expected_layout():
    """Every state_dict key and shape of upstream vovnet39(), in module order."""
    layout = []

    def unit(prefix, cin, cout, k):
        layout.append((f"{prefix}/conv.weight", (cout, cin, k, k)))
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout.append((f"{prefix}/norm.{name}", (cout,)))
        layout.append((f"{prefix}/norm.num_batches_tracked", ()))

    for name, cin, cout in STEM:
        unit(f"stem.{name}", cin, cout, 3)
    in_ch = 128
    for s, (stage_ch, concat_ch, blocks) in STAGES.items():
        for b in range(1, blocks + 1):
            block = f"OSA{s}_{b}"
            block_in = in_ch if b == 1 else concat_ch
            cin = block_in
            for i in range(5):
                unit(f"stage{s}.{block}.layers.{i}.{block}_{i}", cin, stage_ch, 3)
                cin = stage_ch
            unit(f"stage{s}.{block}.concat.{block}_concat", block_in + 5 * stage_ch, concat_ch, 1)
        in_ch = concat_ch
    layout += [("classifier.weight", (1000, 1024)), ("classifier.bias", (1000,))]
    return layout


def load_script(repo, name):
    return load_model_script(MODEL, name)


@pytest.fixture(scope="module")
def network(repo):
    return load_script(repo, "pth2onnx")


@pytest.fixture(scope="module")
def pth2onnx(repo):
    return load_script(repo, "pth2onnx")


def randomised(model, seed=1):
    """Random weights AND BN statistics, so an export that ignored BN would be caught."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.num_batches_tracked.fill_(1000)
    return model.eval()


def run(repo, script, *args):
    return subprocess.run([sys.executable, str(repo / "models" / MODEL / script), *map(str, args)],
                          capture_output=True, text=True)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- model.yaml -------------------------------------------------------------------------------

def test_model_yaml_valid_and_reference():
    spec = config.load(MODEL)
    data = yaml.safe_load(open(os.path.join(spec.folder, "model.yaml"), encoding="utf-8"))
    assert data["reference"]["accuracy"]["top1"] == 76.78  # the guide's 310 result
    assert data["reference"]["accuracy"]["top5"] == 93.43
    perf = data["reference"]["perf"]
    # the guide's per-card figures (one chip x 4), BS 64 not published there
    assert perf["Ascend310"]["fps"] == {1: 1126.432, 4: 1419.168, 8: 1456.516, 16: 1530.264,
                                        32: 1529.584}
    assert perf["Ascend310P3"]["fps"][4] == 1767.6 and perf["T4"]["fps"][64] == 1533.7
    assert data["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert data["preprocess"]["std"] == [0.229, 0.224, 0.225]
    assert data["weights"]["url"].endswith("/VoVnet39/PTH/vovnet39.pth")
    # No checksum is known for the OBS file; the dropbox md5 is recorded, not enforced.
    assert data["weights"]["checksum"] == "unpublished" and "md5" not in data["weights"]
    assert data["weights"]["previous"]["md5"] == "23717a6cadd9729a704f894381444237"


# -- architecture -------------------------------------------------------------------------------

def test_state_dict_layout_equals_upstream(network):
    model = network.VoVNet()
    state = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected_layout()
    assert len(state) == 236
    assert sum(k.endswith("num_batches_tracked") for k in state) == 39
    assert sum(p.numel() for p in model.parameters()) == 22_600_296
    for key, shape in NAMED.items():
        assert tuple(state[key].shape) == shape
    for block, channels in CONCAT_INPUTS.items():
        stage = block[3]
        key = f"stage{stage}.{block}.concat.{block}_concat/conv.weight"
        assert state[key].shape[1] == channels


def test_structure_and_forward(network):
    model = network.VoVNet().eval()
    pools = [m for name, m in model.named_modules() if name.endswith("Pooling")]
    assert [p.ceil_mode for p in pools] == [True, True, True]
    assert not hasattr(model.stage2, "Pooling")
    identity = {name: m.identity for name, m in model.named_modules()
                if isinstance(m, network.OSAModule)}
    assert [n for n, v in identity.items() if v] == ["stage4.OSA4_2", "stage5.OSA5_2"]
    sizes = []
    x = torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        x = model.stem(x)
        sizes.append(x.shape[-1])
        for name in ("stage2", "stage3", "stage4", "stage5"):
            x = getattr(model, name)(x)
            sizes.append(x.shape[-1])
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    assert sizes == [56, 56, 28, 14, 7]


# -- checkpoint loading -------------------------------------------------------------------------

def test_upstream_module_prefixed_checkpoint_loads(network, pth2onnx, tmp_path, capsys):
    source = randomised(network.VoVNet())
    state = source.state_dict()
    # the published file: a state_dict saved from nn.DataParallel
    published = {f"module.{k}": v.clone() for k, v in state.items()}
    path = tmp_path / "vovnet39.pth"
    torch.save(published, path)
    model = pth2onnx.build_model(path)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("layout", ["plain", "no_num_batches_tracked"])
def test_other_checkpoint_layouts_load(network, pth2onnx, tmp_path, layout):
    state = randomised(network.VoVNet()).state_dict()
    if layout == "plain":
        saved = dict(state)
    else:
        saved = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "w.pth"
    torch.save(saved, path)
    loaded = pth2onnx.build_model(path).state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and layout == "no_num_batches_tracked":
            continue
        assert torch.equal(loaded[key], value), key


def test_a_training_checkpoint_is_not_the_declared_layout(network, pth2onnx, tmp_path):
    """`layout: module_prefix` takes a state_dict; a dict holding one under 'state_dict' (a
    training checkpoint, not what is published) is one line saying what the layout takes."""
    state = network.VoVNet().state_dict()
    path = tmp_path / "training.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(pth2onnx.UserError, match=r"not a vovnet39 checkpoint: keys \d+ missing "
                       r"\(first: stem.stem_1/conv.weight\), 2 unexpected \(first: epoch\)"):
        pth2onnx.build_model(path)


def test_timm_layout_is_refused_naming_keys(repo, network, tmp_path):
    """The timm vovnet39a names are refused: one line with the file, first missing/unexpected key
    (run as a real command, so exit status and the absence of a traceback are checked)."""
    state = network.VoVNet().state_dict()
    renamed = {("stem.0.conv.weight" if k == "stem.stem_1/conv.weight" else k): v
               for k, v in state.items()}
    path = tmp_path / "timm.pth"
    torch.save(renamed, path)
    result = run(repo, "pth2onnx.py", path, tmp_path / "x.onnx")
    assert_one_line_error(result, str(path), "stem.stem_1/conv.weight", "stem.0.conv.weight")
    assert not (tmp_path / "x.onnx").exists()


# -- export -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_matches_pytorch_on_real_images(repo, shared_data, network, pth2onnx, tmp_path):
    import onnx
    import onnxruntime as ort

    model = randomised(network.VoVNet())
    path = tmp_path / "vovnet39.onnx"
    pth2onnx.export(model, path)
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [11]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["class"]
    assert dims(proto.graph.input[0]) == ["-1", 3, 224, 224]
    assert dims(proto.graph.output[0]) == ["-1", 1000]

    prep = tmp_path / "prep"
    result = run(repo, "preprocess.py", shared_data / "imagenet-val-10" / "val", prep,
                 "--limit", 4)
    assert result.returncode == 0, result.stderr
    batch = np.stack([np.fromfile(f, dtype=np.float32).reshape(3, 224, 224)
                      for f in sorted(prep.glob("*.bin"))])
    assert batch.shape == (4, 3, 224, 224)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["class"], {"image": batch})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).numpy()
    assert got.shape == (4, 1000)
    assert np.abs(want).max() > 5  # a trained network's logit range, not near-zero outputs
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()
