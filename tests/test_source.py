"""The upstream source step (npuzoo.source) and the validation of `upstream.sources`.

What is tested, offline: GitHub is unreachable here, so "git" sources are either a path that
does not exist (the clone fails fast, as it would without network) or a local repository made
in the test from the release sdist plus the documented 8aae3d8 differences (a real `git clone`
and checkout of a real commit, just not of GitHub). PyPI sources come from the sdist cache that
`make venv` fills (.venv/sdists), or from copies of it altered in the test; nothing is
downloaded (a "download" is download_sdist monkeypatched to copy a local file). The CLI is run
as pipeline.mk runs it. Also: the sdist's pinned sha256 (checked before unpacking), and
`verify` (the patched tree against its record's tree_sha256).
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from npuzoo import config
from npuzoo.errors import UserError

import pretrainedmodels_trees as trees

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

def pinned_sdist_sha256():
    """The sha256 of pretrainedmodels-0.7.4.tar.gz pinned in models/dpn131/model.yaml."""
    data = yaml.safe_load((REPO / "models" / "dpn131" / "model.yaml").read_text())
    (entry,) = [s for s in data["upstream"]["sources"] if s["kind"] == "pypi"]
    return entry["sha256"]


def pypi_source(patch="dpn.diff", sha256=None):
    return {"kind": "pypi", "requirement": "pretrainedmodels==0.7.4",
            "sha256": sha256 or pinned_sdist_sha256(), "patch": patch, "why": "the release"}


def git_source(url, commit="8aae3d8", patch="dpn.diff"):
    return {"kind": "git", "url": str(url), "commit": commit, "patch": patch,
            "why": "the pinned commit"}


def upstream_of(*sources):
    """The typed upstream of these source entries (as model.yaml writes them)."""
    return config.UpstreamSpec(sources=tuple(
        (config.GitSource if s["kind"] == "git" else config.PypiSource)(
            **{k: v for k, v in s.items() if k != "kind"}) for s in sources))


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
    assert lines[1].startswith("source: using pypi pretrainedmodels==0.7.4 (patch dpn.diff "
                               "applied)")
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
    from npuzoo import source
    assert data["tree_sha256"] == source.tree_sha256(dest)
    assert data["tree_files"] == len(source.tree_manifest(dest))
    # the verified sdist is kept beside the record: verify rebuilds the tree from it
    assert trees.sha256(tmp_path / "src" / trees.SDIST_NAME) == data["sdist_sha256"]


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


def test_a_git_tree_is_verified_against_its_commit(tmp_path):
    """No record to trust: the patch undone must give the tree the pinned commit names."""
    from npuzoo import source
    commit = local_git_repo(tmp_path / "repo")
    yaml_path = model_yaml(tmp_path, [git_source(tmp_path / "repo", commit[:7]), pypi_source()])
    dest, record = tmp_path / "upstream", tmp_path / "source.json"
    assert fetch(yaml_path, dest, record).returncode == 0
    upstream = config.load(str(yaml_path)).upstream

    def first():
        return source.verify_tree(upstream, str(yaml_path.parent), str(dest), str(record))
    assert first() is None
    (dest / "setup.py").write_text("import os  # edited outside the patched lines\n")
    data = json.loads(record.read_text())
    data["tree_sha256"] = source.tree_sha256(dest)  # the record rewritten does not help
    record.write_text(json.dumps(data))
    assert first() == (f"unknown, git {tmp_path / 'repo'}@{commit[:7]}: with its patch undone, "
                       f"it is not the tree of commit {commit}")
    # nor does a commit object of the attacker's making
    data["commit_object"] = data["commit_object"].replace("tree ", "tree 0", 1)
    record.write_text(json.dumps(data))
    assert first().endswith("the record holds no commit object of the pinned commit")


def test_short_commit_must_prefix_the_commit_checked_out(tmp_path):
    # A tag spelled like the pinned short hash, on a commit that does not start with it: git
    # checks the tag out; the source must count as unavailable (here: fall back to pypi).
    commit = local_git_repo(tmp_path / "repo")
    fake = "abcdef1" if not commit.startswith("abcdef1") else "1234567"
    subprocess.run(["git", "tag", fake, commit], cwd=tmp_path / "repo", check=True)
    yaml_path = model_yaml(tmp_path, [git_source(tmp_path / "repo", fake), pypi_source()])
    result = fetch(yaml_path, tmp_path / "upstream", tmp_path / "source.json")
    assert result.returncode == 0, result.stderr
    assert f"{fake} resolved to commit {commit}, not to itself" in result.stdout
    assert json.loads((tmp_path / "source.json").read_text())["kind"] == "pypi"


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
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip's own configuration: none of it
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "no-index").as_uri())
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    upstream = upstream_of(git_source(tmp_path / "a"), pypi_source())
    with pytest.raises(UserError) as err:
        source.fetch(upstream, str(tmp_path), str(tmp_path / "upstream"),
                     cache=str(tmp_path / "empty-cache"), log=lambda line: None)
    message = str(err.value)
    assert message.startswith("no upstream source could be fetched (git ")
    assert ("pypi pretrainedmodels==0.7.4: no sdist of pretrainedmodels==0.7.4 found "
            f"({(tmp_path / 'no-index').as_uri()}: ") in message
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


# -- the sdist's pinned sha256 ----------------------------------------------------------------

PAYLOAD = "\nimport os; os.system('echo pwned > /tmp/npuzoo-payload')\n"


def tampered_sdist(folder):
    """pretrainedmodels-0.7.4.tar.gz rebuilt with a payload appended to dpn.py, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    work = folder.parent / (folder.name + ".work")
    trees.release_tree(work / "pretrainedmodels-0.7.4")
    with open(work / "pretrainedmodels-0.7.4" / DPN_FILE, "a") as handle:
        handle.write(PAYLOAD)
    archive = folder / trees.SDIST_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work / "pretrainedmodels-0.7.4", arcname="pretrainedmodels-0.7.4")
    shutil.rmtree(work)
    return archive


def never(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} must not run")
    return fail


def test_tampered_cached_sdist_is_refused_before_unpacking(tmp_path, monkeypatch):
    from npuzoo import source
    archive = tampered_sdist(tmp_path / "cache")
    actual = trees.sha256(archive)
    # A working git source comes after it: the step must stop, not fall through to it.
    commit = local_git_repo(tmp_path / "repo")
    upstream = upstream_of(pypi_source(), git_source(tmp_path / "repo", commit))
    for name in ("extract_sdist", "apply_patch", "download_sdist", "fetch_git"):
        monkeypatch.setattr(source, name, never(name))
    dest = tmp_path / "upstream"
    with pytest.raises(UserError) as err:
        source.fetch(upstream, str(REPO / "models" / "dpn131"), str(dest),
                     cache=str(tmp_path / "cache"), log=never("log"))
    message = str(err.value)
    assert message == (f"{archive}: sha256 is {actual}, expected {pinned_sdist_sha256()} "
                       "(pinned in model.yaml for pypi pretrainedmodels==0.7.4); not unpacked: "
                       f"delete {archive} to download it again")
    assert not dest.exists() and not Path(str(dest) + ".tmp").exists()
    assert sorted(os.listdir(tmp_path)) == ["cache", "repo"]  # nothing unpacked


def test_tampered_cached_sdist_cli_one_line_no_tree_no_record(tmp_path):
    tampered_sdist(tmp_path / "cache")
    yaml_path = model_yaml(tmp_path, [pypi_source()])
    dest, record = tmp_path / "upstream", tmp_path / "source.json"
    result = fetch(yaml_path, dest, record, cache=tmp_path / "cache")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'cache' / trees.SDIST_NAME}: sha256 is ")
    assert "delete" in lines[0] and "to download it again" in lines[0]
    assert not dest.exists() and not record.exists()
    assert not (tmp_path / trees.SDIST_NAME).exists()


def test_wrong_sha256_in_model_yaml_is_refused(tmp_path):
    trees.sdist_path()
    wrong = "0" * 64
    yaml_path = model_yaml(tmp_path, [pypi_source(sha256=wrong)])
    dest, record = tmp_path / "upstream", tmp_path / "source.json"
    result = fetch(yaml_path, dest, record)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"sha256 is {trees.sha256(trees.sdist_path())}, expected {wrong}" in lines[0]
    assert not dest.exists() and not record.exists()


def test_downloaded_sdist_is_checked_too(tmp_path, monkeypatch):
    from npuzoo import source
    tampered = tampered_sdist(tmp_path / "elsewhere")

    def fake_download(requirement, folder, sha256):  # what a download leaves in `folder`
        return shutil.copy(tampered, os.path.join(folder, trees.SDIST_NAME))
    monkeypatch.setattr(source, "download_sdist", fake_download)
    monkeypatch.setattr(source, "extract_sdist", never("extract_sdist"))
    dest = tmp_path / "upstream"
    with pytest.raises(UserError) as err:
        source.fetch(upstream_of(pypi_source(), pypi_source()), str(REPO / "models" / "dpn131"),
                     str(dest), cache=str(tmp_path / "empty-cache"), log=never("log"))
    assert str(err.value).startswith(
        f"{trees.SDIST_NAME} downloaded from the package index: sha256 is "
        f"{trees.sha256(tampered)}, "
        f"expected {pinned_sdist_sha256()}")
    assert not dest.exists()
    # and a download with the pinned sha256 is used (the record says it came from PyPI)
    monkeypatch.undo()
    monkeypatch.setattr(source, "download_sdist", lambda requirement, folder, sha256: shutil.copy(
        trees.sdist_path(), os.path.join(folder, trees.SDIST_NAME)))
    record = source.fetch(upstream_of(pypi_source()), str(REPO / "models" / "dpn131"),
                          str(dest), cache=str(tmp_path / "empty-cache"), log=lambda line: None)
    assert record["from"] == "pypi" and record["sdist_sha256"] == pinned_sdist_sha256()
    assert "F.adaptive_avg_pool2d(features" in (dest / DPN_FILE).read_text()


def booby_trapped_index(root, marker, genuine=False):
    """A package index (PEP 503, file: URLs) serving pretrainedmodels 0.7.4: an sdist whose
    setup.py writes `marker` (what pip's metadata step would run), or the genuine one."""
    files = root / "files"
    files.mkdir(parents=True)
    if genuine:
        shutil.copy(trees.sdist_path(), files / trees.SDIST_NAME)
    else:
        top = root / "work" / "pretrainedmodels-0.7.4"
        top.mkdir(parents=True)
        (top / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                      "from setuptools import setup\nsetup(name='pretrainedmodels',"
                                      " version='0.7.4')\n")
        with tarfile.open(files / trees.SDIST_NAME, "w:gz") as tar:
            tar.add(top, arcname=top.name)
    page = root / "simple" / "pretrainedmodels"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/{trees.SDIST_NAME}">{trees.SDIST_NAME}</a></body>'
        "</html>\n")
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_EXTRA_INDEX_URL": "",
            "PIP_FIND_LINKS": "", "PIP_INDEX_URL": (root / "simple").as_uri()}


@pytest.mark.parametrize("command", ["fetch", "cache"])
def test_a_booby_trapped_sdist_never_runs(tmp_path, command):
    """The index serves another sdist than the pinned one: it is refused by its sha256 before
    anything of it runs (pip download would run its setup.py to read its metadata)."""
    marker = tmp_path / "marker"
    env = booby_trapped_index(tmp_path / "index", marker)
    yaml_path = model_yaml(tmp_path, [pypi_source()])
    dest, record, cache = tmp_path / "upstream", tmp_path / "source.json", tmp_path / "cache"
    args = ([str(yaml_path), str(dest), "--record", str(record)] if command == "fetch"
            else [str(yaml_path)])
    result = subprocess.run([sys.executable, "-m", "npuzoo.source", command, *args,
                             "--cache", str(cache)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {trees.SDIST_NAME} downloaded from the package "
                                    "index: sha256 is ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not marker.exists()
    assert not dest.exists() and not record.exists()
    assert not cache.exists() or os.listdir(cache) == []


def test_the_pinned_sdist_is_fetched_from_the_configured_index(tmp_path):
    env = booby_trapped_index(tmp_path / "index", tmp_path / "marker", genuine=True)
    yaml_path = model_yaml(tmp_path, [pypi_source()])
    cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-m", "npuzoo.source", "cache", str(yaml_path),
                             "--cache", str(cache)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert os.listdir(cache) == [trees.SDIST_NAME]
    assert trees.sha256(cache / trees.SDIST_NAME) == pinned_sdist_sha256()


def test_declared_pins_match_the_cached_sdists():
    """The sha256 pinned in each model.yaml is the one of the sdist `make venv` downloads."""
    for name in ("dpn131", "inceptionv4", "tresnet"):
        for entry in config.load(name).upstream.sources:
            if entry.kind != "pypi":
                continue
            archive = REPO / ".venv" / "sdists" / (entry.requirement.replace("==", "-")
                                                   + ".tar.gz")
            if not archive.is_file():
                pytest.skip(f"{archive} not cached; run `make venv`")
            assert trees.sha256(archive) == entry.sha256, (name, archive)


# -- verify: the patched tree against its record ----------------------------------------------

@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """One fetch of the pypi source (dpn.diff applied): its tree and record, never modified."""
    base = tmp_path_factory.mktemp("fetched")
    yaml_path = model_yaml(base, [pypi_source()])
    result = fetch(yaml_path, base / "upstream", base / "source.json")
    assert result.returncode == 0, result.stderr
    return base


@pytest.fixture
def built(fetched, tmp_path):
    """A copy of the fetched tree and its record (and file list) to alter."""
    shutil.copytree(fetched / "upstream", tmp_path / "upstream", symlinks=True)
    for name in ("source.json", trees.SDIST_NAME):
        shutil.copy(fetched / name, tmp_path / name)
    return tmp_path / "upstream", tmp_path / "source.json"


def verify(dest, record, model="dpn131", cache=None):
    cache = cache or Path(record).parent / "no-cache"
    return subprocess.run([sys.executable, "-m", "npuzoo.source", "verify", model, str(dest),
                           "--record", str(record), "--cache", str(cache)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def first_difference(dest, record, cache=None):
    """verify_tree for models/dpn131 (whose pypi source the fixtures fetched)."""
    from npuzoo import source
    return source.verify_tree(config.load("dpn131").upstream, config.model_dir("dpn131"),
                              str(dest), str(record), cache=str(cache or "/nonexistent"))


def differs(dest, record, first):
    return (f"error: {dest}: differs from the pinned source's patched tree "
            f"(first difference: {first}); run the make command again to rebuild it\n")


def test_verify_accepts_the_fetched_tree(built):
    dest, record = built
    result = verify(dest, record)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_verify_detects_an_edited_file(built):
    dest, record = built
    with open(dest / DPN_FILE, "a") as handle:
        handle.write(PAYLOAD)
    result = verify(dest, record)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == differs(dest, record, DPN_FILE)
    assert first_difference(dest, record) == DPN_FILE


def test_verify_detects_an_added_and_a_removed_file(built):
    dest, record = built
    (dest / "pretrainedmodels" / "models" / "aaa_extra.py").write_text("print('hi')\n")
    assert verify(dest, record).stderr == differs(
        dest, record, "pretrainedmodels/models/aaa_extra.py")
    (dest / "pretrainedmodels" / "models" / "aaa_extra.py").unlink()
    assert first_difference(dest, record) is None
    (dest / "pretrainedmodels" / "models" / "inceptionv4.py").unlink()
    result = verify(dest, record)
    assert result.returncode == 2
    assert result.stderr == differs(dest, record, "pretrainedmodels/models/inceptionv4.py")


def test_verify_detects_mode_and_symlink_changes(built):
    dest, record = built
    path = dest / DPN_FILE
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    assert first_difference(dest, record) == DPN_FILE
    path.chmod(path.stat().st_mode & ~stat.S_IXUSR)
    assert first_difference(dest, record) is None
    # a file replaced by a symlink to the same content is not the same tree
    os.rename(path, dest / "dpn_real.py")
    os.symlink(dest / "dpn_real.py", path)
    assert first_difference(dest, record) == "dpn_real.py"


def test_verify_ignores_pycache(built):
    dest, record = built
    cache = dest / "pretrainedmodels" / "models" / "__pycache__"
    cache.mkdir()
    (cache / "dpn.cpython-311.pyc").write_bytes(b"\0" * 16)
    (dest / "pretrainedmodels" / "stray.pyc").write_bytes(b"\0")
    result = verify(dest, record)
    assert result.returncode == 0, result.stderr


def test_an_edited_tree_fails_even_with_its_record_rewritten(built):
    """The attack: edit the tree, then recompute the record's tree hash to match."""
    from npuzoo import source
    dest, record = built
    with open(dest / DPN_FILE, "a") as handle:
        handle.write(PAYLOAD)
    data = json.loads(record.read_text())
    data["tree_sha256"] = source.tree_sha256(dest)
    record.write_text(json.dumps(data))
    assert verify(dest, record).stderr == differs(dest, record, DPN_FILE)
    # nor by pointing the record at another source: only model.yaml's are known
    data["requirement"] = "pretrainedmodels==0.7.3"
    record.write_text(json.dumps(data))
    assert first_difference(dest, record) == "unknown, the record names no source of model.yaml"


def test_a_replaced_sdist_beside_the_record_is_not_a_reference(built, tmp_path):
    """The kept sdist is used only with its pinned sha256: an edited tree packed as a new
    sdist in its place (and no cache) leaves nothing to rebuild the tree from."""
    dest, record = built
    with open(dest / DPN_FILE, "a") as handle:
        handle.write(PAYLOAD)
    tampered_sdist(tmp_path / "tampered")
    shutil.copy(tmp_path / "tampered" / trees.SDIST_NAME, record.parent / trees.SDIST_NAME)
    result = verify(dest, record)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "(first difference: unknown, pypi pretrainedmodels==0.7.4: no sdist with the " \
           "pinned sha256 beside" in result.stderr
    # the cache's copy (`make venv`) is the other reference
    assert first_difference(dest, record, cache=trees.sdist_path().parent) == DPN_FILE


def test_verify_missing_tree_or_record_is_one_line(built, tmp_path):
    dest, record = built
    result = verify(tmp_path / "nothing", record)
    assert result.returncode == 2
    assert result.stderr == (f"error: {tmp_path / 'nothing'}: no such folder (the patched "
                             "upstream tree); run the make command again to rebuild it\n")
    result = verify(dest, tmp_path / "none.json")
    assert result.returncode == 2
    assert result.stderr == (f"error: {tmp_path / 'none.json'}: no such source record; run the "
                             "make command again to rebuild it\n")
    record.write_text("{not json")
    result = verify(dest, record)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {record}: cannot read the source record")


def test_tree_sha256_is_stable_and_path_independent(tmp_path):
    from npuzoo import source
    for name in ("a", "b"):
        (tmp_path / name / "pkg").mkdir(parents=True)
        (tmp_path / name / "pkg" / "m.py").write_text("x = 1\n")
        (tmp_path / name / "top.txt").write_text("t\n")
    assert source.tree_sha256(tmp_path / "a") == source.tree_sha256(tmp_path / "b")
    (tmp_path / "b" / "pkg" / "m.py").rename(tmp_path / "b" / "pkg" / "n.py")
    assert source.tree_sha256(tmp_path / "a") != source.tree_sha256(tmp_path / "b")
    assert set(source.tree_manifest(tmp_path / "a")) == {"pkg/m.py", "top.txt"}


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
    (lambda s: s[1].update(url="https://x"),
     "upstream.sources[1]: unknown field 'url' for kind pypi"),
    (lambda s: s.clear(), "upstream.sources: expected a non-empty list of sources"),
    (lambda s: s[1].pop("sha256"), "upstream.sources[1].sha256: missing (required for kind pypi: "
                                   "the sha256 of the sdist file, 64 hexadecimal digits)"),
    (lambda s: s[1].update(sha256="abc123"),
     "upstream.sources[1].sha256: expected 64 hexadecimal digits, got 'abc123'"),
    (lambda s: s[1].update(sha256="g" * 64),
     "upstream.sources[1].sha256: expected 64 hexadecimal digits"),
    (lambda s: s[0].update(sha256="0" * 64), "upstream.sources[0]: unknown field 'sha256' for "
                                             "kind git"),
    (lambda s: s[0].update(commit="8aae3d"), "upstream.sources[0].commit: expected a commit hash"),
])
def test_sources_validation_names_the_field(change, message):
    data = dpn_config()
    change(data["upstream"]["sources"])
    with pytest.raises(UserError) as err:
        config.parse(data, "models/dpn131/model.yaml", str(REPO / "models" / "dpn131"))
    assert str(err.value).startswith("models/dpn131/model.yaml: " + message), str(err.value)


def test_declared_sources_of_the_models_validate():
    for name in ("dpn131", "inceptionv4", "tresnet"):
        data = config.load(name)
        assert [s.kind for s in data.upstream.sources] == ["git", "pypi"]
        assert config.make_variables(data).count("HAS_UPSTREAM := 1") == 1
        git, pypi = data.upstream.sources
        assert isinstance(git, config.GitSource) and isinstance(pypi, config.PypiSource)
        assert 7 <= len(git.commit) <= 40 and len(pypi.sha256) == 64
