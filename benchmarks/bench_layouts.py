"""The tuning's engine and stream layouts timed at length, side by side: how far is the short
pass's choice (npuzoo.tune) from the best layout on this machine?

    python3 benchmarks/bench_layouts.py --models dpn131 tresnet --batch-sizes 4 --rounds 8

For each model and batch size: every layout npuzoo.tune.layouts() times, OpenVINO's explicit
one-stream-per-thread layout that it leaves out (if OpenVINO is installed), and plain OpenVINO's
throughput recipe (PERFORMANCE_HINT=THROUGHPUT, an AsyncInferQueue of its optimal number of
requests, as benchmarks/bench_engines.py's "openvino-async"). Each is warm in a process of its
own (npuzoo.tune.Isolated); a layout's sample is npuzoo.tune's (npuzoo.bench.runner's
layout_samples: --seconds of pure inference, one call per stream at least). Rounds are
interleaved, the order rotated by one place each round; each layout's figure is the median of
its same-round ratios to the first layout (the tuning's fallback, model.yaml's engine with one
stream), with their range. The exports are bench_engines's (random weights, build/bench_engines/)
or --onnx NAME=PATH. Nothing is written; the table is printed.
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench_engines as be  # noqa: E402 (puts the repository on sys.path)

from npuzoo import engines, tune  # noqa: E402
from npuzoo.bench import options  # noqa: E402
from npuzoo.bench.runner import default_threads, layout_samples  # noqa: E402

PLAIN_ASYNC = "plain OpenVINO, THROUGHPUT hint, async queue"


def plain_async(spec, bs, seconds):
    """bench_engines's AsyncOpenVINO contender as a generator of images/s (for tune.Isolated)."""
    contender = be.AsyncOpenVINO(spec)
    contender.setup()
    while True:
        yield contender.measure(bs, seconds, 1, 1)["images_per_s"]


def input_shape(onnx_path):
    """The graph's first input without its batch dimension (read once per model: the file of a
    big model is hundreds of MB)."""
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    return [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]


def contenders(model, bs, threads, seconds):
    """{label: (target, args)} of every layout timed for `model` at `bs`."""
    args = options.parse_args(["--model", model["onnx"], "--batchsize", str(bs)])
    found = tune.layouts(model["fallback"], threads)
    if engines.backend_version("openvino") and threads > 1:
        found.append({"engine": "openvino", "streams": threads, "threads_per_stream": 1,
                      "hint": None})
    chosen = {tune.describe(layout): (layout_samples, (args, layout, seconds, tune.CALLS))
              for layout in found}
    if engines.backend_version("openvino"):
        spec = {"threads": threads, "onnx": model["onnx"], "input_shape": model["shape"]}
        chosen[PLAIN_ASYNC] = (plain_async, (spec, bs, seconds))
    return chosen


def bench(model, bs, threads, rounds, seconds):
    """{label: [images/s per round]}, the layouts in interleaved, rotated rounds."""
    started = {label: tune.Isolated(target, *args)
               for label, (target, args) in contenders(model, bs, threads, seconds).items()}
    labels = list(started)
    samples = {label: [] for label in labels}
    try:
        for index in range(rounds):
            for label in labels[index % len(labels):] + labels[:index % len(labels)]:
                samples[label].append(float(started[label].next()))
            print(f"  {model['name']} BS {bs:>2} round {index + 1}/{rounds}", flush=True)
    finally:
        for process in started.values():
            process.close()
    return samples


def report(name, bs, samples):
    """The table of one model and batch size: median images/s, median ratio to the first."""
    labels = list(samples)
    first = samples[labels[0]]
    lines = [f"{name} BS {bs}: {'layout':<44} {'images/s':>9} {'x ' + labels[0]:>12} (range)"]
    for label in labels:
        ratios = [a / b for a, b in zip(samples[label], first, strict=True)]
        lines.append(f"{'':>{len(name) + 7}} {label:<44} {statistics.median(samples[label]):>9.2f} "
                     f"{statistics.median(ratios):>12.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=be.MODELS, choices=be.MODELS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="time bound of each sample (default 1.5)")
    parser.add_argument("--onnx", action="append", metavar="NAME=PATH",
                        help="a given export instead of the random-weight one")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or min(args.batch_sizes) < 1:
        parser.error("--rounds and --batch-sizes take positive integers, --seconds a positive "
                     "number")
    given = be.parse_pairs(args.onnx, "--onnx")
    threads = default_threads()
    for name in args.models:
        onnx_path, _ = be.prepare_model(name, given.get(name))
        model = {"name": name, "onnx": onnx_path, "fallback": be.own_backend(name),
                 "shape": input_shape(onnx_path)}
        for bs in args.batch_sizes:
            print(report(name, bs, bench(model, bs, threads, args.rounds, args.seconds)),
                  flush=True)


if __name__ == "__main__":
    main()
