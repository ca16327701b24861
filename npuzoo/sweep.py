"""`make sweep`: every (model, batch size) of MODELS x BS as a Ray task, one device each (SHARDS=k:
one per shard, merged on the driver), each report published with its `placement` (docs/sweep.md)."""

import contextlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from npuzoo import config, run, variables
from npuzoo.errors import Problems, UserError, cli
from npuzoo.files import atomic_write, locked, replace_link
from npuzoo.plan import RunPlan
from npuzoo.shards import effective_shards

REPO = config.REPO_ROOT
SWEEP_DIR = os.path.join("build", ".sweep")
CPUS_ENV = "NPUZOO_SWEEP_CPUS"
TIMEOUT_ENV = "NPUZOO_RAY_TIMEOUT"  # seconds to reach the cluster at RAY_ADDRESS
TIMEOUT_S = 60
WAIT_S = 30  # the progress line comes back at least this often while tasks run
# What a runtime_env working_dir never carries: outputs, the environment, the history.
EXCLUDES = [".venv", ".venv.lock", "build", "reports", ".git", "**/__pycache__",
            ".pytest_cache", "**/*.tmp", "**/*.part", "images/**/wheels"]
TAIL_LINES = 15
STORAGE = variables.Variable("NPUZOO_SWEEP_STORAGE", choices=("", "shared", "copy"), hint=(
    "use shared (every node sees the repository at the same path) or copy (nodes get a copy)"))
# 1: Ray's own log lines and the tasks' output on the terminal
RAY_LOGS = variables.Variable("NPUZOO_RAY_LOGS", choices=variables.SWITCH,
                              hint="use 1 to show Ray's own log lines, or leave it unset")


def check_timeout(text: str) -> int:
    return variables.number(TIMEOUT_ENV, text, optional=True, most=3600, what=(
        f"the seconds (1 to 3600) to wait for the Ray cluster at RAY_ADDRESS (default "
        f"{TIMEOUT_S})")) or TIMEOUT_S


def check_ray_logs(text: str) -> bool:
    return RAY_LOGS.value(text) is True


def read_settings(environ: Mapping[str, str]) -> tuple[
        list[str], dict[str, run.Settings], int, str, int | None]:
    """(models, {model: run.Settings}, shards, storage, cpus), every value checked."""
    variables.check_names(environ, "sweep")
    check_timeout(environ.get(TIMEOUT_ENV, ""))  # said now, before any step; used by connect()
    own = {name: variables.BY_NAME[name].value(environ.get(f"NPUZOO_{name}", ""))
           for name in ("MODELS", "SHARDS")}
    storage = STORAGE.value(environ.get(STORAGE.name, "")) or "shared"
    cpus = variables.number(CPUS_ENV, environ.get(CPUS_ENV, ""), optional=True, most=10**6,
                            what="a positive number of CPUs per CPU task, or leave it unset "
                                 "for a whole node")
    settings = {model: run.Settings(run.read_values(environ, model)) for model in own["MODELS"]}
    return own["MODELS"], settings, own["SHARDS"], storage, cpus


class TaskFailed(Exception):
    """A task's make failed: the message names the node, the target and the log's tail."""


def run_make(root: str, args: list[str], env: dict[str, str], log: str, where: str,
             fds: tuple[int, ...]) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ make {' '.join(args[2:])}\n")
        out.flush()
        code = subprocess.run(["make", "--no-print-directory", *args], cwd=root, env=env,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              pass_fds=fds).returncode
    if code:
        target = next((a for a in reversed(args) if "=" not in a), "?")
        with open(log, encoding="utf-8", errors="replace") as handle:
            tail = "".join(handle.readlines()[-TAIL_LINES:])
        raise TaskFailed(f"make {target} failed (exit {code}) on {where}; log {log}, "
                         f"last lines:\n{tail}")


def mtime(path: str) -> int | None:
    return os.stat(path).st_mtime_ns if os.path.exists(path) else None


def stamp(report_path: str, before: int | None, placement: dict[str, Any]) -> Any:
    """A report.json's throughput; one make wrote since `before` (its mtime) gets `placement`
    (`npuzoo.report write` has no field for it)."""
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    if mtime(report_path) != before:
        report["placement"] = placement
        atomic_write(report_path, json.dumps(report, indent=2) + "\n")
    return (report.get("perf") or {}).get("throughput")


def pack(root: str, names: list[str]) -> bytes:
    """A tar of those of `names` that exist; a hard link travels as a copy (unpack takes none)."""

    def as_copy(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if info.islnk():
            info.type, info.linkname = tarfile.REGTYPE, ""
            info.size = os.stat(os.path.join(root, info.name)).st_size
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            if os.path.lexists(os.path.join(root, name)):
                tar.add(os.path.join(root, name), arcname=name, filter=as_copy)
    return buffer.getvalue()


def newest_code(root: str) -> float:
    """The newest mtime of root's files outside build/ (the code make's rules depend on)."""
    newest = 0.0
    for folder, dirs, files in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d not in ("build", ".venv", ".git")]
        for name in files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
    return newest


class UnsafePack(Exception):
    """A pack holds a member that is no plain file or folder under the paths it may carry."""


def unpack(data: bytes, root: str, allowed: list[str], keep: bool = False) -> None:
    """Extract a pack() of the paths `allowed` into root, refused whole unless every member is a
    plain file or folder under one of them, dated in the packed files' order (1 µs apart: make
    compares nanoseconds) after the code and now, so that make redoes nothing the pack covers.
    keep: files already there stay (re-dating them would make another task's shard out of date)."""
    roots = [os.path.normpath(path) for path in allowed]
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                if (not (m.isfile() or m.isdir()) or m.name != os.path.normpath(m.name)
                        or os.path.isabs(m.name) or ".." in m.name.split("/")
                        or not any(m.name == r or m.name.startswith(r + "/") for r in roots)):
                    kind = "folder" if m.isdir() else "file" if m.isfile() else "link or device"
                    raise UnsafePack(f"member {m.name!r} ({kind}) is not a file or folder under "
                                     f"{', '.join(roots)}")
            members = [m for m in tar.getmembers() if not (
                keep and not m.isdir() and os.path.lexists(os.path.join(root, m.name)))]
            # the "data" filter too: it refuses a path leaving root through a link already there
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:   # Python 3.11.0-3.11.3 have no filters: the same refusal by hand
                inside = os.path.realpath(root)
                for m in members:
                    target = os.path.realpath(os.path.join(root, m.name))
                    if os.path.commonpath([inside, target]) != inside:
                        raise UnsafePack(f"member {m.name!r} would be written outside {root} "
                                         f"(to {target}, through a link already there)")
                tar.extractall(root, members=members)
    except (tarfile.TarError, OSError) as err:
        raise UnsafePack(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    members = [m for m in members if not m.isdir()]
    order = sorted({m.mtime for m in members})
    rank = {value: index for index, value in enumerate(order)}
    base = max(time.time() - len(order) * 1e-6, newest_code(root) + 1e-3)
    for member in members:
        ns = int((base + rank[member.mtime] * 1e-6) * 1e9)
        os.utime(os.path.join(root, member.name), ns=(ns, ns))


def shipped_inputs(plan: RunPlan, data_paths: dict[str, str], shard_input: str | None) -> list[str]:
    """What a copy-mode task needs of the driver's build/: the records and the shared steps'
    outputs (the whole preprocessed set, or the shard's files)."""
    names = [os.path.join("build", plan.model, name) for name in (
        "model.mk", f"weights/{plan.weights_id}.json", "src", f"onnx/{plan.weights_id}",
        "aipp.cfg", "plans")]  # plans: the make calls' PLAN
    if plan.weights_path != "random":
        names.append(plan.weights_path)
    names += [os.path.join(data_paths["DATASET_DIR"], n) for n in ("dataset.json", "val_label.txt")]
    return names + ([data_paths["PREP_DIR"]] if shard_input is None
                    else [os.path.join(data_paths["PREP_DIR"], ".done"), shard_input])


def outputs_of(data_paths: dict[str, str], shard: int | None) -> list[str]:
    """What a copy-mode task sends back: the run's outputs, or shard `shard`'s."""
    compiled = [data_paths["COMPILED"] + ext for ext in ("", ".json", ".sha256")]
    run_dir = data_paths["RUN_DIR"]
    if shard is None:
        return [*compiled, run_dir]
    shard_dir = os.path.join(data_paths["SHARD_ROOT"], str(shard))
    names = [os.path.join(shard_dir, "infer.done"), os.path.join(shard_dir, "results")]
    if shard == 0:
        names += [*compiled, data_paths["PERF_DIR"]] + [
            os.path.join(run_dir, n) for n in ("backend.json", "backend-aipp.json")]
    return names


def execute(spec: dict[str, Any], shipped: bytes | None = None) -> dict[str, Any]:
    """One Ray task: run spec's make steps on this node; return what the driver reports."""
    import ray

    started = time.time()
    context = ray.get_runtime_context()
    npus = (context.get_accelerator_ids() or {}).get("NPU") or []
    device = f"NPU {','.join(npus)}" if spec["soc"] != "cpu" else f"CPU x{spec['cpus']}"
    placement = {"runner": "ray", "node": socket.gethostname(),
                 "node_ip": ray.util.get_node_ip_address(), "node_id": context.get_node_id(),
                 "device": device}
    where = f"node {placement['node']} ({placement['node_ip']}), {placement['device']}"
    # copy mode: the runtime_env working_dir, this job's copy of the code
    root = spec["repo"] if spec["storage"] == "shared" else os.getcwd()
    if spec["storage"] == "shared" and not os.path.isfile(os.path.join(root, spec["token"])):
        raise TaskFailed(f"{where}: the repository {root} is not here (no {spec['token']}): "
                         f"mount it at the same path on every node, or set {STORAGE.name}=copy")
    if shipped is not None:  # copy mode
        with locked(os.path.join(root, "build", spec["model"], ".ship.lock")):
            if not os.path.isfile(os.path.join(root, spec["ship_token"])):
                try:
                    unpack(shipped, root, spec["shipped_names"], keep=True)
                except UnsafePack as err:
                    raise TaskFailed(f"{where}: the shipped inputs were refused: {err}") from None
                replace_link(".", os.path.join(root, spec["data_link"]))  # DATA stays behind
                atomic_write(os.path.join(root, spec["ship_token"]), "shipped\n")
    threads = {"NPUZOO_THREADS": str(spec["cpus"])} if spec["soc"] == "cpu" else {}
    env = run.make_env(PY=sys.executable, **threads)
    log = os.path.join(root, spec["log"])
    os.makedirs(os.path.dirname(log), exist_ok=True)
    report = os.path.join(root, spec["report"]) if spec.get("report") else None
    before = mtime(report) if report else None
    lock_path = os.path.join(root, spec["lock"])
    # make inherits the lock's descriptor: a make that outlives a killed task keeps the lock
    # until it ends, so a retry never runs beside it.
    for args, exclusive in spec["steps"]:
        with locked(lock_path) if exclusive else contextlib.nullcontext() as handle:
            run_make(root, args, env, log, where, (handle.fileno(),) if handle else ())
    result = {"placement": placement, "seconds": round(time.time() - started, 1)}
    if report:
        result["throughput"] = stamp(report, before, placement)
    if spec["storage"] == "copy":
        result["outputs"] = pack(root, spec["outputs"])
    return result


@dataclass(eq=False)  # a job is itself (groups.remove)
class Job:
    """One line of the summary: a (model, BS) run, or one shard of it."""

    plan: RunPlan  # the batch size's
    shard: int | None = None
    shards: int = 1
    status: str = "running"  # submitted: running or in Ray's queue
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    ref: Any = None  # the task's Ray object reference
    outputs: list[str] = field(default_factory=list)


def connect(environ: Mapping[str, str] = os.environ) -> Any:
    """ray.init: the cluster at RAY_ADDRESS, else a local instance on this machine only; one
    that does not answer within NPUZOO_RAY_TIMEOUT seconds (ray.init retries for minutes, in
    calls no signal interrupts) ends the process with one line, which releases the locks."""
    logs = check_ray_logs(environ.get(RAY_LOGS.name, ""))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = environ.get("RAY_ADDRESS", "").strip()
    timeout_s = check_timeout(environ.get(TIMEOUT_ENV, ""))
    shown = f"RAY_ADDRESS={variables.shown(address)}"
    advice = "start it (ray start --head) or unset RAY_ADDRESS for a local instance"

    def no_answer() -> None:
        print(f"error: {shown}: no answer from the Ray cluster within {timeout_s} s "
              f"({TIMEOUT_ENV}); {advice}", file=sys.stderr, flush=True)
        os._exit(2)

    deadline = threading.Timer(timeout_s, no_answer)
    deadline.daemon = True
    try:
        if address:
            deadline.start()
            # a host:port that refuses is said at once (ray.init retries it for minutes); a Ray
            # client address or `auto` is left to ray.init (and the deadline)
            host, _, port = address.rpartition(":")
            if not address.startswith("ray://") and host and port.isdigit():
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        else:
            # A single-node instance: Ray then takes the loopback address as the node's, so
            # every server it starts listens on 127.0.0.1 only (read when ray is imported).
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray

        kwargs: dict[str, Any] = {"runtime_env": {"working_dir": REPO, "excludes": EXCLUDES},
                  "log_to_driver": logs, "logging_level": "INFO" if logs else "ERROR"}
        if not address.startswith("ray://"):  # a Ray client takes fewer options
            kwargs["include_dashboard"] = False
        # embedded (no address): a new local instance, stopped when the sweep ends
        ray.init(address=address or "local", **kwargs)
    except (OSError, RuntimeError, ValueError) as err:  # OSError: ConnectionError among them
        line = (getattr(err, "strerror", None)
                or (str(err).strip().splitlines() or [type(err).__name__])[0])
        raise UserError(f"{shown}: cannot connect to the Ray cluster ({line}); {advice}") \
            from None
    finally:
        deadline.cancel()
    return ray


def live_nodes(ray: Any) -> list[dict[str, float]]:
    return [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]


def summary_line(job: Job) -> str:
    result, placement = job.result, job.result.get("placement") or {}
    throughput = result.get("throughput")
    rate = f"{throughput:.1f} images/s" if isinstance(throughput, (int, float)) else "-"
    status = job.status if not job.error else f"{job.status}: {job.error.splitlines()[0]}"
    seconds = f" ({result['seconds']:.0f} s)" if result.get("seconds") is not None else ""
    part = f" shard {job.shard + 1}/{job.shards}" if job.shard is not None else ""
    return (f"sweep: {job.plan.model} BS={job.plan.bs}{part} {job.plan.soc} node "
            f"{placement.get('node_ip') or '-'} {placement.get('device') or '-'}: {rate}; "
            f"{status}{seconds}")


def task_slots(ray: Any, soc: str, cpus: int) -> int:
    """Tasks of chip `soc` run at once: per live node, its CPUs // a task's, or its NPUs."""
    return max(sum(int(node.get("CPU", 0) // cpus) if soc == "cpu" else int(node.get("NPU", 0))
                   for node in live_nodes(ray)), 1)


def progress_line(jobs: list[Job], started: float, slots: dict[str, int]) -> str:
    """`sweep: 1/8 tasks done (1 ok), 1 running, 6 queued, 40 s` (`slots`: {soc: tasks at once})."""
    unfinished = Counter(j.plan.soc for j in jobs if j.status == "running")
    counts = Counter(j.status for j in jobs if j.status != "running")
    running = sum(min(n, slots.get(soc, 1)) for soc, n in unfinished.items())
    queued = sum(unfinished.values()) - running
    done = sum(counts.values())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return (f"sweep: {done}/{len(jobs)} tasks done{f' ({parts})' if parts else ''}, "
            f"{running} running, {queued} queued, {time.time() - started:.0f} s")


def error_text(err: BaseException) -> str:
    if isinstance(cause := getattr(err, "cause", None), TaskFailed) or isinstance(err, TaskFailed):
        return str(cause or err)
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or ['?'])[-1]}"


def sweep(models: list[str], settings: dict[str, run.Settings], shards: int, storage: str,
          cpus_wanted: int | None) -> int:
    started = time.time()
    failed = 0
    problems = Problems()  # every model's, before any lock or step
    for model in models:
        run.preflight(settings[model], problems)
    problems.raise_any()
    with contextlib.ExitStack() as held:  # released last in, first out
        for model in sorted(models):
            held.enter_context(run.lock_for(model, settings[model]))
        before = run.committed_reports(models)
        plans: dict[str, RunPlan] = {}
        for model in models:
            plan = run.prepare(model, settings[model])
            print(f"== {model}: SOC={plan.soc} weights {plan.weights_id}, data {plan.data_id}: "
                  "export and preprocessing on the driver", flush=True)
            if run.make(plan.make_args("shared"), check=False):  # (the first batch size's)
                print(f"sweep: {model}: the shared steps failed; its batch sizes are skipped",
                      file=sys.stderr, flush=True)
                failed += 1
                continue
            plans[model] = plan
        token = os.path.join(SWEEP_DIR, f"token-{secrets.token_hex(8)}")
        atomic_write(token, "this repository, seen from a Ray task\n")
        held.callback(Path(token).unlink, missing_ok=True)
        ray = connect()
        held.callback(ray.shutdown)
        failed += drive(ray, plans, settings, shards, storage, cpus_wanted, token, started)
    print("== READMEs", flush=True)
    run.render_readmes(models, before)
    return failed


def drive(ray: Any, plans: dict[str, RunPlan], settings: dict[str, run.Settings], shards: int,
          storage: str, cpus_wanted: int | None, token: str, started: float) -> int:
    soc_of = {p.soc for p in plans.values()}
    if any(soc != "cpu" for soc in soc_of) and not ray.cluster_resources().get("NPU"):
        raise UserError(f"SOC={'/'.join(sorted(soc_of))}: the Ray cluster has no NPU resource "
                        "(see `ray status`); start its nodes on Ascend hosts, or declare "
                        "--resources='{\"NPU\": <count>}'")
    # a CPU task takes NPUZOO_SWEEP_CPUS, else the CPUs of the smallest node
    cpus = cpus_wanted or min([c for n in live_nodes(ray) if (c := int(n.get("CPU", 0)))] or [1])
    remote = ray.remote(max_retries=1, retry_exceptions=True, scheduling_strategy="SPREAD")(execute)
    groups: list[list[Job]] = []  # a (model, BS) run's jobs: one, or one per shard
    packs = {}  # copy mode: (model, shard input) -> (object ref, id) of the shipped inputs
    for model, first in plans.items():
        for bs in settings[model].batch_sizes:
            plan = replace(first, bs=bs)
            data_paths = plan.paths()
            count = len([n for n in os.listdir(data_paths["PREP_DIR"]) if n.endswith(".bin")])
            k = effective_shards(count, bs, shards)
            done = os.path.join(data_paths["OUT_DIR"], "infer.done")
            if k > 1 and not run.make(["-q", *plan.make_args(done)], False, capture_output=True):
                k = 1  # already inferred (by one device or by shards): only perf and report
            # mk/pipeline.mk's SHARD_ROOT of SHARDS=k
            data_paths["SHARD_ROOT"] = os.path.join(data_paths["OUT_DIR"], f"shards{k}")
            # RUNNER=docker: the node's engine gets the images (or has them), then the steps.
            images = [(["-f", "mk/docker.mk", "images", f"IMAGE_MODELS={model}",
                        f"SOC={plan.soc}"], True)] if plan.runner == "docker" else []
            common = {"model": model, "soc": plan.soc, "cpus": cpus, "storage": storage,
                      "repo": REPO, "token": token, "data_link": data_paths["DATA_LINK"],
                      "lock": os.path.join("build", model, f".sweep-{plan.soc}-bs{bs}"
                                           f"{'-aipp' if plan.aipp else ''}.lock")}
            group = [Job(plan, shard, k, outputs=outputs_of(data_paths, shard))
                     for shard in (range(k) if k > 1 else [None])]
            for job in group:
                shard = job.shard
                stem = f"{plan.soc}_bs{bs}" + (f"_shard{shard}of{k}" if k > 1 else "")
                spec: dict[str, Any] = dict(common, outputs=job.outputs, log=os.path.join(
                    SWEEP_DIR, "logs", model, stem + ".log"))
                if shard is None:
                    spec.update(steps=[*images, (plan.make_args("report", DEVICE=0), True)],
                                report=os.path.join(data_paths["OUT_DIR"], "report.json"))
                    shard_input = None
                else:
                    spec["steps"] = [
                        *images, (plan.make_args("sweep-compiled", DEVICE=0), True),
                        (plan.make_args("sweep-shard", DEVICE=0, SHARDS=k, SHARD=shard), False),
                        *[(plan.make_args("sweep-perf", DEVICE=0), True)] * (shard == 0)]
                    # the shard's input folder is made here, so copy mode ships only its files
                    shard_input = os.path.join(data_paths["SHARD_ROOT"], str(shard), "input")
                    run.make(plan.make_args(os.path.join(shard_input, ".done"), SHARDS=k,
                                            SHARD=shard))
                shipped = None
                if storage == "copy":
                    spec["shipped_names"] = shipped_inputs(plan, data_paths, shard_input)
                    if (model, shard_input) not in packs:
                        packs[model, shard_input] = (ray.put(pack(REPO, spec["shipped_names"])),
                                                     secrets.token_hex(8))
                    shipped, pack_id = packs[model, shard_input]
                    spec["ship_token"] = os.path.join("build", model, f".shipped-{pack_id}")
                device = ({"num_cpus": cpus} if plan.soc == "cpu"
                          else {"num_cpus": 1, "resources": {"NPU": 1}})
                job.ref = remote.options(**device).remote(spec, shipped)
            groups.append(group)
    jobs = [job for group in groups for job in group]
    slots = {soc: task_slots(ray, soc, cpus) for soc in soc_of}
    print(f"sweep: {len(jobs)} tasks on {len(live_nodes(ray))} node(s), "
          + ("{'NPU': 1} each" if soc_of != {"cpu"} else f"{cpus} CPU(s) each")
          + f", {storage} storage", flush=True)
    failed = 0
    pending = {job.ref: job for job in jobs}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
        for ref in ready:
            job = pending.pop(ref)
            try:
                job.result, job.status = ray.get(ref), "ok"
            except Exception as err:  # a task's error, after its retry: reported, not raised
                job.status, job.error = "failed", error_text(err)
                failed += 1
            if "outputs" in job.result:  # copy mode
                try:
                    unpack(job.result.pop("outputs"), REPO, job.outputs)
                except UnsafePack as err:  # nothing of it written outside its outputs
                    job.status, job.error = "failed", f"its result was refused: {err}"
                    failed += 1
            print(summary_line(job), flush=True)
            if job.error:
                print("\n".join("    " + line for line in job.error.splitlines()[1:]), flush=True)
        for group in [g for g in groups if all(j.status != "running" for j in g)]:
            groups.remove(group)
            if all(j.status != "failed" for j in group):
                failed += finish(group)
        print(progress_line(jobs, started, slots), flush=True)
    return failed


def finish(group: list[Job]) -> int:
    """Merge a sharded run and write its report (on the driver), then publish: 0 or 1 failed."""
    first, plan, k = group[0], group[0].plan, group[0].shards
    if k > 1:
        report = os.path.join(plan.paths()["OUT_DIR"], "report.json")
        before = mtime(report)
        code = run.make(plan.make_args("sweep-merge", SHARDS=k), check=False) or \
            run.make(plan.make_args("report"), check=False)
        if code:
            print(f"sweep: {plan.model} BS={plan.bs}: merging the {k} shards or the report failed",
                  file=sys.stderr, flush=True)
            return 1
        shards = [{"shard": j.shard, **{key: j.result["placement"][key] for key in
                   ("node", "node_ip", "node_id", "device")}} for j in group]
        throughput = stamp(report, before, dict(first.result["placement"], shards=shards))
        print(f"sweep: {plan.model} BS={plan.bs} {plan.soc}: {k} shards merged: "
              f"{throughput or 0:.1f} images/s (shard 1's device)", flush=True)
    code = run.make(plan.make_args("publish"), check=False)
    for job in group:
        job.status = "published" if not code else "failed"
    if code:
        print(f"sweep: {plan.model} BS={plan.bs}: publish failed (exit {code})", file=sys.stderr,
              flush=True)
    return 1 if code else 0


@cli
def main() -> None:
    """`make sweep` (no arguments: the Make variables come as NPUZOO_MODELS, NPUZOO_BS, ...)."""
    run.answer_make_mode("sweep")
    models, settings, shards, storage, cpus = read_settings(os.environ)
    os.chdir(REPO)
    if run.DRY_RUN:  # the tasks a sweep would submit, then each model's pipeline commands
        what = f"{shards} shard tasks" if shards > 1 else "1 task"
        for model, s in settings.items():
            for bs in s.batch_sizes:
                print(f"# sweep: {model} BS={bs} SOC={s.soc}: {what} "
                      + ("{'NPU': 1}" if s.soc != "cpu" else "(CPUs of a node)"))
            run.show(model, s)
        return
    if failed := sweep(models, settings, shards, storage, cpus):
        print(f"error: sweep: {failed} task(s) or step(s) failed (see the lines above)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
