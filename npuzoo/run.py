"""`make <model>`: check every variable, lock build/<model>/.lock, identify the inputs by
content, then per batch size write the run's plan (npuzoo/plan.py) and run mk/pipeline.mk on it.
In Python so that the user's values never reach a shell or Make: make gets an argument list and
a plan of validated tokens and paths under build/ (DATA through a link, WEIGHTS as a copy)."""

import argparse
import contextlib
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from npuzoo import ascend, config, dataset, engines, history, source, steps, store, variables
from npuzoo import soc as socs
from npuzoo import weights as weights_mod
from npuzoo.checksums import HashCache
from npuzoo.errors import Problems, UserError, cli
from npuzoo.files import locked, replace_link
from npuzoo.plan import ASCEND_ENGINE, RunPlan

REPO = config.REPO_ROOT
BUILD = "build"

DEFAULTS = variables.read({}, "model")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Settings' attribute of a variable, where it is not its name in lower case.
ATTRIBUTES = {"BS": "batch_sizes", "N": "limit"}


class Settings:
    """The checked variables of one `make <model>` run (every bad value said at once)."""

    batch_sizes: list[int]
    limit: int | None
    loop: int
    warmup: int
    runner: str
    aipp: bool
    force: bool
    strict: bool
    precision: str
    quantizer: str
    calib: int
    calib_data: str
    backend: str
    streams: int | None
    tune: bool
    perf_seconds: int | None
    device: str
    soc: str
    data: str
    weights: str

    def __init__(self, values: Mapping[str, str]) -> None:
        self.raw = dict(values)
        problems = Problems()
        for variable in variables.of("model"):
            with problems:
                value = variable.value(values[variable.name])
                setattr(self, ATTRIBUTES.get(variable.name, variable.name.lower()), value)
        with problems:
            if streams := getattr(self, "streams", None):
                engines.check_streams(streams, "STREAMS")
        with problems:  # (the two exclude each other)
            if getattr(self, "precision", "") == "int8" and getattr(self, "aipp", False):
                raise UserError("PRECISION=int8 with AIPP=1: not supported together; pick one")
            if getattr(self, "quantizer", "") and getattr(self, "precision", "") != "int8":
                raise UserError(f"QUANTIZER={self.quantizer}: quantises PRECISION=int8 runs; "
                                "add PRECISION=int8 or drop it")
        problems.raise_any()
        # (relative to where make was called)
        self.calib_data_abs = os.path.abspath(self.calib_data) if self.calib_data else ""
        self.data_abs = os.path.abspath(self.data) if self.data else ""
        if self.weights not in ("", "random"):
            self.weights = os.path.abspath(self.weights)
        self.resolved_soc: str | None = None  # resolve_soc's answer, once


def read_values(environ: Mapping[str, str], model: str | None = None) -> dict[str, str]:
    """The raw Make variables (NPUZOO_<NAME>); LOOP and WARMUP default to the guide's (model.yaml
    `perf`) on an Ascend chip only: DPN131's 1000 loops would take minutes on the CPU."""
    soc = environ.get("NPUZOO_SOC", DEFAULTS["SOC"])
    on_npu = soc.startswith("Ascend") or (soc == "auto" and shutil.which("npu-smi"))
    guide = config.perf_defaults(config.load(model)) if model is not None and on_npu else {}
    return variables.read(environ, "model", {k.upper(): str(v) for k, v in guide.items()})


@contextlib.contextmanager
def lock_for(model: str, settings: Settings) -> Iterator[None]:
    """An exclusive flock on build/<model>/.lock, holding who holds it."""
    who = " ".join([f"make {model}", *(f"{k}={shlex.quote(v)}" for k, v in settings.raw.items()
                                       if v and k in ("BS", "SOC"))])
    path = os.path.join(BUILD, model, ".lock")
    with locked(path, lambda holder: f"{path}: held by {holder or 'another run'}; waiting for "
                "it to finish (Ctrl-C to stop)") as handle:
        handle.truncate(0)  # (the file is opened to append: the line goes first)
        handle.write(f"pid {os.getpid()} ({who}, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)  # (closing the file releases the lock)


TEMPORARY = (".tmp", ".part")


def remove_leftovers(*folders: str) -> None:
    """Temporary files and folders of killed runs (the lock says no run is active)."""
    removed = 0
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in [d for d in dirs if d.endswith(TEMPORARY)]:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                dirs.remove(name)
                removed += 1
            for name in [f for f in files if f.endswith(TEMPORARY)]:
                os.unlink(os.path.join(root, name))
                removed += 1
    if removed:
        print(f"removed {removed} temporary file(s) left by an interrupted run", flush=True)


def dataset_id(data_dir: str, limit: int | None, cache: Any, offset: int = 0) -> str:
    """`<folder name>-<sha256 of the selection's names, labels and image contents>-n<N|all>`
    (`-o<K>-n<N>` for a selection that starts after the first K)."""
    labels, images = dataset.check_dataset(data_dir)
    names = dataset.select(labels, data_dir, limit, offset)
    digest = hashlib.sha256()
    print(f"data: {len(names)} images of {data_dir} identified by their checksums "
          "(cached: only new or changed files are read)", flush=True)
    for name in tqdm(names, desc="checksums", unit="image", disable=not sys.stderr.isatty()):
        digest.update(f"{name}\t{labels[name]}\t{cache.sha256(images[name])}\n".encode())
    folder = SAFE_NAME.sub("_", os.path.basename(os.path.abspath(data_dir))).strip("._")[:40]
    start = f"-o{offset}" if offset else ""
    return f"{folder or 'data'}-{digest.hexdigest()[:12]}{start}-n{limit or 'all'}"


# Make variables of the caller that must not leak into the pipeline's make (MAKEFLAGS carries
# the user's command-line variables, which Make would evaluate).
SCRUBBED = {"MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "MAKE_TERMOUT",
            "MAKE_TERMERR", "MAKEFILES", "GNUMAKEFLAGS",
            *(name for v in variables.VARIABLES if v.kind == "value"
              for name in (v.name, f"NPUZOO_{v.name}"))}


def make_mode(environ: Mapping[str, str] = os.environ) -> str:
    """The letter of -n, -q or -t when make runs this driver so (the recipe's `+`), else ''."""
    flags = environ.get("MAKEFLAGS", "").split(" -- ")[0].split()
    letters = flags[0] if flags and not flags[0].startswith("-") else ""
    return next((mode for mode in "nqt" if mode in letters), "")


DRY_RUN = make_mode() == "n"


def answer_make_mode(what: str) -> None:
    """make -q: not up to date (exit 1: only the steps know, by running); make -t: refused."""
    mode = make_mode()
    if mode == "q":
        raise SystemExit(1)
    if mode == "t":
        raise UserError(f"make -t {what}: a pipeline is never marked up to date without "
                        "running it; run make without -t")


def make_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in SCRUBBED}, **extra}


def make(args: list[str], check: bool = True, **options: Any) -> int:
    command = ["make", "--no-print-directory", *(["-n"] if DRY_RUN else []), *args]
    result = subprocess.run(command, cwd=REPO, env=make_env(), stdin=subprocess.DEVNULL, **options)
    if check and result.returncode != 0:
        raise SystemExit(result.returncode)
    return result.returncode


# RUNNER=docker: the images' hashes, computed once per `make <model>` (mk/docker.mk's `tags`)
# and carried by the plan, so that no later make hashes again; HASHED_MODEL: the last two's.
IMAGE_HASHES = ("PYTHON_HASH", "BASE_HASH", "INFER_HASH", "EXPORT_HASH", "ASCEND_HASH",
                "UPSTREAM_HASH", "MODEL_HASH", "HASHED_MODEL")
MODEL_HASHES = IMAGE_HASHES[-3:]


def image_hashes(plan: RunPlan, model: str | None = None) -> RunPlan:
    """The plan with the shared images' hashes, and with `model` that model's own too."""
    args = [f"SOC={plan.soc}"]
    if model:
        args = [a for a in plan.docker_args() if a.split("=")[0] not in MODEL_HASHES]
        args += [f"MODEL={model}", f"HAS_UPSTREAM={'1' if plan.has_upstream else ''}"]
    result = subprocess.run(["make", "--no-print-directory", "-s", "-f", "mk/docker.mk", "tags",
                             *args], cwd=REPO, env=make_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
    lines = (line.partition("=") for line in result.stdout.splitlines())
    return replace(plan, image_hashes=tuple(sorted(
        (name, value) for name, _, value in lines if name in IMAGE_HASHES and value)))


def docker_images(plan: RunPlan) -> RunPlan:
    """RUNNER=docker: the shared images, then the model's source step (its image bakes in the
    patched upstream tree; the step runs in the base image), then the model's image."""
    plan = image_hashes(plan)
    make(["-f", "mk/docker.mk", "images", "IMAGE_MODELS=", *plan.docker_args()])
    if plan.has_upstream:
        make(plan.make_args(plan.paths()["SOURCE_JSON"]))
    plan = image_hashes(plan, plan.model)
    make(["-f", "mk/docker.mk", "images", f"IMAGE_MODELS={plan.model}", *plan.docker_args()])
    return plan


def check_source_tree(model: str) -> None:
    """Remove a patched tree edited since the source step, so that Make rebuilds it."""
    tree = os.path.join(BUILD, model, "src", "upstream")
    record = os.path.join(BUILD, model, "src", "source.json")
    if not (os.path.isdir(tree) and os.path.isfile(record)):
        return
    upstream = config.load(model).upstream
    if (difference := source.verify_tree(upstream, config.model_dir(model), tree, record)):
        print(f"warning: {tree}: differs from the pinned source's patched tree "
              f"(first difference: {difference}); fetching and patching it again",
              file=sys.stderr, flush=True)
        shutil.rmtree(tree, ignore_errors=True)
        os.unlink(record)


def plan_of(model: str, settings: Settings, soc: str, **ids: Any) -> RunPlan:
    """The plan of a run's first batch size; `ids`: the RunPlan fields of the inputs' ids."""
    spec, int8 = config.load(model), settings.precision == "int8"
    own_engine = ASCEND_ENGINE if soc != "cpu" else config.INT8_BACKEND if int8 else spec.backend
    engine = settings.backend or own_engine
    # On the CPU npuzoo.tune picks the engine and streams unless they are given or TUNE=0;
    # untuned, the perf step runs one stream per core (npuzoo.bench --streams).
    tuned = soc == "cpu" and settings.tune and not (settings.backend or settings.streams)
    streams = settings.streams or (len(os.sched_getaffinity(0)) if soc == "cpu" and not tuned
                                   else 0)
    perf_seconds = (settings.perf_seconds if settings.perf_seconds is not None
                    else variables.CPU_PERF["seconds"]) if soc == "cpu" else 0
    return RunPlan(
        model=model, soc=soc, bs=settings.batch_sizes[0], runner=settings.runner,
        device=settings.device, loop=settings.loop, warmup=settings.warmup,
        limit=settings.limit, aipp=settings.aipp, precision=settings.precision,
        engine=engine, own_engine=own_engine, tuned=tuned,
        quantizer=(settings.quantizer or config.INT8_QUANTIZER[engine]) if int8 else "",
        streams=streams, perf_seconds=perf_seconds, force=settings.force,
        strict=settings.strict, has_upstream=bool(spec.upstream.sources), calib=settings.calib,
        show_only=DRY_RUN, **ids)


def share(plan: RunPlan, spec: config.ModelSpec, cache: HashCache | None = None) -> RunPlan:
    """The plan with its shared preprocessed sets' keys; with `cache`, references written too."""
    folder = config.model_dir(plan.model)
    keys: dict[str, Any] = {"prep_bytes": store.prep_bytes(spec, plan.aipp),
                            "export_key": store.export_key(spec, folder)}
    sets = [(plan.data_id, plan.aipp)] + [(plan.calib_id, False)] * bool(plan.calib_id)
    for index, (data_id, uint8) in enumerate(sets):
        key, params = store.prep_key(spec, folder, data_id, uint8)
        keys["calib_prep_key" if index else "prep_key"] = key
        if cache is not None:
            prep_dir = os.path.join(store.PREP_ROOT, key)
            os.makedirs(store.PREP_ROOT, exist_ok=True)
            store.write_key(prep_dir, dict(params, dataset=data_id, uint8=uint8))
            store.reference(plan.model, "data", data_id, os.path.join(store.DATA_ROOT, data_id))
            store.reference(plan.model, "prep", data_id + "-u8" * uint8, prep_dir)
            store.check_reuse(prep_dir, os.path.join(store.DATA_ROOT, data_id, "dataset.json"),
                              keys["prep_bytes"], cache)
    return replace(plan, **keys)


def check_cpu_options(soc: str, settings: Settings) -> None:
    """The CPU's options, refused on an Ascend chip (it runs the .om as its guide says)."""
    for name, value in (("PRECISION", settings.precision != "fp32"), ("BACKEND", settings.backend),
                        ("STREAMS", settings.streams), ("PERF_SECONDS", settings.perf_seconds)):
        if value and soc != "cpu":
            raise UserError(f"{name}={settings.raw[name]}: a CPU option; SOC={soc} runs the "
                            "compiled .om with ais_bench")


def resolve_soc(settings: Settings, say: Callable[..., None] = print) -> str:
    """The chip of the run; `auto` says what it found and chose (once)."""
    if settings.resolved_soc:
        return settings.resolved_soc
    device = int(settings.device.split(",")[0])
    soc = socs.resolve(settings.soc, device)
    if settings.soc == "auto":
        say("SOC=auto: no npu-smi on PATH, so no Ascend NPU here: running on the CPU (SOC=cpu)"
            if soc == "cpu" and not shutil.which("npu-smi") else
            f"SOC=auto: npu-smi reports {soc} for DEVICE={device}: running SOC={soc}", flush=True)
    if soc != "cpu" and "," in settings.device:
        raise UserError(f"DEVICE={settings.device}: {soc} runs take one device id")
    settings.resolved_soc = soc
    return soc


def check_toolkit(soc: str, settings: Settings) -> None:
    """An Ascend chip needs atc (CANN) on this host unless the steps run in the images."""
    if soc != "cpu" and settings.runner == "local":
        ascend.cann_environment()


def preflight(settings: Settings, problems: Problems) -> None:
    """The checks of a run's inputs that need no long step, each problem added to `problems`."""
    with problems:
        soc = resolve_soc(settings)
        for check in (check_cpu_options, check_toolkit):
            with problems:
                check(soc, settings)
    with problems:
        dataset.check_layout(settings.data_abs)
    with problems:
        if settings.weights not in ("", "random") and not os.path.isfile(settings.weights):
            raise UserError(f"WEIGHTS={settings.weights}: no such file; pass a checkpoint "
                            "path, leave WEIGHTS unset to download the published one, or "
                            "WEIGHTS=random")


def data_link(data_abs: str, data_id: str) -> None:
    replace_link(os.path.realpath(data_abs), os.path.join(BUILD, "inputs", data_id + ".data"))


def calibration(settings: Settings, cache: HashCache) -> dict[str, Any]:
    """PRECISION=int8: the plan's calib_id and calib_offset, of images that are not evaluated."""
    if settings.precision != "int8":
        return {}
    source, offset = settings.data_abs, settings.limit or 0
    if settings.calib_data_abs:
        if os.path.realpath(settings.calib_data_abs) != os.path.realpath(settings.data_abs):
            source, offset = settings.calib_data_abs, 0
    elif not offset:
        raise UserError("PRECISION=int8 calibrates on images that are not evaluated: with N "
                        "unset every image of DATA is; set N below the number of images, or "
                        "CALIB_DATA=<folder with val/ and val_label.txt>")
    limit = settings.calib
    if offset:
        left = len(dataset.check_dataset(source)[0]) - offset
        if left <= 0:
            raise UserError(f"PRECISION=int8: DATA={settings.data} has no labelled image after "
                            f"the first {offset} to calibrate on; lower N or set CALIB_DATA")
        limit = min(limit, left)
    calib_id = dataset_id(source, limit, cache, offset)
    data_link(source, calib_id)
    print(f"int8: calibrating on {limit} images of {source}"
          + (f" after the first {offset} (the evaluated ones)" if offset else ""), flush=True)
    return {"calib_id": calib_id, "calib_offset": offset}


def prepare(model: str, settings: Settings) -> RunPlan:
    """The plan of a run, its inputs identified (after preflight, under the model's lock); make -n:
    the ids the inputs have now, nothing written but the DATA link (no download, copy, image)."""
    model_config = config.load(model)
    build = os.path.join(BUILD, model)
    weights_dir = os.path.join(build, "weights")
    if not DRY_RUN:
        remove_leftovers(build, os.path.join("reports", model))
    soc, cache = resolve_soc(settings), store.hash_cache()
    try:
        started = time.perf_counter()
        data_id = dataset_id(settings.data_abs, settings.limit, cache)
        plan = plan_of(model, settings, soc, data_id=data_id, **calibration(settings, cache))
        data_link(settings.data_abs, data_id)
        if DRY_RUN:
            plan = share(plan, model_config)
            if settings.runner == "docker":
                plan = image_hashes(image_hashes(plan), model)
            weights_id, weights_path = weights_now(model_config.weights, settings.weights,
                                                   weights_dir, cache)
        else:
            steps.record(os.path.join(build, "steps.jsonl"), "data", time.perf_counter() - started)
            plan = share(plan, model_config, cache)
            if plan.has_upstream:
                check_source_tree(model)
            if settings.runner == "docker":
                plan = docker_images(plan)
            if not settings.weights:
                make(plan.make_args("fetch-weights"))
            weights_id, weights_path, description = weights_mod.identify(
                model_config.weights, settings.weights, weights_dir, cache)
            weights_mod.write_description(weights_dir, weights_id, description)
            store.remove_unsealed(build, cache)
    finally:
        if not DRY_RUN:
            cache.save()
    return replace(plan, weights_id=weights_id, weights_path=weights_path)


def weights_now(spec: config.WeightsSpec, weights: str, weights_dir: str,
                cache: HashCache) -> tuple[str, str]:
    """make -n: weights_mod.identify's id and path, without copying or fetching a file."""
    if weights == "random":
        return "random", "random"
    if weights and os.path.isfile(weights):
        sha256 = cache.sha256(weights)
        return f"custom-{sha256[:12]}", os.path.join(weights_dir, "store", sha256 + ".pth")
    return "published-unverified", os.path.join(weights_dir, spec.file)


def show(model: str, settings: Settings) -> None:
    """make -n: the commands each batch size would run."""
    plan = prepare(model, settings)
    for bs in settings.batch_sizes:
        make(plan.make_args("publish", bs=bs))


def committed_reports(models: list[str]) -> dict[str, bytes]:
    """{path: bytes} of reports/<model>/[<variant>/]<SOC>_bs<BS>.json (not history.own_path's)."""
    return {path: Path(path).read_bytes() for model in models
            for folder in history.report_folders(os.path.join("reports", model))
            for path in glob.glob(os.path.join(glob.escape(folder), "*_bs*.json"))
            if re.fullmatch(r"[^.]+_bs[0-9]+\.json", os.path.basename(path))}


def render_readmes(models: list[str], before: dict[str, bytes]) -> None:
    """Re-render the READMEs (one renderer at a time) if a committed report changed since then."""
    from npuzoo import readme

    if all(committed_reports(models).get(path) == data for path, data in before.items()):
        print("readme: not re-rendered (no committed report changed); `make readme` adds the "
              "rows of every machine and configuration recorded in reports/", flush=True)
        return
    with locked(os.path.join(BUILD, ".readme.lock")):
        print("readme: rendering the READMEs from reports/", flush=True)
        readme.main([])


def run(model: str, settings: Settings) -> None:
    os.environ[steps.RUN_ENV] = run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    log = os.path.join(BUILD, model, "steps.jsonl")
    with lock_for(model, settings):
        before = committed_reports([model])
        plan = prepare(model, settings)
        try:
            for bs in settings.batch_sizes:
                print(f"== {model}: BS={bs} SOC={plan.soc} {plan.how()}; weights "
                      f"{plan.weights_id}, data {plan.data_id}", flush=True)
                make(plan.make_args("publish", bs=bs))
        finally:
            print(steps.table(steps.entries(log, run_id), steps.entries(log, run_id, other=True)),
                  flush=True)
    render_readmes([model], before)


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m npuzoo.run",
        description="Run one model's pipeline (make <model>): the Make variables come from "
                    "the environment as NPUZOO_BS, NPUZOO_SOC, NPUZOO_DATA, ...")
    parser.add_argument("model", choices=config.model_names())
    parser.add_argument("--check", action="store_true",
                        help="only validate the variables and exit")
    args = parser.parse_args(argv)
    answer_make_mode(args.model)
    # Every problem of the variables and inputs at once, before any step runs.
    problems, settings = Problems(), None
    with problems:
        variables.check_names(os.environ)
    with problems:
        settings = Settings(read_values(os.environ, args.model))
    if settings is None:
        if not args.check:
            with problems:
                dataset.check_layout(os.environ.get("NPUZOO_DATA", ""))
    elif not (args.check or DRY_RUN):
        os.chdir(REPO)  # (DATA and WEIGHTS are absolute by now)
        preflight(settings, problems)
    problems.raise_any()
    if settings is not None and not args.check:
        os.chdir(REPO)
        (show if DRY_RUN else run)(args.model, settings)


if __name__ == "__main__":
    main()
