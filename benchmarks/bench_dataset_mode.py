"""Dataset mode against pure inference: what reading inputs and writing outputs costs the runner.

`make <model>` runs the runner twice: over the preprocessed dataset (`--input DIR --output DIR
--outfmt TXT`: read every batch's .bin files, run, write one TXT per image) for accuracy, and on
one all-zero batch (`--loop`, pure inference) for the perf figure. This script measures both in
one process, side by side, so their ratio shows what the dataset mode adds beyond the network
itself, excluding process start-up (interpreter, imports, session, warm-up: the runner's wall
clock `wall_time_ms` starts after its warm-up):

  (a) dataset mode: images / wall time over the whole input folder, TXT outputs written;
  (b) pure inference: the same number of batches run on one all-zero batch, images / wall time;
  (c) a plain ONNX Runtime loop over the same files (np.fromfile, session.run, np.savetxt-style
      TXT via the runner's writer), for reference: what a hand-written loop achieves.

Contenders alternate over R rounds in a rotating order; it prints each one's median images/s,
and the median of the per-round ratios dataset / pure (the target is >= 0.9) and dataset / plain
loop, with the load average.

The model is MobileNetV1 from models/mobilenetv1/pth2onnx.py with random weights, compiled for
the batch size by npuzoo.compile as the pipeline does. Inputs: `--prep DIR` (a preprocessed set,
e.g. build/prep/<key>/ written by `make mobilenetv1`), else N synthetic float32 files of
3x224x224 (the timings do not depend on the pixel values).

    .venv/bin/python benchmarks/bench_dataset_mode.py [--prep DIR | --images 1300] [--batchsize 16]
        [--rounds 5] [--streams 1] [--threads N]
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_runner import build_network  # noqa: E402

from npuzoo import bench  # noqa: E402
from npuzoo import compile as npuzoo_compile  # noqa: E402
from npuzoo.bench.outputs import txt_bytes  # noqa: E402
from npuzoo.bench.runner import default_threads  # noqa: E402
from npuzoo.files import input_files  # noqa: E402

TARGET = 0.9
IMAGE_BYTES = 3 * 224 * 224 * 4


def synthetic_set(folder, count):
    """`count` float32 .bin files named like the pipeline's, random values."""
    rng = np.random.default_rng(0)
    for index in range(count):
        rng.standard_normal(IMAGE_BYTES // 4, dtype=np.float32).tofile(
            os.path.join(folder, f"ILSVRC2012_val_{index + 1:08d}.bin"))


def runner(argv, threads):
    with contextlib.redirect_stdout(io.StringIO()):
        return bench.run(argv, threads=threads)


def dataset_round(model, prep, out, name, batch, streams, threads):
    summary = runner(["--model", model, "--input", prep, "--output", out, "--output_dirname", name,
                      "--outfmt", "TXT", "--batchsize", batch, "--backend", "onnxruntime",
                      "--streams", streams, "--warmup_count", 1], threads)
    return summary["throughput_wall"]   # images / wall time: the batches run once each


def pure_round(model, batches, streams, threads):
    summary = runner(["--model", model, "--loop", batches, "--backend", "onnxruntime",
                      "--streams", streams, "--warmup_count", 1], threads)
    return summary["throughput_wall"]


def plain_round(model, files, out, batch, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: np.zeros((batch, 3, 224, 224), np.float32)})
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    images = 0
    for first in range(0, len(files) - batch + 1, batch):
        group = files[first:first + batch]
        feed = np.concatenate([np.fromfile(p, np.float32) for p in group])
        feed = feed.reshape(batch, 3, 224, 224)
        logits = session.run(None, {name: feed})[0]
        for path, row in zip(group, logits, strict=True):
            stem = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join(out, stem + "_0.txt"), "wb") as handle:
                handle.write(txt_bytes(row.reshape(1, -1)))
        images += batch
    return images / (time.perf_counter() - start)


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prep", help="a folder of preprocessed .bin files (3x224x224 float32)")
    parser.add_argument("--images", type=int, default=1300, help="synthetic files without --prep")
    parser.add_argument("--batchsize", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args(argv)
    for flag in ("images", "batchsize", "rounds", "streams", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected a positive integer, got {getattr(args, flag)}")
    if args.prep and not os.path.isdir(args.prep):
        parser.error(f"--prep {args.prep}: not a folder (give build/prep/<key>/ or leave it out)")

    with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
        model, description, export = build_network("mobilenetv1")
        onnx_path = os.path.join(tmp, "mobilenetv1.onnx")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            export(model, onnx_path)
        compiled = os.path.join(tmp, f"mobilenetv1_bs{args.batchsize}.onnx")
        npuzoo_compile.compile_model(onnx_path, compiled, args.batchsize)
        if args.prep:
            prep = args.prep
            source = prep
        else:
            prep = os.path.join(tmp, "prep")
            os.makedirs(prep)
            synthetic_set(prep, args.images)
            source = f"{args.images} synthetic files"
        files = input_files(prep)
        if len(files) < args.batchsize:
            sys.exit(f"error: {prep}: fewer than {args.batchsize} .bin files")
        # Whole batches only, so every contender runs the same number of full batches.
        usable = len(files) // args.batchsize * args.batchsize
        batches = usable // args.batchsize
        subset = os.path.join(tmp, "inputs")
        os.makedirs(subset)
        for path in files[:usable]:
            os.symlink(os.path.abspath(path), os.path.join(subset, os.path.basename(path)))
        print(f"{description}; {source}, {usable} images in {batches} batches of "
              f"{args.batchsize}; {args.threads} threads, {args.streams} stream(s); load average "
              f"{loadavg():.2f}")

        contenders = {
            "dataset mode": lambda r: dataset_round(compiled, subset, os.path.join(tmp, "out"),
                                                    f"r{r}", args.batchsize, args.streams,
                                                    args.threads),
            "pure inference": lambda r: pure_round(compiled, batches, args.streams, args.threads),
            "plain ORT loop": lambda r: plain_round(compiled, files[:usable],
                                                    os.path.join(tmp, f"plain{r}"),
                                                    args.batchsize, args.threads),
        }
        names = list(contenders)
        results = {name: [] for name in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                results[name].append(contenders[name](r))
            print(f"round {r + 1}: " + ", ".join(
                f"{name} {results[name][-1]:.1f}" for name in names) + " images/s")
        print()
        for name in names:
            values = results[name]
            print(f"{name:<15} median {statistics.median(values):7.1f} images/s "
                  f"(range {min(values):.1f}-{max(values):.1f})")
        dataset = results["dataset mode"]
        versus_pure = statistics.median(
            d / p for d, p in zip(dataset, results["pure inference"], strict=True))
        versus_plain = statistics.median(
            d / p for d, p in zip(dataset, results["plain ORT loop"], strict=True))
        print("dataset mode / pure inference: {:.3f} (target >= {}): {}".format(
            versus_pure, TARGET, "PASS" if versus_pure >= TARGET else "BELOW"))
        print(f"dataset mode / plain ORT loop: {versus_plain:.3f}")
        print(f"load average at the end: {loadavg():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
