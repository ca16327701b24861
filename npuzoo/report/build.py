"""A report from one run's pieces (`write`), judged by the accuracy gate: the published numbers
must be met on the full set with published weights (fp32 runs; an int8 run says its drop)."""

import datetime
import json
import subprocess

from npuzoo import config, history
from npuzoo.config import ReferenceSpec
from npuzoo.errors import UserError
from npuzoo.report.pieces import Json, read_json
from npuzoo.soc import cpu_description, cpu_isa, package_versions

SCHEMA_VERSION = 1


def _not_applicable(reason: str) -> Json:
    return {"verdict": "not applicable", "reason": reason}


def gate(reference: ReferenceSpec, accuracy: Json | None, dataset: Json, weights: Json,
         precision: str = "fp32") -> Json:
    ref = {"top1": reference.accuracy.top1, "top5": reference.accuracy.top5}
    tolerance = {key: 1.0 if value is None else value for key, value in
                 (("top1", reference.tolerance.top1), ("top5", reference.tolerance.top5))}
    if accuracy is None:
        return _not_applicable("no accuracy measured")
    published = weights.get("source") == "published" and dataset.get("full_validation_set")
    if precision != "fp32":
        drops = [f"{key} {accuracy[key] - value:+.2f} pts vs the fp32 reference"
                 for key, value in ref.items() if value is not None
                 and accuracy.get(key) is not None] if published else []
        return _not_applicable(f"{precision}: the tolerance applies to fp32 runs"
                               + (f"; {', '.join(drops)}" if drops else ""))
    if weights.get("source") != "published":
        return _not_applicable(f"{weights.get('source')} weights, not the published ones")
    if not dataset.get("full_validation_set"):
        return _not_applicable(f"{dataset.get('images')} images, not the full 50,000-image "
                               "validation set")
    floors = {key: value - tolerance[key] for key, value in ref.items() if value is not None}
    failures = [f"{key} {accuracy[key]:.2f} < {floor:.2f} "
                f"(reference {ref[key]} - tolerance {tolerance[key]})"
                for key, floor in floors.items() if accuracy[key] < floor]
    if not floors:
        return _not_applicable("no reference accuracy published")
    if failures:
        return {"verdict": "fail", "reason": "; ".join(failures)}
    return {"verdict": "pass", "reason": "within tolerance of " + ", ".join(floors)}


def git_commit() -> str | None:
    """The checkout's commit, `-dirty` when tracked files but the generated outputs differ."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=config.REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!reports", ":!README.md", ":!models/*/README.md",
                                ":!models/*/*.png"],
                               cwd=config.REPO_ROOT, capture_output=True, text=True).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (subprocess.SubprocessError, OSError):
        return None


def build(model: str, soc: str, batch_size: int, dataset: Json, weights: Json,
          accuracy: Json | None, perf: Json, source: Json | None = None,
          backend: Json | None = None, device: str | None = None,
          environment: Json | None = None, output_check: Json | None = None,
          calibration: Json | None = None, variant: str = "", engine: str | None = None) -> Json:
    if accuracy is not None:
        accuracy = dict(accuracy, meaningful=weights.get("source") != "random")
    device = device or cpu_description()
    report = {
        "schema": SCHEMA_VERSION, "model": model, "soc": soc, "device": device,
        "machine": history.fingerprint(soc, device, cpu_isa() if soc == "cpu" else None),
        "batch_size": batch_size,
        # the plan's variant label and engine: the report's folder and README headings read them
        "variant": variant, "engine": engine or (backend or {}).get("name"),
        "backend": backend or {"name": "onnxruntime",
                               "version": package_versions(["onnxruntime"])["onnxruntime"]},
        "commit": git_commit(),
        "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source or {"kind": "folder", "note": "network defined in models/" + model},
        "weights": weights,
        "dataset": {k: dataset.get(k) for k in ("name", "images", "labelled_images", "subset",
                                                "full_validation_set", "labels_sha256")},
        "accuracy": accuracy, "gate": gate(config.load(model).reference, accuracy, dataset, weights,
                                           (backend or {}).get("precision") or "fp32"),
        "perf": perf, "environment": environment or package_versions(),
    }
    if output_check is not None:  # only with --results-dir: earlier reports stay as they were
        report["output_check"] = output_check
    if calibration is not None:  # PRECISION=int8: the images the ranges came from
        report["calibration"] = calibration
    return report


def load(path: str) -> Json:
    """A report `write` built (publish judges and places it)."""
    data = read_json(path, "report")
    if not isinstance(data, dict) or not isinstance(data.get("gate"), dict):
        raise UserError(f"{path}: not a report built by `report write`; rebuild it")
    data.setdefault("comparison", None)
    return data


def dumps(report: Json) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"
