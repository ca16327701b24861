"""Reading reports for `compare`, the README renderer and `publish`: wrongly typed fields are
coerced where unambiguous ("4" -> 4, "69.5%" -> 69.5) or dropped; a file that is no report, or
holds values out of bounds, is skipped; each with one `warning:` line naming the file."""

import functools
import json
import math
import os
import re
import sys
from typing import Any

from npuzoo import config, history
from npuzoo.soc import ASCEND_SHAPE
from npuzoo.variables import POSITIVE as BATCH_SIZE

Json = dict[str, Any]
# Readers (`compare`, the README renderer) look here; NPUZOO_REPORTS_DIR points them elsewhere.
REPORTS_DIR = os.environ.get("NPUZOO_REPORTS_DIR") or os.path.join(config.REPO_ROOT, "reports")
STR, INT, NUMBER, BOOL, ANY = "a string", "an integer", "a number", "true or false", "any"
LATENCY = {k: NUMBER for k in ("mean", "p50", "p90", "p99", "min", "max")}
# Types of the fields readers use (the rest is checked as text only); missing ones stay missing.
SCHEMA: Json = {
    "schema": INT, "model": STR, "soc": STR, "device": STR, "batch_size": INT,
    "machine": {"id": STR, "description": STR, "isa": STR},
    "backend": {"name": STR, "version": STR}, "commit": STR, "timestamp": STR,
    "source": {"kind": STR}, "weights": {"source": STR},
    "dataset": {"name": STR, "images": INT, "labelled_images": INT, "subset": BOOL,
                "full_validation_set": BOOL, "labels_sha256": STR},
    "accuracy": {"top1": NUMBER, "top2": NUMBER, "top3": NUMBER, "top4": NUMBER,
                 "top5": NUMBER, "images": INT, "classes": INT, "meaningful": BOOL},
    "gate": {"verdict": STR, "reason": STR},
    "perf": {"throughput": NUMBER, "latency_ms": LATENCY, "loop": INT, "warmup": INT,
             "loop_seconds": NUMBER, "streams": INT,
             "spread": {"windows": ANY, "median": NUMBER, "spread": NUMBER, "is": STR},
             "tuning": {"cache": STR, "path": STR, "key": STR, "seconds": NUMBER,
                        "chosen": {"engine": STR, "streams": INT, "threads_per_stream": INT,
                                   "hint": STR}, "candidates": ANY},
             "load": {"contended": BOOL}},
    "environment": {},
    # int8 runs (npuzoo/report/agreement.py); reports before them lack these
    "int8_agreement": {"images": INT, "top1": NUMBER, "top5": NUMBER,
                       "max_abs_logit_error": NUMBER, "mean_abs_logit_error": NUMBER,
                       "reference": STR, "meaningful": BOOL},
    "fp32_speedup": {"ratio": NUMBER, "reason": STR, "run": STR,
                     "fp32": {"path": STR, "throughput": NUMBER, "engine": STR, "timestamp": STR}},
    "comparison": {"against": STR, "threshold": NUMBER, "spread": NUMBER,
                   "previous": {"timestamp": STR, "commit": STR, "throughput": NUMBER,
                                "top1": NUMBER, "top5": NUMBER, "weights": STR, "spread": NUMBER,
                                "dataset": {"name": STR, "images": INT, "labels_sha256": STR}},
                   "contended": BOOL},
}
# What a report may hold, checked as user input is: its ids name files and plots (a soc of
# "x/../../photo" would point a plot outside the repository), its text lands in Markdown.
MODEL_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT = 2000  # characters of any one string (the longest written, a rule, is ~300)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INVALID = object()


@functools.cache  # each line once per process
def warn(line: str) -> None:
    print(line, file=sys.stderr)


def _coerce(value: Any, kind: str) -> Any:
    if kind == ANY or value is None:
        return value
    if kind == STR:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value if isinstance(value, str) else str(value) if number else _INVALID
    if kind == BOOL:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, str):  # "4", "69.5%"
        try:
            value = float(value.strip().rstrip("%")) if kind == NUMBER else \
                int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else None
        except ValueError:
            return _INVALID
    if kind == INT:
        return int(value) if isinstance(value, float) and value.is_integer() else \
            value if isinstance(value, int) else _INVALID
    return value if isinstance(value, (int, float)) and math.isfinite(value) else _INVALID


def shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalize(data: Json, schema: Json, where: str, problems: list[str]) -> None:
    """Fix `data` (a dict) in place against `schema`, noting each change in `problems`."""
    for key, kind in schema.items():
        if key not in data or data[key] is None:
            continue
        value, name = data[key], f"{where}{key}"
        if isinstance(kind, dict) and not isinstance(value, dict):
            problems.append(f"{name} {shown(value)} is not an object, ignored")
            del data[key]
        elif isinstance(kind, dict):
            _normalize(value, kind, name + ".", problems)
        else:
            fixed = _coerce(value, kind)
            if fixed is _INVALID:
                problems.append(f"{name} {shown(value)} is not {kind}, ignored")
                del data[key]
            elif fixed != value or (type(fixed) is not type(value) and kind != NUMBER):
                problems.append(f"{name} {shown(value)} read as {shown(fixed)}")
                data[key] = fixed


def _identify(data: Json, path: str, problems: list[str]) -> str | None:
    """Fill a missing chip or batch size from the file name; why the report is unusable, or None."""
    named = re.fullmatch(r"(?P<soc>.+)_bs(?P<bs>\d+)\.json", os.path.basename(path))
    if not data.get("soc"):
        if not named:
            return "no soc, and the file name is not <soc>_bs<N>.json"
        data["soc"] = named.group("soc")
        problems.append(f"no soc; read as {data['soc']} (the file name)")
    if not isinstance(data.get("batch_size"), int) or data["batch_size"] < 1:
        if not named:
            return "; ".join(problems + ["no usable batch_size"])
        data["batch_size"] = int(named.group("bs"))
        problems.append(f"batch_size read as {data['batch_size']} (the file name)")
    machine = data.get("machine")
    if isinstance(machine, dict) and not all(isinstance(machine.get(k), str)
                                             for k in ("id", "description")):
        problems.append("machine incomplete; derived from device")
        del data["machine"]
    refused = out_of_bounds(data)
    return "; ".join(problems + [refused]) if refused else None


def read_report(path: str) -> Json | None:
    """A report for readers, whatever the file holds; None (with a warning) for no report."""
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
    problems: list[str] = []
    _normalize(data, SCHEMA, "", problems)
    refused = _identify(data, path, problems)
    if refused:
        warn(f"warning: {path}: {refused}; skipped")
        return None
    if not isinstance(data.get("gate"), dict):
        data["gate"] = {"verdict": "not applicable", "reason": "not recorded"}
    data.setdefault("comparison", None)
    if problems:
        warn(f"warning: {path}: " + "; ".join(problems))
    return data


def _bad_text(data: Json) -> str | None:
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and (len(item) > MAX_TEXT or CONTROL.search(item)):
            return (f"the text {shown(item)} is too long or holds control characters "
                    "(a newline, ...)")
    return None


def _bad_figure(data: Json) -> str | None:
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
            return f"{name} {shown(value)} is not a finite number >= 0"
    for key in ("top1", "top2", "top3", "top4", "top5"):
        value = accuracy.get(key)
        if isinstance(value, (int, float)) and not 0 <= value <= 100:
            return f"accuracy.{key} {shown(value)} is not a percentage"
    return None


def out_of_bounds(data: Json) -> str | None:
    """Why a (type-normalised) report cannot be used, or None."""
    soc = data.get("soc")
    if soc != "cpu" and not (isinstance(soc, str) and ASCEND_SHAPE.match(soc)):
        return f"soc {shown(data.get('soc'))} is not cpu or an Ascend soc_version"
    if not MODEL_ID.match(str(data.get("model"))):
        return f"model {shown(data.get('model'))} is not a model name"
    if not BATCH_SIZE.match(str(data.get("batch_size"))):
        return f"batch_size {shown(data.get('batch_size'))} is out of range (1 to 9999999)"
    machine_id = (data.get("machine") or {}).get("id")
    if machine_id is not None and not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", machine_id):
        return f"machine.id {shown(machine_id)} is not an id"  # it names history files
    return _bad_figure(data) or _bad_text(data)


def model_reports(reports_dir: str, model: str) -> list[tuple[str, Json]]:
    """[(path, report)] of one model's readable current reports (its variant folders too)."""
    paths = [os.path.join(folder, name)
             for folder in history.report_folders(os.path.join(reports_dir, model))
             if os.path.isdir(folder) for name in sorted(os.listdir(folder))
             if name.endswith(".json") and not name.startswith(".")]
    return [(path, report) for path in paths
            if os.path.isfile(path) and (report := read_report(path)) is not None]
