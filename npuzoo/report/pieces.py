"""One run's pieces (the ais_bench summary, the accuracy JSON, the result files), and the check
that the run is whole: as many images selected, preprocessed, inferred and scored."""

import json
import os
import sys
from typing import Any

import numpy as np

from npuzoo.errors import UserError

RESULT_SUFFIX = "_0.txt"  # ais_bench --outfmt TXT: <stem>_<output index>.txt, output 0 = logits
LOAD_KEYS = ("loadavg_1m_start", "loadavg_1m_end", "cpus", "other_cpu_s", "other_cpu_share",
             "reference_gflops", "reference_change", "reference_best_gflops",
             "reference_below_best", "contended", "contended_rule")
Json = dict[str, Any]


def read_json(path: str, what: str, step: str = "run the step that makes it") -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; {step}") from None
    except OSError as err:   # a folder in its place, no permission
        raise UserError(f"{path}: cannot read the {what} ({err.strerror}); {step}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); delete it and rerun") from None


def read_bench_summary(output_dir: str, dirname: str) -> Json:
    path = os.path.join(output_dir, f"{dirname}_summary.json")
    summary: Json = read_json(path, "ais_bench summary", "rerun the perf step")
    return summary


def _latency(summary: Json) -> Json | None:
    times = summary.get("npu_compute_time_list") or []
    stats = summary.get("NPU_compute_time") or {}
    if times:
        values = np.asarray(times, dtype=np.float64)
        return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
                "min": float(values.min()), "max": float(values.max())}
    if stats:
        return {"mean": stats.get("mean"), "p50": stats.get("median"), "p90": None,
                "p99": stats.get("percentile(99%)"), "min": stats.get("min"),
                "max": stats.get("max")}
    return None


def perf_from_summary(summary: Json, loop: int, warmup: int) -> Json:
    """The report's `perf` from a runner's summary (npuzoo's keys, where present, included)."""
    stats = summary.get("NPU_compute_time") or {}
    perf = {"throughput": summary.get("throughput"), "latency_ms": _latency(summary),
            "samples": stats.get("count", len(summary.get("npu_compute_time_list") or []) or None),
            "loop": loop, "warmup": warmup}
    if summary.get("loop_seconds") is not None:  # the runner's time-bounded loop
        perf["loop_seconds"] = summary["loop_seconds"]
    streams = summary.get("streams") or 1
    if streams > 1 and summary.get("throughput_wall"):
        # n sessions at once: each call is slower, so the per-call figure understates what the
        # CPU delivers; the report's throughput is images / wall time across streams.
        perf.update(throughput=summary["throughput_wall"],
                    throughput_per_call=summary.get("throughput"), streams=streams,
                    throughput_is=f"images / wall time across {streams} streams")
    if summary.get("throughput_spread") is not None:   # the loop judged in windows
        perf["spread"] = {k: summary[f"throughput_{k}"] for k in ("windows", "median", "spread")} \
            | {"is": "(max - min) / median of the windows' images/s"}
    if summary.get("tuning"):   # npuzoo.tune chose the engine and streams
        perf["tuning"] = summary["tuning"]
    if "contended" in summary:
        perf["load"] = {k: summary.get(k) for k in LOAD_KEYS}
    return perf


def read_accuracy(path: str) -> Json:
    """Top-1..5 in percent from a ModelZoo accuracy JSON."""
    data = read_json(path, "accuracy JSON")
    try:
        values = {item["key"]: item["value"] for item in data["value"]}
        return {**{f"top{k}": float(values[f"Top{k} accuracy"].rstrip("%")) for k in range(1, 6)},
                "images": int(values["Number of images"]),
                "classes": int(values["Number of classes"])}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a ModelZoo accuracy JSON (expected Top1..Top5 "
                        "accuracy entries)") from None


def listed(folder: str, suffix: str, flag: str, step: str) -> list[str]:
    """The `*<suffix>` files of a step's folder, sorted (temporary `.*.tmp` names left out)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise UserError(f"{flag} {folder}: no such folder; run the {step} step") from None
    except OSError as err:
        raise UserError(f"{flag} {folder}: cannot list it ({err.strerror or err})") from None
    return sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))


def check_counts(dataset: Json, accuracy: Json, results: int | None, prep: int | None,
                 paths: dict[str, str]) -> None:
    """UserError naming every count unless all agree: a lost image changes the denominator."""
    counts = [(n, what) for n, what in (
        (dataset.get("images"), f"selected images (dataset.json images in {paths['dataset']})"),
        (prep, f"preprocessed .bin files in {paths['prep']}"),
        (results, f"result files (<stem>{RESULT_SUFFIX}) in {paths['results']}"),
        (accuracy.get("images"),
         f"images scored (accuracy.json Number of images in {paths['accuracy']})"))
        if isinstance(n, int)]
    if len({n for n, _ in counts}) > 1:
        listed = ", ".join(f"{n} {what}" for n, what in counts)
        raise UserError(f"image counts differ: {listed}; every selected image must be "
                        "preprocessed, inferred and scored exactly once, so a step lost or "
                        "added images: delete that step's stale output and rerun")


def read_logits(path: str) -> list[np.ndarray]:
    """The rows of one ais_bench TXT result file (whitespace-separated floats, one row a line)."""
    try:
        with open(path, encoding="ascii") as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UserError(f"{path}: cannot read the result file ({reason})") from None
    try:
        return [np.array(line.split(), dtype=np.float64) for line in lines]
    except ValueError:
        raise UserError(f"{path}: not whitespace-separated numbers (an ais_bench --outfmt TXT "
                        "result); rerun the inference step") from None


def output_check(results_dir: str, names: list[str], prep: int | None) -> Json:
    """How many images had NaN/infinite or all-equal logits (in some row), warning if any."""
    check: Json = {"result_files": len(names), "nan_images": 0, "constant_images": 0,
                   "first_nan": None, "first_constant": None}
    for name in names:
        rows = read_logits(os.path.join(results_dir, name))
        if any(not np.isfinite(row).all() for row in rows):
            check["nan_images"] += 1
            check["first_nan"] = check["first_nan"] or name
        elif any(row.size > 1 and row.min() == row.max() for row in rows):
            check["constant_images"] += 1
            check["first_constant"] = check["first_constant"] or name
    check["preprocessed_files"] = prep
    parts = [f"{check[key]} of {len(names)} images have {what} (first: {check[first]})"
             for key, what, first in (("nan_images", "NaN or infinite logits", "first_nan"),
                                      ("constant_images", "all logits equal", "first_constant"))
             if check[key]]
    if parts:
        print(f"warning: {results_dir}: " + " and ".join(parts) + "; the model's outputs are "
              "broken (check the export and the preprocessed inputs), so this accuracy means "
              "little; recorded in the report's output_check", file=sys.stderr)
    return check
