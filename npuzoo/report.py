"""Results files: `reports/<model>/<SOC>_bs<BS>.json`, one per (chip, batch size).

`write` gathers one run's pieces (dataset, weights, accuracy JSON, ais_bench summary) into a
report under build/; `publish` records it in reports/<model>/history/ and makes it the current
report unless that one is more complete (npuzoo/history.py: every run is kept, a trial never
replaces a curated run), after comparing it with the latest like-for-like earlier run (same
machine, images, weights), and exits non-zero when the accuracy gate fails (or, --strict, on a
flagged change); `compare` (`make compare`) prints the latest change of every like-for-like
group.
Readers accept files written by earlier schema versions, and anything else too: `read_report`
(used by `compare`, the README renderer and `publish` for the report it replaces) coerces
wrongly typed fields (a batch_size written as "4") or skips a file that is no report at all
(not JSON, no usable batch size) or whose values are out of bounds (`out_of_bounds`: a soc or
model that is no id, a negative throughput, text with control characters), with one
`warning:` line naming the file, never a traceback.

`write` checks that the run is whole: the selected images (dataset.json `images`) and the
images scored (accuracy.json) must be as many, and so must, when given, the preprocessed .bin
files of `--prep-dir` and the `<stem>_0.txt` result files of `--results-dir`; otherwise one
`error:` line names the numbers (exit 2). With `--results-dir` it also reads every result's
logits and records in `output_check` how many images had NaN or infinite logits
(`nan_images`) or logits all equal (`constant_images`), printing one `warning:` line when any
did: such outputs come from a broken export or input, and their accuracy means little.

The throughput-drop threshold is 10% unless `--throughput-drop` or the environment variable
NPUZOO_THROUGHPUT_DROP says otherwise (a fraction, `0.05`, or a percentage, `5%`).
"""

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys

import numpy as np

from npuzoo import config, history
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write
from npuzoo.run import POSITIVE as BATCH_SIZE
from npuzoo.soc import ASCEND_SHAPE, cpu_description, cpu_isa

SCHEMA_VERSION = 1
THROUGHPUT_DROP = 0.10  # a fall beyond this fraction is flagged run over run
THROUGHPUT_DROP_ENV = "NPUZOO_THROUGHPUT_DROP"
# Readers (`compare`, the README renderer) look here; NPUZOO_REPORTS_DIR points them elsewhere.
REPORTS_DIR = os.environ.get("NPUZOO_REPORTS_DIR") or os.path.join(config.REPO_ROOT, "reports")


# -- reading the pieces ------------------------------------------------------------------

def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; run the step that makes it") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); delete it and rerun") from None


def read_bench_summary(output_dir, dirname, log=None):
    """The ais_bench summary of `output_dir/dirname`, from either generation's file.

    G2+ writes `<dirname>_summary.json` beside the results folder, G1 `sumary.json` inside
    it; failing both, the `throughput` line of the printed log gives the throughput alone.
    """
    for path in (os.path.join(output_dir, f"{dirname}_summary.json"),
                 os.path.join(output_dir, dirname, "sumary.json")):
        if os.path.isfile(path):
            return read_json(path, "ais_bench summary")
    if log and os.path.isfile(log):
        with open(log, encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle if "throughput" in line and ":" in line]
        if lines:
            return {"throughput": float(lines[-1].split()[-1])}
    raise UserError(f"{output_dir}: no {dirname}_summary.json, {dirname}/sumary.json or "
                    "throughput line found; rerun the perf step")


def perf_from_summary(summary, loop, warmup):
    times = summary.get("npu_compute_time_list") or []
    stats = summary.get("NPU_compute_time") or {}
    latency = {}
    if times:
        values = np.asarray(times, dtype=np.float64)
        latency = {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                   "p90": float(np.percentile(values, 90)),
                   "p99": float(np.percentile(values, 99)),
                   "min": float(values.min()), "max": float(values.max())}
    elif stats:
        latency = {"mean": stats.get("mean"), "p50": stats.get("median"), "p90": None,
                   "p99": stats.get("percentile(99%)"), "min": stats.get("min"),
                   "max": stats.get("max")}
    perf = {"throughput": summary.get("throughput"), "latency_ms": latency or None,
            "samples": stats.get("count", len(times) or None), "loop": loop,
            "warmup": warmup}
    if summary.get("loop_seconds") is not None:  # the runner's time-bounded loop
        perf["loop_seconds"] = summary["loop_seconds"]
    streams = summary.get("streams") or 1
    if streams > 1 and summary.get("throughput_wall"):
        # n sessions at once: each call is slower, so ais_bench's per-call figure understates
        # what the CPU delivers; the report's throughput is images / wall time across streams.
        perf.update(throughput=summary["throughput_wall"],
                    throughput_per_call=summary.get("throughput"), streams=streams,
                    throughput_is=f"images / wall time across {streams} streams")
    if summary.get("throughput_spread") is not None:   # the loop judged in windows
        perf["spread"] = {"windows": summary["throughput_windows"],
                          "median": summary["throughput_median"],
                          "spread": summary["throughput_spread"],
                          "is": "(max - min) / median of the windows' images/s"}
    if summary.get("tuning"):   # npuzoo.tune chose the engine and streams
        perf["tuning"] = summary["tuning"]
    if "contended" in summary:
        perf["load"] = {k: summary.get(k) for k in (
            "loadavg_1m_start", "loadavg_1m_end", "cpus", "other_cpu_s", "other_cpu_share",
            "reference_ms", "reference_change", "contended", "contended_rule")}
    return perf


def summary_backend(summary):
    """The engine the runner reports it used (npuzoo.bench --backend/--precision), or None."""
    if not summary.get("backend"):
        return None
    backend = {"name": summary["backend"], "version": summary.get("backend_version")}
    if summary.get("precision"):
        backend["precision"] = summary["precision"]
    return backend


def read_accuracy(path):
    """Top-1..5 in percent from a ModelZoo accuracy JSON."""
    data = read_json(path, "accuracy JSON")
    try:
        values = {item["key"]: item["value"] for item in data["value"]}
        accuracy = {f"top{k}": float(values[f"Top{k} accuracy"].rstrip("%"))
                    for k in range(1, 6)}
        accuracy["images"] = int(values["Number of images"])
        accuracy["classes"] = int(values["Number of classes"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a ModelZoo accuracy JSON (expected Top1..Top5 "
                        "accuracy entries)") from None
    return accuracy


# -- checking the run is whole --------------------------------------------------------------

RESULT_SUFFIX = "_0.txt"  # ais_bench --outfmt TXT: <stem>_<output index>.txt, output 0 = logits


def result_files(results_dir):
    """The `<stem>_0.txt` files of an inference results folder, sorted."""
    try:
        names = os.listdir(results_dir)
    except FileNotFoundError:
        raise UserError(f"--results-dir {results_dir}: no such folder; run the inference "
                        "step") from None
    except OSError as err:
        raise UserError(f"--results-dir {results_dir}: cannot list it "
                        f"({err.strerror or err})") from None
    return sorted(n for n in names if n.endswith(RESULT_SUFFIX) and not n.startswith("."))


def prep_files(prep_dir):
    """The number of preprocessed `<stem>.bin` files (temporary `.*.tmp` names not counted)."""
    try:
        names = os.listdir(prep_dir)
    except FileNotFoundError:
        raise UserError(f"--prep-dir {prep_dir}: no such folder; run the preprocess "
                        "step") from None
    except OSError as err:
        raise UserError(f"--prep-dir {prep_dir}: cannot list it ({err.strerror or err})") from None
    return sum(1 for n in names if n.endswith(".bin") and not n.startswith("."))


def check_counts(dataset, accuracy, results=None, prep=None, paths=None):
    """UserError naming every number when the images selected, preprocessed, inferred and
    scored are not as many: an image lost or added between steps changes the accuracy's
    denominator silently."""
    paths = paths or {}
    counts = []
    if isinstance(dataset.get("images"), int):
        counts.append((dataset["images"], "selected images (dataset.json images"
                       + (f" in {paths['dataset']})" if paths.get("dataset") else ")")))
    if prep is not None:
        counts.append((prep, f"preprocessed .bin files in {paths.get('prep', '--prep-dir')}"))
    if results is not None:
        counts.append((results, f"result files (<stem>{RESULT_SUFFIX}) in "
                                f"{paths.get('results', '--results-dir')}"))
    if accuracy is not None and isinstance(accuracy.get("images"), int):
        counts.append((accuracy["images"], "images scored (accuracy.json Number of images"
                       + (f" in {paths['accuracy']})" if paths.get("accuracy") else ")")))
    if len({n for n, _ in counts}) > 1:
        listed = ", ".join(f"{n} {what}" for n, what in counts)
        raise UserError(f"image counts differ: {listed}; every selected image must be "
                        "preprocessed, inferred and scored exactly once, so a step lost or "
                        "added images: delete that step's stale output and rerun")


def read_logits(path):
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


def output_check(results_dir, names):
    """How many images had NaN/infinite logits, or logits all equal (in some row)."""
    check = {"result_files": len(names), "nan_images": 0, "constant_images": 0,
             "first_nan": None, "first_constant": None}
    for name in names:
        rows = read_logits(os.path.join(results_dir, name))
        if any(not np.isfinite(row).all() for row in rows):
            check["nan_images"] += 1
            check["first_nan"] = check["first_nan"] or name
        elif any(row.size > 1 and row.min() == row.max() for row in rows):
            check["constant_images"] += 1
            check["first_constant"] = check["first_constant"] or name
    return check


def output_warning(results_dir, check):
    """One line saying what output_check found, or None when the logits look like logits."""
    parts = []
    total = check["result_files"]
    if check["nan_images"]:
        parts.append(f"{check['nan_images']} of {total} images have NaN or infinite logits "
                     f"(first: {check['first_nan']})")
    if check["constant_images"]:
        parts.append(f"{check['constant_images']} of {total} images have all logits equal "
                     f"(first: {check['first_constant']})")
    if not parts:
        return None
    return (f"warning: {results_dir}: " + " and ".join(parts) + "; the model's outputs are "
            "broken (check the export and the preprocessed inputs), so this accuracy means "
            "little; recorded in the report's output_check")


# -- judging -------------------------------------------------------------------------------

def gate(reference, accuracy, dataset, weights, precision="fp32"):
    """The accuracy gate: the published numbers must be met on the full set with published
    weights. It applies to fp32 runs; an int8 run says its drop from the fp32 reference."""
    ref = {"top1": reference.accuracy.top1, "top5": reference.accuracy.top5}
    tolerance = {"top1": reference.tolerance.top1, "top5": reference.tolerance.top5}
    if accuracy is None:
        return {"verdict": "not applicable", "reason": "no accuracy measured"}
    if precision != "fp32":
        drops = [f"{key} {accuracy[key] - ref[key]:+.2f} pts vs the fp32 reference"
                 for key in ("top1", "top5") if ref.get(key) is not None
                 and accuracy.get(key) is not None]
        if weights.get("source") != "published" or not dataset.get("full_validation_set"):
            drops = []
        return {"verdict": "not applicable",
                "reason": f"{precision}: the tolerance applies to fp32 runs"
                          + (f"; {', '.join(drops)}" if drops else "")}
    if weights.get("source") != "published":
        return {"verdict": "not applicable",
                "reason": f"{weights.get('source')} weights, not the published ones"}
    if not dataset.get("full_validation_set"):
        return {"verdict": "not applicable",
                "reason": f"{dataset.get('images')} images, not the full 50,000-image validation set"}
    failures, checked = [], []
    for key in ("top1", "top5"):
        if ref.get(key) is None:
            continue
        floor = ref[key] - tolerance.get(key, 1.0)
        checked.append(key)
        if accuracy[key] < floor:
            failures.append(f"{key} {accuracy[key]:.2f} < {floor:.2f} "
                            f"(reference {ref[key]} - tolerance {tolerance.get(key, 1.0)})")
    if not checked:
        return {"verdict": "not applicable", "reason": "no reference accuracy published"}
    if failures:
        return {"verdict": "fail", "reason": "; ".join(failures)}
    return {"verdict": "pass", "reason": "within tolerance of " + ", ".join(checked)}


def parse_drop(text, where=f"{THROUGHPUT_DROP_ENV}"):
    """A throughput-drop threshold: a fraction (`0.1`) or a percentage (`10%`)."""
    raw = str(text).strip()
    try:
        value = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        value = -1
    if not 0 <= value < 1:
        raise UserError(f"{where}={text}: expected a fraction in [0, 1) such as 0.1, "
                        "or a percentage such as 10%")
    return value


def throughput_drop(flag=None):
    """The threshold in force: the flag, else the environment, else the 10% default."""
    if flag is not None:
        return parse_drop(flag, "--throughput-drop")
    if os.environ.get(THROUGHPUT_DROP_ENV, "").strip():
        return parse_drop(os.environ[THROUGHPUT_DROP_ENV])
    return THROUGHPUT_DROP


def snapshot(report):
    """What a later run is compared with: kept in the comparison, since the file is replaced."""
    perf, acc = report.get("perf") or {}, report.get("accuracy") or {}
    dataset, weights = report.get("dataset") or {}, report.get("weights") or {}
    return {"timestamp": report.get("timestamp"), "commit": report.get("commit"),
            "throughput": perf.get("throughput"),
            "top1": acc.get("top1"), "top5": acc.get("top5"),
            "dataset": {k: dataset.get(k) for k in ("name", "images", "labels_sha256")},
            "weights": weights.get("source"), "spread": measured_spread(report)}


def measured_spread(report):
    """The spread of the perf step's windows (a fraction of their median), 0 when unknown: a
    throughput change within it is noise the run itself saw, never a flagged drop."""
    value = ((report.get("perf") or {}).get("spread") or {}).get("spread")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def contended_run(report):
    """True when the runner saw other processes take the CPU during the perf loop."""
    return bool(((report.get("perf") or {}).get("load") or {}).get("contended"))


def compare(previous, current, drop=THROUGHPUT_DROP):
    """Changes of `current` against the `previous` report of the same model, chip and BS.

    `changes` holds what is flagged: a throughput fall beyond `drop`, and any accuracy change
    on the same labelled images. `previous` keeps the earlier run's numbers, so that
    `compare` can show every change later, and re-judge it with another threshold.
    """
    changes = []
    old_tp = (previous.get("perf") or {}).get("throughput")
    new_tp = (current.get("perf") or {}).get("throughput")
    # A figure measured while other processes took the CPU says little: no regression then.
    contended = contended_run(previous) or contended_run(current)
    limit = max(drop, measured_spread(previous), measured_spread(current))
    if old_tp and new_tp is not None and not contended:
        ratio = new_tp / old_tp
        if ratio < 1 - limit:
            changes.append({"what": "throughput", "old": old_tp, "new": new_tp,
                            "change": f"{(ratio - 1) * 100:+.1f}%", "flag": "drop"})
    old_acc, new_acc = previous.get("accuracy") or {}, current.get("accuracy") or {}
    if old_acc and new_acc and previous.get("dataset", {}).get("labels_sha256") == \
            current.get("dataset", {}).get("labels_sha256"):
        for key in ("top1", "top5"):
            if old_acc.get(key) != new_acc.get(key):
                changes.append({"what": key, "old": old_acc.get(key), "new": new_acc.get(key),
                                "change": f"{new_acc[key] - old_acc[key]:+.2f} pts",
                                "flag": "accuracy"})
    return {"against": previous.get("timestamp"), "threshold": drop,
            **({"spread": limit} if limit > drop else {}),
            "previous": snapshot(previous), "changes": changes,
            **({"contended": True} if contended else {})}


def _number(value, digits):
    return "—" if value is None else f"{value:.{digits}f}"


def change_rows(report, drop):
    """The rows `compare` prints for one report: every throughput or accuracy change."""
    comparison = report.get("comparison") or {}
    previous = comparison.get("previous")
    key = (report.get("model"), report.get("soc"), report.get("batch_size"))
    if previous is None:  # recorded before snapshots existed: the flagged changes only
        return [key + (c["what"], str(c["old"]), str(c["new"]), c["change"], c["flag"])
                for c in comparison.get("changes") or []]
    rows = []
    old_tp = previous.get("throughput")
    new_tp = (report.get("perf") or {}).get("throughput")
    if old_tp and new_tp is not None and new_tp != old_tp:
        ratio = new_tp / old_tp
        spread = max(previous.get("spread") or 0.0, measured_spread(report))
        flag = f"drop > {drop * 100:g}%" if ratio < 1 - max(drop, spread) else \
            f"within the runs' spread ({spread:.0%})" if ratio < 1 - drop else ""
        rows.append(key + ("throughput", _number(old_tp, 1), _number(new_tp, 1),
                           f"{(ratio - 1) * 100:+.1f}%", flag))
    acc = report.get("accuracy") or {}
    same_images = (previous.get("dataset") or {}).get("labels_sha256") == \
        (report.get("dataset") or {}).get("labels_sha256")
    for name in ("top1", "top5"):
        old, new = previous.get(name), acc.get(name)
        if old is None or new is None or old == new:
            continue
        if same_images:
            rows.append(key + (name, _number(old, 2), _number(new, 2),
                               f"{new - old:+.2f} pts", "accuracy"))
        else:
            rows.append(key + (name, _number(old, 2), _number(new, 2),
                               f"{new - old:+.2f} pts", "other images"))
    return rows


def load_all(reports_dir=REPORTS_DIR):
    """Every readable current report under reports_dir/<model>/*.json and aipp/*.json, sorted
    by model, chip and batch size (a file that is no report is skipped with a warning)."""
    return [report for _, report in _current_reports(reports_dir)]


def model_reports(reports_dir, model):
    """[(path, report)] of one model's current reports (reports/<model>/ and its variant
    folders), readable ones only."""
    found = []
    for folder in history.report_folders(os.path.join(reports_dir, model)):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".json") and not name.startswith(".") and os.path.isfile(path):
                report = read_report(path)
                if report is not None:
                    found.append((path, report))
    return found


def _current_reports(reports_dir):
    found = []
    if not os.path.isdir(reports_dir):
        return found
    for model in sorted(os.listdir(reports_dir)):
        found += model_reports(reports_dir, model)
    found.sort(key=lambda item: (str(item[1].get("model")), str(item[1].get("soc")),
                                 item[1].get("batch_size") or 0, history.variant(item[1])))
    return found


def latest_runs(reports_dir=REPORTS_DIR):
    """The latest run of every like-for-like group (history.like_key): from each current
    report's history, and the current reports themselves where they have none."""
    latest = {}
    for dest, current in _current_reports(reports_dir):
        runs = [report for _, report in history.entries(dest, read_report)] or [current]
        for report in runs:
            key = (report.get("model"),) + history.like_key(report)
            if key not in latest or str(report.get("timestamp") or "") >= \
                    str(latest[key].get("timestamp") or ""):
                latest[key] = report
    return sorted(latest.values(), key=lambda r: (str(r.get("model")), str(r.get("soc")),
                                                  r.get("batch_size") or 0))


def format_table(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header] + rows)


def compare_table(reports_dir=REPORTS_DIR, drop=THROUGHPUT_DROP):
    """The text `make compare` prints, and the number of flagged changes."""
    rows = []
    for report in latest_runs(reports_dir):
        comparison = report.get("comparison") or {}
        runs = f"{(comparison.get('against') or '?')[:10]} -> {(report.get('timestamp') or '?')[:10]}"
        rows.extend(row + (runs,) for row in change_rows(report, drop))
    where = os.path.relpath(reports_dir) if os.path.isabs(reports_dir) else reports_dir
    if not rows:
        return (f"no run-over-run changes recorded in {where}/ (a run records them against "
                "the latest earlier run of the same model, chip, machine, batch size, images "
                "and weights)"), 0
    flagged = sum(1 for row in rows if row[7] == "accuracy" or row[7].startswith("drop"))
    header = ("model", "chip", "BS", "what", "previous", "now", "change", "flag", "runs")
    table = format_table(header, [tuple("" if c is None else c for c in row) for row in rows])
    summary = (f"{flagged} flagged change(s) (throughput drop beyond {drop * 100:g}%, or beyond "
               "the spread the runs measured if larger, or an "
               f"accuracy change on the same images) in {len(rows)} change(s) recorded in {where}/")
    return table + "\n" + summary, flagged


# -- environment ---------------------------------------------------------------------------

def package_versions(names=("torch", "torchvision", "onnx", "onnxruntime", "numpy", "pillow")):
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=config.REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        # Generated outputs (reports, READMEs, plots) change during a sweep: not "dirty".
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!reports", ":!README.md", ":!models/*/README.md",
                                ":!models/*/*.png"],
                               cwd=config.REPO_ROOT, capture_output=True, text=True).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (subprocess.SubprocessError, OSError):
        return None


# -- the report ----------------------------------------------------------------------------

def build(model, soc, batch_size, dataset, weights, accuracy, perf, source=None,
          backend=None, device=None, environment=None, output_check=None, calibration=None):
    cfg = config.load(model)
    if accuracy is not None:
        accuracy = dict(accuracy, meaningful=weights.get("source") != "random")
    device = device or cpu_description()
    report = {
        "schema": SCHEMA_VERSION,
        "model": model,
        "soc": soc,
        "device": device,
        "machine": history.fingerprint(soc, device, cpu_isa() if soc == "cpu" else None),
        "batch_size": batch_size,
        "backend": backend or {"name": "onnxruntime",
                               "version": package_versions(["onnxruntime"])["onnxruntime"]},
        "commit": git_commit(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source or {"kind": "folder", "note": "network defined in models/" + model},
        "weights": weights,
        "dataset": {k: dataset.get(k) for k in ("name", "images", "labelled_images", "subset",
                                                "full_validation_set", "labels_sha256")},
        "accuracy": accuracy,
        "gate": gate(cfg.reference, accuracy, dataset, weights,
                     (backend or {}).get("precision") or "fp32"),
        "perf": perf,
        "environment": environment or package_versions(),
    }
    if output_check is not None:  # only with --results-dir: earlier reports stay as they were
        report["output_check"] = output_check
    if calibration is not None:  # PRECISION=int8: the images the ranges came from
        report["calibration"] = calibration
    return report


def load(path):
    """A report of any schema version, upgraded to the current field names."""
    data = read_json(path, "report")
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a report (a JSON {type(data).__name__}, not an object)")
    data.setdefault("schema", 0)
    data.setdefault("gate", {"verdict": "not applicable", "reason": "not recorded"})
    data.setdefault("comparison", None)
    return data


# -- reading reports written by anyone -------------------------------------------------------
# Field types as the readers use them. A present value of another type is coerced when that
# is unambiguous ("4" -> 4, 4.0 -> 4, "69.5%" -> 69.5) and dropped otherwise; missing optional
# fields stay missing (earlier schema versions lack some), and readers use their defaults.

STR, INT, NUMBER, BOOL, ANY = "a string", "an integer", "a number", "true or false", "any"
LATENCY = {k: NUMBER for k in ("mean", "p50", "p90", "p99", "min", "max")}
SCHEMA = {
    "schema": INT, "model": STR, "soc": STR, "device": STR, "batch_size": INT,
    "machine": {"id": STR, "description": STR, "isa": STR},
    "placement": {"runner": STR, "node": STR, "node_ip": STR, "node_id": STR, "device": STR},
    "timings": {"unit": STR, "what": STR, "steps": {}},
    "calibration": {"dataset": STR, "images": INT, "offset": INT, "labels_sha256": STR,
                    "method": STR},
    "backend": {"name": STR, "version": STR},
    "commit": STR, "timestamp": STR,
    "source": {"kind": STR},
    "weights": {"source": STR},
    "dataset": {"name": STR, "images": INT, "labelled_images": INT, "subset": BOOL,
                "full_validation_set": BOOL, "labels_sha256": STR},
    "accuracy": {"top1": NUMBER, "top2": NUMBER, "top3": NUMBER, "top4": NUMBER,
                 "top5": NUMBER, "images": INT, "classes": INT, "meaningful": BOOL},
    "gate": {"verdict": STR, "reason": STR},
    "perf": {"throughput": NUMBER, "latency_ms": LATENCY, "samples": INT, "loop": INT,
             "warmup": INT, "loop_seconds": NUMBER, "streams": INT, "throughput_per_call": NUMBER,
             "throughput_is": STR,
             "spread": {"windows": ANY, "median": NUMBER, "spread": NUMBER, "is": STR},
             "tuning": {"cache": STR, "path": STR, "key": STR, "seconds": NUMBER,
                        "chosen": {"engine": STR, "streams": INT, "threads_per_stream": INT,
                                   "hint": STR}, "candidates": ANY},
             "load": {"loadavg_1m_start": NUMBER, "loadavg_1m_end": NUMBER, "cpus": INT,
                      "other_cpu_s": NUMBER, "other_cpu_share": NUMBER, "reference_ms": ANY,
                      "reference_change": NUMBER, "contended": BOOL, "contended_rule": STR}},
    "int8_agreement": {"images": INT, "top1": NUMBER, "top5": NUMBER,
                       "max_abs_logit_error": NUMBER, "mean_abs_logit_error": NUMBER,
                       "reference": STR, "meaningful": BOOL},
    "output_check": {"result_files": INT, "preprocessed_files": INT, "nan_images": INT,
                     "constant_images": INT, "first_nan": STR, "first_constant": STR},
    "environment": {},
    "comparison": {"against": STR, "threshold": NUMBER, "spread": NUMBER,
                   "previous": {"timestamp": STR, "commit": STR, "throughput": NUMBER,
                                "top1": NUMBER, "top5": NUMBER, "weights": STR, "spread": NUMBER,
                                "dataset": {"name": STR, "images": INT, "labels_sha256": STR}},
                   "changes": [{"what": STR, "old": ANY, "new": ANY, "change": STR,
                                "flag": STR}], "contended": BOOL},
}
_INVALID = object()
_warned = set()


def warn(line):
    """Print a `warning:` line on stderr, once per process."""
    if line not in _warned:
        _warned.add(line)
        print(line, file=sys.stderr)


def _coerce(value, kind):
    """`value` as `kind`, or _INVALID."""
    if kind == ANY or value is None:
        return value
    if kind == STR:
        return value if isinstance(value, str) else \
            str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else _INVALID
    if kind == BOOL:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%")) if kind == NUMBER else \
                int(value.strip()) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else _INVALID
        except ValueError:
            return _INVALID
        if value is _INVALID:
            return value
    if kind == INT:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _INVALID
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else _INVALID
    return _INVALID


def _shown(value):
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) \
        else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalize(data, schema, where, problems):
    """Fix `data` (a dict) in place against `schema`, noting each change in `problems`."""
    for key, kind in schema.items():
        if key not in data or data[key] is None:
            continue
        value, name = data[key], f"{where}{key}"
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                problems.append(f"{name} {_shown(value)} is not an object, ignored")
                del data[key]
            elif kind:
                _normalize(value, kind, name + ".", problems)
        elif isinstance(kind, list):
            if not isinstance(value, list):
                problems.append(f"{name} {_shown(value)} is not a list, ignored")
                del data[key]
                continue
            kept = []
            for item in value:
                if isinstance(item, dict):
                    for field, field_kind in kind[0].items():
                        if field_kind == STR:  # shown as text: a string, "" when absent
                            fixed = _coerce(item.get(field), STR)
                            item[field] = "" if fixed is None or fixed is _INVALID else fixed
                        else:
                            item.setdefault(field, None)
                    kept.append(item)
                else:
                    problems.append(f"{name} entry {_shown(item)} is not an object, ignored")
            data[key] = kept
        else:
            fixed = _coerce(value, kind)
            if fixed is _INVALID:
                problems.append(f"{name} {_shown(value)} is not {kind}, ignored")
                del data[key]
            elif fixed != value or type(fixed) is not type(value) and kind != NUMBER:
                problems.append(f"{name} {_shown(value)} read as {_shown(fixed)}")
                data[key] = fixed


def read_report(path, warn=warn):
    """A report for readers, whatever the file holds: wrongly typed fields coerced or dropped,
    each noted in one `warning:` line naming the file; None (with a warning) for a file that
    cannot be read as a report at all."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        warn(f"warning: {path}: not a readable JSON report ({reason}); skipped")
        return None
    if not isinstance(data, dict):
        warn(f"warning: {path}: not a report (a JSON {type(data).__name__}, not an object); "
             "skipped")
        return None
    problems = []
    _normalize(data, SCHEMA, "", problems)
    # what every reader needs: model (the folder), chip and batch size (the file name)
    named = re.fullmatch(r"(?P<soc>.+)_bs(?P<bs>\d+)\.json", name)
    if not data.get("model"):
        data["model"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
        problems.append(f"no model; read as {data['model']} (its folder)")
    if not data.get("soc"):
        if not named:
            warn(f"warning: {path}: no soc, and the file name is not <soc>_bs<N>.json; skipped")
            return None
        data["soc"] = named.group("soc")
        problems.append(f"no soc; read as {data['soc']} (the file name)")
    if not isinstance(data.get("batch_size"), int) or data["batch_size"] < 1:
        if not named:
            warn(f"warning: {path}: " + "; ".join(problems + ["no usable batch_size"])
                 + "; skipped")
            return None
        data["batch_size"] = int(named.group("bs"))
        problems.append(f"batch_size read as {data['batch_size']} (the file name)")
    machine = data.get("machine")
    if isinstance(machine, dict) and not all(isinstance(machine.get(k), str)
                                             for k in ("id", "description")):
        problems.append("machine incomplete; derived from device")
        del data["machine"]
    refused = out_of_bounds(data)
    if refused:
        warn(f"warning: {path}: " + "; ".join(problems + [refused]) + "; skipped")
        return None
    data.setdefault("schema", 0)
    if not isinstance(data.get("gate"), dict):
        data["gate"] = {"verdict": "not applicable", "reason": "not recorded"}
    data.setdefault("comparison", None)
    if problems:
        warn(f"warning: {path}: " + "; ".join(problems))
    return data


# What a report may hold, checked as user input is: its ids name files and plots (a soc of
# "x/../../photo" would point a plot outside the repository), its text lands in Markdown.
MODEL_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT = 2000  # characters of any one string (the longest written, a rule, is ~300)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def valid_soc(soc) -> bool:
    return soc == "cpu" or bool(isinstance(soc, str) and ASCEND_SHAPE.match(soc))


def out_of_bounds(data: dict):
    """Why a (type-normalised) report cannot be used, or None: an id of the wrong shape, a
    batch size `make` would refuse, a negative or non-finite figure, an over-long string or
    one with control characters (a newline would start a Markdown heading)."""
    if not valid_soc(data.get("soc")):
        return f"soc {_shown(data.get('soc'))} is not cpu or an Ascend soc_version"
    if not MODEL_ID.match(str(data.get("model"))):
        return f"model {_shown(data.get('model'))} is not a model name"
    if not BATCH_SIZE.match(str(data.get("batch_size"))):
        return f"batch_size {_shown(data.get('batch_size'))} is out of range (1 to 9999999)"
    machine_id = (data.get("machine") or {}).get("id")
    if machine_id is not None and not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", machine_id):
        return f"machine.id {_shown(machine_id)} is not an id"  # it names history files
    dataset = data.get("dataset") or {}
    if dataset.get("full_validation_set") and not isinstance(dataset.get("images"), int):
        return "dataset.full_validation_set without a number of dataset.images"
    for key in ("images", "labelled_images"):
        if isinstance(dataset.get(key), int) and dataset[key] < 0:
            return f"dataset.{key} {dataset[key]} is negative"
    perf, accuracy = data.get("perf") or {}, data.get("accuracy") or {}
    figures = [("perf.throughput", perf.get("throughput"))] + [
        (f"perf.latency_ms.{k}", v) for k, v in (perf.get("latency_ms") or {}).items()]
    for name, value in figures:
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
            return f"{name} {_shown(value)} is not a finite number >= 0"
    for key in ("top1", "top2", "top3", "top4", "top5"):
        value = accuracy.get(key)
        if isinstance(value, (int, float)) and not 0 <= value <= 100:
            return f"accuracy.{key} {_shown(value)} is not a percentage"
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and (len(item) > MAX_TEXT or CONTROL.search(item)):
            return (f"the text {_shown(item)} is too long or holds control characters "
                    "(a newline, ...)")
    return None


def dumps(report):
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def _same_run(a, b):
    """Two reports describe the same run when they differ only in when they were written."""
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timestamp", "comparison")}
    return strip(a) == strip(b)


def _label(report):
    return f"{report.get('model')} {report.get('soc')} bs{report.get('batch_size')}"


def _what(report):
    weights = (report.get("weights") or {}).get("source") or "unrecorded"
    return f"{history.scope(report)[1]}, {weights} weights, {history.owner_words(report)}"


def _current(path):
    """The report at `path`, or None (absent, or unreadable: one warning line)."""
    if not os.path.isfile(path):
        return None
    found = read_report(path)
    if found is None:
        warn(f"warning: {path}: replaced without a run-over-run comparison")
    return found


def _best_of_owner(report, past):
    """(path, run) of the most complete, then latest, recorded run of `report`'s owner."""
    own = [(path, r) for path, r in past if history.same_owner(r, report)]
    return max(own, default=(None, None), key=lambda item: (
        history.completeness(item[1]), str(item[1].get("timestamp") or "")))


def _owner_file(dest, report):
    """The current report file of `report`'s owner beside the committed `dest`: the one that
    holds a run of that owner already (an older report matches more owners), else a new name
    (history.own_path)."""
    folder, stem = os.path.split(os.path.splitext(dest)[0])
    for name in sorted(os.listdir(folder or ".") if os.path.isdir(folder or ".") else ()):
        path = os.path.join(folder, name)
        if re.fullmatch(re.escape(stem) + r"\.[0-9a-f]+\.json", name):
            there = read_report(path)
            if there is not None and history.same_owner(there, report):
                return path
    return history.own_path(dest, report)


def _promote(report, dest, committed):
    """FORCE=1: `report` becomes the committed report `dest`; the run it displaces stays the
    current report of its own machine and configuration (history.own_path)."""
    if committed is not None and not history.same_owner(committed, report):
        displaced = _owner_file(dest, committed)
        there = _current(displaced)
        if there is None or history.completeness(committed) >= history.completeness(there):
            atomic_write(displaced, dumps(committed))
        print(f"report: {dest}: the run it held ({history.owner_words(committed)}) stays "
              f"that machine and configuration's current report, {displaced}")
    atomic_write(dest, dumps(report))
    mine = _owner_file(dest, report)
    if os.path.exists(mine):
        os.unlink(mine)  # the owner's current report is `dest` now


def _republish(report, dest, own, current, past, force):
    """A run recorded before (a rerun of make, or a publish killed between its two writes)."""
    recorded = next(((p, r) for p, r in past if _same_run(r, report)), (None, None))
    if recorded[1] is not None:
        report["comparison"] = recorded[1].get("comparison")
    committed = current if own == dest else _current(dest)
    if force and not (committed is not None and _same_run(committed, report)):
        _promote(report, dest, committed)
        print(f"report: {dest}: the recorded run of {report.get('timestamp')} ({_what(report)}) "
              "is the current report now (FORCE=1)")
    elif current is None:
        path, best = _best_of_owner(report, past)
        atomic_write(own, dumps(best or report))
        print(f"report: {own}: was missing; restored from "
              f"{os.path.relpath(path) if path else 'this run'}")
    elif _same_run(current, report):
        print(f"report: {_label(report)}: this run is already recorded and is the current "
              f"report ({own})" + (f"; FORCE=1 makes it {dest}" if own != dest else ""))
    else:
        print(f"report: {_label(report)}: this run is already recorded"
              f"{f' ({os.path.relpath(recorded[0])})' if recorded[0] else ''}; {own} holds a "
              f"more complete run ({_what(current)}); FORCE=1 makes this run {dest}")
    return report, (report.get("comparison") or {}).get("changes") or []


def publish(built_path, dest, drop=None, force=False):
    """Record a built report in the history and make it the current report of its owner
    (history.same_owner: machine and configuration): `dest` when that holds the same owner's
    run or nothing, else history.own_path; unless the owner's current run is more complete.
    FORCE=1 (`force`) makes it `dest` whatever is there. A missing current report is restored
    from the history.

    Returns (report, flagged changes against the latest like-for-like earlier run)."""
    report = load(built_path)
    committed = _current(dest)
    own = dest if committed is None or history.same_owner(committed, report) \
        else _owner_file(dest, report)
    current = committed if own == dest else _current(own)
    past = history.entries(dest, read_report)
    if any(_same_run(r, report) for _, r in past) or \
            any(c is not None and _same_run(c, report) for c in (committed, current)):
        return _republish(report, dest, own, current, past, force)
    previous = history.latest_like(report, [r for _, r in past] +
                                   [c for c in (committed, current) if c is not None])
    flagged = []
    if previous is None:
        report["comparison"] = None
        print(f"report: {_label(report)}: no earlier run with the same machine, images, "
              f"weights and configuration ({history.owner_words(report)}); nothing to compare "
              "with")
    else:
        drop = throughput_drop() if drop is None else drop
        report["comparison"] = compare(previous, report, drop)
        flagged = report["comparison"]["changes"]
        old_tp = (previous.get("perf") or {}).get("throughput")
        new_tp = (report.get("perf") or {}).get("throughput")
        if old_tp and new_tp is not None:
            print(f"report: {_label(report)}: throughput {old_tp:.1f} -> {new_tp:.1f} images/s "
                  f"({(new_tp / old_tp - 1) * 100:+.1f}%) since the like-for-like run of "
                  f"{previous.get('timestamp')}")
        if report["comparison"].get("contended"):
            print(f"report: {_label(report)}: throughput not judged: other processes took the "
                  "CPU during this run's perf loop or the earlier run's (STRICT=1 fails such a "
                  "run)")
        for change in flagged:
            old, new = change["old"], change["new"]
            digits = 1 if change["what"] == "throughput" else 2
            shown = [f"{v:.{digits}f}" if isinstance(v, (int, float)) else str(v)
                     for v in (old, new)]
            print(f"report: {_label(report)}: {change['flag'].upper()}: {change['what']} "
                  f"{shown[0]} -> {shown[1]} ({change['change']})")
    kept = os.path.relpath(history.record(report, dest))
    if current is None:  # missing (or never written): the owner's best recorded run
        restored_from, current = _best_of_owner(report, past)
    acc = report.get("accuracy") or {}
    perf = report.get("perf") or {}
    figures = (f"top1 {_rounded(acc.get('top1'))} top5 {_rounded(acc.get('top5'))} "
               f"throughput {perf.get('throughput') or 0:.1f} images/s")
    numbers = f"{figures}; gate {report['gate']['verdict']} ({report['gate']['reason']})"
    if force:
        _promote(report, dest, committed)
        print(f"report: {dest}: {numbers} (FORCE=1)")
    elif current is None or history.completeness(report) >= history.completeness(current):
        atomic_write(own, dumps(report))
        if own == dest:
            print(f"report: {dest}: {numbers}")
        else:
            print(f"report: {dest} kept (the run of {history.owner_words(committed)}); this run "
                  f"({history.owner_words(report)}; {figures}) is the current report of its "
                  f"machine and configuration, {own}; FORCE=1 makes it {dest}")
    else:
        if not os.path.isfile(own):
            atomic_write(own, dumps(current))
            print(f"report: {own}: was missing; restored from {os.path.relpath(restored_from)}")
        print(f"report: {own} kept: it holds a more complete run ({_what(current)}); this run "
              f"({_what(report)}; {figures}) is recorded in {kept}; FORCE=1 makes it {dest}")
    return report, flagged


def _rounded(value):
    return "—" if value is None else f"{value:.2f}"


def with_manifest(argv):
    """`write --manifest run.json ...`: the manifest's {option: value} become flags placed
    before the command line's own, so that a flag given explicitly wins."""
    if "--manifest" not in argv:
        return argv
    at = argv.index("--manifest")
    if at + 1 >= len(argv):
        return argv  # argparse says what is missing
    manifest = read_json(argv[at + 1], "run manifest")
    if not isinstance(manifest, dict):
        raise UserError(f"{argv[at + 1]}: expected a JSON object of option: value")
    flags = []
    for key, value in manifest.items():
        if value is None or value is False or value == "":
            continue  # (0 is a value: WARMUP=0)
        flags.append("--" + key.replace("_", "-"))
        if value is not True:
            flags.append(str(value))
    rest = argv[:at] + argv[at + 2:]
    return rest[:1] + flags + rest[1:]


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.report",
                                     description="Write and publish run reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="gather one run's results into a report")
    write.add_argument("--model", required=True)
    write.add_argument("--soc", required=True)
    write.add_argument("--bs", type=int, required=True)
    write.add_argument("--dataset", required=True, help="dataset.json of the run folder")
    write.add_argument("--weights", required=True, help="weights.json")
    write.add_argument("--accuracy", required=True, help="ModelZoo accuracy JSON")
    write.add_argument("--perf-dir", required=True, help="--output folder of the perf run")
    write.add_argument("--perf-dirname", default="perf")
    write.add_argument("--perf-log", help="printed log of the perf run (fallback)")
    write.add_argument("--loop", type=int, required=True)
    write.add_argument("--warmup", type=int, required=True)
    write.add_argument("--source", help="source.json written by the source step")
    write.add_argument("--extra", help="JSON with backend/device/environment overrides")
    write.add_argument("--environment",
                       help="JSON of package versions where the steps ran elsewhere (docker)")
    write.add_argument("--results-dir", metavar="DIR",
                       help="the inference results folder (one <stem>_0.txt per image): its "
                            "count is checked and its logits read for NaN or constant rows")
    write.add_argument("--prep-dir", metavar="DIR",
                       help="the preprocessed .bin folder: its count is checked")
    write.add_argument("--fp32-model", metavar="ONNX",
                       help="an int8 run: the fp32 export its logits (--results-dir) are "
                            "compared with on the first images (--prep-dir): int8_agreement")
    write.add_argument("--steps", metavar="LOG",
                       help="build/<model>/steps.jsonl: this run's step timings go into the "
                            "report (the run is NPUZOO_RUN_ID)")
    write.add_argument("--out", required=True)
    write.add_argument("--manifest", metavar="JSON",
                       help="the run folder's manifest (mk/pipeline.mk writes run.json): "
                            "{option: value} for the options above; flags given win")
    pub = sub.add_parser("publish", help="copy a built report into reports/")
    pub.add_argument("built")
    pub.add_argument("dest")
    pub.add_argument("--no-gate", action="store_true", help="do not fail on a failed gate")
    pub.add_argument("--force", action="store_true",
                     help="make this run the current report even if the one there is more "
                          "complete (FORCE=1)")
    pub.add_argument("--strict", action="store_true",
                     help="exit 1 when a throughput drop or an accuracy change is flagged "
                          "against the latest like-for-like run (STRICT=1)")
    pub.add_argument("--throughput-drop", metavar="FRACTION",
                     help=f"flag a throughput fall beyond this (default {THROUGHPUT_DROP:g}, "
                          f"or ${THROUGHPUT_DROP_ENV})")
    ver = sub.add_parser("versions", help="package versions here, merged with other images'")
    ver.add_argument("--merge", action="append", default=[],
                     help="JSON of versions seen elsewhere; a version found there wins over none")
    ver.add_argument("--out", required=True)
    cmp_ = sub.add_parser("compare", help="print the run-over-run changes recorded in reports/")
    cmp_.add_argument("--reports", default=REPORTS_DIR, help="reports folder (default: reports/)")
    cmp_.add_argument("--throughput-drop", metavar="FRACTION",
                      help=f"flag a throughput fall beyond this (default {THROUGHPUT_DROP:g}, "
                           f"or ${THROUGHPUT_DROP_ENV})")
    cmp_.add_argument("--strict", action="store_true",
                      help="exit 1 when any change is flagged")
    args = parser.parse_args(with_manifest(sys.argv[1:] if argv is None else list(argv)))

    if args.command == "compare":
        text, flagged = compare_table(args.reports, throughput_drop(args.throughput_drop))
        print(text)
        if flagged and args.strict:
            sys.exit(1)
        return

    if args.command == "versions":
        versions = package_versions()
        for path in args.merge:
            for name, version in read_json(path, "package versions").items():
                if version and not versions.get(name):
                    versions[name] = version
        atomic_write(args.out, json.dumps(versions, indent=2) + "\n")
        return

    if args.command == "write":
        extra = read_json(args.extra, "backend description") if args.extra else {}
        if args.environment:
            extra["environment"] = {**extra.get("environment", {}),
                                    **read_json(args.environment, "environment description")}
        summary = read_bench_summary(args.perf_dir, args.perf_dirname, args.perf_log)
        dataset = read_json(args.dataset, "dataset description")
        if not isinstance(dataset, dict):
            raise UserError(f"{args.dataset}: not a dataset description (a JSON object)")
        accuracy = read_accuracy(args.accuracy)
        results = result_files(args.results_dir) if args.results_dir else None
        prep = prep_files(args.prep_dir) if args.prep_dir else None
        check_counts(dataset, accuracy, None if results is None else len(results), prep,
                     {"dataset": args.dataset, "accuracy": args.accuracy,
                      "results": args.results_dir, "prep": args.prep_dir})
        check = None
        if results is not None:
            check = output_check(args.results_dir, results)
            check["preprocessed_files"] = prep
            line = output_warning(args.results_dir, check)
            if line:
                print(line, file=sys.stderr)
        engine = summary_backend(summary)
        if engine and args.soc == "cpu":
            # The runner's summary says which engine ran; --extra adds what it cannot know (aipp).
            extra["backend"] = {**(extra.get("backend") or {}), **engine}
        report = build(
            args.model, args.soc, args.bs,
            dataset=dataset,
            weights=read_json(args.weights, "weights description"),
            accuracy=accuracy,
            perf=perf_from_summary(summary, args.loop, args.warmup),
            source=read_json(args.source, "source description") if args.source else None,
            output_check=check, **extra)
        if args.fp32_model and results:
            from npuzoo.quantize import agreement

            found = agreement(args.fp32_model, args.prep_dir, args.results_dir, results)
            # random weights give near-equal logits: which class leads is noise, like accuracy
            found["meaningful"] = (report.get("weights") or {}).get("source") != "random"
            report["int8_agreement"] = found
            print(f"int8: agreement with fp32 on {found['images']} images: top-1 "
                  f"{found['top1']:.1f}%, top-5 {found['top5']:.1f}%, logit error max "
                  f"{found['max_abs_logit_error']:g}, mean {found['mean_abs_logit_error']:g}"
                  + ("" if found["meaningful"] else " (random weights: not meaningful)"))
        if args.steps:
            from npuzoo import steps

            found = steps.entries(args.steps, os.environ.get(steps.RUN_ENV, ""))
            if found:
                report["timings"] = {"unit": "s", "what": "wall time of each step this run did "
                                     "(shared steps and this batch size's)",
                                     "steps": steps.totals(found, args.bs)}
        atomic_write(args.out, dumps(report))
    else:
        report, flagged = publish(args.built, args.dest, throughput_drop(args.throughput_drop),
                                  force=args.force)
        if args.strict and (report.get("comparison") or {}).get("contended"):
            print(f"error: {_label(report)}: STRICT=1 could not judge this run: other processes "
                  "took the CPU during its perf loop or the earlier run's, so a throughput drop "
                  "cannot be told from the load; rerun it on a quiet machine", file=sys.stderr)
            sys.exit(1)
        if flagged and args.strict:
            print(f"error: {_label(report)}: {len(flagged)} flagged change(s) against the "
                  "latest like-for-like run (STRICT=1); see above", file=sys.stderr)
            sys.exit(1)
        if report["gate"]["verdict"] == "fail" and not args.no_gate:
            print(f"error: accuracy gate failed for {args.dest}: {report['gate']['reason']}",
                  file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
