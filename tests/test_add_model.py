"""docs/design.md "Adding a model", followed to the letter in a scratch copy of the repository:
a throwaway model folder `tinynet` (a tiny network defined in the folder) is added, and nothing
else is edited; `make tinynet WEIGHTS=random` runs its whole pipeline on a few real images,
`make readme` renders its README and lists it in the top one, and the parametrized folder
suite passes for it. The scratch copy is a temporary folder: the repository, its reports and
its READMEs are never touched, whatever the outcome.
"""

import hashlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, make, scratch_repository

pytestmark = pytest.mark.slow

NAME = "tinynet"
# Step 3 of the recipe: the network, in place of the sibling's new_network().
NETWORK = '''

class TinyNet(torch.nn.Module):
    """Two convolutions with BatchNorm, a global pool and a linear classifier."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=4), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def new_network(source=None):
    return TinyNet(num_classes=CONFIG["output"]["classes"])
'''


def recipe(design):
    """The numbered steps of docs/design.md's "Adding a model", as text."""
    section = design.split("## Adding a model", 1)[1].split("\n## ", 1)[0]
    return section.split("### Steps", 1)[1]


def snapshot(root):
    """sha256 of every file outside build/, reports/ and the new folder."""
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] in ("build", "reports", ".venv",
                            ".venv.lock") or rel.parts[:2] == ("models", NAME) \
                or "__pycache__" in rel.parts or not path.is_file():
            continue
        found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def add_tinynet(root):
    """The recipe's steps 1-4, as a developer follows them (the texts below are the new model's)."""
    models = root / "models"
    folder = models / NAME
    folder.mkdir()
    # 1. model.yaml, from the sibling whose network lives where ours does (in the folder)
    data = yaml.safe_load((models / "mobilenetv1" / "model.yaml").read_text())
    data.update(name=NAME, description="A two-convolution test network.", license="MIT")
    data["upstream"] = {"note": "defined in pth2onnx.py; nothing to clone or patch"}
    data["weights"] = {"file": "tinynet.pth", "url": "https://example.invalid/tinynet.pth",
                       "checksum": "unpublished", "layout": "plain"}
    data["reference"] = {"accuracy": {"source": "none: a test network"},
                         "tolerance": {"top1": 1.0, "top5": 1.0}}
    data.pop("perf")
    (folder / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    # 2. preprocess.py and postprocess.py from a sibling with the same preprocessing, naming
    #    the new model where they name the sibling; the guide's accuracy: none published
    for script in ("preprocess.py", "postprocess.py"):
        text = (models / "mobilenetv1" / script).read_text().replace("MobileNetV1", "TinyNet")
        text = re.sub(r"\nGUIDE_ACCURACY = \{.*\}\n", "\nGUIDE_ACCURACY = {}\n", text)
        (folder / script).write_text(text)
    # 3. pth2onnx.py from the same sibling, its network replaced by ours
    text = (models / "mobilenetv1" / "pth2onnx.py").read_text().replace("MobileNetV1", "TinyNet")
    start = text.index("# (input channels, output channels, stride)")
    end = text.index("\n\nclass UserError")
    text = text[:start].rstrip("\n") + "\n" + text[end:]
    text = re.sub(r"\n\ndef new_network\(source=None\):\n    return .*\n", NETWORK, text)
    text = text.replace("from torch import nn\n", "")
    (folder / "pth2onnx.py").write_text(text)
    # 4. requirements.txt: the project's pins the scripts import
    (folder / "requirements.txt").write_text(
        (models / "mobilenetv1" / "requirements.txt").read_text().replace("mobilenetv1", NAME))
    return folder


def test_a_model_added_by_the_recipe_runs_end_to_end_and_appears_in_the_readme(tmp_path,
                                                                               shared_data):
    root = scratch_repository(tmp_path / "repo")
    shutil.copytree(REPO / "reports", root / "reports", dirs_exist_ok=True)  # the others' results
    steps = recipe((root / "docs" / "design.md").read_text())
    for needed in ("model.yaml", "preprocess.py", "postprocess.py", "pth2onnx.py",
                   "requirements.txt", "WEIGHTS=random", "make readme", "make test"):
        assert needed in steps, f"docs/design.md's recipe does not mention {needed}"
    before = snapshot(root)
    folder = add_tinynet(root)
    data = shared_data / "imagenet-val-10"
    run = make(root, NAME, f"DATA={data}", "N=6", "BS=1 4", "WEIGHTS=random", "SOC=cpu", "LOOP=3",
               timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for bs in (1, 4):
        report = root / "reports" / NAME / f"cpu_bs{bs}.json"
        assert report.is_file(), run.stdout[-2000:]
    readme = make(root, "readme")
    assert readme.returncode == 0, readme.stderr
    assert (folder / "README.md").is_file()
    top = (root / "README.md").read_text()
    assert re.search(rf"ImageNet classifiers \([^)]*\b{NAME}\b", top)  # the introduction
    assert f"models/{NAME}/README.md" in top  # the table of every model
    assert snapshot(root).keys() == before.keys()
    changed = [p for p in before if before[p] != snapshot(root)[p]]
    assert changed == ["README.md"], changed  # rendered, not edited
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_model_folders.py", "-k", f"{NAME} or copy_of_another",
                            "-m", "not slow"],
                           cwd=root, capture_output=True, text=True, timeout=1200)
    assert suite.returncode == 0 and " passed" in suite.stdout, suite.stdout[-3000:]
