"""Every run kept, each owner (machine and configuration) its own current report, like compared
with like.

A published run goes to reports/<model>/[<variant>/]history/<SOC>_bs<BS>/<time>_<machine>.json,
and becomes its owner's current report (`<SOC>_bs<BS>.json`, or `own_path` beside it when that
holds another owner's run) when at least as complete as the one there, unless FORCE=1.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from npuzoo.files import atomic_write
from npuzoo.variables import CPU_PERF

Report = dict[str, Any]  # a report as read from its JSON file

HISTORY = "history"
WEIGHTS_RANK = {"published": 1, "unverified": 1, "custom": 1, "random": 0}


def machine(report: Report) -> dict[str, Any]:
    """{"id", "description"} of the machine a report ran on (derived for older reports)."""
    recorded = report.get("machine")
    return recorded if isinstance(recorded, dict) and recorded.get("id") else \
        fingerprint(report.get("soc"), report.get("device"))


def fingerprint(soc: object, device: object, isa: str | None = None) -> dict[str, Any]:
    """The machine of a run: its chip and device hashed (never the host name), the CPU's `isa`."""
    description = str(device or "not recorded")
    digest = hashlib.sha256(f"{soc}|{description}".encode()).hexdigest()[:12]
    return {"id": digest, "description": description, **({"isa": isa} if isa else {})}


TUNED = "tuned"


def tuned(report: Report) -> bool:
    """True when npuzoo.tune chose the run's engine and streams (perf.tuning)."""
    return bool((report.get("perf") or {}).get("tuning"))


def precision(report: Report) -> str:
    return str((report.get("backend") or {}).get("precision") or report.get("precision") or "fp32")


def quantizer(report: Report) -> str | None:
    """int8's quantiser (calibration.method's first word; None for fp32): part of the owner."""
    method = (report.get("calibration") or {}).get("method")
    return str(method).split(" ")[0] if method else None


def configuration(report: Report) -> dict[str, Any]:
    """A run's engine, precision, AIPP, streams and perf loop; a tuned run's engine and streams
    are `tuned`, so a rerun whose tuning picks another engine keeps its owner and report file."""
    backend, perf, fixed = report.get("backend") or {}, report.get("perf") or {}, not tuned(report)
    return {"engine": backend.get("name") if fixed else TUNED, "precision": precision(report),
            "aipp": bool(backend.get("aipp")), "streams": (perf.get("streams") or 1) if fixed
            else TUNED, "loop": perf.get("loop"), "warmup": perf.get("warmup"),
            "loop_seconds": perf.get("loop_seconds"), "quantizer": quantizer(report)}


def owner(report: Report) -> dict[str, Any]:
    """Whose current report a run is: its machine (model, cores, ISA) and configuration."""
    found = machine(report)
    return {"machine": found["id"], "isa": found.get("isa"), **configuration(report)}


def same_owner(a: Report, b: Report) -> bool:
    """A field an older report lacks (None) matches any value."""
    first, second = owner(a), owner(b)
    return all(first[k] is None or second[k] is None or first[k] == second[k] for k in first)


def owner_words(report: Report) -> str:
    config = configuration(report)
    perf = f"perf loop {config['loop']}" + (
        f" and {config['loop_seconds']:g} s" if config["loop_seconds"] else "")
    parts = ["engine and streams tuned" if config["engine"] == TUNED
             else config["engine"] or "engine not recorded", config["precision"],
             "AIPP" if config["aipp"] else "",
             "" if config["streams"] == TUNED else f"{config['streams']} stream(s)", perf]
    return f"{machine(report)['description']}, " + ", ".join(p for p in parts if p)


def own_path(dest: str, report: Report) -> str:
    """Where the current report of `report`'s owner goes when `dest` (the committed path)
    belongs to another: `<SOC>_bs<BS>.<tag>.json` beside it (a SOC holds no dot)."""
    tag = hashlib.sha256(json.dumps(owner(report), sort_keys=True).encode()).hexdigest()[:10]
    stem, ext = os.path.splitext(dest)
    return f"{stem}.{tag}{ext}"


def scope(report: Report) -> tuple[str, str]:
    """(key, words) of the images a run measured."""
    dataset = report.get("dataset") or {}
    images = dataset.get("images")
    key = f"{dataset.get('name')}:{images}:{(dataset.get('labels_sha256') or '')[:12]}"
    if dataset.get("full_validation_set"):
        words = f"full validation set ({images:,} images)"
    elif isinstance(images, int):
        total = dataset.get("labelled_images")
        of = f" of {total:,}" if isinstance(total, int) and total != images else ""
        words = f"{images:,}{of} images of {dataset.get('name') or 'DATA'}"
    else:
        words = "images not recorded"
    return key, words


def weights_key(report: Report) -> str:
    weights = report.get("weights") or {}
    source = weights.get("source") or "unrecorded"
    return "random" if source == "random" else \
        f"{source}-{(weights.get('sha256') or weights.get('md5') or '')[:12]}"


def variant(report: Report) -> str:
    """The variant label the run's plan recorded: '' for the model's own run, else `int8`, ..."""
    return str(report.get("variant") or "")


def setup(report: Report) -> str:
    """What else sets a run apart within its variant: tuning, streams, a non-default CPU loop."""
    perf = report.get("perf") or {}
    streams, loop, seconds = perf.get("streams"), perf.get("loop"), perf.get("loop_seconds")
    words = [TUNED] if tuned(report) else \
        [f"{streams} streams"] if isinstance(streams, int) and streams > 1 else []
    if report.get("soc") == "cpu" and (loop not in (None, CPU_PERF["loop"]) or
                                       seconds not in (None, CPU_PERF["seconds"])):
        words.append(f"≥{loop} calls, ≥{seconds:g} s" if seconds else f"{loop} calls")
    return ", ".join(words)


def row_key(report: Report) -> tuple[str, ...]:
    """What a README row or plot line shares (like_key adds the batch size: comparable runs)."""
    return (str(report.get("soc")), machine(report)["id"], scope(report)[0],
            weights_key(report), variant(report), setup(report))


def like_key(report: Report) -> tuple[object, ...]:
    return row_key(report) + (report.get("batch_size"),)


def fp32_twin(report: Report, candidates: Iterable[Report]) -> Report | None:
    """For a reduced-precision run: the fp32 run among `candidates` with its like_key but the
    variant (no AIPP run), on the same engine where there is one, else on another."""
    if precision(report) == "fp32":
        return None
    want = like_key(report)
    twins = [other for other in candidates if precision(other) == "fp32"
             and (key := like_key(other))[:4] + key[5:] == want[:4] + want[5:]
             and "aipp" not in variant(other).split("-")]
    engine = (report.get("backend") or {}).get("name")
    same = [twin for twin in twins if (twin.get("backend") or {}).get("name") == engine]
    return next(iter(same + twins), None)


def completeness(report: Report) -> tuple[int, bool, int]:
    """Orders runs: real weights over random ones, the full set over a subset, more images."""
    dataset = report.get("dataset") or {}
    images = dataset.get("images")
    source = str((report.get("weights") or {}).get("source"))
    return (WEIGHTS_RANK.get(source, 0), bool(dataset.get("full_validation_set")),
            images if isinstance(images, int) else 0)


def report_folders(model_folder: str) -> list[str]:
    """reports/<model>/ and its variant folders (aipp/, int8/, openvino/, ...), not history/."""
    names = sorted(os.listdir(model_folder)) if os.path.isdir(model_folder) else []
    return [model_folder] + [path for name in names if name != HISTORY
                             and os.path.isdir(path := os.path.join(model_folder, name))]


def history_dir(dest: str) -> str:
    """reports/<model>/history/<SOC>_bs<BS>/ for the current report `dest` (any owner's)."""
    folder, name = os.path.split(dest)
    return os.path.join(folder, HISTORY, name.split(".")[0])


def entries(dest: str, read: Callable[[str], Report | None]) -> list[tuple[str, Report]]:
    """The readable reports of `dest`'s history, oldest first (`read`: a report reader)."""
    folder = history_dir(dest)
    paths = [os.path.join(folder, name) for name in
             (sorted(os.listdir(folder)) if os.path.isdir(folder) else [])
             if name.endswith(".json") and not name.startswith(".")]
    found = [(path, report) for path in paths if (report := read(path)) is not None]
    # By time of the run, then of recording (two runs can share a timestamp's second).
    return sorted(found, key=lambda item: (str(item[1].get("timestamp") or ""),
                                           os.stat(item[0]).st_mtime_ns))


def record(report: Report, dest: str) -> str:
    folder = history_dir(dest)
    stamp = re.sub(r"[^0-9A-Za-z]", "", str(report.get("timestamp") or "undated"))
    base = os.path.join(folder, f"{stamp}_{machine(report)['id']}")
    path = next(path for number in itertools.count(1) if not os.path.exists(
        path := base + (f"-{number}" if number > 1 else "") + ".json"))
    atomic_write(path, json.dumps(report, indent=2) + "\n")
    return path


def latest_like(report: Report, candidates: Iterable[Report]) -> Report | None:
    """The latest of `candidates` (other reports) with `report`'s like_key, not later than it."""
    key, when = like_key(report), str(report.get("timestamp") or "")
    earlier = [c for c in candidates
               if like_key(c) == key and str(c.get("timestamp") or "") <= when]
    return max(earlier, key=lambda c: str(c.get("timestamp") or ""), default=None)
