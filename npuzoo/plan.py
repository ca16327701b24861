"""One run's plan: what a (model, chip, batch size, configuration) runs and where every artefact
goes, decided once by npuzoo/run.py and written as mk/pipeline.mk's rule variables and the report's
manifest (`path`). The variant label is the one name of a configuration: its report's field and
folder, and the READMEs' headings, rows and plot lines."""

import contextlib
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from npuzoo.config import BACKEND_LABELS
from npuzoo.files import atomic_write

ASCEND_ENGINE = "ais_bench"  # an Ascend chip runs the compiled .om with ais_bench
# What a plan file may hold: validated tokens and paths under build/ (no `$`, `#`, quote or
# line break, which Make would read).
SAFE_VALUE = re.compile(r"[A-Za-z0-9._/+=,: -]*")


# A quantiser's word in variant labels and build/ names: never an engine's, so that
# `int8-onnxruntime` always says the engine.
QUANTIZER_WORDS = {"onnxruntime": "ortquant", "nncf": "nncf"}


def variant_label(aipp: bool, precision: str, engine: str, own_engine: str,
                  quantizer: str = "") -> str:
    """What sets a run apart from the model's own (''), joined by '-': `aipp`, `int8`, `nncf` for
    NNCF's graph (ONNX Runtime's is plain `int8` whatever INT8_QUANTIZER says, so that a report
    keeps its folder when that changes), an engine not the run's own (int8's: INT8_BACKEND)."""
    return "-".join(["aipp"] * aipp + [precision] * (precision != "fp32")
                    + ["nncf"] * (quantizer == "nncf") + [engine] * (engine != own_engine))


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A (model, chip, batch size, configuration) with its inputs identified by content."""

    model: str
    soc: str
    bs: int
    runner: str
    device: str
    loop: int
    warmup: int
    limit: int | None
    aipp: bool
    precision: str
    engine: str  # the engine the run is set up for (the tuning may pick another at run time)
    own_engine: str
    quantizer: str  # int8's (npuzoo/quantize.py METHODS); '' for fp32
    tuned: bool
    streams: int  # perf-step streams; 0: the tuning's
    perf_seconds: int
    force: bool
    strict: bool
    has_upstream: bool
    # the inputs' ids, found one after the other by npuzoo/run.py
    data_id: str = ""
    prep_key: str = ""
    prep_bytes: int = 0
    export_key: str = ""
    weights_id: str = ""
    weights_path: str = ""
    calib: int = 0
    calib_id: str = ""
    calib_offset: int = 0
    calib_prep_key: str = ""
    image_hashes: tuple[tuple[str, str], ...] = ()  # RUNNER=docker: mk/docker.mk's NAME=HASH
    show_only: bool = False  # make -n: a missing input is said as what it is, not an error

    @property
    def variant(self) -> str:
        return variant_label(self.aipp, self.precision, self.engine, self.own_engine,
                             self.quantizer)

    def how(self) -> str:
        """How the run measures, for its header: `on OpenVINO, int8, 2 streams`, `with AIPP`."""
        if self.soc != "cpu":
            return "with ais_bench" + (", AIPP" if self.aipp else "")
        label = BACKEND_LABELS.get(self.engine, self.engine)
        # int8: streams tuned on the engine its graph was quantised for (npuzoo.tune)
        tuned = f"streams tuned on {label}" if self.quantizer else \
            f"engine and streams tuned (TUNE=0: {label})"
        words = [tuned if self.tuned else f"on {label}",
                 self.precision + (f" ({self.quantizer} quantiser)" if self.quantizer else ""),
                 "AIPP" if self.aipp else "",
                 "" if self.tuned else f"{self.streams} stream(s)",
                 f"perf loop {self.loop}" + (f" and {self.perf_seconds} s"
                                             if self.perf_seconds else "")]
        return ", ".join(w for w in words if w)

    def make_args(self, *targets: str, bs: int | None = None, **extra: object) -> list[str]:
        """mk/pipeline.mk's arguments: the plan file of batch size `bs` (written now), `extra`
        (the sweep's validated tokens) and the targets."""
        path = (dataclasses.replace(self, bs=bs) if bs else self).write()
        return ["-f", "mk/pipeline.mk", f"PLAN={path}", *(f"{k}={v}" for k, v in extra.items()),
                *targets]

    def paths(self) -> dict[str, str]:
        """Every artefact of the run, by its name in mk/pipeline.mk ('' where there is none)."""
        b, int8, ascend = f"build/{self.model}", self.precision == "int8", self.soc != "cpu"
        chip = f"{b}/{self.soc}/{self.weights_id}"
        # int8: the quantiser always named (the label leaves ONNX Runtime's out), so that
        # another INT8_QUANTIZER or QUANTIZER never finds this one's files
        words = [word for word in self.variant.split("-") if word]
        if int8 and QUANTIZER_WORDS[self.quantizer] not in words:
            words.insert(words.index("int8") + 1, QUANTIZER_WORDS[self.quantizer])
        suffix = "".join("_" + word for word in words)
        onnx = f"{b}/onnx/{self.weights_id}/{self.model}.onnx"
        run_dir = f"{chip}/bs{self.bs}{suffix}"
        backend_json = f"{run_dir}/backend.json" if ascend else ""
        variant = f"/{self.variant}" if self.variant else ""
        return {
            "B": b, "MODEL_DIR": f"models/{self.model}",
            "WEIGHTS_JSON": f"{b}/weights/{self.weights_id}.json",
            "DATASET_DIR": f"build/data/{self.data_id}",
            "DATA_LINK": f"build/inputs/{self.data_id}.data",
            "PREP_DIR": f"build/prep/{self.prep_key}",
            "EXPORT_INPUTS": f"{b}/onnx/export-{self.export_key}.key",
            "SOURCE_DIR": f"{b}/src/upstream" if self.has_upstream else "",
            "SOURCE_JSON": f"{b}/src/source.json" if self.has_upstream else "",
            "AIPP_CFG": f"{b}/aipp.cfg" if self.aipp else "",
            "CALIB_DATASET_DIR": f"build/data/{self.calib_id}" if int8 else "",
            "CALIB_LINK": f"build/inputs/{self.calib_id}.data" if int8 else "",
            "CALIB_PREP_DIR": f"build/prep/{self.calib_prep_key}" if int8 else "",
            "ONNX": onnx,
            # int8: the export quantised, per quantiser and calibration set
            "COMPILE_SOURCE": f"{onnx[:-5]}_int8-{QUANTIZER_WORDS[self.quantizer]}-"
                              f"{self.calib_prep_key}.onnx" if int8 else onnx,
            "OM_BASE": f"{chip}/{self.model}_bs{self.bs}{suffix}" if ascend else "",
            # OpenVINO's compile keeps to standard operators (--portable): a name of its own
            "COMPILED": f"{chip}/{self.model}_bs{self.bs}{suffix}" + (
                ".om" if ascend else "_portable.onnx" if self.engine == "openvino" else ".onnx"),
            "RUN_DIR": run_dir, "OUT_DIR": f"{run_dir}/{self.data_id}",
            "PERF_DIR": f"{run_dir}/perf-loop{self.loop}-warmup{self.warmup}"
                        + (f"-streams{self.streams}" if self.streams else "")
                        + (f"-{self.perf_seconds}s" if self.perf_seconds else "")
                        + ("-tuned" if self.tuned else ""),
            "BACKEND_JSON": backend_json,
            # what `report write` merges: AIPP or int8 facts, or the Ascend description
            "REPORT_EXTRA": f"{run_dir}/backend-aipp.json" if self.aipp else
                            f"{run_dir}/backend-int8.json" if int8 else backend_json,
            "REPORT": f"reports/{self.model}{variant}/{self.soc}_bs{self.bs}.json",
            "MANIFEST": self.path("json")}

    def make_variables(self) -> dict[str, str]:
        """The rule variables of mk/pipeline.mk: values, paths, the engine's flags."""
        paths, int8 = self.paths(), self.precision == "int8"
        bench = [f"--backend {self.engine}"] + ["--precision int8"] * int8 \
            + ["--tune build/tuning"] * self.tuned if self.soc == "cpu" else []
        compile_flags = [f"--batch {self.bs}"] + [f"--aipp {paths['AIPP_CFG']}"] * self.aipp \
            + ["--portable"] * (self.engine == "openvino")
        perf = [f"--streams {self.streams}"] * bool(self.streams) \
            + [f"--loop_seconds {self.perf_seconds}"] * bool(self.perf_seconds)
        values: dict[str, object] = {
            "MODEL": self.model, "BS": self.bs, "SOC": self.soc, "RUNNER": self.runner,
            "DEVICE": self.device, "LOOP": self.loop, "WARMUP": self.warmup,
            "N": self.limit or "", "VARIANT": self.variant, "ENGINE": self.engine,
            "WEIGHTS_ID": self.weights_id, "WEIGHTS_PATH": self.weights_path,
            "DATASET_ID": self.data_id, "PREP_BYTES": self.prep_bytes, "INT8": "1" * int8,
            "QUANTIZER": self.quantizer, "CALIB": self.calib, "CALIB_ID": self.calib_id,
            "CALIB_OFFSET": self.calib_offset,
            **paths, "BENCH_FLAGS": " ".join(bench), "COMPILE_FLAGS": " ".join(compile_flags),
            "PERF_FLAGS": " ".join(perf),
            "PUBLISH_FLAGS": " ".join(["--force"] * self.force + ["--strict"] * self.strict),
            "SHOW_ONLY": "1" * self.show_only, **dict(self.image_hashes)}
        return {name: str(value) for name, value in values.items()}

    def manifest(self) -> dict[str, Any]:
        """What `npuzoo.report write` reads: {option: value}, paths under build/."""
        paths = self.paths()
        return {"model": self.model, "soc": self.soc, "bs": self.bs, "variant": self.variant,
                "engine": self.engine, "dataset": f"{paths['DATASET_DIR']}/dataset.json",
                "weights": paths["WEIGHTS_JSON"], "accuracy": f"{paths['OUT_DIR']}/accuracy.json",
                "results_dir": f"{paths['OUT_DIR']}/results", "prep_dir": paths["PREP_DIR"],
                "perf_dir": paths["PERF_DIR"], "perf_dirname": "perf", "loop": self.loop,
                "warmup": self.warmup, "steps": f"{paths['B']}/steps.jsonl",
                "source": paths["SOURCE_JSON"] or None, "extra": paths["REPORT_EXTRA"] or None,
                "fp32_model": paths["ONNX"] if self.precision == "int8" else None}

    def docker_args(self) -> list[str]:
        return [f"SOC={self.soc}", *(f"{name}={value}" for name, value in self.image_hashes)]

    def makefile(self) -> str:
        lines = []
        for name, value in self.make_variables().items():
            if not SAFE_VALUE.fullmatch(value):
                raise ValueError(f"plan {name}={value!r}: not a validated token or path")
            lines.append(f"{name} := {value}\n")
        return "# Written by npuzoo/run.py (npuzoo/plan.py) for mk/pipeline.mk.\n" + "".join(lines)

    def path(self, ext: str) -> str:
        """build/<model>/plans/<hash>.<ext> (`mk` or `json`), the hash of the plan's fields."""
        fields = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return f"build/{self.model}/plans/{hashlib.sha256(fields).hexdigest()[:16]}.{ext}"

    def write(self, root: str = ".") -> str:
        """Write the plan file and the manifest under `root` (the repository), each unless it is
        there as it would be written (its time kept for Make); return the plan file's path."""
        for path, text in ((self.path("json"), json.dumps(self.manifest(), indent=2) + "\n"),
                           (self.path("mk"), self.makefile())):
            with contextlib.suppress(OSError):
                if Path(root, path).read_text(encoding="utf-8") == text:
                    continue
            atomic_write(Path(root, path), text)
        return self.path("mk")
