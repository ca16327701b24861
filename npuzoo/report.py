"""Results files: `reports/<model>/<SOC>_bs<BS>.json`, one per (chip, batch size).

`write` gathers one run's pieces (dataset, weights, accuracy JSON, ais_bench summary) into a
report under build/; `publish` copies it to reports/ when it is new, after comparing it with
the report it replaces (run-over-run), and exits non-zero when the accuracy gate fails;
`compare` (`make compare`) prints the table of run-over-run changes recorded in reports/.
Readers (`load`) accept files written by earlier schema versions.

The throughput-drop threshold is 10% unless `--throughput-drop` or the environment variable
NPUZOO_THROUGHPUT_DROP says otherwise (a fraction, `0.05`, or a percentage, `5%`).
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import numpy as np

from npuzoo import config
from npuzoo.errors import UserError, atomic_write, cli
from npuzoo.soc import cpu_description

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
    return {"throughput": summary.get("throughput"), "latency_ms": latency or None,
            "samples": stats.get("count", len(times) or None), "loop": loop,
            "warmup": warmup}


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


# -- judging -------------------------------------------------------------------------------

def gate(reference, accuracy, dataset, weights):
    """The accuracy gate: the published numbers must be met on the full set with published weights."""
    ref = (reference or {}).get("accuracy") or {}
    tolerance = (reference or {}).get("tolerance") or {}
    if accuracy is None:
        return {"verdict": "not applicable", "reason": "no accuracy measured"}
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
            "weights": weights.get("source")}


def compare(previous, current, drop=THROUGHPUT_DROP):
    """Changes of `current` against the `previous` report of the same model, chip and BS.

    `changes` holds what is flagged: a throughput fall beyond `drop`, and any accuracy change
    on the same labelled images. `previous` keeps the earlier run's numbers, so that
    `compare` can show every change later, and re-judge it with another threshold.
    """
    changes = []
    old_tp = (previous.get("perf") or {}).get("throughput")
    new_tp = (current.get("perf") or {}).get("throughput")
    if old_tp and new_tp is not None:
        ratio = new_tp / old_tp
        if ratio < 1 - drop:
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
            "previous": snapshot(previous), "changes": changes}


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
        flag = f"drop > {drop * 100:g}%" if ratio < 1 - drop else ""
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
    """Every report under reports_dir/<model>/*.json, sorted by model, chip and batch size."""
    reports = []
    if not os.path.isdir(reports_dir):
        return reports
    for model in sorted(os.listdir(reports_dir)):
        folder = os.path.join(reports_dir, model)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json") and not name.startswith("."):
                reports.append(load(os.path.join(folder, name)))
    reports.sort(key=lambda r: (str(r.get("model")), str(r.get("soc")),
                                r.get("batch_size") or 0))
    return reports


def format_table(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header] + rows)


def compare_table(reports_dir=REPORTS_DIR, drop=THROUGHPUT_DROP):
    """The text `make compare` prints, and the number of flagged changes."""
    rows = []
    for report in load_all(reports_dir):
        comparison = report.get("comparison") or {}
        runs = f"{(comparison.get('against') or '?')[:10]} -> {(report.get('timestamp') or '?')[:10]}"
        rows.extend(row + (runs,) for row in change_rows(report, drop))
    where = os.path.relpath(reports_dir) if os.path.isabs(reports_dir) else reports_dir
    if not rows:
        return (f"no run-over-run changes recorded in {where}/ (a report records them when "
                "`make <model>` replaces an earlier run of the same model, chip and batch size)"), 0
    flagged = sum(1 for row in rows if row[7] == "accuracy" or row[7].startswith("drop"))
    header = ("model", "chip", "BS", "what", "previous", "now", "change", "flag", "runs")
    table = format_table(header, [tuple("" if c is None else c for c in row) for row in rows])
    summary = (f"{flagged} flagged change(s) (throughput drop beyond {drop * 100:g}% or an "
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
          backend=None, device=None, environment=None):
    cfg = config.load(model)
    if accuracy is not None:
        accuracy = dict(accuracy, meaningful=weights.get("source") != "random")
    return {
        "schema": SCHEMA_VERSION,
        "model": model,
        "soc": soc,
        "device": device or cpu_description(),
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
        "gate": gate(cfg.get("reference"), accuracy, dataset, weights),
        "perf": perf,
        "environment": environment or package_versions(),
    }


def load(path):
    """A report of any schema version, upgraded to the current field names."""
    data = read_json(path, "report")
    data.setdefault("schema", 0)
    data.setdefault("gate", {"verdict": "not applicable", "reason": "not recorded"})
    data.setdefault("comparison", None)
    return data


def dumps(report):
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def _same_run(a, b):
    """Two reports describe the same run when they differ only in when they were written."""
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timestamp", "comparison")}
    return strip(a) == strip(b)


def publish(built_path, dest, drop=None):
    """Copy a built report to reports/, comparing it with the one it replaces."""
    report = load(built_path)
    previous = load(dest) if os.path.isfile(dest) else None
    if previous is not None and _same_run(previous, report):
        print(f"report: {dest} is up to date")
        return report
    if previous is not None:
        drop = throughput_drop() if drop is None else drop
        report["comparison"] = compare(previous, report, drop)
        old_tp = (previous.get("perf") or {}).get("throughput")
        new_tp = (report.get("perf") or {}).get("throughput")
        if old_tp and new_tp is not None:
            print(f"report: {report['model']} {report['soc']} bs{report['batch_size']}: "
                  f"throughput {old_tp:.1f} -> {new_tp:.1f} images/s "
                  f"({(new_tp / old_tp - 1) * 100:+.1f}%) since the run of "
                  f"{previous.get('timestamp')}")
        for change in report["comparison"]["changes"]:
            print(f"report: {report['model']} {report['soc']} bs{report['batch_size']}: "
                  f"{change['flag'].upper()}: {change['what']} {change['old']} -> "
                  f"{change['new']} ({change['change']})")
    atomic_write(dest, dumps(report))
    acc = report.get("accuracy") or {}
    perf = report.get("perf") or {}
    print(f"report: {dest}: top1 {acc.get('top1')} top5 {acc.get('top5')} "
          f"throughput {perf.get('throughput') or 0:.1f} images/s; "
          f"gate {report['gate']['verdict']} ({report['gate']['reason']})")
    return report


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
    write.add_argument("--out", required=True)
    pub = sub.add_parser("publish", help="copy a built report into reports/")
    pub.add_argument("built")
    pub.add_argument("dest")
    pub.add_argument("--no-gate", action="store_true", help="do not fail on a failed gate")
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
    args = parser.parse_args(argv)

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
        report = build(
            args.model, args.soc, args.bs,
            dataset=read_json(args.dataset, "dataset description"),
            weights=read_json(args.weights, "weights description"),
            accuracy=read_accuracy(args.accuracy),
            perf=perf_from_summary(summary, args.loop, args.warmup),
            source=read_json(args.source, "source description") if args.source else None,
            **extra)
        atomic_write(args.out, dumps(report))
    else:
        report = publish(args.built, args.dest, throughput_drop(args.throughput_drop))
        if report["gate"]["verdict"] == "fail" and not args.no_gate:
            print(f"error: accuracy gate failed for {args.dest}: {report['gate']['reason']}",
                  file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
