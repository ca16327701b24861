"""Where the time of `make <model> DATA=... BS=...` goes, cold and warm, against the necessary
work (each image decoded and resized once, one inference pass).

    .venv/bin/python benchmarks/bench_make.py --data ../shared/data/imagenet-val-1300 [--model
        mobilenetv1] [--bs 16] [--n N] [--out benchmarks/results/make_time.json | --no-write]

HEAD is cloned into a temporary folder under build/bench_make/ (.venv linked; removed at the
end), so that `make <model> DATA=<data> BS=<bs> WEIGHTS=random [N=<n>]` there finds nothing
cached; the same command then runs again (warm). Each make is timed whole; its steps' seconds
and the steps it reused come from the clone's build/<model>/steps.jsonl (npuzoo/steps.py, one
run id per make), the tuning's from the records it wrote in build/tuning (inside the step that
ran it). The rest of a make is orchestration (driver, Make, the step wrappers' interpreter
start-ups, timed alone here, README rendering). The environment reaches both makes as it is
(TUNE, PERF_SECONDS...: recorded). Build logs: build/bench_make/{cold,warm}.log.

The necessary work, afterwards in this process on the same images (npuzoo.dataset's selection,
now in the page cache as for the warm make): the model folder's preprocess() on each image, and
one plain ONNX Runtime session on the clone's export over them in batches of BS (the last
padded, as the pipeline pads it). Results are kept per machine and setting in --out (another
machine's or setting's entries stay).
"""

import argparse
import datetime
import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench_engines as be  # noqa: E402 (puts the repository on sys.path)

from npuzoo import dataset, steps, variables  # noqa: E402
from npuzoo.errors import UserError  # noqa: E402

REPO = be.REPO
WORK = os.path.join(REPO, "build", "bench_make")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "make_time.json")
# The parent's Make state would change the child make (tests/conftest.py drops the same).
MAKE_STATE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES",
              "NPUZOO_COMMAND_LINE", "NPUZOO_MAKE_VARIABLES")


def scratch_clone(root: str) -> None:
    """HEAD cloned into `root` with the checkout's venv linked; the clone's requirements are
    dated before the venv's stamp, so that its make does not reinstall the venv."""
    venv = os.path.realpath(os.path.join(REPO, ".venv"))
    stamp = os.path.join(venv, ".installed")
    if not os.path.isfile(stamp):
        raise UserError(f"{stamp}: missing; run `make venv` in the checkout first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", REPO, root], check=True)
    subprocess.run(["git", "-C", root, "checkout", "--quiet", "--detach", head], check=True)
    os.symlink(venv, os.path.join(root, ".venv"))
    older = os.stat(stamp).st_mtime - 1
    for path in [os.path.join(root, "requirements.txt"),
                 *glob.glob(os.path.join(root, "models", "*", "requirements.txt"))]:
        os.utime(path, (older, older))


def timed_make(root: str, argv: list[str], label: str) -> float:
    """Wall seconds of `make ARGV` in `root`; its output goes to build/bench_make/<label>.log."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_STATE}
    log = os.path.join(WORK, f"{label}.log")
    with open(log, "w") as handle:
        start = time.perf_counter()
        status = subprocess.run(["make", "--no-print-directory", *argv], cwd=root, env=env,
                                stdout=handle, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
    if status != 0:
        raise UserError(f"the {label} `make {' '.join(argv)}` failed (exit status {status}); "
                        f"see {os.path.relpath(log, REPO)}")
    return wall


def run_ids(log: str) -> list[str]:
    """The run ids of a steps.jsonl, in the order they first appear."""
    return list(dict.fromkeys(e["run"] for e in steps.read(log) if e.get("run")))


def tuning_seconds(root: str, before: set[str]) -> float:
    """Seconds of the tuning passes whose records appeared in build/tuning since `before`."""
    total = 0.0
    for path in set(glob.glob(os.path.join(root, "build", "tuning", "*.json"))) - before:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        if isinstance(record, dict) and "chosen" in record:   # not the perf step's probe
            total += float(record.get("seconds") or 0)
    return round(total, 2)


def breakdown(log: str, run: str, earlier: list[str], wall: float, tuning: float) -> dict:
    """One make: its steps' seconds, the rest of its wall time, the steps it reused."""
    found = steps.entries(log, run)
    sums = steps.totals(found)
    done = [e for r in earlier for e in steps.entries(log, r)]
    return {"run": run, "wall_s": round(wall, 2), "steps_s": sums,
            "steps_total_s": round(sum(sums.values()), 2),
            "orchestration_s": round(wall - sum(sums.values()), 2), "tuning_s": tuning,
            "reused": steps.reused(found, done)}


def necessary_work(root: str, model: str, images: list[str], bs: int, onnx_path: str) -> dict:
    """Seconds of decoding and resizing each image once (the clone's models/<model>/
    preprocess.py) and of one inference pass over them."""
    import numpy as np
    import onnxruntime as ort

    from npuzoo.bench.runner import default_threads

    spec = importlib.util.spec_from_file_location(
        f"_bench_make_{model}_preprocess", os.path.join(root, "models", model, "preprocess.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    preprocess = module.preprocess
    start = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads()
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    setup = time.perf_counter() - start
    decode = infer = 0.0
    for first in range(0, len(images), bs):
        start = time.perf_counter()
        batch = np.stack([preprocess(path) for path in images[first:first + bs]])
        middle = time.perf_counter()
        if len(batch) < bs:   # the pipeline's last batch, padded
            batch = np.concatenate([batch, np.zeros((bs - len(batch),) + batch.shape[1:],
                                                    batch.dtype)])
        session.run(None, {name: batch})
        decode, infer = decode + middle - start, infer + time.perf_counter() - middle
    return {"images": len(images), "decode_resize_s": round(decode, 2),
            "session_s": round(setup, 2), "inference_s": round(infer, 2),
            "total_s": round(decode + setup + infer, 2)}


def startup(root: str) -> dict:
    """Median of 3 interpreter start-ups: a step's wrapper (npuzoo.steps) and the driver."""
    found = {}
    for module in ("npuzoo.steps", "npuzoo.run"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {module}"], cwd=root, check=True)
            times.append(time.perf_counter() - start)
        found[f"import {module}"] = round(statistics.median(times), 3)
    return found


def report(block: dict) -> str:
    cold, warm, needed = block["cold"], block["warm"], block["necessary"]["total_s"]
    names = list(dict.fromkeys([*cold["steps_s"], *warm["steps_s"]]))
    lines = [f"{'':<26}{'cold s':>9}{'share':>7}{'warm s':>9}{'share':>7}"]
    rows = [(n, cold["steps_s"].get(n), warm["steps_s"].get(n)) for n in names]
    rows += [("  of which tuning", cold["tuning_s"], warm["tuning_s"]),
             ("orchestration (the rest)", cold["orchestration_s"], warm["orchestration_s"]),
             ("whole make", cold["wall_s"], warm["wall_s"])]
    for name, *values in rows:
        line = f"{name:<26}"
        for value, run in zip(values, (cold, warm), strict=True):
            line += (f"{value:9.2f}{value / run['wall_s']:7.0%}" if value is not None
                     else f"{'reused' if name in run['reused'] else '-':>9}{'':7}")
        lines.append(line)
    work = block["necessary"]
    lines += [f"necessary work, {work['images']} images: decode and resize "
              f"{work['decode_resize_s']:.2f} s, ORT session {work['session_s']:.2f} s, "
              f"inference {work['inference_s']:.2f} s = {needed:.2f} s",
              f"whole make / necessary work: cold {block['ratio_cold']:.2f}x, warm "
              f"{block['ratio_warm']:.2f}x",
              f"reused by the warm run: {', '.join(warm['reused']) or 'nothing'}",
              "interpreter start-up: " + ", ".join(f"{k} {v:.3f} s"
                                                  for k, v in block["startup_s"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder with val/ and val_label.txt")
    parser.add_argument("--model", default="mobilenetv1", choices=be.MODELS)
    parser.add_argument("--bs", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--n", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON to update (default: %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        if args.bs <= 0 or (args.n is not None and args.n <= 0):
            raise UserError("--bs and --n take positive integers")
        data = os.path.abspath(args.data)
        labels, paths = dataset.check_dataset(data)
        images = [paths[name] for name in dataset.select(labels, data, args.n, 0)]
        os.makedirs(WORK, exist_ok=True)
        make_args = [args.model, f"DATA={data}", f"BS={args.bs}", "WEIGHTS=random",
                     *([f"N={args.n}"] if args.n else [])]
        print(f"bench_make: make {' '.join(make_args)} ({len(images)} images), cold then warm, "
              f"in a clone of HEAD; load average {os.getloadavg()[0]:.2f}", flush=True)
        with tempfile.TemporaryDirectory(prefix="clone-", dir=WORK) as root:
            scratch_clone(root)
            log = os.path.join(root, "build", args.model, "steps.jsonl")
            made = {}
            for label in ("cold", "warm"):
                before = set(glob.glob(os.path.join(root, "build", "tuning", "*.json")))
                wall = timed_make(root, make_args, label)
                runs = run_ids(log)
                made[label] = breakdown(log, runs[-1], runs[:-1], wall,
                                        tuning_seconds(root, before))
            [onnx_path] = glob.glob(os.path.join(root, "build", args.model, "onnx", "random",
                                                 f"{args.model}.onnx"))
            necessary = necessary_work(root, args.model, images, args.bs, onnx_path)
            started = startup(root)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    given = {v: os.environ[v] for v in variables.names("value") if v in os.environ}
    block = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "commit": be.commit(), "machine": be.machine(), "versions": be.versions(),
             "settings": {"model": args.model, "bs": args.bs, "n": args.n,
                          "data": os.path.basename(data), "images": len(images),
                          "weights": "random", "environment": given},
             "cold": made["cold"], "warm": made["warm"], "necessary": necessary,
             "ratio_cold": round(made["cold"]["wall_s"] / necessary["total_s"], 3),
             "ratio_warm": round(made["warm"]["wall_s"] / necessary["total_s"], 3),
             "startup_s": started}
    print(report(block))
    if not args.no_write:
        document = be.read_document(args.out)
        document["generated_by"] = "python3 benchmarks/bench_make.py (see its docstring)"
        here = be.machine_key(block["machine"])
        results = document["machines"].setdefault(here, {"machine": block["machine"], "runs": {}})
        key = f"{args.model} BS {args.bs} {block['settings']['data']} N {args.n or 'all'}"
        results["runs"][key] = block
        be.write_json(args.out, document)
        print(f"wrote {os.path.relpath(args.out, REPO)} ({here}: {key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
