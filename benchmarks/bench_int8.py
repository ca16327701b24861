"""int8 against fp32, per model, on the machine that runs it: ONNX Runtime's QDQ quantiser and
NNCF (OpenVINO's) compared on speed and on how far each moves the fp32 graph's logits.

    python3 benchmarks/bench_int8.py                                # every model, BS 1, 4, 16
    python3 benchmarks/bench_int8.py --models mobilenetv1 --quick   # a smoke run
    python3 benchmarks/bench_int8.py --data DIR --calib 100 --eval 200

The graphs: each model's fp32 export with random weights (seed 0; bench_engines.prepare_model:
build/bench_engines/<model>/random.onnx, shared with that benchmark) or --onnx MODEL=PATH,
quantised by the project's own npuzoo.quantize.quantize(fp32, calibration images, out, method)
with method "onnxruntime" (quantize_static, QDQ) and "nncf" (OpenVINO's quantiser;
--quantizers). Random weights measure speed as the published ones would, but their logits
depend little on the image (MobileNetV1's not at all) and their top class is noise: their
agreement figures are printed and kept, marked not meaningful (the JSON's agreement_meaningful),
and only the logit differences say how far int8 moves them. No published checkpoint is
reachable here.

The images: DATA (--data; default ../shared/data/imagenet-val-1300 beside the checkout, never
shipped with it: a folder with val/ and val_label.txt). Of its labelled images sorted by name,
the first EVAL measure agreement and the next CALIB calibrate (disjoint, in the order of
`make PRECISION=int8`). Selected by `python3 -m npuzoo.dataset prepare` and preprocessed by
`python3 -m npuzoo.prep models/<model>` (the model's own preprocess(), as the pipeline's
preprocess step runs it), each a subprocess. Everything is kept under build/bench_int8/ by
content: data/<dataset id>/, prep/<prep key>/ (the pipeline's ids: npuzoo.run.dataset_id,
npuzoo.store.prep_key), <model>/<method>-<key>.onnx (key: the fp32 graph's sha256, the
calibration set, the method, npuzoo/quantize.py's code and the quantisers' versions) and
<model>/logits/<key>.npy (a graph's logits on the EVAL set per engine); a rerun redoes none.

Speed: bench_engines' plain contenders, each graph on each engine (--engines): `ort` (one
ONNX Runtime session, ORT_ENABLE_ALL, T intra-op threads) and `openvino` (compile_model for the
batch's static shape, INFERENCE_PRECISION_HINT=f32, which leaves the quantised operators in
int8), every one warm in a process of its own, all-zero input. At each batch size (--batch-sizes)
rounds are interleaved, the order rotated by one place each round; a measurement is W warm-up
calls, then calls until at least --min-runs calls and --seconds seconds (images / wall time).
Each records the CPU time other processes took meanwhile (npuzoo.bench.load.LoadMonitor);
over 10% of the CPUs' time is contended. An int8 figure is compared with fp32 on the same engine
and with the faster fp32 engine of the same round; medians over rounds in which none of the
measurements compared was contended, else over all (flagged). --wait-quiet S waits up to S
seconds for a quiet half second before each measurement.

Agreement, per (quantiser, engine), on the EVAL images against the fp32 graph on ONNX Runtime
(npuzoo.report.agreement.compare, the pipeline's int8_agreement): top-1 (% of images with the
same top class), top-5 (% whose fp32 top class is among the int8 top five), the largest and the
mean absolute logit difference; beside them the fp32 logits' spread over the images (how much
the graph's answer depends on the image).

The better quantiser per engine (RULE): the faster one, by the geometric mean over the models
and batch sizes of its int8 / fp32 ratio on that engine, unless its mean top-1 agreement over
the models with real weights is more than AGREEMENT_MARGIN points below the other's (clearly
worse: beyond the sampling noise of 200 images per model), then the other; speeds within
SPEED_TIE of each other: the better top-1 agreement there. Printed (and kept) as the
recommendation for npuzoo.config.INT8_QUANTIZER, the quantiser per engine.

Writes benchmarks/results/int8.json (--out; --no-write to skip), per machine like engines.json:
a run replaces the blocks of the models it measured on this machine and keeps every other
block, another machine's included. `make readme` renders one "int8 against fp32" table per
machine.

Time, estimated for a 2-CPU AMD EPYC from the engines benchmark's fp32 speeds there: about 2
minutes for MobileNetV1 and 3-7 for each of the big four (DPN131 the longest), 20-25 for all
five from scratch, of which quantising and the agreement passes (cached) take about half: a
rerun takes 10-12. Runs of a few models each add up to the same table.
"""

import argparse
import contextlib
import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench_engines as be  # noqa: E402 (puts the repository on sys.path)

from npuzoo import config, dataset, store, tune  # noqa: E402
from npuzoo.checksums import HashCache  # noqa: E402
from npuzoo.errors import UserError  # noqa: E402
from npuzoo.report.agreement import BATCH, compare  # noqa: E402

REPO = be.REPO
MODELS = be.MODELS
CACHE = os.path.join(REPO, "build", "bench_int8")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "int8.json")
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "imagenet-val-1300"))
QUANTIZERS = ("onnxruntime", "nncf")   # npuzoo.quantize.quantize's methods
ENGINES = ("ort", "openvino")          # bench_engines' plain contenders
ENGINE_PACKAGE = {"ort": "onnxruntime", "openvino": "openvino"}
RANDOM = "random weights (seed 0, models/{}/pth2onnx.py)"
NOT_MEANINGFUL = ("random weights: the fp32 graph's top class is noise, so top-1 and top-5 are "
                  "not meaningful; the logit differences say how far int8 moves this graph")
AGREEMENT_MARGIN = 5.0   # top-1 agreement points: "clearly worse"
SPEED_TIE = 0.02
RULE = (f"per engine the quantiser whose int8/fp32 speed ratio (geometric mean over models and "
        f"batch sizes) is higher, unless its mean top-1 agreement on the models with real "
        f"weights is more than {AGREEMENT_MARGIN:g} points below the other's; within "
        f"{SPEED_TIE:.0%} in speed, the better top-1 agreement there; random weights' agreement "
        f"is not used; a quantiser whose graph an engine refused for any model is left out "
        f"for that engine")


def versions():
    import importlib.metadata
    found = be.versions()
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        found["nncf"] = importlib.metadata.version("nncf")
    return found


def digest(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# == inputs, each made once per content key ==================================================

def call(command, what):
    """Run one of the project's own commands; its error line becomes ours."""
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise UserError(f"{what}: {lines[-1] if lines else f'exit status {done.returncode}'}"
                        .replace("error: ", ""))


def image_sets(name, data, selections):
    """{role: preprocessed folder} for selections {role: dataset id}: the images selected
    (npuzoo.dataset) and preprocessed by the model's preprocess() (npuzoo.prep) once per key."""
    spec, folder = config.load(name), config.model_dir(name)
    found = {}
    for role, (data_id, limit, offset) in selections.items():
        data_dir = os.path.join(CACHE, "data", data_id)
        if not os.path.isfile(os.path.join(data_dir, "dataset.json")):
            call([sys.executable, "-m", "npuzoo.dataset", "prepare", data, data_dir, "--limit",
                  str(limit), "--offset", str(offset)], f"selecting {role} images")
        key, _ = store.prep_key(spec, folder, data_id, uint8=False)
        prep_dir = os.path.join(CACHE, "prep", key)
        if not os.path.isfile(os.path.join(prep_dir, ".done")):
            print(f"  {name}: preprocessing {limit} {role} images (models/{name}/preprocess.py)",
                  flush=True)
            tmp = prep_dir + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            call([sys.executable, "-m", "npuzoo.prep", folder, os.path.join(data_dir, "val"), tmp],
                 f"preprocessing {role} images for {name}")
            open(os.path.join(tmp, ".done"), "w").close()
            shutil.rmtree(prep_dir, ignore_errors=True)
            os.replace(tmp, prep_dir)
        found[role] = prep_dir
    return found


def quantised(name, fp32_path, method, calib_dir, hashes):
    """(path, seconds it took or None when reused) of the fp32 graph quantised by `method`."""
    from npuzoo import quantize

    key = digest(hashes.sha256(fp32_path), os.path.basename(calib_dir), method,
                 store.code_fingerprint([quantize.__file__]), versions())
    path = os.path.join(CACHE, name, f"{method}-{key}.onnx")
    if os.path.isfile(path):
        return path, None
    print(f"  {name}: quantising with {method}", flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    start = time.perf_counter()
    quantize.quantize(fp32_path, calib_dir, path, method)
    return path, round(time.perf_counter() - start, 1)


def logits(name, graph, engine, prep_dir, shape, threads, hashes, cache):
    """The graph's logits on the preprocessed images, run by the contender class that times
    `engine` (its settings), BATCH images a call; cached per graph, engine, version and set."""
    key = digest(hashes.sha256(graph), engine, versions().get(ENGINE_PACKAGE[engine]),
                 os.path.basename(prep_dir))
    path = os.path.join(cache, name, "logits", f"{key}.npy")
    if os.path.isfile(path):
        return np.load(path)
    spec = {"onnx": graph, "threads": threads, "input_shape": shape}
    if engine == "ort":
        contender = be.PlainORT(spec)
        contender.setup()

        def run(x):
            return contender.session.run(None, {contender.name: x})[0]
    else:
        contender = be.PlainOpenVINO(spec)
        contender.setup()
        request = contender.compile(BATCH, {}).create_infer_request()

        def run(x):
            return np.array(request.infer({0: x})[0])
    files = sorted(glob.glob(os.path.join(prep_dir, "*.bin")))
    found = []
    for start in range(0, len(files), BATCH):
        chunk = [np.fromfile(f, np.float32).reshape(shape) for f in files[start:start + BATCH]]
        batch = np.zeros([BATCH, *shape], np.float32)   # the last one padded: a static shape
        batch[:len(chunk)] = chunk
        found.append(run(batch).reshape(BATCH, -1)[:len(chunk)])
    result = np.concatenate(found)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp := f"{path}.{os.getpid()}.tmp", "wb") as handle:
        np.save(handle, result)
    os.replace(tmp, path)
    return result


def _logits_once(*args):
    """logits(*args) as tune.Isolated's generator."""
    yield logits(*args)


# == speed ====================================================================================

def measure(name, graphs, args, threads, shape):
    """{bs: {"<graph>/<engine>": [per-round measurement or None]}}, dropped contenders."""
    specs = {f"{graph}/{engine}": {"kind": engine, "onnx": path, "threads": threads,
                                   "input_shape": shape, "model": name}
             for graph, path in graphs.items() for engine in args.engines}
    log_path = os.path.join(CACHE, name, "workers.log")
    print(f"  {name}: timing {len(specs)} contenders (their output: "
          f"{os.path.relpath(log_path, REPO)})", flush=True)
    workers = {key: be.Worker(key, spec, log_path) for key, spec in specs.items()}
    measured = {bs: {key: [] for key in specs} for bs in args.batch_sizes}
    try:
        for key, worker in workers.items():
            reply = worker.receive()
            if "error" in reply:
                worker.error = reply["error"]
                print(f"  {name}: {key} dropped: {worker.error}", flush=True)
        order = list(specs)
        for bs in args.batch_sizes:
            for index in range(args.rounds):
                shift = index % len(order)
                for key in order[shift:] + order[:shift]:
                    worker = workers[key]
                    reply = None
                    if not worker.error:
                        be.wait_quiet(args.wait_quiet)
                        worker.send({"bs": bs, "seconds": args.seconds,
                                     "min_runs": args.min_runs, "warmup": args.warmup})
                        reply = worker.receive()
                        if "error" in reply:
                            worker.error = reply["error"]
                            print(f"  {name}: {key} dropped at BS {bs}: {worker.error}",
                                  flush=True)
                            reply = None
                    measured[bs][key].append(reply)
                print(f"  {name} BS {bs:>2} round {index + 1}/{args.rounds}: " + ", ".join(
                    f"{k} {m[-1]['images_per_s']:.1f}" for k, m in measured[bs].items()
                    if m[-1]), flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    return measured, {key: w.error for key, w in workers.items() if w.error}


def versus_fastest(rounds, references):
    """Per round, `rounds` over the fastest of `references` in that round; the median over the
    rounds where none was contended, else over all (flagged)."""
    pairs = []
    for index, m in enumerate(rounds):
        found = [r[index] for r in references if r[index]]
        if m and found:
            best = max(r["images_per_s"] for r in found)
            calm = all(x["load"].get("contended") is False for x in (m, *found))
            pairs.append((m["images_per_s"] / best, calm))
    used = [r for r, calm in pairs if calm] or [r for r, _ in pairs]
    return (statistics.median(used), be.spread(used)) if used else (None, None)


def summarise_bs(bs, measured, quantizers, engines):
    """One batch size's row: the fp32 figures per engine, each (quantiser, engine)'s int8 figure
    with its ratios, the fastest of each."""
    fp32 = {e: be.summarise(measured[f"fp32/{e}"], measured[f"fp32/{e}"]) for e in engines}
    fp32 = {e: {k: v for k, v in s.items() if not k.startswith("ratio")}
            for e, s in fp32.items() if s}
    references = [measured[f"fp32/{e}"] for e in engines]
    int8 = {}
    for q in quantizers:
        for e in engines:
            found = be.summarise(measured[f"{q}/{e}"], measured[f"fp32/{e}"])
            if not found:
                continue
            found["vs_fp32_same_engine"] = found.pop("ratio_to_ort")
            found["vs_fp32_same_engine_range"] = found.pop("ratio_range")
            found["vs_fastest_fp32"], found["vs_fastest_fp32_range"] = versus_fastest(
                measured[f"{q}/{e}"], references)
            int8[f"{q}/{e}"] = found
    return {"bs": bs, "fp32": fp32, "int8": int8,
            "fp32_best": max(fp32, key=lambda e: fp32[e]["images_per_s"], default=None),
            "int8_best": max(int8, key=lambda k: int8[k]["images_per_s"], default=None)}


# == one model ================================================================================

def bench_model(name, args, threads, hashes):
    started = datetime.datetime.now(datetime.UTC)
    shape = (be.model_config(name).get("input") or {}).get("shape") or [3, 224, 224]
    fp32_path, _ = be.prepare_model(name, args.onnx.get(name))
    sets = image_sets(name, args.data, args.selections)
    graphs, quantise_s = {"fp32": fp32_path}, {}
    for method in args.quantizers:
        graphs[method], quantise_s[method] = quantised(name, fp32_path, method, sets["calib"],
                                                       hashes)
    print(f"  {name}: logits on {args.eval} images", flush=True)
    reference = logits(name, fp32_path, "ort", sets["eval"], shape, threads, hashes, CACHE)
    agreement = {}
    for q in args.quantizers:
        for e in args.engines:
            # An engine may refuse a quantised graph, or crash on it (DPN131 here: signal 11):
            # a result, not the benchmark's end, so the graph runs in a process of its own.
            child = tune.Isolated(_logits_once, name, graphs[q], e, sets["eval"], shape,
                                  threads, hashes, CACHE)
            try:
                found = child.next()
            except UserError as err:
                agreement[f"{q}/{e}"] = {"error": str(err).strip().splitlines()[-1][:300]}
                print(f"  {name}: {q} on {e} failed: {agreement[f'{q}/{e}']['error']}",
                      flush=True)
                continue
            finally:
                child.close()
            agreement[f"{q}/{e}"] = {"images": len(reference), **compare(reference, found)}
    load_start = os.getloadavg()[0]
    measured, dropped = measure(name, graphs, args, threads, shape)
    rows = [summarise_bs(bs, measured[bs], args.quantizers, args.engines)
            for bs in args.batch_sizes]
    every = [m for bs in measured.values() for rounds in bs.values() for m in rounds if m]
    return {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": be.commit(),
        "machine": be.machine(),
        "versions": versions(),
        "weights": f"given: {args.onnx[name]}" if name in args.onnx else RANDOM.format(name),
        "agreement_meaningful": name in args.onnx,
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "min_runs": args.min_runs,
                     "warmup": args.warmup, "threads": threads, "batch_sizes": args.batch_sizes,
                     "quick": args.quick, "wait_quiet": args.wait_quiet, "calib": args.calib,
                     "eval": args.eval, "data": {role: data_id for role, (data_id, _, _)
                                                 in args.selections.items()}},
        "graphs": {g: {"path": os.path.relpath(p, REPO), "sha256": hashes.sha256(p),
                       "quantise_s": quantise_s.get(g)} for g, p in graphs.items()},
        "agreement": agreement,
        # how much the fp32 logits move from image to image (std over the images, mean over
        # the classes): near zero, the graph's answer does not depend on the image
        "fp32_logit_spread": float(f"{reference.std(axis=0).mean():.4g}"),
        "loadavg_1m": {"start": load_start, "end": os.getloadavg()[0]},
        "contended_measurements": sum(1 for m in every if m["load"].get("contended")),
        "measurements": len(every),
        "dropped": dropped,
        "rows": rows,
    }


def recommend(models):
    """RULE over a machine's models: {engine: {choice, speed, top1, reason}}."""
    found = {}
    engines = sorted({k.split("/")[1] for b in models.values() for k in b.get("agreement", {})})
    for engine in engines:
        speed, top1, fails = {}, {}, {}
        for q in QUANTIZERS:
            failed = sorted(m for m, b in models.items()
                            if f"{q}/{engine}" in (b.get("dropped") or {})
                            or "error" in (b.get("agreement") or {}).get(f"{q}/{engine}", {}))
            if failed:   # a quantiser whose graph an engine refuses would break `make`
                fails[q] = failed
                continue
            ratios = [row["int8"][f"{q}/{engine}"]["vs_fp32_same_engine"]
                      for b in models.values() for row in b["rows"]
                      if (row["int8"].get(f"{q}/{engine}") or {}).get("vs_fp32_same_engine")]
            agree = [b["agreement"][f"{q}/{engine}"]["top1"] for b in models.values()
                     if b.get("agreement_meaningful") and f"{q}/{engine}" in b["agreement"]]
            if ratios:
                speed[q] = round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4)
            if agree:
                top1[q] = round(statistics.mean(agree), 2)
        if not speed:
            if fails:
                found[engine] = {"choice": None, "fails": fails,
                                 "reason": "every quantiser's graph failed on some model"}
            continue
        ranked = sorted(speed, key=speed.get, reverse=True)
        choice, reason = ranked[0], "faster"
        if len(ranked) == 1:
            reason = "the only quantiser measured"
        elif len(top1) < len(speed):
            reason = "faster; no real weights' agreement to weigh"
        else:
            other = ranked[1]
            if top1[choice] < top1[other] - AGREEMENT_MARGIN:
                choice, reason = other, f"{choice} faster, but its top-1 agreement clearly worse"
            elif speed[other] >= speed[choice] * (1 - SPEED_TIE) and top1[other] > top1[choice]:
                choice, reason = other, "speed within the tie, better top-1 agreement"
        if fails:
            reason += "; " + ", ".join(f"{q} left out: fails on {', '.join(map(str, m))}"
                                       for q, m in fails.items())
        found[engine] = {"choice": choice, "speed_vs_fp32": speed, "top1": top1, "reason": reason,
                         "fails": fails}
    return {"rule": RULE, "engines": found,   # in npuzoo.config.INT8_QUANTIZER's form
            "int8_quantizer": {ENGINE_PACKAGE[e]: r["choice"] for e, r in found.items()}}


# == output ===================================================================================

def print_block(name, block):
    print()
    print(f"{name}: {block['weights']}; {block['contended_measurements']} of "
          f"{block['measurements']} measurements contended")
    print("{:>3}  {:<22} {:>9} {:>15} {:>8} {:>12}".format(
        "BS", "graph on engine", "images/s", "(min-max)", "x fp32", "x best fp32"))
    for row in block["rows"]:
        for e, s in row["fp32"].items():
            print("{:>3}  {:<22} {:>9.1f} {:>15}{}".format(
                row["bs"], f"fp32/{e}", s["images_per_s"], "({:.1f}-{:.1f})".format(*s["range"]),
                "  *fastest fp32" if e == row["fp32_best"] else ""))
        for key, s in row["int8"].items():
            print("{:>3}  {:<22} {:>9.1f} {:>15} {:>8} {:>12}{}{}".format(
                row["bs"], key, s["images_per_s"], "({:.1f}-{:.1f})".format(*s["range"]),
                f"{s['vs_fp32_same_engine']:.2f}" if s["vs_fp32_same_engine"] else "-",
                f"{s['vs_fastest_fp32']:.2f}" if s["vs_fastest_fp32"] else "-",
                "" if s["quiet_rounds"] else " (no quiet round)",
                "  *fastest int8" if key == row["int8_best"] else ""))
    print("agreement with fp32 on ONNX Runtime (the fp32 logits' spread over the images: "
          "{:g}){}:".format(block["fp32_logit_spread"], "" if block["agreement_meaningful"]
                            else "; " + NOT_MEANINGFUL))
    for key, a in block["agreement"].items():
        if "error" in a:
            print(f"  {key:<22} failed: {a['error']}")
            continue
        print(f"  {key:<22} top-1 {a['top1']:6.2f}%  top-5 {a['top5']:6.2f}%  |logit diff| max "
              f"{a['max_abs_logit_error']:.4g}, mean {a['mean_abs_logit_error']:.4g} "
              f"({a['images']} images)")


def print_summary(results):
    """One line per model and batch size: the fastest int8 against the fastest fp32."""
    print()
    print("{:<12} {:>3}  {:<24} {:<30} {:>8} {:>7} {:>7} {:>10}".format(
        "model", "BS", "fastest fp32 (images/s)", "fastest int8 (images/s)", "x fp32", "top-1",
        "top-5", "max|diff|"))
    for name, block in results["models"].items():
        for row in block["rows"]:
            fp32, key = row["fp32_best"], row["int8_best"]
            if not (fp32 and key):
                continue
            int8, agree = row["int8"][key], block["agreement"][key]
            ratio = int8["vs_fastest_fp32"]
            print("{:<12} {:>3}  {:<24} {:<30} {:>8} {:>6.1f}% {:>6.1f}% {:>10.4g}".format(
                name, row["bs"], f"{fp32} {row['fp32'][fp32]['images_per_s']:.1f}",
                f"{key} {int8['images_per_s']:.1f}", f"{ratio:.2f}x" if ratio else "-",
                agree["top1"], agree["top5"], agree["max_abs_logit_error"]))


def print_recommendation(recommendation):
    print()
    print(f"better quantiser per engine ({recommendation['rule']}):")
    for engine, r in recommendation["engines"].items():
        print("  {}: {} ({}; int8/fp32 {}; top-1 agreement {})".format(
            engine, r["choice"], r["reason"],
            ", ".join(f"{q} {v:.2f}x" for q, v in r["speed_vs_fp32"].items()),
            ", ".join(f"{q} {v:.1f}%" for q, v in r["top1"].items()) or "not used"))
    print("recommendation for npuzoo.config.INT8_QUANTIZER: {} (now: {})".format(
        json.dumps(recommendation["int8_quantizer"]),
        json.dumps(getattr(config, "INT8_QUANTIZER", None))))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma list (default: all)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma list (default: 1,4,16)")
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS),
                        help="comma list of npuzoo.quantize methods (default: onnxruntime,nncf)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma list (default: ort,openvino)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3; --quick 1")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time bound of each measurement (default 1; --quick 0.3)")
    parser.add_argument("--min-runs", type=int, default=1, help="calls per measurement at least")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per measurement")
    parser.add_argument("--data", default=None,
                        help="folder with val/ and val_label.txt (default: "
                             "../shared/data/imagenet-val-1300 beside the checkout)")
    parser.add_argument("--calib", type=int, default=None,
                        help="calibration images (default 100; --quick 20)")
    parser.add_argument("--eval", type=int, default=None,
                        help="agreement images, before the calibration ones (default 200; "
                             "--quick 24)")
    parser.add_argument("--onnx", action="append", metavar="MODEL=PATH",
                        help="this fp32 export of MODEL instead of a random-weight one (real "
                             "weights make the agreement meaningful)")
    parser.add_argument("--threads", type=int, default=None,
                        help="T (default: NPUZOO_THREADS or the usable cores)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for a quiet half second before each "
                             "measurement (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 0.3 s, 20 calibration and 24 agreement images")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="JSON to update (default: benchmarks/results/int8.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 1.0)
    args.calib = args.calib or (20 if args.quick else 100)
    args.eval = args.eval or (24 if args.quick else 200)
    args.models = [m for m in args.models.split(",") if m]
    args.quantizers = [q for q in args.quantizers.split(",") if q]
    args.engines = [e for e in args.engines.split(",") if e]
    for flag, given, known in (("--models", args.models, MODELS),
                               ("--quantizers", args.quantizers, QUANTIZERS),
                               ("--engines", args.engines, ENGINES)):
        unknown = [v for v in given if v not in known]
        if unknown or not given:
            parser.error(f"{flag}: unknown {', '.join(unknown) or 'empty list'} "
                         f"(known: {', '.join(known)})")
    args.onnx = be.parse_pairs(args.onnx, "--onnx")
    try:
        args.batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    except ValueError:
        parser.error("--batch-sizes takes a comma list of integers")
    if min(args.batch_sizes + [args.rounds, args.min_runs, args.calib, args.eval]) <= 0 \
            or args.warmup < 0:
        parser.error("batch sizes, --rounds, --min-runs, --calib and --eval must be positive")
    return args


def check_data(args, hashes):
    """The dataset ids of the EVAL and CALIB selections of DATA (UserError when unusable)."""
    from npuzoo.run import dataset_id

    if args.data is None:
        if not os.path.isdir(DEFAULT_DATA):
            raise UserError(f"no --data given and {DEFAULT_DATA} is absent; give --data DIR (a "
                            "folder with val/ and val_label.txt)")
        args.data = DEFAULT_DATA
    if not os.path.isdir(args.data):
        raise UserError(f"--data {args.data}: not a folder; give one with val/ and val_label.txt")
    args.data = os.path.abspath(args.data)
    labels, _ = dataset.check_dataset(args.data)
    if len(labels) < args.eval + args.calib:
        raise UserError(f"--data {args.data}: {len(labels)} labelled images, fewer than --eval "
                        f"{args.eval} + --calib {args.calib}; lower them")
    args.selections = {"eval": (dataset_id(args.data, args.eval, hashes), args.eval, 0),
                       "calib": (dataset_id(args.data, args.calib, hashes, args.eval), args.calib,
                                 args.eval)}
    hashes.save()


def main(argv=None):
    args = parse_args(argv)
    from npuzoo.bench.runner import default_threads
    threads = args.threads or default_threads()
    os.makedirs(CACHE, exist_ok=True)
    hashes = HashCache(os.path.join(CACHE, "hashes.json"))
    try:
        check_data(args, hashes)
        print(f"bench_int8: models {', '.join(args.models)}; quantisers "
              f"{', '.join(args.quantizers)}; engines {', '.join(args.engines)}; BS "
              f"{args.batch_sizes}; {args.rounds} rounds of {args.seconds:g} s; {args.calib} "
              f"calibration and {args.eval} agreement images of {args.data}; {threads} threads; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        document = be.read_document(None if args.no_write else args.out)
        document["generated_by"] = "python3 benchmarks/bench_int8.py (see its docstring)"
        here = be.machine_key(be.machine())
        results = document["machines"].setdefault(here, {"models": {}})
        for name in args.models:
            block = bench_model(name, args, threads, hashes)
            hashes.save()
            print_block(name, block)
            results["machine"] = block["machine"]
            results["models"][name] = block
            results["models"] = {m: results["models"][m] for m in MODELS if m in results["models"]}
            results["recommendation"] = recommend(results["models"])
            if not args.no_write:   # after every model: an interrupted run keeps its work
                be.write_json(args.out, document)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_summary(results)
    print_recommendation(results["recommendation"])
    if not args.no_write:
        print(f"wrote {os.path.relpath(args.out, REPO)} ({here})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
