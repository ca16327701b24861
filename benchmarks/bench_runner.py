"""Pure-inference throughput of the npuzoo.bench runner against plain ONNX Runtime and PyTorch.

One run measures, side by side, on the same network, batch size, thread count and all-zero
float32 input:

  (a) the project runner (npuzoo.bench.run, pure inference, as `python3 -m npuzoo.bench
      --model M --dymBatch B --loop L`): its throughput 1000*B/mean(session.run ms), the
      figure ais_bench prints;
  (b) a plain ONNX Runtime loop: one InferenceSession with the same options (ORT_ENABLE_ALL,
      sequential, intra-op threads T, inter-op 1), `session.run` timed call by call;
  (c) PyTorch eager under torch.inference_mode with torch.set_num_threads(T).

Each backend does W warm-up calls then L timed calls (a fresh ORT session per round for (a)
and (b)); the three alternate over R rounds, (a) and (b) swapping places each round. It prints
the median images/s of each, and the ratios runner / plain ORT (PASS when >= 0.95: the runner
adds nothing inside the timed region) and ORT / PyTorch as the median of the per-round ratios,
which cancels most of the drift of a shared machine.

Default network: MobileNetV1 from models/mobilenetv1/pth2onnx.py (random weights, exported
to a temporary ONNX file unless --model-onnx names one). `--network torchvision:NAME` uses a
torchvision classifier instead.

    .venv/bin/python benchmarks/bench_runner.py [--batchsize 4] [--loop 20] [--threads N]
        [--warmup 3] [--rounds 15] [--model-onnx PATH] [--network mobilenetv1|torchvision:NAME]
"""

import argparse
import contextlib
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from npuzoo import bench  # noqa: E402
from npuzoo.bench.runner import default_threads  # noqa: E402

MIN_RATIO = 0.95


def load_by_path(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_network(network):
    """(torch module in eval(), description, export function(model, path))."""
    import torch

    if network == "mobilenetv1":
        script = os.path.join(REPO, "models", "mobilenetv1", "pth2onnx.py")
        if not os.path.isfile(script):
            sys.exit(f"error: {script} not found; use --network torchvision:NAME")
        pth2onnx = load_by_path(script, "_mobilenetv1_pth2onnx")
        with contextlib.redirect_stderr(io.StringIO()):   # its "random weights" warning
            model = pth2onnx.build_model("random")
        return model, "MobileNetV1 (models/mobilenetv1, random weights)", pth2onnx.export
    if network.startswith("torchvision:"):
        import torchvision

        name = network.split(":", 1)[1]
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()

        def export(module, path):
            import warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, torch.zeros(1, 3, 224, 224), path, dynamo=False,
                              opset_version=11, input_names=["image"], output_names=["class"],
                              dynamic_axes={"image": {0: "-1"}, "class": {0: "-1"}})
        return model, f"torchvision {name} (random weights)", export
    sys.exit(f"error: --network {network!r}: expected mobilenetv1 or torchvision:NAME")


def time_calls(call, warmup, loop):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(loop):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def runner_round(onnx_path, batchsize, loop, warmup, threads):
    argv = ["--model", onnx_path, "--dymBatch", batchsize, "--loop", loop, "--warmup_count", warmup]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = bench.run(argv, threads=threads)
    line = [text for text in printed.getvalue().splitlines() if "throughput" in text][-1]
    return summary["throughput"], line


def ort_round(onnx_path, feed, loop, warmup, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, sess_options=options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    times = time_calls(lambda: session.run(None, {name: feed}), warmup, loop)
    return 1000.0 * feed.shape[0] / float(np.mean(times))


def torch_round(model, feed, loop, warmup):
    import torch

    tensor = torch.from_numpy(feed)
    with torch.inference_mode():
        times = time_calls(lambda: model(tensor), warmup, loop)
    return 1000.0 * feed.shape[0] / float(np.mean(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batchsize", type=int, default=4)
    parser.add_argument("--loop", type=int, default=20, help="timed calls per backend per round")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up calls per backend per round")
    parser.add_argument("--rounds", type=int, default=15,
                        help="alternating rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for all three (default: NPUZOO_THREADS or "
                             "usable cores)")
    parser.add_argument("--model-onnx", default=None,
                        help="ONNX file to run (exported from the network when it does not exist)")
    parser.add_argument("--network", default="mobilenetv1", help="mobilenetv1 or torchvision:NAME")
    args = parser.parse_args(argv)
    for flag in ("batchsize", "loop", "rounds"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be positive")
    threads = args.threads or default_threads()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

    load_before = os.getloadavg()
    model, description, export = build_network(args.network)
    feed = np.zeros((args.batchsize, 3, 224, 224), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.model_onnx or os.path.join(tmp, "model.onnx")
        exported = not os.path.isfile(onnx_path)
        if exported:
            export(model, onnx_path)
        check = ""
        if exported:   # same weights in both: check the two backends agree
            sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            ones = np.ones_like(feed)
            with torch.inference_mode():
                ref = model(torch.from_numpy(ones)).numpy()
            got = sess.run(None, {sess.get_inputs()[0].name: ones})[0]
            check = f"max |ORT - PyTorch| on a ones input: {float(np.abs(got - ref).max()):.2e}"
            del sess

        results = {"runner": [], "ort": [], "torch": []}
        runner_line = ""
        for index in range(args.rounds):
            # alternate which of (a) and (b) goes first, so load drift on a shared machine
            # does not favour one; (a)/(b) are compared round by round
            order = ("runner", "ort", "torch") if index % 2 == 0 else ("ort", "runner", "torch")
            for key in order:
                if key == "runner":
                    throughput, runner_line = runner_round(onnx_path, args.batchsize, args.loop,
                                                           args.warmup, threads)
                    results["runner"].append(throughput)
                elif key == "ort":
                    results["ort"].append(ort_round(onnx_path, feed, args.loop, args.warmup,
                                                    threads))
                else:
                    results["torch"].append(torch_round(model, feed, args.loop, args.warmup))

    median = {key: statistics.median(values) for key, values in results.items()}
    paired = [r / o for r, o in zip(results["runner"], results["ort"], strict=True)]
    torch_paired = [o / t for o, t in zip(results["ort"], results["torch"], strict=True)]
    print(f"network: {description}")
    print(f"onnx: {args.model_onnx or '(temporary export)'}{'' if exported else ' (given)'}")
    print(f"batch size {args.batchsize}, {args.loop} timed + {args.warmup} warm-up calls per "
          f"backend per round, {args.rounds} rounds, {threads} threads; "
          f"onnxruntime {ort.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / "
          f"{os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} usable cores: other "
          "work on the "
          "machine slows every backend")
    if check:
        print(check)
    print(f"runner's last printed line: {runner_line}")
    print()
    print("{:<34} {:>14}   {}".format("backend", "images/s", "rounds"))
    for key, label in (("runner", "npuzoo.bench runner (a)"),
                       ("ort", "plain ORT session.run loop (b)"), ("torch", "PyTorch eager (c)")):
        print("{:<34} {:>14.1f}   {}".format(label, median[key],
                                             " ".join(f"{v:.1f}" for v in results[key])))
    print()
    ratio = statistics.median(paired)
    verdict = "PASS" if ratio >= MIN_RATIO else "FAIL"
    print("runner / plain ORT: {:.3f}  {} (>= {}; median of the per-round ratios {})".format(
        ratio, verdict, MIN_RATIO, " ".join(f"{v:.3f}" for v in paired)))
    print("ORT / PyTorch: {:.3f}  (median of the per-round ratios {})".format(
        statistics.median(torch_paired), " ".join(f"{v:.3f}" for v in torch_paired)))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
