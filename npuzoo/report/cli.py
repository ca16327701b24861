"""`python3 -m npuzoo.report write|publish|versions|compare`, run by mk/*.mk and `make compare`."""

import argparse
import json
import os
import sys
from collections.abc import Sequence

from npuzoo import history, steps
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write
from npuzoo.report import compare, pieces
from npuzoo.report.agreement import agreement, fp32_speedup
from npuzoo.report.build import build, dumps
from npuzoo.report.publish import label, publish
from npuzoo.report.read import REPORTS_DIR, Json
from npuzoo.soc import package_versions

REQUIRED = ("model", "soc", "bs", "dataset", "weights", "accuracy", "perf_dir", "loop", "warmup",
            "out")


def from_manifest(args: argparse.Namespace, required: Sequence[str] = REQUIRED
                  ) -> argparse.Namespace:
    """`write --manifest <plan>.json` fills every option not given on the command line."""
    if args.manifest:
        manifest = pieces.read_json(args.manifest, "run manifest")
        if not isinstance(manifest, dict):
            raise UserError(f"{args.manifest}: expected a JSON object of option: value")
        for key, value in manifest.items():
            if not hasattr(args, key) or key in ("command", "manifest", "out"):
                raise UserError(f"{args.manifest}: unknown field {key!r}")
            if getattr(args, key) is None:
                setattr(args, key, value)
    missing = ", ".join("--" + name.replace("_", "-") for name in required
                        if getattr(args, name) is None)
    if missing:
        raise UserError(f"report write: missing {missing} (or a --manifest that holds them)")
    return args


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python3 -m npuzoo.report",
                                  description="Write and publish run reports.")
    sub = top.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="gather one run's results into a report")
    add = write.add_argument
    # required, unless the --manifest holds them (from_manifest)
    for name in ("--model", "--soc", "--out"):
        add(name)
    for name in ("--bs", "--loop", "--warmup"):
        add(name, type=int)
    add("--dataset", help="dataset.json of the run folder")
    add("--weights", help="weights.json")
    add("--accuracy", help="ModelZoo accuracy JSON")
    add("--perf-dir", help="--output folder of the perf run")
    add("--perf-dirname")
    add("--variant", help="the plan's variant label (npuzoo.plan.variant_label)")
    add("--engine", help="the engine the plan set the run up for")
    add("--source", help="source.json written by the source step")
    add("--extra", help="JSON with backend/device/environment overrides")
    add("--environment", help="JSON of package versions where the steps ran elsewhere (docker)")
    add("--results-dir", metavar="DIR", help="inference results: counted, checked for NaN")
    add("--prep-dir", metavar="DIR", help="the preprocessed .bin folder: its count is checked")
    add("--fp32-model", metavar="ONNX", help="int8 run: the fp32 export for int8_agreement")
    add("--steps", metavar="LOG", help="steps.jsonl: NPUZOO_RUN_ID's step timings")
    add("--manifest", metavar="JSON", help="the plan's {option: value}; flags given win")

    drop_help = f"flag a throughput fall beyond this (default {compare.THROUGHPUT_DROP:g}, " \
                f"or ${compare.THROUGHPUT_DROP_ENV})"
    pub = sub.add_parser("publish", help="copy a built report into reports/")
    pub.add_argument("built")
    pub.add_argument("dest")
    pub.add_argument("--no-gate", action="store_true", help="do not fail on a failed gate")
    pub.add_argument("--force", action="store_true", help="this run becomes dest (FORCE=1)")
    pub.add_argument("--strict", action="store_true", help="exit 1 on a flagged change")
    pub.add_argument("--throughput-drop", metavar="FRACTION", help=drop_help)
    ver = sub.add_parser("versions", help="package versions here, merged with other images'")
    ver.add_argument("--merge", action="append", default=[], help="versions seen elsewhere")
    ver.add_argument("--out", required=True)
    cmp_ = sub.add_parser("compare", help="print the run-over-run changes recorded in reports/")
    cmp_.add_argument("--reports", default=REPORTS_DIR, help="reports folder (default: reports/)")
    cmp_.add_argument("--throughput-drop", metavar="FRACTION", help=drop_help)
    cmp_.add_argument("--strict", action="store_true", help="exit 1 when any change is flagged")
    return top


def _extra(args: argparse.Namespace, summary: Json) -> Json:
    """build()'s keyword arguments from --extra, --environment and the runner's summary."""
    extra: Json = pieces.read_json(args.extra, "backend description") if args.extra else {}
    if args.environment:
        extra["environment"] = {**extra.get("environment", {}),
                                **pieces.read_json(args.environment, "environment description")}
    if summary.get("backend") and args.soc == "cpu":
        # The runner's summary says which engine ran; --extra adds what it cannot know (aipp).
        engine = {"name": summary["backend"], "version": summary.get("backend_version"),
                  **({"precision": summary["precision"]} if summary.get("precision") else {})}
        extra["backend"] = {**(extra.get("backend") or {}), **engine}
    return extra


def _output_check(args: argparse.Namespace, dataset: Json, accuracy: Json
                  ) -> tuple[list[str] | None, Json | None]:
    """(result files, output_check) once the counts agree."""
    results = pieces.listed(args.results_dir, pieces.RESULT_SUFFIX, "--results-dir",
                            "inference") if args.results_dir else None
    prep = len(pieces.listed(args.prep_dir, ".bin", "--prep-dir", "preprocess")) \
        if args.prep_dir else None
    pieces.check_counts(dataset, accuracy, None if results is None else len(results), prep,
                        {"dataset": args.dataset, "accuracy": args.accuracy,
                         "results": args.results_dir, "prep": args.prep_dir})
    if results is None:
        return None, None
    return results, pieces.output_check(args.results_dir, results, prep)


def _int8_agreement(args: argparse.Namespace, report: Json, results: list[str]) -> None:
    found = agreement(args.fp32_model, args.prep_dir, args.results_dir, results)
    # random weights give near-equal logits: which class leads is noise, like accuracy
    found["meaningful"] = (report.get("weights") or {}).get("source") != "random"
    report["int8_agreement"] = found
    print(f"int8: agreement with fp32 on {found['images']} images: top-1 "
          f"{found['top1']:.1f}%, top-5 {found['top5']:.1f}%, logit error max "
          f"{found['max_abs_logit_error']:g}, mean {found['mean_abs_logit_error']:g}"
          + ("" if found["meaningful"] else " (random weights: not meaningful)"))


def _fp32_speedup(report: Json) -> None:
    found = report["fp32_speedup"] = fp32_speedup(report, REPORTS_DIR)
    fp32 = found["fp32"]
    if fp32 is None:
        print(f"{report['backend'].get('precision')}: {found['reason']}; run `{found['run']}` "
              "for the speed-up over fp32")
    elif found["ratio"] is not None:
        print(f"{report['backend'].get('precision')}: {found['ratio']:.2f}x fp32 "
              f"({fp32['throughput']:.1f} images/s on {fp32['engine']}, {fp32['path']})")


def write(args: argparse.Namespace) -> None:
    from_manifest(args)
    summary = pieces.read_bench_summary(args.perf_dir, args.perf_dirname or "perf")
    extra = _extra(args, summary)
    dataset = pieces.read_json(args.dataset, "dataset description")
    if not isinstance(dataset, dict):
        raise UserError(f"{args.dataset}: not a dataset description (a JSON object)")
    accuracy = pieces.read_accuracy(args.accuracy)
    results, check = _output_check(args, dataset, accuracy)
    weights = pieces.read_json(args.weights, "weights description")
    perf = pieces.perf_from_summary(summary, args.loop, args.warmup)
    source = pieces.read_json(args.source, "source description") if args.source else None
    report = build(args.model, args.soc, args.bs, variant=args.variant or "", engine=args.engine,
                   dataset=dataset, weights=weights, accuracy=accuracy, perf=perf, source=source,
                   output_check=check, **extra)
    if args.fp32_model and results:
        _int8_agreement(args, report, results)
    if history.precision(report) != "fp32":
        _fp32_speedup(report)
    if args.steps and (found := steps.entries(args.steps, os.environ.get(steps.RUN_ENV, ""))):
        report["timings"] = {"unit": "s", "what": "wall time of each step this run did "
                             "(shared steps and this batch size's)",
                             "steps": steps.totals(found, args.bs)}
    atomic_write(args.out, dumps(report))


def _publish(args: argparse.Namespace) -> None:
    drop = compare.throughput_drop(args.throughput_drop)
    report, flagged = publish(args.built, args.dest, drop, force=args.force)
    # sys.exit(text): that line on stderr, exit status 1 (a failed check; a user error exits 2)
    if args.strict and (report.get("comparison") or {}).get("contended"):
        sys.exit(f"error: {label(report)}: STRICT=1 could not judge this run: other processes "
                 "took the CPU during its perf loop or the earlier run's, so a throughput drop "
                 "cannot be told from the load; rerun it on a quiet machine")
    if flagged and args.strict:
        sys.exit(f"error: {label(report)}: {len(flagged)} flagged change(s) against the "
                 "latest like-for-like run (STRICT=1); see above")
    if report["gate"]["verdict"] == "fail" and not args.no_gate:
        sys.exit(f"error: accuracy gate failed for {args.dest}: {report['gate']['reason']}")


def _versions(args: argparse.Namespace) -> None:
    versions = package_versions()
    for path in args.merge:
        found = pieces.read_json(path, "package versions")
        versions.update({name: v for name, v in found.items() if v and not versions.get(name)})
    atomic_write(args.out, json.dumps(versions, indent=2) + "\n")


def _compare(args: argparse.Namespace) -> None:
    text, flagged = compare.compare_table(args.reports,
                                          compare.throughput_drop(args.throughput_drop))
    print(text)
    if flagged and args.strict:
        sys.exit(1)


@cli
def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    {"write": write, "publish": _publish, "versions": _versions,
     "compare": _compare}[args.command](args)
