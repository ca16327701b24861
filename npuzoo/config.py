"""model.yaml's one reader: `load(name_or_path)` validates the file against one schema into a
frozen ModelSpec, a bad value in one line naming file and field (`models/x/model.yaml:
preprocess.crop: expected a positive integer, got 'big'`); `makevars MODEL`: mk/pipeline.mk's.
"""

import argparse
import glob
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import yaml

from npuzoo.errors import UserError, cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(REPO_ROOT, "models")

# The CPU engines (npuzoo.engines). DEFAULT_BACKEND is a model's unless `runtime.backend` names
# another, INT8_BACKEND runs PRECISION=int8 unless BACKEND= does, and INT8_QUANTIZER is int8's
# quantiser per engine unless QUANTIZER= says: measurements on one machine
# (benchmarks/results/engines.json, int8.json), not general facts (hence npuzoo.tune).
BACKENDS = ("onnxruntime", "openvino")
BACKEND_LABELS = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
DEFAULT_BACKEND = "openvino"
INT8_BACKEND = "openvino"
INT8_QUANTIZER = {"openvino": "nncf", "onnxruntime": "onnxruntime"}


# -- checkers: each returns what is wrong with a value, or None ----------------------------

Check = Callable[[Any], str | None]


def _is(test: Callable[[Any], Any], wanted: str) -> Check:
    return lambda value: None if test(value) else f"expected {wanted}"


def _int_from(low: int) -> Check:
    return _is(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
               "a positive integer" if low else "an integer of 0 or more")


_positive_int, _count = _int_from(1), _int_from(0)
_number = _is(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
_text = _is(lambda v: isinstance(v, str) and v.strip(), "a non-empty string")
_pinned = _is(lambda v: isinstance(v, str) and re.fullmatch(
    r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s;,=]+", v.strip()), "a pinned requirement name==version")


def _one_of(*choices: object) -> Check:
    return _is(lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def _list_of(check: Check, length: int | None = None) -> Check:
    def check_list(value: Any) -> str | None:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            return f"expected a list of {length}" if length else "expected a list"
        problems = [p for p in map(check, value) if p]
        return f"{problems[0]} in every item" if problems else None
    return check_list


def _hex(low: int, high: int | None = None) -> Check:
    return _is(lambda v: isinstance(v, str) and low <= len(v) <= (high or low)
               and re.fullmatch("[0-9a-fA-F]*", v), f"{low} hexadecimal digits" if high is None
               else f"a commit hash ({low} to {high} hexadecimal digits)")


class _Reader:
    """Reads dotted fields of one model.yaml; a bad or missing one raises a one-line UserError."""

    def __init__(self, data: dict[str, Any], where: str, prefix: str = "") -> None:
        self.data, self.where, self.prefix = data, where, prefix

    def fail(self, dotted: str, problem: str) -> UserError:
        at = ".".join(part for part in (self.prefix, dotted) if part)
        return UserError(f"{self.where}: {at}: {problem}")

    def unknown(self, dotted: str, table: dict[str, Any], fields: tuple[str, ...],
                what: str = "") -> None:
        extra = sorted(set(table) - set(fields))
        if extra:
            raise self.fail(dotted, f"unknown field {extra[0]!r}{what} (fields: "
                                    + ", ".join(fields) + ")")

    def section(self, dotted: str) -> dict[str, Any]:
        node: Any = self.data
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            node = node.get(part)
            if node is None:
                return {}
            if not isinstance(node, dict):
                raise self.fail(".".join(parts[:depth + 1]), f"expected a mapping, got {node!r}")
        return dict(node)

    def get(self, dotted: str, check: Check, required: bool | str = True) -> Any:
        """The checked value at `dotted`; None where absent and not `required` (a text: why)."""
        head, _, key = dotted.rpartition(".")
        value = self.section(head).get(key) if head else self.data.get(key)
        if value is None and required:
            raise self.fail(dotted, f"missing ({'required' if required is True else required})")
        problem = None if value is None else check(value)
        if problem:
            raise self.fail(dotted, f"{problem}, got {value!r}")
        return value


def _spec(check: Check, required: bool | str = True) -> dict[str, Any]:
    """A field's metadata; `required`: False (absent: None), or a text saying why it is."""
    return {"check": check, "required": required}


T = TypeVar("T")


def _read(read: _Reader, cls: type[T], prefix: str, required: str = "", **given: Any) -> T:
    """`cls` of the fields at `prefix` and `given`; `required`: why a required field is."""
    values = dict(given)
    for spec in fields(cls):  # type: ignore[arg-type]  # (cls: one of the dataclasses below)
        if "check" in spec.metadata:
            why = spec.metadata["required"]
            value = read.get(".".join(filter(None, (prefix, spec.name))), spec.metadata["check"],
                             required if why is True and required else why)
            values[spec.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


@dataclass(frozen=True)
class PreviousWeights:
    url: str | None
    md5: str | None = field(metadata=_spec(_hex(32), False))


@dataclass(frozen=True)
class WeightsSpec:
    file: str = field(metadata=_spec(_text))
    url: str = field(metadata=_spec(_text))
    layout: str = field(metadata=_spec(_one_of("plain", "state_dict_key", "module_prefix")))
    md5: str | None = field(default=None, metadata=_spec(_hex(32), False))
    sha256: str | None = field(default=None, metadata=_spec(_hex(64), False))
    size: int | None = field(default=None, metadata=_spec(_positive_int, False))
    previous: PreviousWeights | None = None

    @property
    def published(self) -> tuple[str, str] | None:
        """(algorithm, lower-case hex digest) to verify a download against, sha256 first."""
        return next(((algorithm, str(getattr(self, algorithm)).lower())
                     for algorithm in ("sha256", "md5") if getattr(self, algorithm)), None)


@dataclass(frozen=True)
class InputSpec:
    name: str = field(metadata=_spec(_text))
    shape: tuple[int, int, int] = field(metadata=_spec(_list_of(_positive_int, 3)))  # C, H, W
    layout: str = field(metadata=_spec(_one_of("NCHW")))
    dtype: str = field(metadata=_spec(_one_of("float32")))


@dataclass(frozen=True)
class OutputSpec:
    name: str = field(metadata=_spec(_text))
    classes: int = field(metadata=_spec(_one_of(1000, 1001)))


@dataclass(frozen=True)
class PreprocessSpec:
    resize: int = field(metadata=_spec(_positive_int))
    resize_rule: str = field(metadata=_spec(_one_of("shorter_side")))
    interpolation: str = field(metadata=_spec(_one_of("bilinear")))
    crop: int = field(metadata=_spec(_positive_int))
    crop_offset: str = field(metadata=_spec(_one_of("round", "floor")))
    mean: tuple[float, float, float] = field(metadata=_spec(_list_of(_number, 3)))
    std: tuple[float, float, float] = field(metadata=_spec(_list_of(_number, 3)))


@dataclass(frozen=True)
class OnnxSpec:
    opset: int = field(metadata=_spec(_one_of(11, 13)))
    dynamic_batch: bool = field(metadata=_spec(_one_of(True, False)))


@dataclass(frozen=True)
class PerfSpec:
    """The guide's perf command: `ais_bench --loop N` and --warmup_count (the tool's default: 1)."""
    loop: int = field(metadata=_spec(_positive_int, "required with perf: the guide's --loop"))
    warmup: int = field(metadata=_spec(_count, "required with perf: the guide's --warmup_count"))
    source: str | None = field(default=None, metadata=_spec(_text, False))


@dataclass(frozen=True)
class TopK:
    top1: float | None = field(metadata=_spec(_number, False))
    top5: float | None = field(metadata=_spec(_number, False))


@dataclass(frozen=True)
class ReferencePerf:
    """One chip's published images/s by batch size, per chip or per card of `chips` chips (the
    ModelZoo's Ascend310 tables are per Atlas 300I card, four 310 chips)."""
    published: dict[int, float]
    per: str
    chips: int
    note: str
    source: str = field(metadata=_spec(
        _text, "where the figures come from: the guide's table, or which other README"))

    @property
    def fps(self) -> dict[int, float]:
        """Per chip: a per-card figure divided by its chips, to compare with a one-device run."""
        return {bs: fps / self.chips for bs, fps in self.published.items()}


@dataclass(frozen=True)
class ReferenceSpec:
    accuracy: TopK
    accuracy_source: str
    tolerance: TopK
    perf: dict[str, ReferencePerf] = field(default_factory=dict)  # model.yaml's order


@dataclass(frozen=True)
class GitSource:
    url: str = field(metadata=_spec(_text))
    commit: str = field(metadata=_spec(_hex(7, 40)))  # the commit checked out must start with it
    patch: str | None
    why: str = field(metadata=_spec(_text))
    kind: ClassVar[str] = "git"


@dataclass(frozen=True)
class PypiSource:
    requirement: str = field(metadata=_spec(_pinned))  # name==version
    # of the sdist file, checked before it is unpacked
    sha256: str = field(metadata=_spec(_hex(64), "required for kind pypi: the sha256 of the "
                                                 "sdist file, 64 hexadecimal digits"))
    patch: str | None
    why: str = field(metadata=_spec(_text))
    kind: ClassVar[str] = "pypi"


Source = GitSource | PypiSource


@dataclass(frozen=True)
class UpstreamSpec:
    """Where the network's code comes from; `sources` are tried in order by npuzoo.source."""
    repo: str | None = field(default=None, metadata=_spec(_text, False))
    commit: str | None = field(default=None, metadata=_spec(_hex(7, 40), False))
    path: str | None = field(default=None, metadata=_spec(_text, False))
    note: str | None = field(default=None, metadata=_spec(_text, False))
    patch: str | None = field(default=None, metadata=_spec(_text, False))
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    name: str = field(metadata=_spec(_text))
    description: str = field(metadata=_spec(_text))
    license: str = field(metadata=_spec(_text))
    task: str = field(metadata=_spec(_one_of("classification")))
    folder: str  # the model folder, where the files model.yaml names are
    weights: WeightsSpec
    input: InputSpec
    output: OutputSpec
    preprocess: PreprocessSpec
    onnx: OnnxSpec
    backend: str  # runtime.backend: its CPU engine unless BACKEND= or the tuning says otherwise
    atc_extra_args: tuple[str, ...]
    perf: PerfSpec | None
    reference: ReferenceSpec
    upstream: UpstreamSpec


def parse(data: object, where: str, folder: str) -> ModelSpec:
    """The ModelSpec of model.yaml's `data` (`where`: the file, for errors; `folder`: its own)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of fields at the top level")
    read = _Reader(data, where)
    previous = read.section("weights.previous")
    weights = _read(read, WeightsSpec, "weights", previous=_read(
        read, PreviousWeights, "weights.previous", url=previous.get("url")) if previous else None)
    # Unpublished checksums exist (TResNet-M); those must say so explicitly.
    if not weights.published and read.section("weights").get("checksum") != "unpublished":
        raise UserError(f"{where}: weights: give md5 or sha256 "
                        "(or checksum: unpublished where none is published)")
    image = _read(read, InputSpec, "input")
    pre = _read(read, PreprocessSpec, "preprocess")
    if image.shape != (3, pre.crop, pre.crop):
        raise read.fail("input.shape", f"expected [3, {pre.crop}, {pre.crop}] (RGB, the square "
                                       f"crop of preprocess.crop), got {list(image.shape)!r}")
    if pre.crop > pre.resize:
        raise read.fail("preprocess.crop", f"must not exceed preprocess.resize ({pre.resize})")
    if any(v <= 0 for v in pre.std):
        raise read.fail("preprocess.std", f"expected positive numbers, got {list(pre.std)!r}")
    perf = read.section("perf")
    read.unknown("perf", perf, tuple(spec.name for spec in fields(PerfSpec)))
    listed = read.get("upstream.sources", _is(lambda v: isinstance(v, list) and v,
                                              "a non-empty list of sources"), False)
    return _read(
        read, ModelSpec, "", folder=folder, weights=weights, input=image,
        output=_read(read, OutputSpec, "output"), preprocess=pre,
        onnx=_read(read, OnnxSpec, "onnx"),
        backend=read.get("runtime.backend", _one_of(*BACKENDS), False) or DEFAULT_BACKEND,
        atc_extra_args=tuple(read.get("atc.extra_args", _list_of(_text), False) or ()),
        perf=_read(read, PerfSpec, "perf") if perf else None,
        reference=_reference(read),
        upstream=_read(read, UpstreamSpec, "upstream", sources=tuple(
            _source(entry, where, f"upstream.sources[{index}]", folder)
            for index, entry in enumerate(listed or []))))


def _reference(read: _Reader) -> ReferenceSpec:
    """reference.accuracy, the gate's tolerance, reference.perf.<chip> (key `source`: no chip)."""
    chips: dict[str, ReferencePerf] = {}
    for chip, table in read.section("reference.perf").items():
        if chip == "source":
            continue
        at = f"reference.perf.{chip}"
        rows = table.get("fps") if isinstance(table, dict) else None
        if not isinstance(table, dict) or not isinstance(rows, dict) or not rows:
            raise read.fail(f"{at}.fps", "expected a mapping of batch size to images/s")
        for bs, fps in rows.items():
            if _positive_int(bs) or _number(fps):
                raise read.fail(f"{at}.fps.{bs}", f"expected batch size: images/s, got "
                                                  f"{bs!r}: {fps!r}")
        read.unknown(at, table, ("fps", "per", "chips", "note", "source"))
        per = read.get(f"{at}.per", _one_of("chip", "card"), False) or "chip"
        count = read.get(f"{at}.chips", _positive_int,
                         per == "card" and "required with per: card: the chips of the card")
        if per == "chip" and count is not None:
            raise read.fail(f"{at}.chips", "only with per: card (these figures are per chip)")
        chips[chip] = _read(read, ReferencePerf, at, published=dict(rows), per=per,
                            chips=count or 1, note=table.get("note") or "")
    return ReferenceSpec(
        accuracy=_read(read, TopK, "reference.accuracy"),
        accuracy_source=read.get("reference.accuracy.source", _text),
        tolerance=TopK(top1=read.get("reference.tolerance.top1", _number),
                       top5=read.get("reference.tolerance.top5", _number)),
        perf=chips)


def _source(entry: object, where: str, at: str, folder: str) -> Source:
    read = _Reader(entry if isinstance(entry, dict) else {}, where, at)
    if not isinstance(entry, dict):
        raise read.fail("", "expected a mapping with kind, patch and why")
    kind = read.get("kind", _one_of("git", "pypi"))
    cls: type[Source] = GitSource if kind == "git" else PypiSource
    read.unknown("", entry, tuple(sorted(["kind", *(spec.name for spec in fields(cls))])),
                 f" for kind {kind}")
    if "patch" not in entry:
        raise read.fail("patch", "missing (name the patch file, or null for none)")
    patch = read.get("patch", _is(
        lambda p: isinstance(p, str) and p.strip() and not os.path.isabs(p)
        and ".." not in re.split(r"[\\/]", p), "a file name in the model folder or null"), False)
    if patch is not None and not os.path.isfile(os.path.join(folder, patch)):
        raise read.fail("patch", f"{patch} not found in {os.path.relpath(folder, REPO_ROOT)}")
    return _read(read, cls, "", f"required for kind {kind}", patch=patch)


# -- files and folders --------------------------------------------------------------------

def model_dir(name: str) -> str:
    return os.path.join(MODELS_DIR, name)


def model_names(models_dir: str = MODELS_DIR) -> list[str]:
    """The one model list (the Makefile's MODEL_NAMES is the same wildcard), sorted."""
    return sorted(os.path.dirname(p) for p in glob.glob("*/model.yaml", root_dir=models_dir)
                  if os.path.isfile(os.path.join(models_dir, p)))


def load(name_or_path: str) -> ModelSpec:
    """The validated model.yaml of a model name or of a path to the file."""
    path = name_or_path if name_or_path.endswith((".yaml", ".yml")) else \
        os.path.join(model_dir(name_or_path), "model.yaml")
    where = os.path.relpath(path, REPO_ROOT) if os.path.isabs(path) else path
    if not os.path.isfile(path):
        known = ", ".join(model_names()) or "none"
        raise UserError(f"{where}: no such model file (known models: {known})")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{where}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    folder = os.path.dirname(os.path.abspath(path))
    spec = parse(data, where, folder)
    if spec.name != os.path.basename(folder):
        raise UserError(f"{where}: name: must equal the folder name {os.path.basename(folder)!r}")
    return spec


def perf_defaults(spec: ModelSpec) -> dict[str, int]:
    """{"loop": N, "warmup": M} of the guide's perf command, or {} where model.yaml has none."""
    return {"loop": spec.perf.loop, "warmup": spec.perf.warmup} if spec.perf else {}


def make_variables(spec: ModelSpec) -> str:
    """The Make lines for mk/*.mk: model.yaml's facts and the command functions of commands.py."""
    from npuzoo import commands

    return (f"WEIGHTS_FILE := {spec.weights.file}\n"
            f"HAS_UPSTREAM := {'1' if spec.upstream.sources else ''}\n"
            + "".join(f"{key} = {text}\n" for key, text in commands.make_functions(spec).items()))


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.config", description="Validate "
                                     "model.yaml files, or print one model's Make variables.")
    parser.add_argument("command", choices=["check", "makevars"])
    parser.add_argument("model", nargs="?", help="model name (all models if omitted)")
    args = parser.parse_args(argv)
    if args.command == "check":
        for name in [args.model] if args.model else model_names():
            load(name)
            print(f"{name}: ok")
    else:
        if not args.model:
            raise UserError("makevars needs a model name")
        sys.stdout.write(make_variables(load(args.model)))


if __name__ == "__main__":
    main()
