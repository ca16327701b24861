"""The READMEs and plots, rendered from model.yaml and reports/ alone (`make readme`). Every
text of a report is escaped where it lands: a DATA name cannot break a table or inject HTML."""

import argparse
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from npuzoo import commands, config, history, steps, variables
from npuzoo.config import GitSource, ModelSpec
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write
from npuzoo.report import read as reports
from npuzoo.report.compare import contended_run, throughput

TEMPLATES_DIR = os.path.join(config.REPO_ROOT, "templates")
BEST = "★"  # marks the best batch size of a chip
RANDOM_MARK = "‡"  # top-level table: accuracy of random weights, explained once below it
PLOT_NAME = "perf_{soc}.png"
Report = dict[str, Any]  # a report as npuzoo.report writes it

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox


# -- inputs --------------------------------------------------------------------------------

def read_requirements(path: str) -> list[tuple[str, str]] | None:
    """[(package, pinned version or the whole specifier)] from a requirements file."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        lines = [line.split("#", 1)[0].strip() for line in handle]
    return [(line.split("==")[0].strip(), line.split("==", 1)[1].strip() if "==" in line else line)
            for line in lines if line]


def model_reports(reports_dir: str, name: str) -> list[Report]:
    found = [report for _, report in reports.model_reports(reports_dir, name)]
    return sorted(found, key=lambda r: (soc_order(r["soc"]), history.variant(r), r["batch_size"]))


def row_groups(rows: list[Report]) -> list[list[Report]]:
    """Reports grouped by history.row_key (a table row or plot line each), in chip order."""
    groups: dict[tuple[Any, ...], list[Report]] = {}
    for r in rows:
        groups.setdefault(history.row_key(r), []).append(r)
    ordered = sorted(groups.items(), key=lambda item: (
        soc_order(item[0][0]), item[0][4], -max(r["batch_size"] for r in item[1]), *item[0][1:4]))
    return [sorted(members, key=lambda r: r["batch_size"]) for _, members in ordered]


def engine_label(name: str | None) -> str:
    return config.BACKEND_LABELS.get(name or "", name or "")


def engine_name(report: Report) -> str | None:
    return (report.get("backend") or {}).get("name") or None


def run_label(report: Report) -> str:
    """A row's heading, cell and plot line: `cpu int8-onnxruntime (ONNX Runtime, 2 streams)`; a
    tuned run names no engine: the tuning picks one per batch size."""
    name = engine_name(report)
    engine = "" if history.tuned(report) else engine_label(name) if name else \
        "ais_bench" if report.get("soc") != "cpu" else "engine not recorded"
    chip = " ".join(w for w in (str(report.get("soc")), history.variant(report)) if w)
    return f"{chip} ({', '.join(w for w in (engine, history.setup(report)) if w)})"


def markdown_text(value: object) -> str:
    """Text read from a report as literal Markdown on one line (HTML and markup escaped)."""
    text = reports.CONTROL.sub(" ", str(value))
    text = re.sub(r"&(?=#|\w+;)", "&amp;", text)  # what would read as an entity
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)  # what would open a tag ("a < b" stays)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)


def plot_text(value: object) -> str:
    """Text read from a report for a matplotlib label: `$` would start mathtext."""
    return reports.CONTROL.sub(" ", str(value)).replace("$", r"\$")


def group_words(members: list[Report],
                escape: Callable[[object], str] = markdown_text) -> dict[str, Any]:
    """What one group measured, in words escaped for their destination."""
    first = members[0]
    weights = (first.get("weights") or {}).get("source") or "unrecorded"
    return {"soc": first.get("soc"), "chip": escape(run_label(first)),
            "machine": escape(history.machine(first)["description"]),
            "scope": escape(history.scope(first)[1]), "weights": escape(f"{weights} weights"),
            "random": not meaningful(first)}


def soc_order(soc: object) -> tuple[bool, str]:
    return (soc != "cpu", str(soc))


# -- formatting ----------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def fmt_ref(value: object) -> str:
    """A published number as published (4076.18, 6736, 1.0), never rounded or padded."""
    return "—" if value is None else str(value)


def measured_when(report: Report) -> str:
    date = markdown_text((report.get("timestamp") or "")[:10] or "undated")
    commit = report.get("commit") or "no commit"
    shown = f"`{commit}`" if re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?", commit) \
        else markdown_text(commit)
    return f"{date}; {shown}"


def meaningful(report: Report) -> bool:
    """False for accuracy measured with random weights (the table says so once)."""
    acc = report.get("accuracy") or {}
    return bool(acc.get("meaningful", (report.get("weights") or {}).get("source") != "random"))


def result_cells(report: Report, mark_random: bool = False) -> dict[str, str]:
    acc, verdict = report.get("accuracy") or {}, report.get("gate") or {}
    mark = f" {RANDOM_MARK}" if mark_random and not meaningful(report) else ""
    word = verdict.get("verdict") or "not applicable"
    gate = {"pass": "pass", "fail": "**FAIL**"}.get(word) or markdown_text(word)
    reason = verdict.get("reason")
    return {"top1": fmt(acc.get("top1"), 2) + mark, "top5": fmt(acc.get("top5"), 2) + mark,
            "gate": f"{gate}: {markdown_text(reason)}" if reason else gate}


def throughput_cell(report: Report, best: bool = False) -> str:
    text = f"**{fmt(throughput(report))}** {BEST}" if best else fmt(throughput(report))
    return text + (" (contended)" if contended_run(report) else "")


def best_batch(rows: list[Report]) -> int | None:
    """The batch size with the highest throughput (the smaller one on a tie), or None."""
    measured = [(speed, -r["batch_size"]) for r in rows if (speed := throughput(r)) is not None]
    return -int(max(measured)[1]) if measured else None


def reference_fps(spec: ModelSpec, soc: str) -> dict[int, float]:
    """{bs: images/s per chip} the ModelZoo published for this chip, or {}."""
    table = spec.reference.perf.get(soc)
    return table.fps if table else {}


# -- the model README ----------------------------------------------------------------------

def twin_cell(report: Report, twin: Report) -> str:
    """`1.52× fp32 (139.2); top-1 -0.40 pts`: what the precision bought and cost."""
    speed, base = throughput(report), throughput(twin)
    engine = "" if engine_name(twin) == engine_name(report) else \
        f" on {markdown_text(engine_label(engine_name(twin)))}"
    text = f"{speed / base:.2f}× fp32{engine} ({fmt(base)})" if speed and base else "— vs fp32"
    acc, fp32 = report.get("accuracy") or {}, twin.get("accuracy") or {}
    if acc.get("top1") is not None and fp32.get("top1") is not None:
        text += f"; top-1 {acc['top1'] - fp32['top1']:+.2f} pts"
    return text


def agreement_cell(report: Report) -> str:
    """`agrees top-1 98.5%, top-5 100%, max |Δ| 0.41` from `int8_agreement`, or ''."""
    found = report.get("int8_agreement") or {}
    parts = [f"{key} {found[name]:.1f}".rstrip("0").rstrip(".") + "%"
             for key, name in (("top-1", "top1"), ("top-5", "top5")) if found.get(name) is not None]
    if found.get("max_abs_logit_error") is not None:
        parts.append(f"max |Δ| {found['max_abs_logit_error']:.3g}")
    return markdown_text("agrees " + ", ".join(parts)) if parts else ""  # `|` in a table


def measured_tables(spec: ModelSpec, rows: list[Report]) -> list[dict[str, Any]]:
    """Per row group: its rows, with ratios to the chip's reference or to the fp32 twin."""
    tables = []
    groups = row_groups(rows)
    for index, members in enumerate(groups):
        words = group_words(members)
        soc, best = words["soc"], best_batch(members)
        ref = reference_fps(spec, soc) if not history.variant(members[0]) else {}
        lines = []
        for r in members:
            bs = r["batch_size"]
            twin, speed, ref_fps = history.fp32_twin(r, rows), throughput(r), ref.get(bs)
            ratio = (twin_cell(r, twin) if twin else "" if speed is None or not ref_fps
                     else f"{speed / ref_fps:.2f}× of {fmt_ref(round(ref_fps, 2))}")
            ratio = "; ".join(c for c in (ratio, agreement_cell(r)) if c) or "—"
            lat = (r.get("perf") or {}).get("latency_ms") or {}
            lines.append({"bs": f"**{bs}** {BEST}" if bs == best else str(bs),
                          "throughput": throughput_cell(r), "ratio": ratio,
                          "p50": fmt(lat.get("p50"), 2), "p99": fmt(lat.get("p99"), 2),
                          **result_cells(r), "what": measured_when(r)})
        backends = sorted({markdown_text(f"{engine_label(engine_name(r))} "
                                         f"{(r.get('backend') or {}).get('version')}")
                           for r in members if r.get("backend")})
        last_of_chip = index + 1 == len(groups) or groups[index + 1][0].get("soc") != soc
        has_plot = any(best_batch(g) is not None for g in groups if g[0].get("soc") == soc)
        tables.append({**words, "rows": lines, "backend": "; ".join(backends) or "not recorded",
                       "plot": PLOT_NAME.format(soc=soc) if last_of_chip and has_plot else None})
    return tables


def reference_context(spec: ModelSpec) -> dict[str, Any]:
    ref, acc, tol = spec.reference, spec.reference.accuracy, spec.reference.tolerance
    sizes = sorted({bs for table in ref.perf.values() for bs in table.published})
    rows = []
    for chip, table in ref.perf.items():
        fps = table.published
        best = max(fps, key=lambda bs: (fps[bs], -bs))
        notes = [table.source, table.note]
        if table.per == "card":
            notes.append(f"per card of {table.chips} chips: the ratios to measured rows use "
                         f"the per-chip figure (a {table.chips}th of it)")
        # the top-level table says per card, and not from the guide, beside the figure
        marks = ["per card"] * (table.per == "card") + \
            ["not in the guide"] * (not table.source.startswith("the guide"))
        rows.append({"chip": chip, "note": "; ".join(n for n in notes if n),
                     "marks": f" ({', '.join(marks)})" if marks else "",
                     "best_bs": best, "best_fps": fmt_ref(fps.get(best)), "fps": fps})
    return {"top1": fmt_ref(acc.top1), "top5": fmt_ref(acc.top5),
            "tolerance_top1": fmt_ref(tol.top1), "tolerance_top5": fmt_ref(tol.top5),
            "missing_top1": acc.top1 is None, "missing_top5": acc.top5 is None,
            "perf_sizes": sizes, "perf_rows": rows, "accuracy_source": ref.accuracy_source}


def source_steps(spec: ModelSpec) -> list[dict[str, Any]]:
    """Shell lines that fetch and patch each of model.yaml's `upstream.sources` into upstream/."""
    ways = []
    for source in spec.upstream.sources:
        apply = f" && patch -p1 -d upstream < {source.patch}" if source.patch else ""
        if isinstance(source, GitSource):
            title = f"git {source.url} at {source.commit}"
            lines = [f"git clone {source.url} upstream",
                     f"git -C upstream checkout {source.commit}{apply}"]
        else:
            title = f"PyPI {source.requirement} (source distribution)"
            lines = [f"pip download --no-deps --no-binary :all: {source.requirement} -d sdist",
                     f"mkdir upstream && tar -xzf sdist/{source.requirement.split('==')[0]}-*"
                     f".tar.gz -C upstream --strip-components=1{apply}"]
        ways.append({"title": title, "patch": source.patch, "lines": lines, "note": source.why})
    return ways


def quick_start(spec: ModelSpec, name: str, ways: list[dict[str, Any]]) -> dict[str, Any]:
    """The standalone commands, in the order the guide runs them, with its perf loop."""
    guide = config.perf_defaults(spec)
    loop, warmup = guide.get("loop", 100), guide.get("warmup", 1)
    weights, published = spec.weights, spec.weights.published
    upstream = " --source upstream" if ways else ""
    return {"weights_get": f"wget -nc {weights.url}",
            "weights_check": published and
            f'echo "{published[1]}  {weights.file}" | {published[0]}sum -c -',
            "preprocess": "python3 preprocess.py ${imagenet}/val prep_dataset",
            "pth2onnx": f"python3 pth2onnx.py {weights.file} {name}.onnx{upstream}",
            "pth2onnx_random": f"python3 pth2onnx.py random {name}.onnx{upstream}",
            "atc": "atc " + " ".join(commands.atc_args(
                spec, f"{name}.onnx", f"{name}_bs${{bs}}", "${bs}", "Ascend${chip_name}")),
            "infer": "python3 -m ais_bench " + " ".join(commands.infer_args(
                f"{name}_bs${{bs}}.om", "prep_dataset", "result", "bs${bs}", "${bs}")),
            "postprocess": ("python3 postprocess.py result/bs${bs} ${imagenet}/val_label.txt ./ "
                            "result_bs${bs}.json"),
            "perf": "python3 -m ais_bench " + " ".join(commands.perf_args(
                f"{name}_bs${{bs}}.om", "result", "perf_bs${bs}", "${bs}", loop, warmup)),
            "cpu_infer": "npuzoo-bench " + " ".join(commands.infer_args(
                f"{name}.onnx", "prep_dataset", "result", "bs${bs}", "${bs}")),
            "cpu_perf": "npuzoo-bench " + " ".join(commands.perf_args(
                f"{name}.onnx", "result", "perf_bs${bs}", "${bs}", 20, 2))}


def model_context(name: str, models_dir: str, reports_dir: str) -> dict[str, Any]:
    spec = config.load(os.path.join(models_dir, name, "model.yaml"))
    rows = model_reports(reports_dir, name)
    ways = source_steps(spec)
    upstream, published = spec.upstream, spec.weights.published
    checksum = (f"{published[0]} `{published[1]}`" if published else
                "no checksum is published (the file is used as downloaded; see model.yaml)")
    environments = (markdown_text(", ".join(f"{k} {v}" for k, v in found.items() if v))
                    for found in (r.get("environment") or {} for r in rows))
    patches = sorted({s.patch for s in upstream.sources if s.patch} |
                     ({upstream.patch} if upstream.patch else set()))
    return {"name": name, "cfg": spec, "description": " ".join(spec.description.split()),
            "upstream": upstream, "patches": patches, "ways": ways, "checksum": checksum,
            "requirements": read_requirements(os.path.join(models_dir, name, "requirements.txt")),
            "environments": list(dict.fromkeys(e for e in environments if e)),
            "quick": quick_start(spec, name, ways), "measured": measured_tables(spec, rows),
            "reference": reference_context(spec)}


# -- the top-level README ------------------------------------------------------------------

def top_context(models_dir: str, reports_dir: str) -> dict[str, Any]:
    models: list[dict[str, Any]] = []
    for name in config.model_names(models_dir):
        spec = config.load(os.path.join(models_dir, name, "model.yaml"))
        chips = []
        for members in row_groups(model_reports(reports_dir, name)):
            words = group_words(members)
            by_bs, best = {r["batch_size"]: r for r in members}, best_batch(members)
            best_row = by_bs[best] if best is not None else members[0]
            chips.append({"soc": words["chip"], "rows": by_bs, "best": best,
                          **result_cells(best_row, mark_random=True),
                          "what": f"{words['machine']}; {words['scope']}; {words['weights']}; "
                                  f"{measured_when(best_row)}"})
        models.append({"name": name, "chips": chips, "reference": reference_context(spec)})
    return {"models": models, "random_mark": RANDOM_MARK, "throughput_cell": throughput_cell,
            "sizes": sorted({bs for m in models for c in m["chips"] for bs in c["rows"]}),
            "any_random": any(RANDOM_MARK in c["top1"] for m in models for c in m["chips"])}


# -- "CPU engines compared" (benchmarks/bench_engines.py's JSON) ---------------------------

ENGINES_JSON = os.path.join("benchmarks", "results", "engines.json")  # under the README's root
ENGINE_PLAIN = {"ort": "plain ONNX Runtime", "openvino": "plain OpenVINO",
                "openvino-async": "OpenVINO, THROUGHPUT hint, async", "torch": "PyTorch eager"}


def _engine_label(key: str) -> str:
    if not key.startswith("runner/"):
        return ENGINE_PLAIN.get(key, key)
    if key.startswith("runner/tuned/"):
        return "runner, tuned"
    _, backend, precision, streams = key.split("/")
    return (f"runner, {engine_label(backend)}{'' if precision == 'fp32' else ' ' + precision}, "
            f"{streams[1:]} stream{'' if streams[1:] == '1' else 's'}")


def _engine_order(key: str) -> tuple[int, bool, bool, int, str]:
    if key.startswith("runner/"):  # runner/ENGINE/PRECISION/sN, then runner/tuned/PRECISION
        _, backend, precision, *streams = key.split("/")
        return (0, precision != "fp32", backend != "onnxruntime",
                int(streams[0][1:]) if streams else 99, key)
    plain = list(ENGINE_PLAIN)
    return (1, False, False, plain.index(key) if key in plain else len(plain), key)


def _dagger(item: dict[str, Any]) -> str:  # a figure not measured in quiet rounds only
    return "" if item.get("quiet_rounds") else " †"


def _tuned_cell(versus: dict[str, Any] | None) -> str:
    """The tuned runner over the fastest plain contender, and what the tuning chose."""
    if not versus:
        return "—"
    chosen = versus.get("chosen") or {}
    layout = f"{engine_label(chosen['engine'])} ×{chosen['streams']}" if chosen else "?"
    per_round = versus.get("per_round")
    return (f"{versus['ratio']:.2f}×{'' if versus.get('used') == 'quiet rounds' else ' †'} "
            f"({layout}{', ' + str(chosen['hint']) if chosen.get('hint') else ''}; best plain: "
            f"{ENGINE_PLAIN.get(versus.get('best_plain', ''), '?')}"
            f"{'' if per_round is None else f'; per round {per_round:.2f}×'})")


def _engines_row(name: str, row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    found = row.get("contenders", {})
    cells = [f"{found[k]['ratio_to_ort']:.2f}×{_dagger(found[k])}"
             if (found.get(k) or {}).get("ratio_to_ort") is not None else "—" for k in keys]
    # the fastest by its same-round ratio to plain ONNX Runtime (plain ORT: 1)
    nothing: tuple[str, dict[str, Any]] = ("", {})
    fastest, best = max(found.items(), default=nothing, key=lambda kv: (
        kv[1].get("ratio_to_ort") or (1.0 if kv[0] == "ort" else 0.0)))
    share, ort = best.get("fraction_of_attainable"), found.get("ort")
    tuned = markdown_text(_tuned_cell(row.get("tuned_vs_best_plain")))
    best_cell = "—" if share is None else f"{share:.0%}{_dagger(best)} ({_engine_label(fastest)})"
    return {"model": markdown_text(name), "bs": fmt(row.get("bs"), 0),
            "ort": f"{fmt(ort['images_per_s'])}{_dagger(ort)}" if ort else "—",
            "cells": cells, "tuned": tuned, "best": best_cell,
            "untrusted": any("†" in text for text in [*cells, best_cell, tuned])}


def _run_note(name: str, block: dict[str, Any], engine: str, middle: str) -> str:
    """One model's benchmark run: when, with what, how long (`middle`), how contended."""
    settings = block.get("settings", {})
    versions = ", ".join(f"{k} {v}" for k, v in (block.get("versions") or {}).items()
                         if k in ("onnxruntime", "openvino", engine))
    return markdown_text(  # the JSON is read back: its text is escaped too
        f"{name}: {block.get('date', '?')}, commit {block.get('commit') or '?'}, {versions}; "
        f"{settings.get('rounds', '?')} round{'' if settings.get('rounds') == 1 else 's'} of "
        f"{settings.get('seconds', '?')} s{middle}; {block.get('contended_measurements', '?')} "
        f"of {block.get('measurements', '?')} measurements contended")


def _engines_note(name: str, block: dict[str, Any]) -> str:
    settings = block.get("settings", {})
    attainable = (block.get("attainable_gflops") or {}).get("median")
    load = block.get("loadavg_1m") or {}
    return _run_note(name, block, "torch", f" per contender, {settings.get('onnx', '?')}; "
                     f"attainable {fmt(attainable) if attainable else '?'} GFLOP/s; load average "
                     f"{fmt(load.get('start'), 2)} → {fmt(load.get('end'), 2)}")


def _engines_machine(key: str, results: dict[str, Any]) -> dict[str, Any]:
    """One machine's table: its models' rows, the notes of each model's run, its verdict."""
    blocks = results["models"]
    keys = sorted({k for block in blocks.values() for row in block.get("rows", [])
                   for k in row.get("contenders", {}) if k != "ort"}, key=_engine_order)
    rows = [_engines_row(name, row, keys)
            for name, block in blocks.items() for row in block.get("rows", [])]
    votes = (results.get("default_backend") or {}).get("votes") or {}
    return {"machine": markdown_text(key), "columns": [_engine_label(k) for k in keys],
            "rows": rows, "untrusted": any(row["untrusted"] for row in rows),
            "notes": [_engines_note(name, block) for name, block in blocks.items()],
            "default": (results.get("default_backend") or {}).get("choice"),
            "openvino_models": ", ".join(votes.get("openvino") or []) or "none",
            "onnxruntime_models": ", ".join(votes.get("onnxruntime") or []) or "none"}


def _per_machine(path: str, what: str, table: Callable[[str, Any], dict[str, Any]]
                 ) -> list[dict[str, Any]] | None:
    """table(key, results) per machine of a benchmark's JSON; None if absent or unreadable."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return [table(key, results) for key, results in json.load(handle)["machines"].items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"warning: {path}: not readable as the {what}'s JSON ({err}); its README table is "
              "left out", file=sys.stderr)
        return None


def engines_context(path: str) -> list[dict[str, Any]] | None:
    """The README's "CPU engines compared" tables, one per machine (benchmarks/bench_engines.py)."""
    return _per_machine(path, "engines benchmark", _engines_machine)


# -- "int8 against fp32" (benchmarks/bench_int8.py's JSON) ---------------------------------

INT8_JSON = os.path.join("benchmarks", "results", "int8.json")  # under the README's root
QUANTIZER_LABEL = {"onnxruntime": "ONNX Runtime QDQ", "nncf": "NNCF"}


def _int8_label(key: str) -> str:
    """`<quantiser>/<engine>` or an engine, named from the fixed tables (else "?")."""
    quantiser, _, engine = key.rpartition("/")
    where = ENGINE_PLAIN.get(engine, "?")
    return f"{QUANTIZER_LABEL.get(quantiser, '?')} on {where}" if quantiser else where


def _int8_row(name: str, block: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    fp32, key = row["fp32_best"], row["int8_best"]
    int8, agree = row["int8"][key], block["agreement"][key]
    mark = "" if block.get("agreement_meaningful") else f" {RANDOM_MARK}"
    return {"model": markdown_text(name), "bs": fmt(row["bs"], 0),
            "fp32": f"{fmt(row['fp32'][fp32]['images_per_s'])} ({_int8_label(fp32)})",
            "int8": f"{fmt(int8['images_per_s'])}{_dagger(int8)} ({_int8_label(key)})",
            "ratio": f"{fmt(int8['vs_fastest_fp32'], 2)}×",
            "same": f"{fmt(int8['vs_fp32_same_engine'], 2)}×",
            "agreement": f"{fmt(agree['top1'])}% / {fmt(agree['top5'])}%{mark}",
            "error": f"{float(agree['max_abs_logit_error']):.3g}"}


def _int8_machine(key: str, results: dict[str, Any]) -> dict[str, Any]:
    blocks = results["models"]
    rows = [_int8_row(name, block, row) for name, block in blocks.items()
            for row in block["rows"] if row.get("fp32_best") and row.get("int8_best")]
    notes = [_run_note(name, b, "nncf", f"; {b['settings']['calib']} calibration and "
                       f"{b['settings']['eval']} agreement images; {b.get('weights', '?')}")
             for name, b in blocks.items()]
    choices = ((results.get("recommendation") or {}).get("engines") or {}).items()
    return {"machine": markdown_text(key), "rows": rows, "notes": notes,
            "untrusted": any("†" in row["int8"] for row in rows),
            "random": any(not b.get("agreement_meaningful") for b in blocks.values()),
            "choices": [f"on {_int8_label(engine)}: {QUANTIZER_LABEL.get(r['choice'], '?')} "
                        f"({markdown_text(r.get('reason', ''))})" for engine, r in choices]}


def int8_context(path: str) -> list[dict[str, Any]] | None:
    """The README's "int8 against fp32" tables, one per machine (benchmarks/bench_int8.py)."""
    return _per_machine(path, "int8 benchmark", _int8_machine)


# -- "Where `make` spends its time" (benchmarks/bench_make.py's JSON) ----------------------

MAKE_TIME_JSON = os.path.join("benchmarks", "results", "make_time.json")  # under the README's root


def _make_time_run(name: str, block: dict[str, Any]) -> dict[str, Any]:
    """One setting's cold and warm make, step by step (seconds, or reused), against the
    necessary work."""
    settings, work = block["settings"], block["necessary"]
    columns = steps.ordered({s for run in (block["cold"], block["warm"])
                             for s in (*run["steps_s"], *run["reused"])})

    def cells(run: dict[str, Any]) -> list[str]:
        return [fmt(run["steps_s"][s], 2) if s in run["steps_s"] else
                "reused" if s in run["reused"] else "—" for s in columns]

    rows = [{"make": kind, "cells": cells(block[kind]), "wall": fmt(block[kind]["wall_s"], 2),
             "orchestration": fmt(block[kind]["orchestration_s"], 2),
             "tuning": fmt(block[kind]["tuning_s"], 2),
             "ratio": f"{fmt(block[f'ratio_{kind}'], 2)}×"} for kind in ("cold", "warm")]
    command = (f"make {settings['model']} DATA={settings['data']} BS={settings['bs']}"
               + (f" N={settings['n']}" if settings.get("n") else ""))
    return {"title": markdown_text(f"{command} ({settings['images']} images, "
                                   f"{settings.get('weights', '?')} weights)"),
            "columns": columns, "rows": rows,
            "necessary": markdown_text(
                f"{fmt(work['total_s'], 2)} s: decode and resize {fmt(work['decode_resize_s'], 2)}"
                f" s, one inference pass {fmt(work['inference_s'], 2)} s (its session "
                f"{fmt(work['session_s'], 2)} s)"),
            "note": markdown_text(f"{block.get('date', '?')}, commit {block.get('commit') or '?'}, "
                                  + ", ".join(f"{k} {v}" for k, v in
                                              (block.get("versions") or {}).items()))}


def _make_time_machine(key: str, results: dict[str, Any]) -> dict[str, Any]:
    return {"machine": markdown_text(key),
            "runs": [_make_time_run(name, block) for name, block in results["runs"].items()]}


def make_time_context(path: str) -> list[dict[str, Any]] | None:
    """The README's "Where `make` spends its time" tables per machine (bench_make.py)."""
    return _per_machine(path, "make-time benchmark", _make_time_machine)


# -- plots ---------------------------------------------------------------------------------

# Eight lines at most are told apart by colour and marker alike (the reference: grey, dashed).
LINE_STYLES = tuple(zip(("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                         "tab:brown", "tab:pink", "tab:olive"),
                        ("o", "s", "^", "D", "v", "P", "X", "*"), strict=True))


def plot_png(name: str, soc: str, groups: list[list[Report]], ref: dict[int, float],
             inspect: Callable[[Any], object] | None = None) -> bytes:
    """PNG bytes of throughput against batch size, one line per row group, with a fixed size
    and fonts and no metadata stamp; `inspect` (tests) is called with the drawn figure."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lines = []
    for members in groups:
        points = sorted((r["batch_size"], speed) for r in members
                        if (speed := throughput(r)) is not None)
        if points:
            lines.append((group_words(members, escape=plot_text), points, best_batch(members)))
    # the title names what every line shares; each legend entry its engine and what differs
    shared = [key for key in ("chip", "machine", "scope", "weights")
              if len({words[key] for words, _, _ in lines}) == 1]
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9,
                                "svg.hashsalt": "npuzoo", "path.simplify": False}):
        fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.22 * len(lines)), dpi=100,
                               layout="constrained")
        labels = []
        for index, (words, points, best) in enumerate(lines):
            colour, marker = LINE_STYLES[index % len(LINE_STYLES)]
            label = ", ".join([words["chip"]] + [words[k] for k in ("machine", "scope", "weights")
                                                 if k not in shared])
            ax.plot(*zip(*points, strict=True), marker=marker, color=colour, label=label)
            for x, y in points:
                if len(lines) == 1 or x == best:
                    labels.append(ax.annotate(
                        f"{y:,.1f}" + (f" {BEST}" if x == best else ""), (x, y),
                        textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                        color=colour, bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                            "ec": "none", "alpha": 0.8}))
        if ref:
            ax.plot(*zip(*sorted(ref.items()), strict=True), marker="x", linestyle="--",
                    color="tab:gray",
                    label=f"ModelZoo reference for {soc}, published (not measured here)")
        ticks = sorted(set(ref) | {x for _, points, _ in lines for x, _ in points})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.margins(x=0.1)
        ax.set(xlabel="batch size", ylabel="throughput (images/s)")
        top = max([*ref.values(), *(y for _, points, _ in lines for _, y in points), 1.0])
        ax.set_ylim(bottom=0, top=top * (1.15 + 0.08 * len(labels) ** 0.5))
        title = [f"{name} on {soc}: throughput vs batch size"] + [
            "; ".join(lines[0][0][k] for k in part) for part in (shared[:2], shared[2:]) if part]
        ax.set_title("\n".join(title), fontsize=10)
        ax.grid(True, alpha=0.3)
        fig.legend(loc="outside lower center", ncols=1, fontsize=8, frameon=False)
        separate(fig, labels)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
        if inspect:
            inspect(fig)
        plt.close(fig)
    return buffer.getvalue()


def separate(fig: "Figure", labels: list["Annotation"], step: int = 11) -> None:
    """Move value labels up, in steps of `step` points, until none overlaps another."""
    fig.draw_without_rendering()  # the layout first: positions are final only then
    placed: list[Bbox] = []
    for label in sorted(labels, key=lambda a: (a.xy[1], a.xy[0])):
        for _ in range(len(labels)):
            box = label.get_window_extent()
            if not any(box.overlaps(other) for other in placed):
                break
            label.xyann = (label.xyann[0], label.xyann[1] + step)
        placed.append(label.get_window_extent())


def plots(name: str, models_dir: str, reports_dir: str) -> dict[str, bytes]:
    """{path: PNG bytes} for every chip of a model with at least one measured batch size."""
    spec = config.load(os.path.join(models_dir, name, "model.yaml"))
    groups = row_groups(model_reports(reports_dir, name))
    chips = {soc: [g for g in groups if g[0]["soc"] == soc]
             for soc in sorted({g[0]["soc"] for g in groups}, key=soc_order)}
    return {os.path.join(models_dir, name, PLOT_NAME.format(soc=soc)):
            plot_png(name, soc, chip, reference_fps(spec, soc))
            for soc, chip in chips.items() if any(best_batch(g) is not None for g in chip)}


# -- rendering -----------------------------------------------------------------------------

def render(template: str, context: dict[str, Any]) -> str:
    """The template rendered: no trailing spaces, no two blank lines in a row, a final newline."""
    text = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
    ).get_template(template).render(**context)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def render_model(name: str, models_dir: str = config.MODELS_DIR,
                 reports_dir: str = reports.REPORTS_DIR) -> str:
    return render("model_README.md.j2", model_context(name, models_dir, reports_dir))


def render_top(models_dir: str = config.MODELS_DIR, reports_dir: str = reports.REPORTS_DIR,
               root: str = config.REPO_ROOT) -> str:
    return render("README.md.j2", {
        **top_context(models_dir, reports_dir),
        "engines": engines_context(os.path.join(root, ENGINES_JSON)),
        "int8": int8_context(os.path.join(root, INT8_JSON)),
        "make_time": make_time_context(os.path.join(root, MAKE_TIME_JSON)),
        "variables": [v for v in variables.VARIABLES if {"model", "sweep"} & set(v.targets)
                      and v.kind in ("value", "environment") and "venv" not in v.targets]})


def render_all(models_dir: str = config.MODELS_DIR, reports_dir: str = reports.REPORTS_DIR,
               root: str = config.REPO_ROOT) -> dict[str, str]:
    """{path: Markdown text} of every README (no plots)."""
    return {os.path.join(root, "README.md"): render_top(models_dir, reports_dir, root), **{
        os.path.join(models_dir, name, "README.md"): render_model(name, models_dir, reports_dir)
        for name in config.model_names(models_dir)}}


def stale(rendered: Mapping[str, str | bytes]) -> list[str]:
    """The paths whose file is missing or holds other bytes than its rendering."""
    return [path for path, data in rendered.items() if not os.path.isfile(path)
            or Path(path).read_bytes() != (data.encode() if isinstance(data, str) else data)]


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.readme", description="Render the "
                                     "READMEs and throughput plots from model.yaml and reports/.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each README that differs")
    parser.add_argument("--models", default=config.MODELS_DIR, help="models folder")
    parser.add_argument("--reports", default=reports.REPORTS_DIR, help="reports folder")
    parser.add_argument("--root", default=config.REPO_ROOT,
                        help="folder of the top-level README.md")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.models):
        raise UserError(f"{args.models}: no such models folder")
    rendered = render_all(args.models, args.reports, args.root)
    if args.check:
        differ = stale(rendered)
        for path in differ:
            print(f"{os.path.relpath(path)}: differs from its rendering; run `make readme`")
        sys.exit(1 if differ else 0)
    files: dict[str, str | bytes] = dict(rendered)
    removed = []  # plots of chips that no longer have a measurement
    for name in config.model_names(args.models):
        pngs = plots(name, args.models, args.reports)
        files.update(pngs)
        folder = os.path.join(args.models, name)
        removed += [path for old in os.listdir(folder) if re.fullmatch(r"perf_.+\.png", old)
                    and (path := os.path.join(folder, old)) not in pngs]
    changed = stale(files)
    for path in changed:
        atomic_write(path, files[path], "w" if isinstance(files[path], str) else "wb")
    for path in removed:
        os.unlink(path)
    for path in changed + removed:
        print(f"readme: wrote {os.path.relpath(path)}")
    print(f"readme: {len(rendered)} README(s) rendered, {len(changed + removed)} file(s) changed")


if __name__ == "__main__":
    main()
