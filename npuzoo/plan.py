"""One run's plan: what a (model, chip, batch size, configuration) runs and where every artefact
goes, decided once by the driver (npuzoo/run.py) and written as the two files the later steps
read:

  build/<model>/plans/<sha256[:16]>.mk     the rule variables of mk/pipeline.mk
                                           (`make -f mk/pipeline.mk PLAN=<that file> ...`)
  build/<model>/plans/<sha256[:16]>.json   the run manifest `npuzoo.report write` reads

Both are named by their content, so a plan is written once, never changed, and runs of other
configurations never share one. The variant label (`variant_label`) is the one name of a
configuration: the report records it, its folder under reports/<model>/ is it, and the READMEs'
headings and plot lines show it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

from npuzoo.files import atomic_write

ASCEND_ENGINE = "ais_bench"  # an Ascend chip runs the compiled .om with ais_bench
TUNING_CACHE = "build/tuning"
# What a plan file may hold: validated tokens and paths under build/ (no `$`, `#`, quote or
# line break: Make would read those).
SAFE_VALUE = re.compile(r"[A-Za-z0-9._/+=,: -]*")


def variant_label(aipp: bool, precision: str, engine: str, own_engine: str) -> str:
    """'' for a model's own run; else what sets the run apart, joined by '-': `aipp`, a
    precision other than fp32, the engine when it is not the run's own (for int8 the int8
    engine, else the model's). `int8`, `int8-onnxruntime`, `openvino`, `aipp`."""
    words = (["aipp"] if aipp else []) + ([precision] if precision != "fp32" else []) \
        + ([engine] if engine != own_engine else [])
    return "-".join(words)


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
    tuned: bool
    streams: int  # perf-step streams; 0: the tuning's
    perf_seconds: int
    force: bool
    strict: bool
    data_id: str
    prep_key: str
    prep_bytes: int
    export_key: str
    weights_id: str
    weights_path: str
    has_upstream: bool
    calib: int = 0
    calib_id: str = ""
    calib_offset: int = 0
    calib_prep_key: str = ""
    image_hashes: tuple[tuple[str, str], ...] = ()  # RUNNER=docker: mk/docker.mk's NAME=HASH
    show_only: bool = False  # make -n: a missing input is said as what it is, not an error

    @property
    def variant(self) -> str:
        return variant_label(self.aipp, self.precision, self.engine, self.own_engine)

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def build(self) -> str:
        return f"build/{self.model}"

    @property
    def compiled_dir(self) -> str:
        return f"{self.build}/{self.soc}/{self.weights_id}"

    @property
    def suffix(self) -> str:
        """The variant in build/ names: `_int8_onnxruntime`."""
        return "".join("_" + word for word in self.variant.split("-") if word)

    @property
    def onnx(self) -> str:
        return f"{self.build}/onnx/{self.weights_id}/{self.model}.onnx"

    @property
    def compile_source(self) -> str:
        """The graph the compile step reads: the export, or for int8 its quantised copy (per
        calibration set)."""
        if not self.int8:
            return self.onnx
        return f"{self.build}/onnx/{self.weights_id}/{self.model}_int8-{self.calib_prep_key}.onnx"

    @property
    def om_base(self) -> str:
        """Ascend: atc's --output (it appends .om)."""
        return f"{self.compiled_dir}/{self.model}_bs{self.bs}{self.suffix}"

    @property
    def compiled(self) -> str:
        if self.soc != "cpu":
            return self.om_base + ".om"
        # OpenVINO's compile keeps to standard operators (--portable): a name of its own, so
        # no run on the other engine reuses it.
        portable = "_portable" if self.engine == "openvino" else ""
        return f"{self.compiled_dir}/{self.model}_bs{self.bs}{self.suffix}{portable}.onnx"

    @property
    def run_dir(self) -> str:
        return f"{self.compiled_dir}/bs{self.bs}{self.suffix}"

    @property
    def perf_dir(self) -> str:
        return (f"{self.run_dir}/perf-loop{self.loop}-warmup{self.warmup}"
                + (f"-streams{self.streams}" if self.streams else "")
                + (f"-{self.perf_seconds}s" if self.perf_seconds else "")
                + ("-tuned" if self.tuned else ""))

    @property
    def out_dir(self) -> str:
        return f"{self.run_dir}/{self.data_id}"

    @property
    def report(self) -> str:
        """The committed report's path under reports/: the variant is its folder."""
        folder = f"reports/{self.model}" + (f"/{self.variant}" if self.variant else "")
        return f"{folder}/{self.soc}_bs{self.bs}.json"

    @property
    def backend_json(self) -> str:
        """Ascend: the CANN, driver and ais_bench versions (npuzoo.ascend describe)."""
        return f"{self.run_dir}/backend.json" if self.soc != "cpu" else ""

    @property
    def report_extra(self) -> str:
        """The JSON `report write` merges (backend description, AIPP or int8 facts)."""
        if self.aipp:
            return f"{self.run_dir}/backend-aipp.json"
        return f"{self.run_dir}/backend-int8.json" if self.int8 else self.backend_json

    def make_variables(self) -> dict[str, str]:
        """The rule variables of mk/pipeline.mk."""
        b = self.build
        calib_dir = f"build/data/{self.calib_id}" if self.int8 else ""
        flags = ""
        if self.soc == "cpu":
            flags = f"--backend {self.engine}" + (" --precision int8" if self.int8 else "") \
                + (f" --tune {TUNING_CACHE}" if self.tuned else "")
        values: dict[str, object] = {
            "MODEL": self.model, "BS": self.bs, "SOC": self.soc, "RUNNER": self.runner,
            "DEVICE": self.device, "LOOP": self.loop, "WARMUP": self.warmup,
            "N": self.limit or "", "MODEL_DIR": f"models/{self.model}", "B": b,
            "VARIANT": self.variant, "ENGINE": self.engine,
            "WEIGHTS_ID": self.weights_id, "WEIGHTS_PATH": self.weights_path,
            "WEIGHTS_JSON": f"{b}/weights/{self.weights_id}.json",
            "DATASET_ID": self.data_id, "DATASET_DIR": f"build/data/{self.data_id}",
            "DATA_LINK": f"build/inputs/{self.data_id}.data",
            "PREP_DIR": f"build/prep/{self.prep_key}", "PREP_BYTES": self.prep_bytes,
            "EXPORT_INPUTS": f"{b}/onnx/export-{self.export_key}.key",
            "SOURCE_DIR": f"{b}/src/upstream" if self.has_upstream else "",
            "SOURCE_JSON": f"{b}/src/source.json" if self.has_upstream else "",
            "AIPP_CFG": f"{b}/aipp.cfg" if self.aipp else "",
            "INT8": "1" if self.int8 else "", "CALIB": self.calib,
            "CALIB_ID": self.calib_id, "CALIB_OFFSET": self.calib_offset,
            "CALIB_DATASET_DIR": calib_dir,
            "CALIB_LINK": f"build/inputs/{self.calib_id}.data" if self.int8 else "",
            "CALIB_PREP_DIR": f"build/prep/{self.calib_prep_key}" if self.int8 else "",
            "ONNX": self.onnx, "COMPILE_SOURCE": self.compile_source,
            "COMPILED": self.compiled, "OM_BASE": self.om_base if self.soc != "cpu" else "",
            "COMPILE_FLAGS": f"--batch {self.bs}" + (f" --aipp {b}/aipp.cfg" if self.aipp else "")
                             + (" --portable" if self.engine == "openvino" else ""),
            "BENCH_FLAGS": flags,
            "PERF_FLAGS": " ".join(([f"--streams {self.streams}"] if self.streams else [])
                                   + ([f"--loop_seconds {self.perf_seconds}"]
                                      if self.perf_seconds else [])),
            "RUN_DIR": self.run_dir, "PERF_DIR": self.perf_dir, "OUT_DIR": self.out_dir,
            "BACKEND_JSON": self.backend_json, "REPORT_EXTRA": self.report_extra,
            "REPORT": self.report, "MANIFEST": self.path("json"),
            "PUBLISH_FLAGS": " ".join(["--force"] * self.force + ["--strict"] * self.strict),
            "SHOW_ONLY": "1" if self.show_only else "",
            **dict(self.image_hashes)}
        return {name: str(value) for name, value in values.items()}

    def manifest(self) -> dict[str, Any]:
        """What `npuzoo.report write` reads: {option: value}, paths under build/."""
        return {"model": self.model, "soc": self.soc, "bs": self.bs,
                "variant": self.variant, "engine": self.engine,
                "dataset": f"build/data/{self.data_id}/dataset.json",
                "weights": f"{self.build}/weights/{self.weights_id}.json",
                "accuracy": f"{self.out_dir}/accuracy.json",
                "results_dir": f"{self.out_dir}/results",
                "prep_dir": f"build/prep/{self.prep_key}", "perf_dir": self.perf_dir,
                "perf_dirname": "perf", "loop": self.loop, "warmup": self.warmup,
                "steps": f"{self.build}/steps.jsonl",
                "source": f"{self.build}/src/source.json" if self.has_upstream else None,
                "extra": self.report_extra or None,
                "fp32_model": self.onnx if self.int8 else None}

    def makefile(self) -> str:
        lines = []
        for name, value in self.make_variables().items():
            if not SAFE_VALUE.fullmatch(value):
                raise ValueError(f"plan {name}={value!r}: not a validated token or path")
            lines.append(f"{name} := {value}\n")
        return ("# Generated by npuzoo/run.py (npuzoo/plan.py) for mk/pipeline.mk; "
                "do not edit.\n" + "".join(lines))

    def path(self, ext: str) -> str:
        """build/<model>/plans/<hash>.<ext> (`mk` or `json`), the hash of what the plan holds."""
        fields = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"{self.build}/plans/{hashlib.sha256(fields.encode()).hexdigest()[:16]}.{ext}"

    def write(self, root: str = ".") -> str:
        """Write the plan file and the manifest under `root` (the repository); return the plan
        file's path, for `make -f mk/pipeline.mk PLAN=<path>`. An unchanged file is left as it
        is (its time too: Make sees nothing new)."""
        for path, text in ((self.path("json"), json.dumps(self.manifest(), indent=2) + "\n"),
                           (self.path("mk"), self.makefile())):
            try:
                with open(os.path.join(root, path), encoding="utf-8") as handle:
                    if handle.read() == text:
                        continue
            except OSError:
                pass
            atomic_write(os.path.join(root, path), text)
        return self.path("mk")
