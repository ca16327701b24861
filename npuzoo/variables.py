"""The user's variables in one table (name, default, checker, help, targets) for npuzoo.run,
npuzoo.sweep, `make help` (standard library only: it runs before .venv exists), the README and
the Makefile's lists. Kinds: "value" is checked here, "docker" by mk/docker.mk, "make" is the
Makefile's own, "environment" is read from the environment only."""

from __future__ import annotations

import difflib
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from npuzoo import soc as socs
from npuzoo.errors import Problems, UserError

# The CPU perf step's defaults: at least `loop` calls (after `warmup`) and `seconds` seconds
# (20 calls of a fast model are over in a blink and measure noise).
CPU_PERF = {"loop": 20, "warmup": 2, "seconds": 3}
POSITIVE = re.compile(r"^[1-9][0-9]{0,6}$")
COUNT = re.compile(r"^[0-9]{1,7}$")
SWITCH = ("", "0", "1")  # the values of a variable that is on or off


def shown(value: str) -> str:
    """A user value as an error line shows it: as typed, unless it holds control characters."""
    return value if value.isprintable() else repr(value)


# -- checkers: (name, text) -> the value, or a one-line UserError --------------------------------

def batch_sizes(name: str, text: str) -> list[int]:
    bad = next((word for word in text.split() if not POSITIVE.match(word)), None)
    if bad is not None or not text.split():
        raise UserError(f"{name}" + (f"={shown(bad)}" if bad is not None else " is empty")
                        + f": expected positive batch sizes, e.g. {name}=\"1 4 16\"")
    return list(dict.fromkeys(int(word) for word in text.split()))


def number(name: str, text: str, zero: bool = False, optional: bool = False,
           most: int | None = None, what: str = "") -> int | None:
    """A positive number (or 0 or more with `zero`; None for an empty `optional` one)."""
    text = text.strip()
    if optional and not text:
        return None
    if not (COUNT if zero else POSITIVE).match(text) or (most and int(text) > most):
        what = what or ("a number of 0 or more" if zero else "a positive number")
        raise UserError(f"{name}={shown(text)}: expected {what}")
    return int(text)


def matching(pattern: str, problem: str) -> Callable[[str, str], str]:
    """A checker of a value that must match `pattern` whole (`problem`: the error's words)."""
    def check(name: str, text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise UserError(f"{name}={shown(text)}: {problem}")
        return text
    return check


device = matching(r"[0-9]{1,4}(,[0-9]{1,4})*",
                  "expected a device id such as 0 (or a comma list such as 0,1 on the CPU)")
path = matching(r"[^\0\n\r]*", "a path with a line break or NUL character; rename the file or "
                "folder")


def models(name: str, text: str) -> list[str]:
    from npuzoo.config import model_names

    names = model_names()
    for word in text.split():
        if word not in names:
            raise UserError(f"{name}={shown(word)}: unknown model; choose from "
                            f"{' '.join(names)} (or leave {name} unset for all)")
    return list(dict.fromkeys(text.split())) or names


@dataclass(frozen=True)
class Variable:
    """One variable; `choices`: its values (SWITCH: read as whether it is "1"), named by `hint`."""

    name: str
    default: str = ""
    shown: str = "—"  # the default, as the README and `make help` say it
    help: str = ""  # one line of `make help` (which drops its backticks)
    doc: str = ""  # the README's words (default: help)
    targets: tuple[str, ...] = ("model", "sweep")
    kind: str = "value"
    check: Callable[[str, str], Any] | None = None
    choices: tuple[str, ...] = ()
    hint: str = ""

    def value(self, text: str) -> Any:
        if self.choices and text not in self.choices:
            raise UserError(f"{self.name}={shown(text)}: unknown value; {self.hint}")
        if self.choices == SWITCH:
            return (text or self.default) == "1"
        return self.check(self.name, text) if self.check else text


CPU = "CPU: "
IMAGES = ("images", "model", "sweep")
VARIABLES: tuple[Variable, ...] = (
    Variable("BS", "1", "`1`", "batch sizes, e.g. BS=\"1 4 16\": one run and report each",
             "batch size, or several: `BS=\"1 4 8 16 32 64\"` sweeps them, one report each",
             check=batch_sizes),
    Variable("SOC", "cpu", "`cpu`", "cpu, auto (npu-smi), or an Ascend chip such as Ascend310P3",
             "`cpu` (the project's runner), an Ascend `--soc_version` such as `Ascend310P3`, or "
             "`auto` (reads `npu-smi info`; `cpu` when there is none)",
             check=lambda name, text: socs.check(text)),
    Variable("DATA", "", "—", "folder with `val/` and `val_label.txt` (required)", check=path),
    Variable("N", "", "all", "only the first N labelled images",
             "only the first N labelled images in sorted order",
             check=lambda name, text: number(name, text, optional=True, what=(
                 "a positive number of images, or leave it unset for all"))),
    Variable("WEIGHTS", "", "published",
             "unset: the published file (checksum verified); a path; or random",
             "unset: download the published file and verify its checksum; a path: that "
             "checkpoint; `random`: seeded random weights", check=path),
    Variable("RUNNER", "local", "`local`", "local (.venv) or docker (each step in its image)",
             "where the steps run: `local` (the `.venv` the Makefile creates) or `docker` (each "
             "step in its microtool image from `images/`, built by `make images`; see "
             "[images/README.md](images/README.md))", choices=("local", "docker"),
             hint="use local or docker"),
    Variable("DEVICE", "0", "`0`", "NPU id (CPU: a comma list runs devices one after another)",
             "the device ais_bench `--device` takes: npu-smi's Chip Logic ID (`npu-smi info "
             "-m`), not the card's NPU ID (an Atlas 300I card or 300I Duo holds several under "
             "one NPU ID); the same with `RUNNER=docker`, which gives the container that chip's "
             "`/dev/davinci<N>` ([images/README.md](images/README.md#ascend-hosts)); on the "
             "CPU a comma list runs once per id", check=device),
    Variable("LOOP", str(CPU_PERF["loop"]), f"{CPU_PERF['loop']} on the CPU; the guide's on "
             "Ascend", "pure-inference loops of the perf step",
             "pure-inference loops of the perf step (Ascend default: the model's guide, "
             "`model.yaml` `perf`)", check=number),
    Variable("WARMUP", str(CPU_PERF["warmup"]), f"{CPU_PERF['warmup']} on the CPU; the guide's "
             "on Ascend", "warm-up runs before the perf loops", check=partial(number, zero=True)),
    Variable("AIPP", shown="off", hint="use AIPP=1, or leave it unset", choices=SWITCH,
             help="1: uint8 input, normalisation inside the model",
             doc="`AIPP=1`: uint8 NHWC preprocessing (a quarter of the data) with normalisation "
             "moved into the model, as ATC's `--insert_op_conf` does on Ascend; reports go to "
             "`reports/<model>/aipp/`"),
    Variable("PRECISION", "fp32", "`fp32`",
             CPU + "int8: a quantised model, calibrated on CALIB images not evaluated",
             CPU + "`int8` quantises the export statically with `QUANTIZER`'s quantiser, "
             "calibrated on `CALIB` images not evaluated (DATA's after the first `N`, or "
             "`CALIB_DATA`'s), and runs it on OpenVINO (or `BACKEND`'s engine, untuned): the "
             "tuning tries OpenVINO's stream layouts only, the engine the graph was quantised "
             "for; reports go to `reports/<model>/int8-nncf/` (NNCF's graph; `int8/` for ONNX "
             "Runtime's quantiser, `int8-onnxruntime/` on that engine) with the speed-up and "
             "accuracy drop beside fp32 and `int8_agreement` (top-1/top-5 agreement with the "
             "fp32 export and logit differences, first 200 images)",
             choices=("fp32", "int8"), hint="use fp32 or int8"),
    Variable("QUANTIZER", "", "the engine's", CPU + "int8's quantiser: onnxruntime or nncf",
             CPU + "int8's quantiser: `onnxruntime` (ONNX Runtime's "
             "quantize_static, QDQ) or `nncf` (NNCF, OpenVINO's post-training quantiser); unset: "
             "the engine's, `INT8_QUANTIZER` in npuzoo/config.py (a measurement on one machine); "
             "NNCF's graph is named in the variant whichever the default, e.g. "
             "`reports/<model>/int8-nncf/` or `int8-nncf-onnxruntime/`, ONNX Runtime's is the "
             "plain `int8` (`ortquant` in build/ names); the report's `calibration.method` names "
             "the one used", choices=("", "onnxruntime", "nncf"),
             hint="use onnxruntime or nncf, or leave it unset"),
    Variable("CALIB", "100", "`100`", "int8: how many calibration images", check=number),
    Variable("CALIB_DATA", "", "—", "int8: a folder (val/, val_label.txt) to calibrate on",
             "int8: a folder (with `val/` and `val_label.txt`) to take the calibration images "
             "from", check=path),
    Variable("BACKEND", "", "the model's; for int8 OpenVINO",
             CPU + "onnxruntime or openvino (default: model.yaml's; int8: OpenVINO)",
             CPU + "`onnxruntime` or `openvino` (OpenVINO Runtime, fp32 precision set "
             "explicitly) behind the same runner, instead of the model's (`runtime.backend` in "
             "its model.yaml); a run on an engine other than its own reports to "
             "`reports/<model>/<engine>/` (int8: `int8-<engine>/`)",
             choices=("", "onnxruntime", "openvino"),
             hint="use onnxruntime or openvino, or leave it unset"),
    Variable("STREAMS", "", "tuned; else one per core",
             CPU + "batches in flight in the perf step (default: tuned, else one per core)",
             CPU + "batches in flight at once in the perf step (at most 4 per core), one "
             "single-thread session each; the report's throughput is then images / wall time "
             "across the streams (ais_bench's own figure is per call)",
             check=partial(number, optional=True)),
    Variable("TUNE", "1", "on", hint="use TUNE=0 for model.yaml's engine, or leave it unset",
             choices=SWITCH,
             help=CPU + "0: no tuning pass, model.yaml's engine and one stream per core",
             doc=CPU + "unless `TUNE=0`, `BACKEND` or `STREAMS` is given, the runner times each "
             "engine and stream layout briefly on first use of a compiled graph on a machine, "
             "caches the choice in `build/tuning/` and uses it (report: `perf.tuning`, "
             "configuration `tuned`; [docs/design.md](docs/design.md)); `TUNE=0` runs model.yaml's "
             "engine with one stream per core in the perf step"),
    Variable("PERF_SECONDS", "", f"`{CPU_PERF['seconds']}`",
             CPU + "the perf loop runs at least LOOP times and this many seconds",
             CPU + "the perf loop runs at least `LOOP` times and at least this many seconds (0: "
             "`LOOP` calls only); the report marks a figure contended by other load and gives "
             "the spread of five windows of the loop, within which `make compare` flags no drop "
             "([docs/design.md](docs/design.md))", check=partial(number, zero=True, optional=True)),
    Variable("FORCE", shown="off", hint="use FORCE=1, or leave it unset", choices=SWITCH,
             help="1: this run becomes the committed report, whatever is there",
             doc="`FORCE=1`: this run becomes the committed `reports/<model>/<chip>_bs<BS>.json` "
             "whatever is there (a run it displaces stays the current report of its own machine "
             "and configuration); a rerun with `FORCE=1` promotes a run already recorded"),
    Variable("STRICT", shown="off", hint="use STRICT=1, or leave it unset", choices=SWITCH,
             targets=("model", "sweep", "compare"),
             help="1: fail on a drop flagged against the last like-for-like run, or none judged",
             doc="`STRICT=1`: exit non-zero when a throughput drop or accuracy change is flagged "
             "against the latest like-for-like run (also `make compare STRICT=1`), or when "
             "either run was measured on a contended CPU and so cannot be judged"),
    Variable("MODELS", "", "every model", "the models to run, e.g. `MODELS=\"dpn131 mobilenetv1\"`",
             targets=("sweep",), check=models),
    Variable("SHARDS", "1", "`1`", "split each batch size's inference over this many devices",
             "split each batch size's inference over this many devices; merged results equal "
             "the single-device ones", targets=("sweep",),
             check=lambda name, text: number(name, text or "1", most=1024, what=(
                 "a number of shards from 1 to 1024 (the devices one batch size's inference "
                 "is split over)"))),
    Variable("RAY_ADDRESS", "", "unset", "unset: a local Ray instance; auto, HOST:6379 or "
             "ray://HOST:10001: a cluster", "unset starts a local Ray instance; `auto`, "
             "`HOST:6379` or `ray://HOST:10001` uses a cluster", ("sweep",), "environment"),
    Variable("TORCH_INDEX", "", "PyPI", "another index for torch, e.g. its CPU build",
             "another index for torch, e.g. `https://download.pytorch.org/whl/cpu` (its CPU "
             "build, without CUDA)", targets=("venv", "model", "sweep", "test")),
    Variable("PYTHON", "python3", "`python3`", "the python that creates .venv",
             targets=("venv", "model", "sweep", "test"), kind="make"),
    Variable("PYTEST_ARGS", "", "—", "more pytest arguments, e.g. PYTEST_ARGS=\"-k soc\"",
             targets=("test",), kind="make"),
    Variable("CI", "", "—", "true: the slow tests too", targets=("test",), kind="make"),
    Variable("DOCKER", "", "the docker on PATH", "the docker client", targets=IMAGES,
             kind="make"),
    Variable("IMAGE_MODELS", "", "every model", "the models whose images are built",
             targets=IMAGES, kind="make"),
    # The images' settings (images/README.md), checked by mk/docker.mk.
    *(Variable(name, targets=IMAGES, kind="docker") for name in (
        "BASE_IMAGE", "ASCEND_BASE_IMAGE", "IMAGE_REPO", "DOCKER_NET_ONLINE", "DOCKER_RUN_ARGS",
        "DOCKER_BUILD_ARGS", "DOCKER_PIDS_LIMIT", "DOCKER_CA_BUNDLE", "AIS_WHEELS_URL",
        "ACLRUNTIME_URL", "ACLRUNTIME_SHA256", "AIS_BENCH_URL", "AIS_BENCH_SHA256",
        "ASCEND_DOCKER_RUNTIME", "ASCEND_HOST_ROOT", "ASCEND_DEVICE_NODE")),
)
BY_NAME = {v.name: v for v in VARIABLES}
# A name typed for another: BATCH=4 -> "did you mean BS?" (close spellings are found as well).
MEANT = {"BATCH": "BS", "BATCH_SIZE": "BS", "BATCHSIZE": "BS", "DATASET": "DATA",
         "DATA_DIR": "DATA", "CHIP": "SOC", "ENGINE": "BACKEND", "IMAGES": "N", "LIMIT": "N"}
TARGETS = (
    ("test", "set up .venv (first time: a few minutes), make lint, run the fast tests"),
    ("lint", "static checks: ruff (lint) and mypy --strict on npuzoo/ (pyproject.toml)"),
    ("<model> DATA=<dir> ...", "one model's whole pipeline, one report per batch size"),
    ("sweep MODELS=\"a b\" ...", "every model x batch size as Ray tasks (docs/sweep.md)"),
    ("readme", "re-render the READMEs and plots from reports/"),
    ("compare [STRICT=1]", "latest like-for-like run-over-run changes"),
    ("images", "build the microtool images of RUNNER=docker (images/README.md)"),
    ("venv", "only create .venv"),
    ("clean-sets", "remove preprocessed sets no model references any more"),
    ("clean", "remove build/ (reports/ and READMEs stay)"),
)


def of(target: str, kinds: tuple[str, ...] = ("value",)) -> list[Variable]:
    return [v for v in VARIABLES if target in v.targets and v.kind in kinds]


def names(kind: str) -> list[str]:
    return [v.name for v in VARIABLES if v.kind == kind]


def read(environ: Mapping[str, str], target: str,
         defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The raw values of `target`'s variables (NPUZOO_<NAME>), else `defaults`', else their own."""
    return {v.name: environ.get(f"NPUZOO_{v.name}", (defaults or {}).get(v.name, v.default))
            for v in of(target)}


def check_names(environ: Mapping[str, str], target: str = "model") -> None:
    """UserError for a name on make's command line (NPUZOO_COMMAND_LINE) that `target` does not
    take, which would be ignored silently (the environment's are not judged: shells set many)."""
    known = {v.name for v in VARIABLES if target in v.targets and v.kind != "environment"}
    what = "sweep" if target == "sweep" else "<model>"
    problems = Problems()
    for name in [n for n in environ.get("NPUZOO_COMMAND_LINE", "").split() if n not in known]:
        with problems:
            if BY_NAME.get(name, VARIABLES[0]).kind == "environment":
                raise UserError(f"{name}: read from the environment, not make's command line; "
                                f"run {name}=... make {target}")
            if name in BY_NAME and "sweep" in BY_NAME[name].targets:
                raise UserError(f"{name}: a variable of `make sweep` only; drop it, or run "
                                "make sweep")
            meant = MEANT.get(name.upper()) or next(iter(difflib.get_close_matches(
                name.upper(), sorted(known), n=1, cutoff=0.75)), None)
            raise UserError(f"{shown(name)}: no such variable of make {what}"
                            + (f"; did you mean {meant}?" if meant else "; see make help"))
    problems.raise_any()


def help_text() -> str:
    """`make help`: the targets, then the variables of each."""
    lines = ["Targets:", *(f"  make {t:<24} {h}" for t, h in TARGETS)]
    # (title, target, kinds, the target whose section lists a variable both take)
    for title, target, kinds, elsewhere in (
            ("make <model> (and sweep)", "model", ("value",), "venv"),
            ("make sweep only", "sweep", ("value", "environment"), "model"),
            ("make images (and RUNNER=docker)", "images", ("make",), ""),
            ("make venv and make test", "test", ("value", "make"), "")):
        lines.append(f"Variables of {title}:")
        for v in [v for v in of(target, kinds) if elsewhere not in v.targets]:
            default = v.shown.strip("`") if len(v.shown) < 14 and v.shown != "—" else ""
            lines.append(f"  {v.name:<21} {v.help.replace('`', '')}"
                         + f" (default {default})" * bool(default)
                         + " (environment)" * (v.kind == "environment"))
        if target == "images":
            lines += ["  " + line for line in textwrap.wrap(
                " ".join(names("docker")) + ": the images' settings (see images/README.md)", 94)]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["help"]:
        sys.exit("usage: python3 -m npuzoo.variables help")
    print(help_text())
