"""CPU engines compared, side by side: our runner on each engine and stream count against plain
ONNX Runtime, plain OpenVINO and PyTorch eager, for each model at batch sizes 1, 4 and 16.

    python3 benchmarks/bench_engines.py --models mobilenetv1 --rounds 3     # from a fresh clone
    python3 benchmarks/bench_engines.py --quick                             # every model, short
    python3 benchmarks/bench_engines.py --models dpn131 --int8 dpn131=build/dpn131/int8.onnx

Contenders (each warm in a process of its own, started once per model; all on the same CPUs,
all-zero float32 input, T = NPUZOO_THREADS or the usable cores):

  runner/<engine>/<precision>/s<N>  `python3 -m npuzoo.bench --model M --batchsize B --loop R
                                    --loop_seconds S --warmup_count W --streams N --backend
                                    <engine> --precision <precision>` through npuzoo.bench.run
                                    (the runner opens its sessions for every measurement, as a
                                    perf step does); N = 1 and 2 (--streams), engines
                                    onnxruntime and openvino, fp32 and, with --int8 MODEL=PATH,
                                    int8 on that quantised model file
  runner/tuned/fp32                 the runner as `make` runs it: `--tune DIR` instead of --backend
                                    and --streams, so npuzoo.tune picks the engine and stream
                                    layout for this machine, graph and batch size (timed on first
                                    use, cached in build/bench_engines/tuning); --no-tuned drops it
  ort                               plain ONNX Runtime: one InferenceSession (ORT_ENABLE_ALL,
                                    T intra-op threads), session.run in a loop
  openvino                          plain OpenVINO: compile_model(..., "CPU",
                                    INFERENCE_PRECISION_HINT=f32) for the batch's static shape,
                                    infer() in a loop (its default, latency-oriented settings)
  openvino-async                    OpenVINO's throughput recipe: PERFORMANCE_HINT=THROUGHPUT,
                                    f32, an AsyncInferQueue of its optimal number of requests
  torch                             PyTorch eager: the model folder's pth2onnx.py network,
                                    torch.inference_mode, torch.set_num_threads(T)
  conv                              the attainable-GFLOP/s probe: a 3x3 convolution micro-model
                                    (256 -> 256 channels, 28x28, batch 4) on plain ONNX Runtime

Each measurement: W warm-up calls, then calls until at least R calls AND S seconds (with
several streams or requests, a multiple of them: a last odd call would run alone); the figure
is images / wall time of the timed calls (for the runner its summary's throughput_wall, which
with one stream is its per-call figure within the loop overhead). Rounds are interleaved: for
each model and batch size, every round runs every contender once, the order rotated by one
place each round; a contender is compared with plain ORT of the same round (the ratio), and
the medians over rounds are reported with their min-max spread. Every measurement records the
1-minute load average and the CPU time other processes took on these CPUs meanwhile
(npuzoo.bench.load.LoadMonitor); a measurement is contended when that exceeds 10% of the
CPUs' time, the tuned runner's included (its own verdict, which also counts a reference product
5% below the machine's best, is kept as runner_contended). Medians and ratios use the rounds
where neither the contender nor plain ORT was contended, when there are any (the JSON says how
many); otherwise all rounds, flagged. On a shared machine, --wait-quiet S first waits (up to S
seconds) for a half second in which other processes took under 10% of the CPUs before each
measurement.

The tuned runner against the fastest plain contender (ort, openvino, openvino-async): its
median over the highest of their medians, over the rounds in which none of them was contended
(else all, flagged), with that contender and the layout the tuning chose; beside it the
stricter per-round figure (each round's tuned figure over the best plain one of that round: the
best of three noisy measurements is biased upwards by about their noise).

Attainable GFLOP/s: the median of the conv probe's rounds for that model; a model's fraction
is images/s x GFLOP per image / attainable (GFLOP per image: counted in the exported graph by
gflop_per_image, convolutions and matrix products, 2 FLOPs per multiply-add, with the shapes of
one run on a batch of one; e.g. DPN131 32.0, MobileNetV1 1.14).

The default engine (npuzoo.config.DEFAULT_BACKEND): per model, the runner on OpenVINO
against the runner on ONNX Runtime at each batch size and stream count, as the median of their
same-round ratios over quiet rounds (a batch size and stream count with no quiet round is left
out, unless no comparison had one); an engine is ahead where the ratio is more than 1% from 1;
the engine ahead in more of them wins the model (a tie: the geometric mean of the ratios
decides), and the engine that wins more models is the default (a tie: onnxruntime, the
incumbent). A model won by the other engine is a candidate for `runtime: {backend: ...}` in
its model.yaml. `--rescore` applies this rule again to the JSON's stored rounds.

The models: exported with random weights (seed 0) by each models/<name>/pth2onnx.py into
build/bench_engines/<name>/ (once; reused), the upstream trees of DPN131, TResNet-M and
InceptionV4 fetched by `python3 -m npuzoo.source fetch` (its sdist cache first, else the
network), or `--onnx NAME=PATH` for a given export. Speed does not depend on the weights'
values, so random weights measure what the published ones would.

Writes benchmarks/results/engines.json (--out; --no-write to skip), its results per machine
(CPU model and usable CPUs): a run replaces the blocks of the models it measured on this
machine and keeps every other block, another machine's included. Each block has its date,
commit, machine, versions, settings, figures and winner; each machine its default-engine
verdict. `make readme` renders one "CPU engines compared" table per machine.
"""

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from npuzoo import config  # noqa: E402
from npuzoo.bench.load import CONTENDED_SHARE  # noqa: E402

MODELS = config.model_names()  # every models/<name>/model.yaml
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "engines.json")
CACHE = os.path.join(REPO, "build", "bench_engines")
CONV = {"batch": 4, "channels": 256, "size": 28}   # 3x3, stride 1, pad 1
CONV_GFLOP = 2 * CONV["channels"] ** 2 * 9 * CONV["size"] ** 2 * CONV["batch"] / 1e9
LABELS = {
    "ort": "plain ONNX Runtime session.run",
    "openvino": "plain OpenVINO infer()",
    "openvino-async": "OpenVINO THROUGHPUT hint, async queue",
    "torch": "PyTorch eager",
    "conv": "3x3 conv probe (GFLOP/s)",
}


def runner_name(backend, precision, streams):
    return f"runner/{backend}/{precision}/s{streams}"


TUNED = "runner/tuned/fp32"   # the runner as a pipeline runs it: engine and streams tuned
PLAIN_BEST = ("ort", "openvino", "openvino-async")   # the plain contenders it must keep up with


def label(name):
    if name.startswith("runner/tuned/"):
        return f"runner {name.split('/')[2]}, its tuned choice"
    if name.startswith("runner/"):
        _, backend, precision, streams = name.split("/")
        return "runner {} {} {} stream{}".format(
            {"onnxruntime": "ORT", "openvino": "OpenVINO"}[backend], precision, streams[1:],
            "" if streams == "s1" else "s")
    return LABELS.get(name, name)


# == worker: one contender, warm, in its own process ========================================

class Contender:
    """Set up once (setup()), then measure(bs, seconds, min_runs, warmup) many times."""

    def __init__(self, spec):
        self.spec = spec
        self.threads = spec["threads"]
        self.shape = spec.get("input_shape") or [3, 224, 224]

    def feed(self, bs):
        import numpy as np
        return np.zeros([bs] + list(self.shape), dtype=np.float32)

    def timed(self, call, bs, seconds, min_runs, warmup):
        """Warm-up calls, then calls until min_runs and seconds; images/s over the wall time."""
        from npuzoo.bench.load import LoadMonitor

        for _ in range(warmup):
            call()
        monitor = LoadMonitor().start()
        start = time.perf_counter()
        runs = 0
        while runs < min_runs or time.perf_counter() - start < seconds:
            call()
            runs += 1
        wall = time.perf_counter() - start
        return {"images_per_s": bs * runs / wall, "runs": runs, "wall_s": wall,
                "load": monitor.stop()}


class PlainORT(Contender):
    def setup(self):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.spec["onnx"], options,
                                            providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def measure(self, bs, seconds, min_runs, warmup):
        feeds = {self.name: self.feed(bs)}
        return self.timed(lambda: self.session.run(None, feeds), bs, seconds, min_runs, warmup)


class ConvProbe(PlainORT):
    def setup(self):
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        c, s, b = CONV["channels"], CONV["size"], CONV["batch"]
        weight = (np.random.default_rng(0).standard_normal((c, c, 3, 3)) * 0.01).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
            "conv3x3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, c, s, s])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, c, s, s])],
            [numpy_helper.from_array(weight, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        path = os.path.join(self.spec["scratch"], "conv3x3.onnx")
        onnx.save(model, path)
        self.spec = dict(self.spec, onnx=path)
        self.shape = [c, s, s]
        super().setup()

    def measure(self, bs, seconds, min_runs, warmup):
        result = super().measure(CONV["batch"], seconds, min_runs, warmup)
        result["gflops"] = result["images_per_s"] / CONV["batch"] * CONV_GFLOP
        return result


class PlainOpenVINO(Contender):
    def setup(self):
        import openvino as ov
        self.ov = ov
        self.core = ov.Core()
        self.compiled = {}

    def compile(self, bs, config):
        if bs not in self.compiled:
            model = self.core.read_model(self.spec["onnx"])
            name = model.inputs[0].get_any_name()
            model.reshape({name: self.ov.PartialShape([bs] + list(self.shape))})
            config = dict(config, INFERENCE_PRECISION_HINT="f32",
                          INFERENCE_NUM_THREADS=str(self.threads))
            self.compiled[bs] = self.core.compile_model(model, "CPU", config)
        return self.compiled[bs]

    def measure(self, bs, seconds, min_runs, warmup):
        request = self.compile(bs, {}).create_infer_request()
        x = self.feed(bs)
        return self.timed(lambda: request.infer({0: x}), bs, seconds, min_runs, warmup)


class AsyncOpenVINO(PlainOpenVINO):
    def measure(self, bs, seconds, min_runs, warmup):
        from npuzoo.bench.load import LoadMonitor

        compiled = self.compile(bs, {"PERFORMANCE_HINT": "THROUGHPUT"})
        jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = self.ov.AsyncInferQueue(compiled, jobs)
        x = self.feed(bs)
        for _ in range(max(warmup, 1) * jobs):
            queue.start_async({0: x})
        queue.wait_all()
        monitor = LoadMonitor().start()
        start = time.perf_counter()
        runs = 0
        # whole rounds of the requests, as the runner's streams: a last odd request would run
        # alone on its core while the others idle
        while runs < min_runs or runs % jobs or time.perf_counter() - start < seconds:
            queue.start_async({0: x})
            runs += 1
        queue.wait_all()
        wall = time.perf_counter() - start
        return {"images_per_s": bs * runs / wall, "runs": runs, "wall_s": wall,
                "load": monitor.stop(), "requests": jobs}


class Torch(Contender):
    def setup(self):
        import torch
        torch.set_num_threads(self.threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        script = os.path.join(REPO, "models", self.spec["model"], "pth2onnx.py")
        spec = importlib.util.spec_from_file_location("_bench_pth2onnx_" + self.spec["model"],
                                                      script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with contextlib.redirect_stderr(io.StringIO()):   # the "random weights" warning
            if self.spec.get("source"):
                self.model = module.build_model("random", source=self.spec["source"])
            else:
                self.model = module.build_model("random")
        self.model.eval()
        self.torch = torch

    def measure(self, bs, seconds, min_runs, warmup):
        x = self.torch.from_numpy(self.feed(bs))
        with self.torch.inference_mode():
            return self.timed(lambda: self.model(x), bs, seconds, min_runs, warmup)


class Runner(Contender):
    def setup(self):
        from npuzoo import bench
        self.bench = bench

    def measure(self, bs, seconds, min_runs, warmup):
        argv = ["--model", self.spec["onnx"], "--batchsize", bs, "--loop", min_runs,
                "--loop_seconds", seconds, "--warmup_count", warmup,
                "--precision", self.spec["precision"]]
        if self.spec.get("tune"):   # as `make` runs it: tuned, model.yaml's engine the fallback
            argv += ["--tune", self.spec["tune"], "--backend", self.spec["backend"]]
        else:
            argv += ["--streams", self.spec["streams"], "--backend", self.spec["backend"]]
        with contextlib.redirect_stdout(io.StringIO()):
            summary = self.bench.run(argv, threads=self.threads)
        keys = ("loadavg_1m_start", "loadavg_1m_end", "cpus", "own_cpu_s", "other_cpu_s", "steal_s",
                "other_cpu_share", "contended")
        result = {"images_per_s": summary["throughput_wall"],
                  "t23_throughput": summary["throughput"], "runs": summary["timed_runs"],
                  "wall_s": summary["wall_time_ms"] / 1000.0, "load": {k: summary[k] for k in keys}}
        if "tuning" in summary:
            result["chosen"] = summary["tuning"]["chosen"]
            # With --tune the runner also calls a run contended when its reference product is 5%
            # below this machine's best; every other contender is judged by the CPU share only.
            share = summary["other_cpu_share"]
            result["load"]["contended"] = None if share is None else share > CONTENDED_SHARE
            result["load"]["runner_contended"] = summary["contended"]
        return result


KINDS = {"ort": PlainORT, "conv": ConvProbe, "openvino": PlainOpenVINO,
         "openvino-async": AsyncOpenVINO, "torch": Torch, "runner": Runner}


def worker():
    """Read JSON requests on stdin, answer on the original stdout; everything the libraries
    print goes to stderr (the parent's log file)."""
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    contender = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "setup" in request:
                contender = KINDS[request["setup"]["kind"]](request["setup"])
                start = time.perf_counter()
                contender.setup()
                reply = {"ready": True, "setup_s": time.perf_counter() - start}
            elif "quit" in request:
                return 0
            else:
                reply = contender.measure(request["bs"], request["seconds"], request["min_runs"],
                                          request["warmup"])
        except Exception as err:  # reported to the parent, which drops this contender
            text = str(err).strip().splitlines()
            reply = {"error": "{}: {}".format(type(err).__name__, text[0] if text else "")}
        answer.write(json.dumps(reply) + "\n")
    return 0


class Worker:
    """The parent's handle on one contender's process."""

    def __init__(self, name, spec, log_path):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.name = name
        self.log = open(log_path, "a")  # noqa: SIM115 (the worker's stderr for its lifetime)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     cwd=REPO, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.send({"setup": spec})
        self.error = None

    def send(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"the worker exited (status {self.proc.wait()}); see "
                             f"{os.path.relpath(self.log.name, REPO)}"}
        return json.loads(line)

    def close(self):
        with contextlib.suppress(OSError, ValueError):
            self.send({"quit": True})
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# == the models ===============================================================================

def model_config(name):
    import yaml
    with open(os.path.join(REPO, "models", name, "model.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def own_backend(name):
    """The engine a model's model.yaml names (runtime.backend), else the runner's default."""
    return (model_config(name).get("runtime") or {}).get("backend") or config.DEFAULT_BACKEND


def prepare_model(name, given=None):
    """(onnx path, upstream tree or None): the given export, or a cached random-weight one."""
    folder = os.path.join(CACHE, name)
    os.makedirs(folder, exist_ok=True)
    tree = None
    if (model_config(name).get("upstream") or {}).get("sources"):
        tree = os.path.join(folder, "src")
        if not os.path.isdir(tree):
            print(f"  {name}: fetching the upstream tree (python3 -m npuzoo.source fetch)",
                  flush=True)
            subprocess.run([sys.executable, "-m", "npuzoo.source", "fetch", name, tree, "--record",
                            os.path.join(folder, "source.json")], cwd=REPO, check=True,
                           env=dict(os.environ, PYTHONPATH=REPO))
    if given:
        return os.path.abspath(given), tree
    path = os.path.join(folder, "random.onnx")
    if not os.path.isfile(path):
        print(f"  {name}: exporting random weights with models/{name}/pth2onnx.py", flush=True)
        command = [sys.executable, os.path.join(REPO, "models", name, "pth2onnx.py"), "random",
                   path]
        subprocess.run(command + (["--source", tree] if tree else []), cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    return path, tree


def gflop_per_image(onnx_path):
    """GFLOP of one image through the ONNX graph: convolutions and matrix products, 2 FLOPs per
    multiply-add (the rest is a few percent at most). The shapes are those of one run of the
    graph on a batch of one (ONNX Runtime), as shape inference cannot follow every export."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(onnx_path)
    counted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    known = set(shapes) | {o.name for o in model.graph.output}
    for name in dict.fromkeys(x for n in counted for x in (n.input[0], n.input[1], n.output[0])):
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([1] + [d if isinstance(d, int) and d > 0 else 1 for d in i.shape[1:]],
                              np.float32) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    shapes.update(zip(names, (list(r.shape) for r in session.run(names, feeds)), strict=True))
    flops = 0
    for node in counted:
        weight, out = shapes[node.input[1]], shapes[node.output[0]]
        if node.op_type == "Conv":  # output elements x input channels per group x kernel area
            flops += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        else:  # output elements x the reduced dimension
            flops += 2 * int(np.prod(out)) * shapes[node.input[0]][-1]
    return flops / 1e9


# == statistics ===============================================================================

def spread(values):
    return [min(values), max(values)] if values else None


def summarise(rounds, reference):
    """rounds/reference: per-round measurements (dicts or None) of a contender and plain ORT."""
    pairs = [(m, r) for m, r in zip(rounds, reference, strict=True) if m is not None]
    quiet = [(m, r) for m, r in pairs   # judged and not contended (None: too short to judge)
             if m["load"].get("contended") is False
             and (r is None or r["load"].get("contended") is False)]
    used = quiet or pairs
    values = [m["images_per_s"] for m, _ in used]
    ratios = [m["images_per_s"] / r["images_per_s"] for m, r in used if r is not None]
    if not values:
        return None
    return {
        "images_per_s": statistics.median(values),
        "range": spread(values),
        "ratio_to_ort": statistics.median(ratios) if ratios else None,
        "ratio_range": spread(ratios),
        "rounds": [None if m is None else round(m["images_per_s"], 3) for m in rounds],
        "contended": [None if m is None else m["load"].get("contended") for m in rounds],
        "quiet_rounds": len(quiet),
        "used": "quiet rounds" if quiet else "all rounds (none quiet)",
    }


def tuned_vs_best_plain(measured, rounds):
    """The tuned runner against the fastest plain contender (ORT session, OpenVINO LATENCY,
    OpenVINO THROUGHPUT): `ratio` is the tuned runner's median images/s over the highest of the
    plain contenders' medians (`best_plain`), all over the rounds in which none of them was
    contended, else over all (flagged). `per_round`: the median of each round's tuned figure
    over that round's fastest plain one, a stricter figure (the best of several noisy
    measurements is biased upwards). measured: {contender: [per-round measurement]}."""
    tuned_rounds = measured.get(TUNED) or [None] * rounds
    rows = []
    for index in range(rounds):
        tuned = tuned_rounds[index]
        plain = {k: measured[k][index] for k in PLAIN_BEST if k in measured and measured[k][index]}
        if tuned is not None and plain:
            calm = all(m["load"].get("contended") is False for m in (tuned, *plain.values()))
            rows.append((tuned, plain, calm))
    used = [r for r in rows if r[2]] or rows
    if not used:
        return None
    medians = {k: statistics.median(p[k]["images_per_s"] for _, p, _ in used if k in p)
               for k in PLAIN_BEST if any(k in p for _, p, _ in used)}
    best = max(medians, key=medians.get)
    per_round = [t["images_per_s"] / max(m["images_per_s"] for m in p.values())
                 for t, p, _ in used]
    chosen = [m["chosen"] for m in tuned_rounds if m and "chosen" in m]
    return {"ratio": statistics.median(t["images_per_s"] for t, _, _ in used) / medians[best],
            "best_plain": best, "per_round": statistics.median(per_round),
            "range": spread(per_round), "chosen": chosen[-1] if chosen else None,
            "used": "quiet rounds" if any(r[2] for r in rows) else "all rounds (none quiet)"}


TIE = 0.01   # |OpenVINO / ONNX Runtime - 1| within this: neither engine is ahead


def pick_winner(rows, streams_list):
    """Per model: the runner's OpenVINO against its ONNX Runtime, per batch size and streams,
    as the median of same-round ratios. Comparisons with quiet rounds (neither measurement
    contended) are used alone when there are any; otherwise all of them (basis says which)."""
    quiet_ratios, all_ratios = {}, {}
    for row in rows:
        for streams in streams_list:
            ov = row["contenders"].get(runner_name("openvino", "fp32", streams))
            ort = row["contenders"].get(runner_name("onnxruntime", "fp32", streams))
            if not (ov and ort):
                continue
            pairs = [(a, b, ca is False and cb is False) for a, b, ca, cb in
                     zip(ov["rounds"], ort["rounds"], ov["contended"], ort["contended"],
                         strict=True) if a and b]
            key = "bs{}/s{}".format(row["bs"], streams)
            quiet = [a / b for a, b, calm in pairs if calm]
            if quiet:
                quiet_ratios[key] = statistics.median(quiet)
            if pairs:
                all_ratios[key] = statistics.median([a / b for a, b, _ in pairs])
    ratios = quiet_ratios or all_ratios
    if not ratios:
        return None
    ov_wins = sum(1 for r in ratios.values() if r > 1 + TIE)
    ort_wins = sum(1 for r in ratios.values() if r < 1 - TIE)
    geomean = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    ahead = ov_wins > ort_wins or (ov_wins == ort_wins and geomean > 1)
    backend = "openvino" if ahead else "onnxruntime"
    return {"backend": backend,
            "openvino_over_onnxruntime": {k: round(v, 4) for k, v in ratios.items()},
            "basis": "quiet rounds" if quiet_ratios else "all rounds (none quiet)",
            "left_out_no_quiet_round":
                sorted(set(all_ratios) - set(quiet_ratios)) if quiet_ratios else [],
            "geomean": round(geomean, 4), "openvino_ahead": ov_wins, "onnxruntime_ahead": ort_wins}


def default_verdict(models):
    votes = {"onnxruntime": [], "openvino": []}
    for name, block in models.items():
        if block.get("winner"):
            votes[block["winner"]["backend"]].append(name)
    choice = "openvino" if len(votes["openvino"]) > len(votes["onnxruntime"]) else "onnxruntime"
    return {"choice": choice, "votes": votes,
            "rule": "the engine whose runner (same batch size and streams) is ahead on more models "
                    "(a tie: onnxruntime); a model won by the other engine may name it in "
                    "model.yaml runtime.backend",
            "per_model_overrides": {name: block["winner"]["backend"]
                                    for name, block in models.items() if block.get("winner")
                                    and block["winner"]["backend"] != choice}}


# == environment ==============================================================================

def machine():
    info = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = set()
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        info["isa"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni"))
                             or f in ("avx2", "fma"))
    except OSError:
        pass
    info["usable_cpus"] = len(os.sched_getaffinity(0))
    return info


def versions():
    import importlib.metadata
    found = {}
    for package in ("onnxruntime", "openvino", "torch", "onnx", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[package] = importlib.metadata.version(package)
    return found


def commit():
    proc = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    # the code measured: the package and every benchmark script (not their results)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "npuzoo",
                            "benchmarks/*.py"], cwd=REPO, capture_output=True, text=True).stdout
    return proc.stdout.strip() + ("+changes" if dirty.strip() else "")


def wait_quiet(limit):
    """Wait (up to `limit` seconds) for half a second in which other processes took at most
    10% of the CPUs; return the seconds waited."""
    from npuzoo.bench.load import LoadMonitor

    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        # the CPU share alone decides (no machine best to hold a reference product against)
        monitor = LoadMonitor(reference=lambda: 0.0).start()
        time.sleep(0.5)
        if monitor.stop()["contended"] is False:
            break
    return time.perf_counter() - start


# == the run ==================================================================================

def contender_specs(name, onnx_path, tree, args, threads, int8_path):
    shape = (model_config(name).get("input") or {}).get("shape") or [3, 224, 224]
    base = {"model": name, "onnx": onnx_path, "threads": threads, "input_shape": shape,
            "source": tree, "scratch": os.path.join(CACHE, name)}
    specs = {}
    for backend in args.backends:
        for streams in args.streams:
            specs[runner_name(backend, "fp32", streams)] = dict(
                base, kind="runner", backend=backend, streams=streams, precision="fp32")
            if int8_path:
                specs[runner_name(backend, "int8", streams)] = dict(
                    base, kind="runner", backend=backend, streams=streams, precision="int8",
                    onnx=os.path.abspath(int8_path))
    if args.tuned:
        specs[TUNED] = dict(base, kind="runner", precision="fp32", backend=own_backend(name),
                            tune=os.path.join(CACHE, "tuning"))
    for kind in args.plain:
        specs[kind] = dict(base, kind=kind)
    specs["conv"] = dict(base, kind="conv")
    return specs


def bench_model(name, args, threads):
    onnx_path, tree = prepare_model(name, args.onnx.get(name))
    specs = contender_specs(name, onnx_path, tree, args, threads, args.int8.get(name))
    log_path = os.path.join(CACHE, name, "workers.log")
    print(f"  {name}: starting {len(specs)} contenders (their output: "
          f"{os.path.relpath(log_path, REPO)})", flush=True)
    workers = {key: Worker(key, spec, log_path) for key, spec in specs.items()}
    names = [key for key in specs if key != "conv"]
    load_start = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.UTC)
    try:
        for key, worker_ in workers.items():
            reply = worker_.receive()
            if "error" in reply:
                worker_.error = reply["error"]
                print("  {}: {} dropped: {}".format(name, key, reply["error"]), flush=True)
        measured = {bs: {key: [] for key in specs} for bs in args.batch_sizes}
        for bs in args.batch_sizes:
            for index in range(args.rounds):
                order = ["conv"] + names
                shift = index % len(order)
                order = order[shift:] + order[:shift]
                for key in order:
                    worker_ = workers[key]
                    if worker_.error:
                        measured[bs][key].append(None)
                        continue
                    seconds = args.seconds / 2 if key == "conv" else args.seconds
                    wait_quiet(args.wait_quiet)
                    worker_.send({"bs": bs, "seconds": seconds, "min_runs": args.min_runs,
                                  "warmup": args.warmup})
                    reply = worker_.receive()
                    if "error" in reply:
                        worker_.error = reply["error"]
                        print(f"  {name}: {key} dropped at BS {bs}: {reply['error']}", flush=True)
                        measured[bs][key].append(None)
                        continue
                    measured[bs][key].append(reply)
                line = f"  {name} BS {bs:>2} round {index + 1}/{args.rounds}: "
                first = runner_name(args.backends[0], "fp32", args.streams[0])
                line += ", ".join(f"{k} {measured[bs][k][-1]['images_per_s']:.1f}"
                                  for k in ("ort", first)
                                  if k in measured[bs] and measured[bs][k] and measured[bs][k][-1])
                print(line, flush=True)
    finally:
        for worker_ in workers.values():
            worker_.close()
    load_end = os.getloadavg()[0]

    conv = [m["gflops"] for bs in args.batch_sizes for m in measured[bs]["conv"] if m]
    conv_quiet = [m["gflops"] for bs in args.batch_sizes for m in measured[bs]["conv"]
                  if m and m["load"].get("contended") is False]
    attainable = statistics.median(conv_quiet or conv) if conv else None
    gflop = round(gflop_per_image(onnx_path), 3)
    rows = []
    for bs in args.batch_sizes:
        reference = measured[bs].get("ort") or [None] * args.rounds
        contenders = {}
        for key in names:
            result = summarise(measured[bs][key], reference)
            if result is None:
                continue
            if key.startswith("runner/"):
                t23 = [m["t23_throughput"] for m in measured[bs][key] if m]
                result["t23_throughput_median"] = statistics.median(t23) if t23 else None
            if attainable and gflop:
                result["fraction_of_attainable"] = result["images_per_s"] * gflop / attainable
            contenders[key] = result
        rows.append({"bs": bs, "contenders": contenders,
                     "tuned_vs_best_plain": tuned_vs_best_plain(measured[bs], args.rounds)})
    measurements = [m for bs in args.batch_sizes for key in specs for m in measured[bs][key] if m]
    block = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": machine(),
        "versions": versions(),
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "min_runs": args.min_runs,
                     "warmup": args.warmup, "threads": threads, "batch_sizes": args.batch_sizes,
                     "streams": args.streams, "quick": args.quick, "wait_quiet": args.wait_quiet,
                     "onnx": "given: " + os.path.relpath(onnx_path, REPO) if name in args.onnx
                     else f"random weights (seed 0), models/{name}/pth2onnx.py",
                     "int8": os.path.relpath(args.int8[name], REPO) if name in args.int8 else None},
        "gflop_per_image": gflop,
        "attainable_gflops": {"median": attainable, "range": spread(conv_quiet or conv),
                              "probe": "Conv 3x3 {c}->{c}, {s}x{s}, batch {b}, plain ONNX Runtime, "
                                       "{g:.3f} GFLOP per call".format(
                                           c=CONV["channels"], s=CONV["size"], b=CONV["batch"],
                                           g=CONV_GFLOP)},
        "loadavg_1m": {"start": load_start, "end": load_end},
        "contended_measurements": sum(1 for m in measurements if m["load"].get("contended")),
        "measurements": len(measurements),
        "dropped": {key: w.error for key, w in workers.items() if w.error},
        "rows": rows,
    }
    block["winner"] = pick_winner(rows, args.streams)
    return block


def print_block(name, block):
    attainable = block["attainable_gflops"]
    print()
    print("{} ({} GFLOP/image): attainable {} GFLOP/s (conv probe, median; range {}); load average "
          "{:.2f} -> {:.2f}; {} of {} measurements contended".format(
              name, block["gflop_per_image"],
              "{:.1f}".format(attainable["median"]) if attainable["median"] else "?",
              "-".join(f"{v:.1f}" for v in attainable["range"]) if attainable["range"] else "?",
              block["loadavg_1m"]["start"], block["loadavg_1m"]["end"],
              block["contended_measurements"], block["measurements"]))
    print("{:>3}  {:<42} {:>9} {:>17} {:>7} {:>15} {:>7}  {}".format(
        "BS", "contender", "images/s", "(min-max)", "vs ORT", "(min-max)", "% att.", "rounds used"))
    for row in block["rows"]:
        for key, c in row["contenders"].items():
            ratio_range = c["ratio_range"]
            print("{:>3}  {:<42} {:>9.1f} {:>17} {:>7} {:>15} {:>7}  {}".format(
                row["bs"], label(key), c["images_per_s"],
                "({:.1f}-{:.1f})".format(*c["range"]),
                "{:.3f}".format(c["ratio_to_ort"]) if c["ratio_to_ort"] else "-",
                "({:.2f}-{:.2f})".format(*ratio_range) if ratio_range else "",
                f"{c['fraction_of_attainable']:.0%}" if c.get("fraction_of_attainable") else "-",
                "{} quiet of {}".format(c["quiet_rounds"], len(c["rounds"]))))
    for row in block["rows"]:
        versus = row.get("tuned_vs_best_plain")
        if versus:
            chosen = versus["chosen"] or {}
            print("BS {:>2}: runner's tuned choice ({} x{} stream{}{}) / fastest plain ({}): "
                  "{:.3f} (per round {:.3f}, {:.2f}-{:.2f}, {})".format(
                      row["bs"], chosen.get("engine", "?"), chosen.get("streams", "?"),
                      "" if chosen.get("streams") == 1 else "s",
                      f", {chosen['hint']}" if chosen.get("hint") else "",
                      label(versus["best_plain"]), versus["ratio"], versus["per_round"],
                      *versus["range"],
                      versus["used"]))
    if block["winner"]:
        w = block["winner"]
        print("runner OpenVINO / runner ONNX Runtime: {} (geometric mean {:.3f}): {} wins {}"
              .format(
            ", ".join(f"{k} {v:.3f}" for k, v in w["openvino_over_onnxruntime"].items()),
            w["geomean"], w["backend"], name))


def machine_key(info):
    """Results are kept per machine: its CPU and the CPUs the benchmark could use."""
    return "{} ({} CPUs)".format(info.get("cpu", "unknown CPU"), info["usable_cpus"])


def read_document(path):
    """The results file ({"machines": {key: {"machine", "models", "default_backend"}}}), or an
    empty one; a file of the earlier one-machine layout is sorted by its blocks' machines."""
    document = {"machines": {}}
    if path and os.path.isfile(path):
        with open(path) as handle:
            document = json.load(handle)
    if "models" in document:
        blocks, document = document["models"], {"machines": {}}
        for name, block in blocks.items():
            results = document["machines"].setdefault(machine_key(block["machine"]), {"models": {}})
            results["machine"] = block["machine"]
            results["models"][name] = block
        for results in document["machines"].values():
            results["default_backend"] = default_verdict(results["models"])
    document["generated_by"] = "python3 benchmarks/bench_engines.py (see its docstring)"
    return document


def write_json(path, document):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    os.replace(tmp, path)


def parse_pairs(values, flag):
    pairs = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or name not in MODELS:
            sys.exit(f"error: {flag} {value!r}: expected MODEL=PATH with MODEL one of "
                     f"{', '.join(MODELS)}")
        if not os.path.isfile(path):
            sys.exit(f"error: {flag} {path}: no such file")
        pairs[name] = path
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma list (default: every model)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma list (default: 1,4,16)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds (default 5; --quick 2)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time bound of each measurement (default 2; --quick 0.5)")
    parser.add_argument("--min-runs", type=int, default=3,
                        help="calls per measurement at least (default 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up calls per measurement (default 2; --quick 1)")
    parser.add_argument("--streams", default="1,2", help="runner stream counts (default: 1,2)")
    parser.add_argument("--backends", default="onnxruntime,openvino", help="runner engines")
    parser.add_argument("--plain", default="ort,openvino,openvino-async,torch",
                        help="plain contenders (default: ort,openvino,openvino-async,torch; ort "
                             "is the reference)")
    parser.add_argument("--no-tuned", dest="tuned", action="store_false",
                        help="leave out the runner's tuned choice (npuzoo.tune; its cache: "
                             "build/bench_engines/tuning)")
    parser.add_argument("--int8", action="append", metavar="MODEL=PATH",
                        help="a quantised ONNX of MODEL: adds the runner's int8 contenders")
    parser.add_argument("--onnx", action="append", metavar="MODEL=PATH",
                        help="use this export of MODEL instead of a random-weight one")
    parser.add_argument("--threads", type=int, default=None,
                        help="T (default: NPUZOO_THREADS or the usable cores)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each measurement wait up to S seconds for a quiet half second "
                             "(other processes under 10%% of the CPUs); default 0: no wait")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.5 s, 1 warm-up call")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="JSON to update (default: benchmarks/results/engines.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--rescore", action="store_true",
                        help="measure nothing: recompute each model's winner and the "
                             "default-engine verdict of --out from the rounds it holds, and "
                             "rewrite it")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker()
    if args.rescore:
        document = read_document(args.out)
        for key, results in document["machines"].items():
            for block in results["models"].values():
                block["winner"] = pick_winner(block["rows"], block["settings"]["streams"])
            results["default_backend"] = default_verdict(results["models"])
            print("{}: default engine {}".format(key, json.dumps(results["default_backend"])))
        write_json(args.out, document)
        return 0
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(MODELS)})")
    try:
        args.batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
        args.streams = [int(v) for v in args.streams.split(",")]
    except ValueError:
        parser.error("--batch-sizes and --streams take comma lists of integers")
    if min(args.batch_sizes + args.streams) <= 0 or args.rounds <= 0 or args.min_runs <= 0:
        parser.error("batch sizes, streams, rounds and --min-runs must be positive")
    args.backends = [b for b in args.backends.split(",") if b]
    args.plain = [p for p in args.plain.split(",") if p]
    if "ort" not in args.plain:
        args.plain.insert(0, "ort")   # the reference of every ratio
    bad = [p for p in args.plain if p not in ("ort", "openvino", "openvino-async", "torch")]
    if bad or any(b not in ("onnxruntime", "openvino") for b in args.backends):
        parser.error("--plain takes ort,openvino,openvino-async,torch; --backends "
                     "onnxruntime,openvino")
    args.int8 = parse_pairs(args.int8, "--int8")
    args.onnx = parse_pairs(args.onnx, "--onnx")
    from npuzoo.bench.runner import default_threads
    threads = args.threads or default_threads()

    print(f"bench_engines: models {', '.join(models)}, BS {args.batch_sizes}, {args.rounds} rounds "
          f"of {args.seconds:g} s (>= {args.min_runs} calls, {args.warmup} warm-up), {threads} "
          f"threads; load average {os.getloadavg()[0]:.2f}", flush=True)
    document = read_document(None if args.no_write else args.out)
    here = machine_key(machine())
    results = document["machines"].setdefault(here, {"models": {}})
    for name in models:
        block = bench_model(name, args, threads)
        print_block(name, block)
        results["machine"] = block["machine"]
        results["models"][name] = block
        results["models"] = {m: results["models"][m] for m in MODELS if m in results["models"]}
        results["default_backend"] = default_verdict(results["models"])
        if not args.no_write:   # after every model, so that an interrupted run keeps its work
            write_json(args.out, document)
    verdict = results["default_backend"]
    print()
    print("default engine over the models in {}: {} (openvino ahead on: {}; onnxruntime ahead on: "
          "{}){}".format(
        "this run" if args.no_write else os.path.relpath(args.out, REPO), verdict["choice"],
        ", ".join(verdict["votes"]["openvino"]) or "none",
        ", ".join(verdict["votes"]["onnxruntime"]) or "none",
        "; model.yaml runtime.backend candidates: " + ", ".join(
            f"{k}: {v}" for k, v in verdict["per_model_overrides"].items())
        if verdict["per_model_overrides"] else ""))
    if not args.no_write:
        print(f"wrote {os.path.relpath(args.out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
