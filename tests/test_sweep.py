"""`make sweep` (npuzoo/sweep.py, npuzoo/shards.py, mk/pipeline.mk's sweep-* targets).

Fast tests: the variables' checks, the shard bounds, split and merge, the file times of what
copy mode ships, `make -n sweep`. Slow tests (CI): a real Ray cluster on this machine, a head
and one worker node each declaring an `NPU` resource, with the stand-in atc/npu-smi and the
real ais_bench front end on the aclruntime stand-in (SOC=Ascend310P3), in a scratch copy of the
repository. Every Ray process runs inside a network and PID namespace of the test's own
(unshare): its servers are reachable from nothing but that namespace's loopback interface,
and killing the namespace's first process ends every one of them, whatever a test left.
"""

import contextlib
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from npuzoo import shards, sweep
from npuzoo.errors import UserError, cli

from helpers import (
    FRONTEND,
    REPO,
    SYSTEM_PATH,
    VENV_BIN,
    Namespace,
    frontend_env,
    plan_args,
    scratch_repository,
)

SOC = "Ascend310P3"
N = 6  # BS 4: one full batch and one padded; two shards of one batch each


def check_values(env_values):
    """read_settings as `make sweep` calls it (errors.cli): the exit status, if any."""
    try:
        cli(sweep.read_settings)({f"NPUZOO_{k}": v for k, v in env_values.items()})
    except SystemExit as stop:
        return stop.code
    return 0


# -- the variables -----------------------------------------------------------------------------

@pytest.mark.parametrize("values, fragment", [
    ({"MODELS": "mobilenetv1 resnet50"}, "MODELS=resnet50: unknown model"),
    ({"MODELS": "mobilenetv1", "SHARDS": "0"}, "SHARDS=0: expected a number of shards"),
    ({"MODELS": "mobilenetv1", "SHARDS": "two"}, "SHARDS=two: expected"),
    ({"MODELS": "mobilenetv1", "SHARDS": "2", "BS": "1 x"}, "BS=x"),
    ({"MODELS": "mobilenetv1", "SWEEP_STORAGE": "nfs"}, "NPUZOO_SWEEP_STORAGE=nfs"),
    ({"MODELS": "mobilenetv1", "SWEEP_CPUS": "-1"}, "NPUZOO_SWEEP_CPUS=-1"),
])
def test_bad_values_stop_with_one_line(values, fragment, capsys):
    assert check_values(values) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_good_values_pass_and_models_default_to_all():
    assert check_values({"MODELS": "vovnet39 mobilenetv1", "SHARDS": "3", "BS": "1 4"}) == 0
    models, settings, k, storage, cpus = sweep.read_settings({"NPUZOO_BS": "4"})
    assert models == sorted(models) and "mobilenetv1" in models and len(models) == 5
    assert (k, storage, cpus) == (1, "shared", None)
    assert all(s.batch_sizes == [4] for s in settings.values())
    with pytest.raises(UserError, match="SHARDS=2000: expected a number of shards from 1 to 1024"):
        sweep.read_settings({"NPUZOO_SHARDS": "2000"})


def test_progress_counts_queued_running_and_done_tasks():
    class FakeRay:
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 2.0}},
                    {"Alive": False, "Resources": {"CPU": 64.0}}]

    class Plan:
        soc = "cpu"

    jobs = [sweep.Job(Plan(), None, 1) for _ in range(8)]
    for job in jobs:
        job.status = "running"  # submitted: Ray runs as many as there are slots
    jobs[0].status = "published"
    slots = {"cpu": sweep.task_slots(FakeRay, "cpu", 2)}
    assert slots == {"cpu": 1}  # one task of 2 CPUs at a time on the live node
    line = sweep.progress_line(jobs, time.time(), slots)
    assert line.startswith("sweep: 1/8 tasks done (1 published), 1 running, 6 queued, ")
    assert sweep.task_slots(FakeRay, "cpu", 1) == 2


def test_ray_logs_only_on_request():
    assert sweep.check_ray_logs("") is False and sweep.check_ray_logs("1") is True
    with pytest.raises(UserError, match="NPUZOO_RAY_LOGS=yes"):
        sweep.check_ray_logs("yes")


def test_timeout_is_checked():
    assert sweep.check_timeout("") == sweep.TIMEOUT_S and sweep.check_timeout("5") == 5
    for bad in ("0", "-1", "abc", "3601", "$(shell touch x)"):
        with pytest.raises(UserError, match=f"NPUZOO_RAY_TIMEOUT={re.escape(bad)}: expected"):
            sweep.check_timeout(bad)


CONNECT = ("import sys; from npuzoo import sweep, errors\n"
           "errors.cli(lambda: sweep.connect({'RAY_ADDRESS': sys.argv[1], "
           "'NPUZOO_RAY_TIMEOUT': '3'}))()")


def test_a_silent_ray_address_stops_at_the_deadline_in_one_line():
    """A port that accepts connections and never answers (Ray retries it for minutes)."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.run([sys.executable, "-c", CONNECT, address], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: RAY_ADDRESS={address}: no answer from the Ray cluster within 3 s "
                      "(NPUZOO_RAY_TIMEOUT); start it (ray start --head) or unset RAY_ADDRESS "
                      "for a local instance"], proc.stderr


def test_a_refused_ray_address_stops_at_once_in_one_line():
    proc = subprocess.run([sys.executable, "-c", CONNECT, "127.0.0.1:1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == ("error: RAY_ADDRESS=127.0.0.1:1: cannot connect to the Ray cluster "
                           "(Connection refused); start it (ray start --head) or unset "
                           "RAY_ADDRESS for a local instance\n")


@pytest.mark.slow
def test_make_sweep_with_an_unreachable_cluster_fails_and_frees_the_locks(tmp_path, shared_data):
    import fcntl
    root = scratch_repository(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_", "RAY_")) and k not in ("MAKEFLAGS", "MAKELEVEL")}
    env.update(RAY_ADDRESS="127.0.0.1:1", NPUZOO_RAY_TIMEOUT="5")
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "sweep",
                           "MODELS=mobilenetv1", f"DATA={shared_data / 'imagenet-val-10'}",
                           "N=2", "WEIGHTS=random"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert "error: RAY_ADDRESS=127.0.0.1:1: cannot connect to the Ray cluster" in proc.stderr
    with open(root / "build" / "mobilenetv1" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises if still held
    assert not (root / "reports" / "mobilenetv1").exists()


# -- shards ------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, bs, k", [(6, 4, 2), (50000, 16, 8), (7, 1, 3), (5, 8, 1),
                                           (100, 3, 7), (64, 64, 1)])
def test_shards_are_contiguous_whole_batches_covering_every_file(count, bs, k):
    k = shards.effective_shards(count, bs, k)
    spans = [shards.bounds(count, bs, k, i) for i in range(k)]
    assert spans[0][0] == 0 and spans[-1][1] == count
    for (a, b), (c, _) in itertools.pairwise(spans):
        assert b == c and a < b and a % bs == 0 and b % bs == 0
    sizes = [b - a for a, b in spans]
    assert max(sizes) - min(sizes) <= bs + count % bs  # balanced to a batch


def test_no_more_shards_than_batches():
    assert shards.effective_shards(6, 4, 8) == 2
    assert shards.effective_shards(1, 64, 4) == 1
    with pytest.raises(UserError, match="at most 2 shards"):
        shards.bounds(6, 4, 3, 0)


def fake_prep(folder, count):
    folder.mkdir(parents=True)
    for index in range(count):  # natural order differs from plain sorting past 9
        (folder / f"img_{index + 1}.bin").write_bytes(bytes([index]) * 8)
    (folder / ".done").write_text("")
    return folder


def test_split_then_merge_gives_every_result_once(tmp_path):
    prep = fake_prep(tmp_path / "prep", 11)
    root, out = tmp_path / "out" / "shards3", tmp_path / "out"
    for shard in range(3):
        shards.split(str(prep), str(root / str(shard) / "input"), shard, 3, 2)
        results = root / str(shard) / "results"
        results.mkdir()
        for name in sorted(os.listdir(root / str(shard) / "input")):
            if name.endswith(".bin"):
                (results / f"{name[:-4]}_0.txt").write_text(name + "\n")
        (root / str(shard) / "infer.done").write_text("")
    firsts = [json.loads((root / str(s) / "input" / ".done").read_text())["first"]
              for s in range(3)]
    assert firsts == [0, 4, 8]  # 6 batches of 2 (the last one of 1): 2 batches a shard
    assert sorted(n for n in os.listdir(root / "1" / "input") if n.endswith(".bin")) == \
        ["img_5.bin", "img_6.bin", "img_7.bin", "img_8.bin"]  # in natural order
    # shard inputs are hard links of the preprocessed files (no copy)
    assert os.path.samefile(root / "0" / "input" / "img_1.bin", prep / "img_1.bin")
    shards.merge(str(root), str(out), 3, str(prep))
    names = sorted(os.listdir(out / "results"))
    assert len(names) == 11 and names[0] == "img_10_0.txt"
    assert (out / "results" / "img_7_0.txt").read_text() == "img_7.bin\n"
    assert (out / "infer.done").is_file()
    assert json.loads((out / "shards.json").read_text())["images"] == 11


def test_merge_refuses_missing_or_overlapping_results(tmp_path):
    prep = fake_prep(tmp_path / "prep", 4)
    root = tmp_path / "shards2"
    for shard, names in ((0, ["img_1", "img_2"]), (1, ["img_2", "img_3", "img_4"])):
        (root / str(shard) / "results").mkdir(parents=True)
        (root / str(shard) / "infer.done").write_text("")
        for name in names:
            (root / str(shard) / "results" / f"{name}_0.txt").write_text("1 2\n")
    with pytest.raises(UserError, match="overlap"):
        shards.merge(str(root), str(tmp_path), 2, str(prep))
    (root / "1" / "results" / "img_2_0.txt").unlink()
    (root / "1" / "results" / "img_4_0.txt").unlink()
    with pytest.raises(UserError, match=r"first missing: img_4_0.txt"):
        shards.merge(str(root), str(tmp_path), 2, str(prep))
    (root / "1" / "infer.done").unlink()
    with pytest.raises(UserError, match="has not run its inference"):
        shards.merge(str(root), str(tmp_path), 2, str(prep))


def test_shipped_files_keep_their_order_and_are_newer_than_the_code(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for index, name in enumerate(["build/a.onnx", "build/prep/.done", "build/b.om"]):
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        os.utime(path, (1000 + index * 60, 1000 + index * 60))
    data = sweep.pack(str(src), ["build/a.onnx", "build/prep", "build/b.om", "build/absent"])
    (dst / "models").mkdir(parents=True)
    (dst / "models" / "code.py").write_text("new code")  # as new as a fresh copy
    sweep.unpack(data, str(dst), ["build/a.onnx", "build/prep", "build/b.om"])
    times = [os.stat(dst / n).st_mtime_ns for n in
             ("models/code.py", "build/a.onnx", "build/prep/.done", "build/b.om")]
    assert times == sorted(times) and len(set(times)) == 4
    assert (dst / "build/b.om").read_text() == "build/b.om"



def hostile_pack(tmp_path, kind):
    """A task result as a hostile or broken node could send it: one bad member among good."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        good = tarfile.TarInfo("build/run/report.json")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"{}"))
        names = {"dotdot": "build/run/../../../sentinel/photo.png",
                 "absolute": str(tmp_path / "sentinel" / "photo.png"),
                 "elsewhere": "models/mobilenetv1/pth2onnx.py"}
        bad = tarfile.TarInfo(names.get(kind, "build/run/x"))
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, str(tmp_path / "sentinel" / "photo.png")
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, str(tmp_path / "sentinel" / "photo.png")
        elif kind == "device":
            bad.type, bad.devmajor, bad.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            bad.type = tarfile.FIFOTYPE
        payload = b"overwritten"
        bad.size = len(payload) if bad.type == tarfile.REGTYPE else 0
        tar.addfile(bad, io.BytesIO(payload) if bad.size else None)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "elsewhere", "symlink", "hardlink",
                                  "device", "fifo"])
def test_a_task_result_cannot_write_outside_its_outputs(tmp_path, kind):
    sentinel = tmp_path / "sentinel" / "photo.png"
    sentinel.parent.mkdir()
    sentinel.write_bytes(b"original")
    root = tmp_path / "repo" / "nested"
    (root / "models" / "mobilenetv1").mkdir(parents=True)
    with pytest.raises(sweep.UnsafePack) as err:
        sweep.unpack(hostile_pack(tmp_path, kind), str(root), ["build/run"])
    assert len(str(err.value).splitlines()) == 1 and "is not a file or folder under build/run" \
        in str(err.value)
    assert sentinel.read_bytes() == b"original"
    assert not (root / "build").exists()  # refused whole: not even its good member
    assert os.listdir(root / "models" / "mobilenetv1") == []


@pytest.mark.parametrize("filters", [True, False], ids=["data-filter", "python-3.11.0-3.11.3"])
def test_a_result_through_a_link_already_there_is_refused(tmp_path, monkeypatch, filters):
    """build/run is a link to elsewhere on the driver: the data filter stops the write, and
    where tarfile has no filters (Python 3.11 before 3.11.4) unpack's own check."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "repo" / "build").mkdir(parents=True)
    os.symlink(outside, tmp_path / "repo" / "build" / "run")
    with pytest.raises(sweep.UnsafePack):
        sweep.unpack(hostile_pack(tmp_path, "good"), str(tmp_path / "repo"), ["build/run"])
    assert os.listdir(outside) == []
    if not filters:   # and a pack with no link in its way still unpacks
        sweep.unpack(hostile_pack(tmp_path, "good"), str(tmp_path / "other"), ["build/run"])
        assert any((tmp_path / "other" / "build" / "run").rglob("*"))


def test_hard_linked_results_travel_as_copies(tmp_path):
    """Merged shard results are hard links of the shards' files: the pack carries them as
    files, which unpack() accepts."""
    src = tmp_path / "src" / "build" / "run"
    (src / "shards2").mkdir(parents=True)
    (src / "shards2" / "a.txt").write_text("result")
    (src / "results").mkdir()
    os.link(src / "shards2" / "a.txt", src / "results" / "a.txt")
    sweep.unpack(sweep.pack(str(tmp_path / "src"), ["build/run"]), str(tmp_path / "dst"),
                 ["build/run"])
    assert (tmp_path / "dst/build/run/results/a.txt").read_text() == "result"


def test_make_n_sweep_shows_the_tasks_and_the_docker_commands(tmp_path, shared_data):
    root = scratch_repository(tmp_path / "repo")
    env = dict(os.environ, MAKEFLAGS="")
    env.pop("RAY_ADDRESS", None)
    stamps = subprocess.run(["make", "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", "SOC=cpu",
                             "print-stamps"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120).stdout.split()
    assert stamps
    for stamp in stamps:  # as if `make images` had built them: no engine is needed for -n
        (root / stamp).parent.mkdir(parents=True, exist_ok=True)
        (root / stamp).touch()
    proc = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "sweep", "MODELS=mobilenetv1", "BS=1 4",
         "SHARDS=2", f"DATA={shared_data / 'imagenet-val-10'}", "N=6", "WEIGHTS=random",
         "RUNNER=docker", "DOCKER=/usr/bin/docker"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "# sweep: mobilenetv1 BS=4 SOC=cpu: 2 shard tasks (CPUs of a node)" in proc.stdout
    assert "docker run" in proc.stdout and "npuzoo.bench" in proc.stdout
    assert "Ray" not in proc.stdout + proc.stderr  # nothing started
    assert not (root / "reports" / "mobilenetv1").exists()
    # a shard's steps in the task's runtime, the docker images
    dataset = next((root / "build").rglob("inputs/*.data")).name[:-5]  # the DATA link
    args = ["-f", "mk/pipeline.mk", plan_args(root, runner="docker", loop=2, warmup=1, limit=6,
                                              data_id=dataset), "SHARDS=2", "SHARD=1",
            f"PY={sys.executable}", "DOCKER=/usr/bin/docker"]
    (root / "build" / "mobilenetv1" / "weights").mkdir(parents=True, exist_ok=True)
    (root / "build" / "mobilenetv1" / "weights" / "random.json").write_text("{}\n")
    proc = subprocess.run(["make", "-n", "--no-print-directory", *args, "sweep-shard",
                           "sweep-merge"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.replace("\\\n", " ").splitlines() if line.strip()]
    split = next(line for line in lines if "npuzoo.shards split" in line)
    bench = next(line for line in lines if "npuzoo.bench" in line and "shards2/1/input" in line)
    merge = next(line for line in lines if "npuzoo.shards merge" in line)
    assert all("docker run" in line for line in (split, bench, merge))
    assert "--shard 1 --shards 2 --bs 4" in " ".join(split.split())


# -- a Ray cluster of two nodes on this machine --------------------------------------------------

def node_env(root, logs):
    """The stand-ins on PATH, the real ais_bench front end and the aclruntime stand-in on
    PYTHONPATH, no CANN: what the nodes and the driver run with."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_", "ASCEND_", "RAY_")) and
           k not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CI")}
    env.update(frontend_env(root))
    env.update(PATH=os.pathsep.join([str(root / "tests" / "standins"), VENV_BIN, SYSTEM_PATH]),
               NPUZOO_ASCEND_ROOT=str(logs / "no-ascend-here"),
               NPUZOO_STANDIN_LOG=str(logs / "standin.log"), NPUZOO_THREADS="1",
               RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               # a dead node is noticed in seconds, not half a minute
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
               RAY_health_check_initial_delay_ms="1000")
    return env


class Cluster:
    HEAD, WORKER = "127.0.0.1", "127.0.0.2"

    def __init__(self, root, logs):
        self.root, self.logs = root, logs
        self.env = node_env(root, logs)
        self.temp = tempfile.mkdtemp(prefix="rz", dir="/tmp")  # short: Ray's socket paths
        self.ns = Namespace()
        ray = os.path.join(VENV_BIN, "ray")
        common = ["--num-cpus=2", "--disable-usage-stats", f"--temp-dir={self.temp}"]
        self.start([ray, "start", "--head", f"--node-ip-address={self.HEAD}", "--port=6379",
                    "--include-dashboard=false", '--resources={"NPU": 2}', *common])
        self.start([ray, "start", f"--address={self.HEAD}:6379",
                    f"--node-ip-address={self.WORKER}", '--resources={"NPU": 1}', *common])
        self.address = f"{self.HEAD}:6379"

    def start(self, argv):
        proc = self.ns.run(argv, self.env, self.root, timeout=120)
        if proc.returncode:
            self.close()
            raise AssertionError(f"{argv[1:3]} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def make(self, *args, timeout=600, **extra):
        env = dict(self.env, RAY_ADDRESS=self.address)
        env.update(extra)
        return self.ns.run(["make", "--no-print-directory", "-o", ".venv/.installed", *args],
                           env, self.root, timeout)

    def worker_node_processes(self):
        """{pid: argv} of the worker node's raylet and every process under it (its Ray
        workers, the make runs of their tasks and those runs' steps)."""
        argvs = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    argvs[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        raylet = next((pid for pid, argv in argvs.items() if argv[0].endswith(b"/raylet")
                       and any(self.WORKER.encode() in a for a in argv)), None)
        if raylet is None:
            return {}
        found, todo = {}, [raylet]
        while todo:
            pid = todo.pop()
            found[pid] = argvs.get(pid, [b""])
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in
                             Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        return found

    def close(self):
        self.ns.close()
        shutil.rmtree(self.temp, ignore_errors=True)


needs_cluster = [pytest.mark.slow,
                 pytest.mark.skipif(
                     not (FRONTEND / "ais_bench" / "infer" / "__main__.py").is_file(),
                                    reason=f"the ais_bench front end is not at {FRONTEND}"),
                 pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("nsenter"),
                                    reason="unshare/nsenter not found")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = scratch_repository(tmp_path_factory.mktemp("sweep") / "repo")
    logs = tmp_path_factory.mktemp("sweep-logs")
    started = time.time()
    cluster = Cluster(root, logs)
    cluster.start_seconds = time.time() - started
    yield cluster
    cluster.close()


def common_args(shared_data, *extra):
    return [f"DATA={shared_data / 'imagenet-val-10'}", f"N={N}", "WEIGHTS=random", "LOOP=2",
            "WARMUP=1", f"SOC={SOC}", *extra]


def lines_of(proc, prefix="sweep: "):
    return [line for line in proc.stdout.splitlines() if line.startswith(prefix)]


# Fields that differ between two runs of the same thing: when and how fast, where, and the
# comparison with an earlier run.
VOLATILE = ("timestamp", "perf", "placement", "comparison", "timings")


def comparable(report):
    return {k: v for k, v in report.items() if k not in VOLATILE}


def out_dir(root, model, bs):
    return next((root / "build" / model / SOC / "random" / f"bs{bs}").glob("imagenet-val-10-*"))


MODELS = ("mobilenetv1", "vovnet39")


class TestCluster:
    pytestmark = needs_cluster

    def test_two_models_two_batch_sizes_spread_over_both_nodes(self, cluster, shared_data,
                                                               tmp_path):
        proc = cluster.make("sweep", f"MODELS={' '.join(MODELS)}", "BS=1 4",
                            *common_args(shared_data))
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        summary = [line for line in lines_of(proc) if " node " in line]
        assert len(summary) == 4, proc.stdout
        assert lines_of(proc)[-1].startswith("sweep: 4/4 tasks done (4 published)")
        nodes = set()
        for model in MODELS:
            for bs in (1, 4):
                report = json.loads((cluster.root / "reports" / model /
                                     f"{SOC}_bs{bs}.json").read_text())
                placement = report["placement"]
                nodes.add(placement["node_ip"])
                # one NPU per task: Ray's ASCEND_RT_VISIBLE_DEVICES names one device
                assert placement["device"] in ("NPU 0", "NPU 1"), placement
                assert placement["runner"] == "ray" and placement["node_id"]
                assert report["accuracy"]["images"] == N and report["perf"]["throughput"] > 0
                assert any(f"{model} BS={bs} {SOC} node {placement['node_ip']} "
                           f"{placement['device']}: " in line and line.endswith(")")
                           for line in summary), summary
        assert nodes == {Cluster.HEAD, Cluster.WORKER}
        assert "sweep: 4 tasks on 2 node(s), {'NPU': 1} each, shared storage" in proc.stdout
        # shared steps once per model: one export, one preprocessed set
        for model in MODELS:
            assert len(list((cluster.root / "build" / model / "onnx").rglob("*.onnx"))) == 1
        assert "readme: " in proc.stdout  # READMEs rendered once, at the end
        assert proc.stdout.count("== READMEs") == 1

        # The same reports as plain `make <model>` runs write (in another scratch copy).
        plain = scratch_repository(tmp_path / "plain")
        env = node_env(plain, tmp_path)
        for model in MODELS:
            run = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed",
                                  model, "BS=1 4", *common_args(shared_data)],
                                 cwd=plain, env=env, capture_output=True, text=True,
                                 timeout=600)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            for bs in (1, 4):
                ours = json.loads((cluster.root / "reports" / model / f"{SOC}_bs{bs}.json")
                                  .read_text())
                theirs = json.loads((plain / "reports" / model / f"{SOC}_bs{bs}.json")
                                    .read_text())
                assert "placement" not in theirs
                assert comparable(ours) == comparable(theirs), (model, bs)
                assert set(ours["perf"]) == set(theirs["perf"])
                a, b = out_dir(cluster.root, model, bs), out_dir(plain, model, bs)
                assert (a / "accuracy.json").read_bytes() == (b / "accuracy.json").read_bytes()
                names = sorted(os.listdir(a / "results"))
                assert names == sorted(os.listdir(b / "results")) and len(names) == N
                assert all((a / "results" / n).read_bytes() == (b / "results" / n).read_bytes()
                           for n in names)

    def test_two_shards_equal_one_device(self, cluster, shared_data):
        folder = out_dir(cluster.root, "mobilenetv1", 4)
        single = {n: (folder / "results" / n).read_bytes()
                  for n in os.listdir(folder / "results")}
        accuracy = (folder / "accuracy.json").read_bytes()
        report = json.loads((cluster.root / "reports/mobilenetv1" / f"{SOC}_bs4.json").read_text())
        shutil.rmtree(folder)
        proc = cluster.make("sweep", "MODELS=mobilenetv1", "BS=4", "SHARDS=2",
                            *common_args(shared_data))
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        assert len([line for line in lines_of(proc) if " shard " in line and " node " in line]) == 2
        assert (folder / "accuracy.json").read_bytes() == accuracy
        assert {n: (folder / "results" / n).read_bytes()
                for n in os.listdir(folder / "results")} == single
        for shard in (0, 1):  # each shard inferred its own contiguous half
            part = sorted(os.listdir(folder / "shards2" / str(shard) / "results"))
            assert part == sorted(single)[shard * 4:shard * 4 + 4]
        merged = json.loads((cluster.root / "reports/mobilenetv1" / f"{SOC}_bs4.json").read_text())
        assert merged["accuracy"] == report["accuracy"]
        placement = merged["placement"]
        assert [s["shard"] for s in placement["shards"]] == [0, 1]
        assert {s["node_ip"] for s in placement["shards"]} == {Cluster.HEAD, Cluster.WORKER}

    def test_copy_mode_runs_in_shipped_copies(self, cluster, shared_data):
        proc = cluster.make("sweep", "MODELS=mobilenetv1", "BS=2", "SHARDS=2",
                            *common_args(shared_data), NPUZOO_SWEEP_STORAGE="copy")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        assert "copy storage" in proc.stdout
        report = json.loads((cluster.root / "reports/mobilenetv1" / f"{SOC}_bs2.json").read_text())
        assert report["accuracy"]["images"] == N
        # the shards ran in Ray's copies of the code (runtime_env working_dir), not here
        copies = list(Path(cluster.temp).rglob("working_dir_files/*/build/.sweep/logs/"
                                               f"mobilenetv1/{SOC}_bs2_shard*of2.log"))
        assert len(copies) >= 2, copies
        assert not list((cluster.root / "build" / ".sweep" / "logs" / "mobilenetv1")
                        .glob("*_bs2_shard*"))
        folder = out_dir(cluster.root, "mobilenetv1", 2)
        assert len(os.listdir(folder / "results")) == N  # shipped back and merged here

    def test_through_a_ray_client_address(self, cluster, shared_data):
        proc = cluster.make("sweep", "MODELS=mobilenetv1", "BS=1", *common_args(shared_data),
                            RAY_ADDRESS=f"ray://{Cluster.HEAD}:10001")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        assert "sweep: 1/1 tasks done (1 published)" in proc.stdout
        assert (cluster.root / "reports/mobilenetv1" / f"{SOC}_bs1.json").is_file()

    def test_killed_worker_node_leaves_no_task_unaccounted(self, cluster, shared_data):
        """Last: the worker node is gone afterwards."""
        out = open(cluster.logs / "killed.log", "w+", encoding="utf-8")  # noqa: SIM115 (its log)
        env = dict(cluster.env, RAY_ADDRESS=cluster.address)
        proc = cluster.ns.popen(["make", "--no-print-directory", "-o", ".venv/.installed",
                                 "sweep", "MODELS=mobilenetv1", "BS=3 5 6",
                                 *common_args(shared_data)], env, cluster.root, out)
        # Wait for a task's make on the worker node, then kill the whole node: its raylet,
        # its Ray workers and what they run, as a machine that dies.
        deadline, killed = time.time() + 120, None
        while time.time() < deadline and killed is None and proc.poll() is None:
            processes = cluster.worker_node_processes()
            running = [(pid, argv) for pid, argv in processes.items()
                       if argv[0] == b"make" and b"report" in argv]
            if running:
                killed = "BS=" + plan_batch_size(*running[0])
                for pid in processes:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        try:
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        out.seek(0)
        text = out.read()
        assert code in (0, 1), text[-4000:]
        summary = [line for line in text.splitlines()
                   if line.startswith("sweep: mobilenetv1 BS=")]
        assert len(summary) == 3, text[-4000:]
        for bs in (3, 5, 6):
            published = (cluster.root / "reports/mobilenetv1" / f"{SOC}_bs{bs}.json").is_file()
            line = next(line for line in summary if f" BS={bs} " in line)
            assert published or "failed" in line, line
        assert killed, "no task ran on the worker node: " + text[-3000:]
        if code == 0:  # every task done: the one on the dead node retried on the head
            assert all("; ok" in line for line in summary), summary
            report = json.loads((cluster.root / "reports/mobilenetv1" /
                                 f"{SOC}_bs{killed[3:]}.json").read_text())
            assert report["placement"]["node_ip"] == Cluster.HEAD
        else:  # or reported with its error after its one retry
            assert "error: sweep: " in text and f"{killed[3:]} " in text


def plan_batch_size(pid: int, argv: list[bytes]) -> str:
    """The batch size of a running pipeline make: its PLAN= file's `BS := N` line."""
    plan = next(a.decode()[len("PLAN="):] for a in argv if a.startswith(b"PLAN="))
    text = (Path(f"/proc/{pid}/cwd") / plan).read_text(encoding="utf-8")
    return re.search(r"^BS := (\d+)$", text, re.MULTILINE).group(1)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("nsenter"),
                    reason="unshare/nsenter not found")
def test_local_default_writes_what_sequential_make_writes(tmp_path, shared_data):
    """RAY_ADDRESS unset: a Ray instance of the sweep's own (loopback only), SOC=cpu."""
    root = scratch_repository(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_", "RAY_")) and
           k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CI")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    args = ["BS=1 4", f"DATA={shared_data / 'imagenet-val-10'}", f"N={N}", "WEIGHTS=random",
            "LOOP=2", "WARMUP=1"]
    ns = Namespace()
    try:
        proc = ns.run(["make", "--no-print-directory", "-o", ".venv/.installed", "sweep",
                       "MODELS=mobilenetv1", *args], env, root, timeout=600)
    finally:
        ns.close()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    # Ray's own log lines only on request (NPUZOO_RAY_LOGS=1)
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    cpus = len(os.sched_getaffinity(0))
    assert f"sweep: 2 tasks on 1 node(s), {cpus} CPU(s) each, shared storage" in proc.stdout
    plain = scratch_repository(tmp_path / "plain")
    run = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed",
                          "mobilenetv1", *args], cwd=plain, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for bs in (1, 4):
        ours = json.loads((root / "reports/mobilenetv1" / f"cpu_bs{bs}.json").read_text())
        theirs = json.loads((plain / "reports/mobilenetv1" / f"cpu_bs{bs}.json").read_text())
        assert comparable(ours) == comparable(theirs)
        assert ours["placement"]["device"] == f"CPU x{cpus}"
        assert ours["placement"]["node_ip"] == "127.0.0.1"
