"""Run over run, against the latest like-for-like earlier run: a throughput fall beyond the
threshold and either run's measured spread is flagged, as is an accuracy change on the same
images; a contended run is not judged."""

import os
from typing import Any

from npuzoo import history
from npuzoo.errors import UserError
from npuzoo.report.read import REPORTS_DIR, Json, model_reports, read_report

THROUGHPUT_DROP = 0.10  # a fall beyond this fraction is flagged run over run
THROUGHPUT_DROP_ENV = "NPUZOO_THROUGHPUT_DROP"


def throughput_drop(flag: str | None = None) -> float:
    """The threshold in force (`0.1` or `10%`): the flag, else the environment, else 10%."""
    text = os.environ.get(THROUGHPUT_DROP_ENV, "") if flag is None else flag
    raw = text.strip()
    if flag is None and not raw:
        return THROUGHPUT_DROP
    try:
        value = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        value = -1
    if not 0 <= value < 1:
        raise UserError(f"{THROUGHPUT_DROP_ENV if flag is None else '--throughput-drop'}={text}: "
                        "expected a fraction in [0, 1) such as 0.1, or a percentage such as 10%")
    return value


def measured_spread(report: Json) -> float:
    """The perf windows' spread (a fraction of their median; 0 if unknown): noise the run saw."""
    value = ((report.get("perf") or {}).get("spread") or {}).get("spread")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def throughput(report: Json) -> float | None:
    return (report.get("perf") or {}).get("throughput")


def contended_run(report: Json) -> bool:
    """True when the runner saw other processes take the CPU during the perf loop."""
    return bool(((report.get("perf") or {}).get("load") or {}).get("contended"))


def snapshot(report: Json) -> Json:
    """What a later run is compared with: kept in the comparison, since the file is replaced."""
    acc, dataset = report.get("accuracy") or {}, report.get("dataset") or {}
    weights = (report.get("weights") or {}).get("source")
    return {"timestamp": report.get("timestamp"), "commit": report.get("commit"),
            "throughput": throughput(report), "top1": acc.get("top1"), "top5": acc.get("top5"),
            "dataset": {k: dataset.get(k) for k in ("name", "images", "labels_sha256")},
            "weights": weights, "spread": measured_spread(report)}


def _labels(report: Json) -> Any:
    return (report.get("dataset") or {}).get("labels_sha256")


def compare(previous: Json, current: Json, drop: float = THROUGHPUT_DROP) -> Json:
    """`current` against `previous`: `changes` holds what is flagged, `previous` the earlier
    run's numbers, so that `compare` can re-judge it later with another threshold."""
    changes = []
    old_tp, new_tp = throughput(previous), throughput(current)
    contended = contended_run(previous) or contended_run(current)
    limit = max(drop, measured_spread(previous), measured_spread(current))
    if old_tp and new_tp is not None and not contended and new_tp / old_tp < 1 - limit:
        changes.append({"what": "throughput", "old": old_tp, "new": new_tp,
                        "change": f"{(new_tp / old_tp - 1) * 100:+.1f}%", "flag": "drop"})
    old_acc, new_acc = previous.get("accuracy") or {}, current.get("accuracy") or {}
    if old_acc and new_acc and _labels(previous) == _labels(current):
        changes += [{"what": key, "old": old_acc.get(key), "new": new_acc.get(key),
                     "change": f"{new_acc[key] - old_acc[key]:+.2f} pts", "flag": "accuracy"}
                    for key in ("top1", "top5") if old_acc.get(key) != new_acc.get(key)]
    return {"against": previous.get("timestamp"), "threshold": drop,
            **({"spread": limit} if limit > drop else {}),
            "previous": snapshot(previous), "changes": changes,
            **({"contended": True} if contended else {})}


def rounded(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def change_rows(report: Json, drop: float) -> list[tuple[Any, ...]]:
    """The rows `compare` prints for one report: every throughput or accuracy change."""
    previous = (report.get("comparison") or {}).get("previous")
    key = (report.get("model"), report.get("soc"), report.get("batch_size"))
    rows: list[tuple[Any, ...]] = []
    if previous is None:
        return rows
    old_tp, new_tp = previous.get("throughput"), throughput(report)
    if old_tp and new_tp is not None and new_tp != old_tp:
        ratio = new_tp / old_tp
        spread = max(previous.get("spread") or 0.0, measured_spread(report))
        flag = f"drop > {drop * 100:g}%" if ratio < 1 - max(drop, spread) else \
            f"within the runs' spread ({spread:.0%})" if ratio < 1 - drop else ""
        rows.append(key + ("throughput", rounded(old_tp, 1), rounded(new_tp, 1),
                           f"{(ratio - 1) * 100:+.1f}%", flag))
    acc = report.get("accuracy") or {}
    same_images = _labels(previous) == _labels(report)
    for name in ("top1", "top5"):
        old, new = previous.get(name), acc.get(name)
        if old is not None and new is not None and old != new:
            rows.append(key + (name, rounded(old, 2), rounded(new, 2), f"{new - old:+.2f} pts",
                               "accuracy" if same_images else "other images"))
    return rows


def latest_runs(reports_dir: str = REPORTS_DIR) -> list[Json]:
    """The latest run of every like-for-like group, from histories or current reports."""
    latest: dict[tuple[Any, ...], Json] = {}
    for model in sorted(os.listdir(reports_dir)) if os.path.isdir(reports_dir) else []:
        for dest, current in model_reports(reports_dir, model):
            for report in [r for _, r in history.entries(dest, read_report)] or [current]:
                key = (report.get("model"),) + history.like_key(report)
                if key not in latest or str(report.get("timestamp") or "") >= \
                        str(latest[key].get("timestamp") or ""):
                    latest[key] = report
    return sorted(latest.values(), key=lambda r: (str(r.get("model")), str(r.get("soc")),
                                                  r.get("batch_size") or 0))


def compare_table(reports_dir: str, drop: float = THROUGHPUT_DROP) -> tuple[str, int]:
    rows: list[tuple[Any, ...]] = []
    for report in latest_runs(reports_dir):
        against = (report.get("comparison") or {}).get("against") or "?"
        runs = f"{against[:10]} -> {(report.get('timestamp') or '?')[:10]}"
        rows.extend(row + (runs,) for row in change_rows(report, drop))
    where = os.path.relpath(reports_dir) if os.path.isabs(reports_dir) else reports_dir
    if not rows:
        return (f"no run-over-run changes recorded in {where}/ (a run records them against "
                "the latest earlier run of the same model, chip, machine, batch size, images "
                "and weights)"), 0
    flagged = sum(row[7] == "accuracy" or row[7].startswith("drop") for row in rows)
    header = ("model", "chip", "BS", "what", "previous", "now", "change", "flag", "runs")
    lines = [header] + [tuple("" if c is None else c for c in row) for row in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    table = "\n".join("  ".join(str(cell).ljust(width) for cell, width in
                                zip(line, widths, strict=True)).rstrip() for line in lines)
    summary = (f"{flagged} flagged change(s) (throughput drop beyond {drop * 100:g}%, or beyond "
               "the spread the runs measured if larger, or an "
               f"accuracy change on the same images) in {len(rows)} change(s) recorded in {where}/")
    return table + "\n" + summary, flagged
