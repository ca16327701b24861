"""`make <model>` treats every user value as hostile (npuzoo/run.py, the top-level Makefile).

Fast tests check the validation and the content identities in-process; the slow ones run make
in a scratch copy of the repository (tests/test_pipeline_e2e.py's) with hostile values, paths
with awkward characters, swapped weights, two concurrent runs and a killed run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npuzoo import config, run, variables, weights
from npuzoo.checksums import HashCache
from npuzoo.errors import UserError

from helpers import load_model_script, make, make_report, scratch_repository, synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


def settings(**values):
    raw = {**run.DEFAULTS, "DATA": "/data", **values}
    return run.Settings(raw)


# -- validation, in one place -----------------------------------------------------------------

HOSTILE = ["`touch {m}`", "$(touch {m})", "$(shell touch {m})", "; touch {m}", "1 ; touch {m}",
           "' ; touch {m}; '", "\" ; touch {m}; \"", "../../../../tmp/x", "~", "2/../../x",
           "1 2"]


@pytest.mark.parametrize("name", ["BS", "N", "LOOP", "WARMUP", "DEVICE", "SOC", "RUNNER", "AIPP"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_refused_in_one_line(name, value, tmp_path):
    value = value.format(m=tmp_path / "marker")
    if name == "BS" and value == "1 2":
        return  # a legitimate sweep
    with pytest.raises(UserError) as err:
        settings(**{name: value})
    assert str(err.value).startswith(f"{name}") and "\n" not in str(err.value)


@pytest.mark.parametrize("name, value, fragment", [
    ("BS", "", "BS is empty"),
    ("BS", "  ", "BS is empty"),
    ("BS", "0", "BS=0: expected positive batch sizes"),
    ("LOOP", "10 20", "LOOP=10 20: expected a positive number"),
    ("LOOP", "0", "LOOP=0"),
    ("WARMUP", "-1", "WARMUP=-1"),
    ("N", "0", "N=0: expected a positive number of images"),
    ("DEVICE", "0;1", "DEVICE=0;1"),
    ("SOC", "Ascend310P3 cpu", "SOC=Ascend310P3 cpu: unknown chip"),
    ("RUNNER", "podman", "RUNNER=podman: unknown value; use local or docker"),
    ("AIPP", "yes", "AIPP=yes"),
    ("DATA", "/a\nb", "DATA='/a\\nb': a path with a line break"),
])
def test_each_bad_value_names_itself(name, value, fragment):
    with pytest.raises(UserError, match=None) as err:
        settings(**{name: value})
    assert fragment in str(err.value)


def test_good_values_pass_and_batch_sizes_are_deduplicated():
    checked = settings(BS="4 1 4", N="16", LOOP="5", WARMUP="0", DEVICE="0,1", AIPP="1",
                       WEIGHTS="random")
    assert checked.batch_sizes == [4, 1] and checked.limit == 16 and checked.warmup == 0
    assert checked.aipp and checked.weights == "random"


# -- content, not paths and mtimes ------------------------------------------------------------

def test_hash_cache_rehashes_a_swapped_file_with_an_older_mtime(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"first")
    cache = HashCache(str(tmp_path / "cache.json"))
    first = cache.sha256(path)
    cache.save()
    old = path.stat().st_mtime_ns
    replacement = tmp_path / "other"
    replacement.write_bytes(b"other")  # same size, another inode
    os.utime(replacement, ns=(old - 10**9, old - 10**9))
    os.replace(replacement, path)
    again = HashCache(str(tmp_path / "cache.json"))
    assert again.sha256(path) != first


def test_custom_weights_are_copied_and_named_by_content(tmp_path):
    spec = config.WeightsSpec(file="w.pth", url="http://x", layout="plain", md5="0" * 32)
    user = tmp_path / "my weights $x `y`.pth"
    user.write_bytes(b"A" * 100)
    cache = HashCache(str(tmp_path / "cache.json"))
    wid, path, description = weights.identify(spec, str(user), str(tmp_path / "w"), cache)
    assert wid.startswith("custom-") and description["source"] == "custom"
    assert Path(path).read_bytes() == b"A" * 100 and str(tmp_path / "w" / "store") in path
    user.write_bytes(b"B" * 100)
    os.utime(user, ns=(0, 0))
    wid2, path2, _ = weights.identify(spec, str(user), str(tmp_path / "w"), cache)
    assert wid2 != wid and Path(path2).read_bytes() == b"B" * 100
    assert Path(path).read_bytes() == b"A" * 100  # the first copy is intact


def test_published_file_replaced_is_refused(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "w.pth").write_bytes(b"not the published file")
    cache = HashCache(str(tmp_path / "cache.json"))
    spec = config.WeightsSpec(file="w.pth", url="http://x", layout="plain", md5="0" * 32)
    with pytest.raises(UserError, match="does not match the published"):
        weights.identify(spec, "", str(folder), cache)


def test_unpublished_checksum_file_replaced_after_download_is_refused(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    target = folder / "w.pth"
    target.write_bytes(b"downloaded")
    weights.write_accepted(str(target), {"sha256": "f" * 64, "md5": None, "url": "http://x"})
    spec = config.WeightsSpec(file="w.pth", url="http://x", layout="plain")
    with pytest.raises(UserError, match="recorded when it was downloaded"):
        weights.identify(spec, "", str(folder), HashCache(str(tmp_path / "c.json")))


def test_dataset_id_follows_image_content(tmp_path):
    data = tmp_path / "my data"
    (data / "val").mkdir(parents=True)
    (data / "val" / "a.JPEG").write_bytes(b"1")
    (data / "val" / "b.JPEG").write_bytes(b"2")
    (data / "val_label.txt").write_text("a.JPEG 1\nb.JPEG 2\n")
    cache = HashCache(str(tmp_path / "c.json"))
    first = run.dataset_id(str(data), None, cache)
    assert first.startswith("my_data-") and first.endswith("-nall")
    assert run.dataset_id(str(data), 1, cache) != first
    (data / "val" / "b.JPEG").write_bytes(b"3")
    os.utime(data / "val" / "b.JPEG", ns=(0, 0))
    assert run.dataset_id(str(data), None, cache) != first


def edit_in_place_keeping_mtime(path, data):
    """The attack of issue 19 item 6: same inode, same size, the mtime put back."""
    before = os.stat(path)
    time.sleep(0.05)  # past the file system's timestamp tick, so that the ctime moves
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns


@pytest.fixture
def hashed_long_ago(monkeypatch):
    """The cache records entries as if the files had been hashed 10 s after they were written
    (a fresh file is never cached: npuzoo.checksums.RACY_NS)."""
    from npuzoo import checksums

    real = time.time_ns
    monkeypatch.setattr(checksums.time, "time_ns", lambda: real() + 10 * 10**9)


def test_weights_edited_in_place_with_their_mtime_put_back_get_a_new_id(tmp_path,
                                                                         hashed_long_ago):
    spec = config.WeightsSpec(file="w.pth", url="http://x", layout="plain", md5="0" * 32)
    user = tmp_path / "w.pth"
    user.write_bytes(b"A" * 100)
    cache = HashCache(str(tmp_path / "cache.json"))
    wid, _, _ = weights.identify(spec, str(user), str(tmp_path / "w"), cache)
    cache.save()
    assert str(user) in HashCache(str(tmp_path / "cache.json")).entries  # cached by stat
    edit_in_place_keeping_mtime(user, b"B" * 100)
    next_run = HashCache(str(tmp_path / "cache.json"))
    wid2, path2, _ = weights.identify(spec, str(user), str(tmp_path / "w"), next_run)
    assert wid2 != wid and Path(path2).read_bytes() == b"B" * 100


def test_an_image_edited_in_place_with_its_mtime_put_back_changes_the_dataset_id(
        tmp_path, hashed_long_ago):
    data = tmp_path / "d"
    (data / "val").mkdir(parents=True)
    (data / "val" / "a.JPEG").write_bytes(b"1234")
    (data / "val_label.txt").write_text("a.JPEG 1\n")
    cache = HashCache(str(tmp_path / "c.json"))
    first = run.dataset_id(str(data), None, cache)
    cache.save()
    edit_in_place_keeping_mtime(data / "val" / "a.JPEG", b"5678")
    assert run.dataset_id(str(data), None, HashCache(str(tmp_path / "c.json"))) != first


def test_a_file_changed_just_after_it_was_hashed_is_read_again(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"first")
    cache = HashCache(str(tmp_path / "cache.json"))
    first = cache.sha256(path)
    stat = path.stat()
    path.write_bytes(b"other")  # likely within the same timestamp tick: same stat but ctime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.sha256(path) != first


def test_streams_beyond_a_few_per_core_are_refused_naming_the_limit():
    """Issue 19 item 8: STREAMS=100000 opened sessions until bad_alloc."""
    from npuzoo import engines
    from npuzoo.bench import options

    limit = engines.max_streams()
    assert limit == engines.STREAMS_PER_CORE * len(os.sched_getaffinity(0))
    assert settings(STREAMS=str(limit)).streams == limit
    for value in (limit + 1, 100000):
        with pytest.raises(UserError) as err:
            settings(STREAMS=str(value))
        assert str(err.value).startswith(f"STREAMS={value}: at most {limit} here")
        with pytest.raises(UserError, match=f"--streams={value}: at most {limit} here"):
            options.parse_args(["-m", "x", "--streams", str(value)])
    proc = subprocess.run([sys.executable, "-m", "npuzoo.run", "mobilenetv1", "--check"],
                          cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, NPUZOO_STREAMS="100000"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: STREAMS=100000: at most {limit} here")


def test_leftovers_of_killed_runs_are_removed(tmp_path, capsys):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / ".m.onnx.123.tmp").write_bytes(b"x")
    (tmp_path / "data" / "d.tmp" / "val").mkdir(parents=True)
    (tmp_path / "perf.log.tmp").write_text("x")
    (tmp_path / "keep.onnx").write_text("x")
    run.remove_leftovers(str(tmp_path))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["data", "keep.onnx", "onnx"]
    assert "removed 3 temporary" in capsys.readouterr().out


# -- the make layer, end to end ---------------------------------------------------------------

def tree_state(folder, skip=("build", ".venv")):
    state = {}
    for path in Path(folder).rglob("*"):
        rel = path.relative_to(folder)
        if rel.parts and rel.parts[0] in skip:
            continue
        if path.is_file() and not path.is_symlink():
            state[str(rel)] = (path.stat().st_mtime_ns, path.stat().st_size)
    return state


@pytest.mark.slow
def test_hostile_make_variables_touch_nothing(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data", count=6)
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious").write_text("keep")
    marker = tmp_path / "marker"
    before = tree_state(scratch)
    outside = tree_state(tmp_path)
    for name in ["BS", "N", "LOOP", "WARMUP", "DEVICE", "SOC", "RUNNER", "AIPP", "DATA",
                 "WEIGHTS"]:
        for template in HOSTILE:
            value = template.format(m=marker)
            if name == "BS" and value == "1 2":
                continue
            variables = {"DATA": str(data), "WEIGHTS": "random", "N": "2", "LOOP": "1"}
            variables[name] = value
            args = [f"{k}={v}" for k, v in variables.items()]
            for dry in ([], ["-n"]):
                result = make(scratch, *dry, "mobilenetv1", *args, timeout=120,
                              env=dict(os.environ, MAKEFLAGS="", CI="", HOME=str(home)))
                assert not marker.exists(), (name, value, dry, result.stderr)
                if not dry:
                    assert result.returncode != 0, (name, value, result.stdout[-2000:])
                    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
                    assert len(errors) == 1, (name, value, result.stderr)
                    assert "Traceback" not in result.stderr
    assert (home / "precious").read_text() == "keep" and sorted(os.listdir(home)) == ["precious"]
    assert tree_state(scratch) == before
    assert tree_state(tmp_path) == outside


def random_checkpoint(path, seed):
    import torch

    torch.manual_seed(seed)
    model = load_model_script("mobilenetv1", "pth2onnx").MobileNetV1()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)


@pytest.mark.slow
def test_awkward_paths_work_and_swapped_weights_are_seen(scratch, tmp_path):
    odd = tmp_path / "ü d'a\"t $HOME `x` (1), a:b"
    data = synthetic_dataset(odd / "data set", count=6)
    checkpoint = odd / "w $(x) `y` 'z'.pth"
    random_checkpoint(checkpoint, seed=1)
    args = ["mobilenetv1", f"DATA={data}", f"WEIGHTS={checkpoint}", "N=4", "BS=2", "LOOP=1"]
    first = make(scratch, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/cpu_bs2.json").read_text())
    sha_a = report["weights"]["sha256"]
    assert report["weights"]["source"] == "custom" and report["dataset"]["images"] == 4

    # Another checkpoint under the same name, with an OLDER mtime: a new id, a new export.
    old = checkpoint.stat().st_mtime_ns - 10**10
    random_checkpoint(checkpoint, seed=2)
    os.utime(checkpoint, ns=(old, old))
    second = make(scratch, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/cpu_bs2.json").read_text())
    assert report["weights"]["sha256"] != sha_a
    from npuzoo.files import sha256_file

    assert report["weights"]["sha256"] == sha256_file(checkpoint)
    assert len(list((scratch / "build/mobilenetv1/onnx").glob("custom-*/*.onnx"))) == 2


@pytest.mark.slow
def test_two_concurrent_runs_both_succeed(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data", count=6)
    common = ["mobilenetv1", f"DATA={data}", "WEIGHTS=random", "LOOP=1"]
    env = dict(os.environ, MAKEFLAGS="", CI="")
    runs = [subprocess.Popen(["make", "--no-print-directory", *common, f"BS={bs}"], cwd=scratch,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for bs in (1, 3)]
    outputs = [r.communicate(timeout=900) for r in runs]
    for r, (out, err) in zip(runs, outputs, strict=False):
        assert r.returncode == 0, out[-2000:] + err[-2000:]
    assert any("waiting for it to finish" in err for _, err in outputs)
    for bs in (1, 3):
        assert json.loads((scratch / f"reports/mobilenetv1/cpu_bs{bs}.json").read_text())[
            "batch_size"] == bs


@pytest.mark.slow
def test_killed_run_leaves_no_orphan_after_the_next(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data", count=6)
    checkpoint = tmp_path / "w.pth"
    random_checkpoint(checkpoint, seed=3)
    args = ["mobilenetv1", f"DATA={data}", f"WEIGHTS={checkpoint}", "BS=2", "LOOP=1"]
    proc = subprocess.Popen(["make", "--no-print-directory", *args], cwd=scratch,
                            env=dict(os.environ, MAKEFLAGS="", CI=""), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    onnx_dir = scratch / "build/mobilenetv1/onnx"
    deadline = time.time() + 300
    while time.time() < deadline and not list(onnx_dir.rglob("*.tmp")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    result = make(scratch, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [p for p in (scratch / "build").rglob("*") if p.name.endswith((".tmp", ".part"))]


def test_an_edited_patched_tree_is_rebuilt(tmp_path, monkeypatch, capsys):
    """Even with its record rewritten to match: the tree is compared with the pinned sdist
    plus the patch, rebuilt."""
    from npuzoo import source

    monkeypatch.chdir(tmp_path)
    tree = tmp_path / "build/dpn131/src/upstream"
    record = tmp_path / "build/dpn131/src/source.json"
    upstream = config.load("dpn131").upstream
    pypi = config.UpstreamSpec(sources=tuple(s for s in upstream.sources if s.kind == "pypi"))
    if not source.sdist_candidates(source.DEFAULT_CACHE, "pretrainedmodels", "0.7.4"):
        pytest.skip("the pretrainedmodels sdist is not cached; run `make venv`")
    source.fetch(pypi, config.model_dir("dpn131"), str(tree), log=lambda line: None,
                 record_path=str(record))
    run.check_source_tree("dpn131")
    assert tree.is_dir() and record.is_file()  # untouched: it matches
    net = tree / "pretrainedmodels/models/dpn.py"
    net.write_text(net.read_text() + "\nimport os; os.system('x')\n")
    data = json.loads(record.read_text())
    data["tree_sha256"] = source.tree_sha256(str(tree))
    record.write_text(json.dumps(data))
    run.check_source_tree("dpn131")
    assert not tree.exists() and not record.exists()
    assert "first difference: pretrainedmodels/models/dpn.py" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_shows_the_pipeline_and_runs_nothing(tmp_path_factory, tmp_path):
    scratch = scratch_repository(tmp_path_factory.mktemp("dry"))  # nothing made yet
    data = synthetic_dataset(tmp_path / "data", count=6)
    before = tree_state(scratch)
    result = make(scratch, "-n", "mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=1 4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("-m npuzoo.bench") == 4  # dataset and perf, per BS
    assert "--tune" not in result.stdout                # TUNE=0 (tests/conftest.py)
    tuned = make(scratch, "-n", "mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=1 4", "TUNE=1")
    assert tuned.stdout.count("-m npuzoo.bench --backend onnxruntime --tune build/tuning") == 4
    assert re.search(r"/perf-loop20-warmup2(-\d+s)?-tuned ", tuned.stdout) and \
        "--streams" not in tuned.stdout
    fixed = make(scratch, "-n", "mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=1", "TUNE=1",
                 "STREAMS=1")
    assert "--tune" not in fixed.stdout and "--streams 1" in fixed.stdout
    assert "pth2onnx.py random" in result.stdout and "error" not in result.stderr
    # nothing that reads as an error: what the real run writes first is said as such
    dpn = make(scratch, "-n", "dpn131", f"DATA={data}", "WEIGHTS=random", "BS=4")
    assert dpn.returncode == 0, dpn.stderr
    for shown in (result, dpn):
        assert not [line for line in (shown.stdout + shown.stderr).splitlines()
                    if "error" in line.lower()], shown.stdout
    assert "weights/random.json is written by npuzoo/run.py" in dpn.stdout
    assert tree_state(scratch) == before
    made = {p.relative_to(scratch / "build") for p in (scratch / "build").rglob("*")}
    # make -n writes the model's Make variables, the run plans and the data links, nothing else
    assert all(p.parts in {(m,), (m, "model.mk"), (m, "plans")} or p.parts[0] == "inputs"
               or (p.parts[:2] == (m, "plans") and p.suffix in (".mk", ".json"))
               for p in made for m in [p.parts[0]]) and \
        {p.parts[0] for p in made} <= {"mobilenetv1", "dpn131", "inputs"}, made


@pytest.mark.slow
def test_a_labelled_bmp_counts_like_any_image(scratch, tmp_path):
    from PIL import Image

    data = synthetic_dataset(tmp_path / "data", count=5)
    Image.new("RGB", (300, 260), (10, 200, 30)).save(data / "val" / "ILSVRC2012_val_00000777.bmp")
    with open(data / "val_label.txt", "a") as labels:
        labels.write("ILSVRC2012_val_00000777.bmp 7\n")
    result = make(scratch, "mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=2", "LOOP=1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/cpu_bs2.json").read_text())
    assert report["dataset"]["images"] == report["accuracy"]["images"] == 6


@pytest.mark.slow
def test_a_trial_run_leaves_the_committed_report_and_readmes_alone(tmp_path_factory, tmp_path):
    root = scratch_repository(tmp_path_factory.mktemp("curated"))
    curated = make_report("mobilenetv1", "cpu", 1, 300.0, images=50000, weights="published",
                          top1=69.5, top5=89.0)
    dest = root / "reports/mobilenetv1/cpu_bs1.json"
    dest.parent.mkdir(parents=True)
    dest.write_text(json.dumps(curated, indent=2) + "\n")
    assert make(root, "readme").returncode == 0
    readmes = [root / "README.md", root / "models/mobilenetv1/README.md"]
    before = [p.read_bytes() for p in [dest, *readmes]]

    data = synthetic_dataset(tmp_path / "data", count=4)
    args = ["mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=1", "LOOP=1"]
    result = make(root, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.read_bytes() for p in [dest, *readmes]] == before
    # The curated run is another machine's: this one's run is its own current report, and one
    # line says so, where it went and how to promote it.
    [own] = (root / "reports/mobilenetv1").glob("cpu_bs1.*.json")
    [line] = [line for line in result.stdout.splitlines() if "kept" in line]
    assert str(own.relative_to(root)) in line
    assert "FORCE=1 makes it reports/mobilenetv1/cpu_bs1.json" in line
    [trial] = (root / "reports/mobilenetv1/history/cpu_bs1").glob("*.json")
    assert json.loads(trial.read_text())["dataset"]["images"] == 4
    assert "`make readme` adds the rows" in result.stdout

    # A second batch size has no current report yet: this run becomes it; the READMEs, which
    # render only the committed reports' changes by themselves, stay as they are.
    result = make(root, "mobilenetv1", f"DATA={data}", "WEIGHTS=random", "BS=2", "LOOP=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "reports/mobilenetv1/cpu_bs2.json").is_file()
    assert [p.read_bytes() for p in readmes] == before[1:]

    # Following the hints: `make readme` adds this machine's rows ...
    assert make(root, "-s", "readme").returncode == 0
    machine = json.loads(own.read_text())["device"]
    assert machine in (root / "models/mobilenetv1/README.md").read_text()
    # ... and FORCE=1 makes the (already recorded) run the committed report.
    result = make(root, *args, "FORCE=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(dest.read_text())["dataset"]["images"] == 4 and not own.exists()
    assert "(FORCE=1)" in result.stdout and "readme: rendering" in result.stdout


def test_soc_auto_says_what_it_found(monkeypatch):
    said = []
    monkeypatch.setenv("PATH", "/nonexistent")
    soc = run.resolve_soc(settings(SOC="auto"), say=lambda text, **_: said.append(text))
    assert soc == "cpu" and said == [
        "SOC=auto: no npu-smi on PATH, so no Ascend NPU here: running on the CPU (SOC=cpu)"]


def test_an_ascend_chip_without_atc_stops_before_any_long_step(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("ASCEND_HOME", str(tmp_path / "none"))
    for name in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_OPP_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: str(tmp_path / "nohome"))
    with pytest.raises(UserError, match="atc is not on PATH"):
        run.check_toolkit("Ascend310P3", settings(SOC="Ascend310P3"))
    run.check_toolkit("Ascend310P3", settings(SOC="Ascend310P3", RUNNER="docker"))


@pytest.mark.slow
def test_each_model_preprocesses_into_its_own_set_and_a_tampered_one_is_made_again(
        tmp_path_factory, tmp_path):
    """MobileNetV1 and VoVNet39 have the same preprocessing numbers but their own
    preprocess.py (no two folders' scripts are the same program): each makes its own set."""
    scratch = scratch_repository(tmp_path_factory.mktemp("own-sets"))
    data = synthetic_dataset(tmp_path / "data", count=4)
    common = [f"DATA={data}", "WEIGHTS=random", "BS=2", "LOOP=1"]
    first = make(scratch, "mobilenetv1", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    second = make(scratch, "vovnet39", *common)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "npuzoo.prep models/vovnet39" in second.stdout
    refs = {os.readlink(p) for m in ("mobilenetv1", "vovnet39")
            for p in (scratch / "build" / m / "refs").glob("prep-*")}
    assert len(refs) == 2

    # Issue 19 item 7: mobilenetv1's export copied over vovnet39's and a preprocessed file
    # edited in place (same size) were reused and reported as vovnet39's; now both are made
    # again.
    from npuzoo.files import sha256_file

    export = scratch / "build/vovnet39/onnx/random/vovnet39.onnx"
    other = scratch / "build/mobilenetv1/onnx/random/mobilenetv1.onnx"
    shutil.copy(other, export)
    vovnet_set = next((scratch / "build/vovnet39/refs").glob("prep-*")).resolve()
    binary = sorted(vovnet_set.glob("*.bin"))[0]
    with open(binary, "r+b") as handle:
        head = handle.read(4)
        handle.seek(0)
        handle.write(bytes(255 - b for b in head))
    third = make(scratch, "vovnet39", *common)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "warning: build/vovnet39/onnx/random/vovnet39.onnx: its sha256 " in third.stderr
    assert f"{binary.name} is not the file the preprocessing wrote" in third.stderr
    assert sha256_file(export) != sha256_file(other)
    assert Path(str(export) + ".sha256").read_text().strip() == sha256_file(export)
    assert "pth2onnx.py" in third.stdout and "npuzoo.prep models/vovnet39" in third.stdout


@pytest.mark.parametrize("values, fragment", [
    ({"PRECISION": "int4"}, "PRECISION=int4: unknown value; use fp32 or int8"),
    ({"BACKEND": "tensorrt"}, "BACKEND=tensorrt: unknown value"),
    ({"STREAMS": "0"}, "STREAMS=0: expected a positive number"),
    ({"CALIB": "x"}, "CALIB=x: expected a positive number"),
    ({"PRECISION": "int8", "AIPP": "1"}, "PRECISION=int8 with AIPP=1"),
])
def test_cpu_options_are_checked(values, fragment):
    with pytest.raises(UserError) as err:
        settings(**values)
    assert fragment in str(err.value)


def test_cpu_options_are_refused_on_an_ascend_chip():
    with pytest.raises(UserError, match="STREAMS=2: a CPU option"):
        run.check_cpu_options("Ascend310P3", settings(SOC="Ascend310P3", STREAMS="2"))
    run.check_cpu_options("cpu", settings(STREAMS="2", PRECISION="int8"))


def test_int8_calibrates_outside_the_evaluated_images(tmp_path):
    data = tmp_path / "d"
    (data / "val").mkdir(parents=True)
    for i in range(5):
        (data / "val" / f"i{i}.JPEG").write_bytes(bytes([i]))
    (data / "val_label.txt").write_text("".join(f"i{i}.JPEG {i}\n" for i in range(5)))
    cache = HashCache(str(tmp_path / "c.json"))
    with pytest.raises(UserError, match="with N unset every image of DATA is"):
        run.calibration(settings(DATA=str(data), PRECISION="int8"), cache)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        found = run.calibration(settings(DATA=str(data), N="3", PRECISION="int8", CALIB="10"),
                                cache)
    finally:
        os.chdir(cwd)
    assert found["calib_offset"] == 3 and found["calib_id"].endswith("-o3-n2")


@pytest.mark.slow
def test_an_int8_run_records_its_precision_and_calibration(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data", count=8)
    int8 = [f"DATA={data}", "N=5", "PRECISION=int8", "CALIB=3", "WEIGHTS=random", "BS=1",
            "LOOP=1"]
    # ONNX Runtime's quantiser on OpenVINO: the plain `int8` label, whatever the defaults
    result = make(scratch, "mobilenetv1", *int8, "QUANTIZER=onnxruntime")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/int8/cpu_bs1.json").read_text())
    assert report["backend"]["precision"] == "int8"
    assert report["calibration"]["images"] == 3 and report["calibration"]["offset"] == 5
    assert report["calibration"]["method"].startswith("onnxruntime ")
    assert report["dataset"]["images"] == 5
    assert report["gate"]["reason"].startswith("int8: the tolerance applies to fp32 runs")
    assert "quantize" in report["timings"]["steps"]
    assert report["backend"]["name"] == "openvino"   # npuzoo.config.INT8_BACKEND
    agreement = report["int8_agreement"]             # against the fp32 export, same images
    assert agreement["images"] == 5 and 0 <= agreement["top5"] <= 100
    assert agreement["max_abs_logit_error"] >= agreement["mean_abs_logit_error"] > 0
    assert "int8: agreement with fp32 on 5 images" in result.stdout
    assert agreement["meaningful"] is False and "random weights: not meaningful" in result.stdout
    speedup = report["fp32_speedup"]  # no fp32 run of these images yet: what to run instead
    assert speedup["ratio"] is None and speedup["fp32"] is None
    assert speedup["run"].startswith("make mobilenetv1 DATA=<this run's DATA> BS=1 N=5 "
                                     "WEIGHTS=random STREAMS=")
    assert f"run `{speedup['run']}` for the speed-up over fp32" in result.stdout

    # The same quantised graph on ONNX Runtime (that engine's default quantiser): its own
    # variant, and the report names the engine that ran it (the runner's summary).
    result = make(scratch, "mobilenetv1", *int8, "BACKEND=onnxruntime")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/int8-onnxruntime/cpu_bs1.json").read_text())
    assert report["backend"]["name"] == "onnxruntime" and report["backend"]["precision"] == "int8"
    assert report["calibration"]["images"] == 3

    # The default on OpenVINO, NNCF's quantiser (npuzoo.config.INT8_QUANTIZER): a graph and a
    # report of its own, `int8-nncf`.
    result = make(scratch, "mobilenetv1", *int8, "TUNE=0")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/int8-nncf/cpu_bs1.json").read_text())
    assert report["calibration"]["method"].startswith("nncf ") and report["variant"] == "int8-nncf"
    assert "int8_agreement" in report
    assert "(int8, nncf, calibrated on 3 images)" in result.stdout
    graphs = sorted(p.name for p in (scratch / "build/mobilenetv1/onnx/random").glob("*int8*.onnx"))
    assert [g.split("-")[1] for g in graphs] == ["nncf", "ortquant"], graphs


# -- every problem at once; no variable ignored silently (issue 21 items 8 and 9) -------------

@pytest.mark.parametrize("names, lines", [
    ("BATCH", ["BATCH: no such variable of make <model>; did you mean BS?"]),
    ("STREAM WEIGTHS", ["STREAM: no such variable of make <model>; did you mean STREAMS?",
                        "WEIGTHS: no such variable of make <model>; did you mean WEIGHTS?"]),
    ("MODELS SHARDS", ["MODELS: a variable of `make sweep` only; drop it, or run make sweep",
                       "SHARDS: a variable of `make sweep` only; drop it, or run make sweep"]),
    ("XYZZY", ["XYZZY: no such variable of make <model>; see make help"]),
])
def test_unknown_command_line_variables_are_refused(names, lines):
    with pytest.raises(UserError) as err:
        variables.check_names({"NPUZOO_COMMAND_LINE": f"BS DATA {names}"})
    assert str(err.value).split("\nerror: ") == lines


def test_known_and_make_level_variables_pass():
    variables.check_names({"NPUZOO_COMMAND_LINE": " ".join(run.DEFAULTS)
                           + " DOCKER PYTHON TORCH_INDEX BASE_IMAGE"})
    variables.check_names({"NPUZOO_COMMAND_LINE": "MODELS SHARDS BS"}, "sweep")
    with pytest.raises(UserError, match=r"^RAY_ADDRESS: read from the environment"):
        variables.check_names({"NPUZOO_COMMAND_LINE": "RAY_ADDRESS"}, "sweep")
    with pytest.raises(UserError, match=r"^PYTEST_ARGS: no such variable of make <model>"):
        variables.check_names({"NPUZOO_COMMAND_LINE": "PYTEST_ARGS"})


def test_the_makefile_names_only_command_line_variables(tmp_path):
    """BATCH=4 in the environment is the shell's business; on the command line it is refused."""
    env = dict(os.environ, MAKEFLAGS="", BATCH="4")
    listed = subprocess.run(["make", "-s", "-f", "Makefile", "-f", "-", "show", "NEW=1"],
                            input="show:\n\t@echo \"$(COMMAND_LINE)|$$NPUZOO_COMMAND_LINE\"\n",
                            cwd=REPO, env=env, capture_output=True, text=True)
    # The names are handed to the model and sweep targets only: other recipes (`make test
    # PYTEST_ARGS=...` and the tests' own make calls) never see the parent's list.
    assert [part.split() for part in listed.stdout.split("|")] == [["NEW"], []], listed.stderr
    proc = subprocess.run(["make", "--no-print-directory", "mobilenetv1", "BATCH=4"], cwd=REPO,
                          env=dict(os.environ, MAKEFLAGS=""), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error: BATCH: no such variable of make <model>; did you mean BS?" in proc.stderr


def test_every_input_problem_is_reported_at_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("ASCEND_HOME", str(tmp_path / "none"))
    for name in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_OPP_PATH", "NPUZOO_DATA",
                 "NPUZOO_COMMAND_LINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: str(tmp_path / "nohome"))
    monkeypatch.setenv("NPUZOO_SOC", "Ascend310P3")
    monkeypatch.setenv("NPUZOO_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(SystemExit) as exit_:
        run.main(["dpn131"])
    lines = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and len(lines) == 3, lines
    assert "atc is not on PATH" in lines[0] and lines[1].startswith("error: DATA is not set")
    assert "missing.pth: no such file" in lines[2]
    # bad values and an unknown variable together, too
    monkeypatch.setenv("NPUZOO_BS", "abc")
    monkeypatch.setenv("NPUZOO_COMMAND_LINE", "BATCH")
    with pytest.raises(SystemExit):
        run.main(["dpn131"])
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["BATCH", "BS=abc",
                                                              "DATA is not set; pass DATA=<folder "
                                                              "with val/ and val_label.txt>"], lines


def test_the_run_header_says_how_the_run_measures():
    def how(**values):
        return run.plan_of("mobilenetv1", settings(**values), "cpu").how()

    headers = {how(), how(PRECISION="int8", N="10"), how(AIPP="1"), how(BACKEND="openvino"),
               how(STREAMS="1")}
    assert len(headers) == 5, headers  # the plain run and each variant differ
    assert "int8" in how(PRECISION="int8", N="10") and "AIPP" in how(AIPP="1")
    assert how(TUNE="0") == how(BACKEND="onnxruntime")  # MobileNetV1's own engine
    assert how().startswith("engine and streams tuned (TUNE=0: ONNX Runtime)")
    assert run.plan_of("mobilenetv1", settings(AIPP="1"), "Ascend310P3").how() == \
        "with ais_bench, AIPP"
