"""What a run leaves: outputs, filesinfo, the summary (docs/ais_bench_compatibility.md)."""

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from npuzoo import engines
from npuzoo.bench.inputs import PADDING_INFER_FAKE_FILE, Batch
from npuzoo.errors import UserError
from npuzoo.files import atomic_write

FLOAT_TYPES = (np.float16, np.float32, np.float64)
FilesInfo = dict[str, dict[str, list[str]]]


def txt_bytes(ndata: Any) -> bytes:
    """ais_bench's TXT: reshape (-1, last_dim), each value `%f` (floats) or `%d` (others)
    followed by one space, each row ending with " \\n". Same text as its np.savetxt loop."""
    ndata = np.atleast_1d(ndata)
    ncols = ndata.shape[-1]
    nrows = int(np.prod(ndata.shape[:-1], dtype=np.int64))
    if ncols == 0:
        return b"\n" * nrows
    rows = ndata.reshape(nrows, ncols)
    line = ("%f " if ndata.dtype.type in FLOAT_TYPES else "%d ") * ncols + "\n"
    step = max(1, 65536 // ncols)
    return "".join((line * len(block)) % tuple(block.ravel().tolist())
                   for block in (rows[s:s + step] for s in range(0, nrows, step))).encode("ascii")


def save_data_to_file(path: str, ndata: np.ndarray) -> None:
    try:
        if path.endswith(".npy"):   # the extension is --outfmt in lower case
            np.save(path, ndata)
        elif path.endswith(".txt"):
            with open(path, "wb") as handle:
                handle.write(txt_bytes(ndata))
        else:
            ndata.tofile(path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None


def split_outputs(outputs: list[np.ndarray], files_per_batch: int, axis: int,
                  batch: Batch) -> list[list[np.ndarray]]:
    """Per output, its parts for each input file (np.array_split along axis)."""
    splits = []
    for i, ndata in enumerate(outputs):
        if axis >= ndata.ndim:
            raise UserError(f"error i:{i} ndata.shape:{ndata.shape} len:{ndata.ndim} <= "
                            f"output_batchsize_axis:{axis} is invalid")
        if files_per_batch != 1 and ndata.shape[axis] % files_per_batch:
            raise UserError(f"save out files error array shape:{ndata.shape} filesinfo:{batch} "
                            f"files_count_perbatch:{files_per_batch} "
                            f"ndata.shape{axis}:{ndata.shape[axis]} (try --output_batchsize_axis)")
        splits.append(np.array_split(ndata, files_per_batch, axis))
    return splits


def save_outputs(splits: list[list[np.ndarray]], output_prefix: str, batch: Batch, outfmt: str,
                 index: int, filesinfo: FilesInfo) -> None:
    """Write `{stem}_{i}.{fmt}` for every non-padded slot and record it in filesinfo."""
    files_per_batch = len(batch[0])
    for i, parts in enumerate(splits):
        for j in range(files_per_batch):
            sample = [files[j] for files in batch]
            if sample[0] == PADDING_INFER_FAKE_FILE:
                continue
            stem = os.path.basename(sample[0]).split(".")[0]
            path = os.path.join(output_prefix, f"{stem}_{i}.{outfmt.lower()}")
            entry = filesinfo.setdefault(str(index * files_per_batch + j),
                                         {"infiles": sample, "outfiles": []})
            entry["outfiles"].append(path)
            save_data_to_file(path, parts[j])


def output_prefix(args: argparse.Namespace) -> str | None:
    """The results folder, None without --output. As T23: `dir/` puts the summary inside."""
    if args.output is None:
        return None
    prefix = os.path.join(args.output, args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
    log(f"output path:{prefix}")
    return prefix


def log(message: str, level: str = "INFO") -> None:
    """One line as T23's logger writes it, `[INFO] message`, on stdout."""
    print(f"[{level}] {message}", flush=True)


def list_info(values: Sequence[float]) -> dict[str, Any]:
    """numpy min/max/mean/median/percentile over a list of ms; zeros when empty (as T23)."""
    array = np.asarray(values if len(values) else [0.0], dtype=np.float64)
    return {"min": float(np.min(array)), "max": float(np.max(array)),
            "mean": float(np.mean(array)), "median": float(np.median(array)),
            "percentile(99%)": float(np.percentile(array, 99)), "count": len(values)}


def summary(batchsize: float, filesinfo: dict[str, Any], argv: Sequence[str],
            compute: list[float], h2d: list[float], d2h: list[float], prefix: str | None,
            display_all: bool, extras: dict[str, Any] | None, engine_label: str) -> dict[str, Any]:
    """Build the summary dict, print the block, write `<prefix>_summary.json`."""
    npu = list_info(compute)
    throughput = 0 if npu["mean"] == 0 else 1000 * batchsize / npu["mean"]
    infodict: dict[str, Any] = {
        "filesinfo": filesinfo, "args": list(argv), "NPU_compute_time": npu,
        "H2D_latency": list_info(h2d), "D2H_latency": list_info(d2h), "throughput": throughput,
        "npu_compute_time_list": [float(t) for t in compute], "pid": os.getpid()}
    if extras is not None:
        infodict.update(extras)
        _extras_lines(extras)
    if sys.stdout.isatty() and not os.environ.get("NPUZOO_BENCH_T23_OUTPUT"):
        # on a terminal: what ran where, in rounded figures (the summary JSON keeps them whole)
        log(f"-----------------Performance Summary (CPU, {engine_label})------------------")
        log("compute time per batch of {} on the CPU (ms): mean {mean:.2f}, median {median:.2f}, "
            "min {min:.2f}, max {max:.2f}, p99 {percentile(99%):.2f} ({count} runs)".format(
                _bs_text(batchsize), **npu))
        log(f"throughput: {throughput:.1f} images/s")
    else:   # piped or logged (and NPUZOO_BENCH_T23_OUTPUT=1): the T23 block, verbatim
        log("-----------------Performance Summary------------------")
        for name in ["H2D_latency", "NPU_compute_time", "D2H_latency"] if display_all else \
                ["NPU_compute_time"]:
            log("{} (ms): min = {min}, max = {max}, mean = {mean}, median = {median}, "
                "percentile(99%) = {percentile(99%)}".format(name, **infodict[name]))
        log("throughput 1000*batchsize.mean({})/NPU_compute_time.mean({}): {}".format(
            batchsize, npu["mean"], throughput))
    log("------------------------------------------------------")
    if prefix is not None:
        atomic_write(prefix + "_summary.json", json.dumps(infodict))
    return infodict


def _plural(count: int, word: str) -> str:
    return "{} {}{}".format(count, word, "" if count == 1 else "s")


def _bs_text(batchsize: float) -> str:
    return str(int(batchsize)) if float(batchsize).is_integer() else f"{batchsize:.2f}"


def _extras_lines(extras: dict[str, Any]) -> None:
    if tuning := extras.get("tuning"):
        log("npuzoo: engine and streams tuned for this machine and graph ({}, {})".format(
            tuning["path"], "reused" if tuning["cache"] == "reused" else "timed now"))
    bounded = "; time-bounded loop: {loop_runs} runs in at least {loop_seconds:g} s".format(
        **extras) if extras["loop_seconds"] else ""
    log("npuzoo: {} {backend_version}, {precision}, {} x {}: {timed_runs} runs of batch {} in "
        "{:.3f} s of wall time = {throughput_wall:.2f} images/s across the streams (the figure "
        "below is per call: 1000*batchsize/mean call time){}".format(
            engines.BACKEND_LABELS[extras["backend"]], _plural(extras["streams"], "stream"),
            _plural(extras["threads_per_stream"], "thread"), _bs_text(extras["batchsize"]),
            extras["wall_time_ms"] / 1000.0, bounded, **extras))
    log("npuzoo: " + _load_text(extras))


def _load_text(extras: dict[str, Any]) -> str:
    steadiness = "" if extras.get("throughput_spread") is None else \
        "; {} windows: median {throughput_median:.2f} images/s, spread {throughput_spread:.1%}" \
        .format(len(extras["throughput_windows"]), **extras)
    if extras.get("reference_change") is not None:
        steadiness += "; reference product {:.0f} GFLOP/s, {:+.0%} after the loop{}".format(
            extras["reference_gflops"][0], extras["reference_change"],
            "" if extras.get("reference_below_best") is None else
            ", {:.0%} below this machine's best".format(extras["reference_below_best"]))
    if extras.get("other_cpu_s") is None:
        return ("load average (1 min) {loadavg_1m_start} -> {loadavg_1m_end}; other processes' "
                "CPU time unknown (no /proc/stat){}".format(steadiness, **extras))
    verdict = {True: "CONTENDED, the figures are not a clean measurement",
               False: "not contended"}.get(extras["contended"], "too short to judge")
    return ("load average (1 min) {loadavg_1m_start:.2f} -> {loadavg_1m_end:.2f}; other "
            "processes took {other_cpu_s:.2f} CPU-s of {:.2f} on {} ({other_cpu_share:.0%}): {}{}"
            .format(extras["cpus"] * extras["wall_time_ms"] / 1000.0,
                    _plural(extras["cpus"], "CPU"), verdict, steadiness, **extras))
