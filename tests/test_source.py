"""The upstream source step (npuzoo.source) and the validation of `upstream.sources`.

What is tested, offline: GitHub is unreachable here, so "git" sources are either a path that
does not exist (the clone fails fast, as it would without network) or a local repository made
in the test from the release sdist plus the documented 8aae3d8 differences (a real `git clone`
and checkout of a real commit, just not of GitHub). PyPI sources come from the sdist cache that
`make venv` fills (.venv/sdists); nothing is downloaded. The CLI is run as pipeline.mk runs it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import pretrainedmodels_trees as trees  # noqa: E402

from npuzoo import config  # noqa: E402
from npuzoo.errors import UserError  # noqa: E402

REPO = trees.REPO
DPN_DIFF = REPO / "models" / "dpn131" / "dpn.diff"
DPN_FILE = "pretrainedmodels/models/dpn.py"
BROKEN_DIFF = """\
--- a/pretrainedmodels/models/dpn.py
+++ b/pretrainedmodels/models/dpn.py
@@ -375,3 +375,3 @@
     def logits(self, features):
-        if self.this_line_is_not_in_dpn_py:
+        if False:
             x = F.avg_pool2d(features, kernel_size=7, stride=1)
"""


# -- helpers ----------------------------------------------------------------------------------

def pypi_source(patch="dpn.diff"):
    return {"kind": "pypi", "requirement": "pretrainedmodels==0.7.4", "patch": patch,
            "why": "the release"}


def git_source(url, commit="8aae3d8", patch="dpn.diff"):
    return {"kind": "git", "url": str(url), "commit": commit, "patch": patch,
            "why": "the pinned commit"}


def model_yaml(tmp_path, sources, patches=None):
    """A copy of models/dpn131/model.yaml in tmp_path/dpn131 with these sources and patches."""
    folder = tmp_path / "dpn131"
    folder.mkdir()
    data = yaml.safe_load((REPO / "models" / "dpn131" / "model.yaml").read_text())
    data["upstream"]["sources"] = sources
    (folder / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(DPN_DIFF, folder / "dpn.diff")
    for name, text in (patches or {}).items():
        (folder / name).write_text(text)
    return folder / "model.yaml"


def fetch(yaml_path, dest, record, cache=None):
    cache = trees.sdist_path().parent if cache is None else cache
    return subprocess.run([sys.executable, "-m", "npuzoo.source", "fetch", str(yaml_path),
                           str(dest), "--record", str(record), "--cache", str(cache)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def local_git_repo(path):
    """A git repository holding the "8aae3d8" tree (see fixtures/pretrainedmodels_trees.py)."""
    trees.git_tree(path)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "tree"]):
        subprocess.run(command, cwd=path, check=True, env=env, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, text=True,
                          capture_output=True).stdout.strip()


# -- fetching ---------------------------------------------------------------------------------

def test_pypi_fallback_when_git_fails(tmp_path):
    missing = tmp_path / "no-such-repository"
    yaml_path = model_yaml(tmp_path, [git_source(missing), pypi_source()])
    dest, record = tmp_path / "src" / "upstream", tmp_path / "src" / "source.json"
    result = fetch(yaml_path, dest, record)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"source: skipped git {missing}@8aae3d8: git clone failed")
    assert lines[1].startswith("source: using pypi pretrainedmodels==0.7.4 (patch dpn.diff applied)")
    # the tree is the sdist's top folder, patched
    assert (dest / "setup.py").is_file()
    assert "F.adaptive_avg_pool2d(features" in (dest / DPN_FILE).read_text()
    assert not Path(str(dest) + ".tmp").exists()
    data = json.loads(record.read_text())
    assert data["kind"] == "pypi"
    assert data["requirement"] == "pretrainedmodels==0.7.4" and data["version"] == "0.7.4"
    assert data["from"] == "cache"
    assert data["sdist"] == trees.SDIST_NAME
    assert data["sdist_sha256"] == trees.sha256(trees.sdist_path())
    assert data["patch"] == "dpn.diff"
    assert data["patch_sha256"] == trees.sha256(DPN_DIFF)
    assert data["why"] == "the release"
    assert data["repo"] == "https://github.com/Cadene/pretrained-models.pytorch"
    assert data["pinned_commit"] == "8aae3d8"
    assert len(data["skipped"]) == 1
    assert data["skipped"][0]["source"] == f"git {missing}@8aae3d8"
    assert "git clone failed" in data["skipped"][0]["error"]


def test_git_source_is_used_when_reachable(tmp_path):
    commit = local_git_repo(tmp_path / "repo")
    yaml_path = model_yaml(tmp_path, [git_source(tmp_path / "repo", commit[:7]), pypi_source()])
    dest, record = tmp_path / "upstream", tmp_path / "source.json"
    result = fetch(yaml_path, dest, record)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"source: using git {tmp_path / 'repo'}@{commit[:7]}")
    data = json.loads(record.read_text())
    assert data["kind"] == "git" and data["commit"] == commit and data["skipped"] == []
    assert data["url"] == str(tmp_path / "repo")
    assert not (dest / ".git").exists()  # a plain tree, like the sdist
    assert "F.adaptive_avg_pool2d(features" in (dest / DPN_FILE).read_text()


def test_missing_commit_falls_back_to_pypi(tmp_path):
    local_git_repo(tmp_path / "repo")
    yaml_path = model_yaml(tmp_path, [git_source(tmp_path / "repo", "deadbee"), pypi_source()])
    result = fetch(yaml_path, tmp_path / "upstream", tmp_path / "source.json")
    assert result.returncode == 0, result.stderr
    assert "commit deadbee not found" in result.stdout
    assert json.loads((tmp_path / "source.json").read_text())["kind"] == "pypi"


def test_broken_patch_stops_with_its_name_and_hunk(tmp_path):
    # The pypi source's patch is broken; a third, working source must NOT be used instead.
    yaml_path = model_yaml(
        tmp_path, [git_source(tmp_path / "nothing"), pypi_source("broken.diff"), pypi_source()],
        patches={"broken.diff": BROKEN_DIFF})
    dest, record = tmp_path / "upstream", tmp_path / "source.json"
    result = fetch(yaml_path, dest, record)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: patch broken.diff does not apply to pypi "
                               "pretrainedmodels==0.7.4")
    assert ": 1 out of 1 hunk FAILED; rejected hunk in pretrainedmodels/models/dpn.py: " \
        "@@ -375,3 +375,3 @@ |" in lines[0]
    assert "this_line_is_not_in_dpn_py" in lines[0]
    assert not dest.exists() and not Path(str(dest) + ".tmp").exists() and not record.exists()


def test_broken_patch_on_the_git_source_does_not_fall_through(tmp_path):
    commit = local_git_repo(tmp_path / "repo")
    yaml_path = model_yaml(
        tmp_path, [git_source(tmp_path / "repo", commit, "broken.diff"), pypi_source()],
        patches={"broken.diff": BROKEN_DIFF})
    result = fetch(yaml_path, tmp_path / "upstream", tmp_path / "source.json")
    assert result.returncode == 2
    assert "error: patch broken.diff does not apply to git" in result.stderr
    assert not (tmp_path / "upstream").exists()


def test_no_source_available_names_every_failure(tmp_path, monkeypatch):
    from npuzoo import source
    monkeypatch.setattr(source, "download_sdist", lambda requirement, folder: (_ for _ in ()).throw(
        source.SourceUnavailable(f"pip download {requirement} failed: no network")))
    upstream = {"sources": [git_source(tmp_path / "a"), pypi_source()]}
    with pytest.raises(UserError) as err:
        source.fetch(upstream, str(tmp_path), str(tmp_path / "upstream"),
                     cache=str(tmp_path / "empty-cache"), log=lambda line: None)
    message = str(err.value)
    assert message.startswith("no upstream source could be fetched (git ")
    assert "pypi pretrainedmodels==0.7.4: pip download pretrainedmodels==0.7.4 failed" in message
    assert not (tmp_path / "upstream").exists()


def test_existing_tree_is_replaced_whole(tmp_path):
    dest = tmp_path / "upstream"
    dest.mkdir()
    (dest / "stale.txt").write_text("from an earlier run")
    yaml_path = model_yaml(tmp_path, [pypi_source()])
    result = fetch(yaml_path, dest, tmp_path / "source.json")
    assert result.returncode == 0, result.stderr
    assert not (dest / "stale.txt").exists() and (dest / DPN_FILE).is_file()


def test_model_without_sources_is_an_error():
    result = subprocess.run([sys.executable, "-m", "npuzoo.source", "fetch", "mobilenetv1",
                             "/nonexistent/x"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: mobilenetv1: model.yaml has no upstream.sources")


# -- validation of upstream.sources -----------------------------------------------------------

def dpn_config():
    return yaml.safe_load((REPO / "models" / "dpn131" / "model.yaml").read_text())


@pytest.mark.parametrize("change, message", [
    (lambda s: s[0].update(kind="svn"),
     "upstream.sources[0].kind: expected one of git, pypi, got 'svn'"),
    (lambda s: s[0].update(patch="missing.diff"),
     "upstream.sources[0].patch: missing.diff not found in models/dpn131"),
    (lambda s: s[0].update(patch="../mobilenetv1/model.yaml"),
     "upstream.sources[0].patch: expected a file name in the model folder or null"),
    (lambda s: s[0].pop("patch"), "upstream.sources[0].patch: missing (name the patch file"),
    (lambda s: s[0].pop("commit"), "upstream.sources[0].commit: missing (required for kind git)"),
    (lambda s: s[0].update(commit="main"), "upstream.sources[0].commit: expected a commit hash"),
    (lambda s: s[1].update(requirement="pretrainedmodels>=0.7"),
     "upstream.sources[1].requirement: expected a pinned requirement name==version"),
    (lambda s: s[1].pop("why"), "upstream.sources[1].why: missing (required for kind pypi)"),
    (lambda s: s[1].update(url="https://x"), "upstream.sources[1]: unknown field 'url' for kind pypi"),
    (lambda s: s.clear(), "upstream.sources: expected a non-empty list of sources"),
])
def test_sources_validation_names_the_field(change, message):
    data = dpn_config()
    change(data["upstream"]["sources"])
    with pytest.raises(UserError) as err:
        config.validate(data, "models/dpn131/model.yaml", folder=str(REPO / "models" / "dpn131"))
    assert str(err.value).startswith("models/dpn131/model.yaml: " + message), str(err.value)


def test_declared_sources_of_both_models_validate():
    for name in ("dpn131", "inceptionv4"):
        data = config.load(name)
        assert [s["kind"] for s in data["upstream"]["sources"]] == ["git", "pypi"]
        assert config.make_variables(data).count("HAS_UPSTREAM := 1") == 1
