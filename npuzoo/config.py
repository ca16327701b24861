"""model.yaml: load, validate, and expose as Make variables.

Every models/<name>/model.yaml is the single source of truth for its model. Validation
fails with one line naming the file and the field, e.g.
`models/x/model.yaml: preprocess.crop: expected a positive integer, got 'big'`.
"""

import argparse
import os
import re
import shlex
import sys

import yaml

from npuzoo.errors import UserError, cli
from npuzoo.variables import CPU_PERF  # noqa: F401 (the CPU perf step's defaults)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(REPO_ROOT, "models")


# -- field checkers: each returns an error text, or None when the value is fine ----------

def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "expected a positive integer"


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "expected a number"


def _text(value):
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty string"


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "expected an integer of 0 or more"


def _one_of(*choices):
    def check(value):
        if value not in choices:
            return "expected one of " + ", ".join(map(str, choices))
    return check


def _list_of(check, length=None):
    def check_list(value):
        if not isinstance(value, list) or (length is not None and len(value) != length):
            return f"expected a list of {length}" if length else "expected a list"
        for item in value:
            problem = check(item)
            if problem:
                return f"{problem} in every item"
    return check_list


def _hex(length):
    def check(value):
        if not isinstance(value, str) or len(value) != length or any(
                c not in "0123456789abcdef" for c in value.lower()):
            return f"expected {length} hexadecimal digits"
    return check


# (dotted field, required, checker). Sections not listed are free-form.
SCHEMA = [
    ("name", True, _text),
    ("description", True, _text),
    ("license", True, _text),
    ("task", True, _one_of("classification")),
    ("weights.file", True, _text),
    ("weights.url", True, _text),
    ("weights.md5", False, _hex(32)),
    ("weights.sha256", False, _hex(64)),
    ("weights.size", False, _positive_int),
    ("weights.layout", True, _one_of("plain", "state_dict_key", "module_prefix")),
    ("weights.previous.md5", False, _hex(32)),
    ("input.name", True, _text),
    ("input.shape", True, _list_of(_positive_int, 3)),
    ("input.layout", True, _one_of("NCHW")),
    ("input.dtype", True, _one_of("float32")),
    ("output.name", True, _text),
    ("output.classes", True, _one_of(1000, 1001)),
    ("preprocess.resize", True, _positive_int),
    ("preprocess.resize_rule", True, _one_of("shorter_side")),
    ("preprocess.interpolation", True, _one_of("bilinear")),
    ("preprocess.crop", True, _positive_int),
    ("preprocess.crop_offset", True, _one_of("round", "floor")),
    ("preprocess.mean", True, _list_of(_number, 3)),
    ("preprocess.std", True, _list_of(_number, 3)),
    ("onnx.opset", True, _one_of(11, 13)),
    ("onnx.dynamic_batch", True, _one_of(True, False)),
    ("atc.extra_args", False, _list_of(_text)),
    # The perf step's defaults, as the guide runs `python3 -m ais_bench --loop N` (its
    # --warmup_count left at the tool's default, 1); LOOP= and WARMUP= override them.
    ("perf.loop", False, _positive_int),
    ("perf.warmup", False, _count),
    ("perf.source", False, _text),
    ("reference.accuracy.top1", False, _number),
    ("reference.accuracy.top5", False, _number),
    ("reference.accuracy.source", True, _text),
    ("reference.tolerance.top1", True, _number),
    ("reference.tolerance.top5", True, _number),
]

_MISSING = object()


def _get(data, dotted):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def validate(data, where, folder=None):
    """Raise UserError naming the first field of `data` that breaks SCHEMA.

    `folder` is the model folder, where files named by model.yaml (upstream patches) must be.
    """
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of fields at the top level")
    for field, required, check in SCHEMA:
        value = _get(data, field)
        if value is _MISSING or value is None:
            if required:
                raise UserError(f"{where}: {field}: missing (required)")
            continue
        problem = check(value)
        if problem:
            raise UserError(f"{where}: {field}: {problem}, got {value!r}")
    if not (data["weights"].get("md5") or data["weights"].get("sha256")):
        # Unpublished checksums exist (TResNet-M); those must say so explicitly.
        if data["weights"].get("checksum") != "unpublished":
            raise UserError(f"{where}: weights: give md5 or sha256 "
                            "(or checksum: unpublished where none is published)")
    if data["input"]["shape"][1] != data["preprocess"]["crop"]:
        raise UserError(f"{where}: preprocess.crop: must equal input.shape[1] "
                        f"({data['input']['shape'][1]})")
    pre, shape = data["preprocess"], data["input"]["shape"]
    if shape != [3, pre["crop"], pre["crop"]]:
        raise UserError(f"{where}: input.shape: expected [3, {pre['crop']}, {pre['crop']}] (RGB, "
                        f"the square crop of preprocess.crop), got {shape!r}")
    if pre["crop"] > pre["resize"]:
        raise UserError(f"{where}: preprocess.crop: must not exceed preprocess.resize "
                        f"({pre['resize']})")
    if any(v <= 0 for v in pre["std"]):
        raise UserError(f"{where}: preprocess.std: expected positive numbers, got {pre['std']!r}")
    perf = data.get("perf")
    if perf is not None:
        _validate_perf(perf, where)
    perf = _get(data, "reference.perf")
    if perf is not _MISSING and perf is not None:
        _validate_reference_perf(perf, where)
    upstream = data.get("upstream")
    if upstream is not None:
        _validate_upstream(upstream, where, folder)
    return data


# upstream: where the network's code comes from. `sources` (optional) lists candidates that
# npuzoo.source tries in order; each says which patch applies to it and why, and pins what it
# fetches: a git source its commit (7 to 40 hex digits; the commit checked out must start with
# it), a pypi source the sha256 of its sdist file (checked before the sdist is unpacked).
_SOURCE_FIELDS = {
    "git": {"kind", "url", "commit", "patch", "why"},
    "pypi": {"kind", "requirement", "sha256", "patch", "why"},
}
_SOURCE_FIELD_HELP = {"sha256": ": the sha256 of the sdist file, 64 hexadecimal digits"}
_PINNED_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[^\s;,=]+$")


def _commit(value):
    if (not isinstance(value, str) or not 7 <= len(value) <= 40
            or any(c not in "0123456789abcdef" for c in value.lower())):
        return "expected a commit hash (7 to 40 hexadecimal digits)"


def _validate_upstream(upstream, where, folder):
    if not isinstance(upstream, dict):
        raise UserError(f"{where}: upstream: expected a mapping (repo, commit, sources)")
    for field, check in (("repo", _text), ("commit", _commit)):
        if field in upstream and check(upstream[field]):
            raise UserError(f"{where}: upstream.{field}: {check(upstream[field])}, "
                            f"got {upstream[field]!r}")
    sources = upstream.get("sources")
    if sources is None:
        return
    if not isinstance(sources, list) or not sources:
        raise UserError(f"{where}: upstream.sources: expected a non-empty list of sources")
    for index, entry in enumerate(sources):
        _validate_source(entry, f"{where}: upstream.sources[{index}]", folder)


def _validate_source(entry, at, folder):
    if not isinstance(entry, dict):
        raise UserError(f"{at}: expected a mapping with kind, patch and why")
    kind = entry.get("kind")
    if kind not in _SOURCE_FIELDS:
        raise UserError(f"{at}.kind: expected one of git, pypi, got {kind!r}")
    unknown = sorted(set(entry) - _SOURCE_FIELDS[kind])
    if unknown:
        raise UserError(f"{at}: unknown field {unknown[0]!r} for kind {kind} (fields: "
                        + ", ".join(sorted(_SOURCE_FIELDS[kind])) + ")")
    checks = {"url": _text, "commit": _commit, "why": _text, "sha256": _hex(64),
              "requirement": lambda v: None if isinstance(v, str) and _PINNED_REQUIREMENT.match(
                  v.strip()) else "expected a pinned requirement name==version"}
    for field in sorted(_SOURCE_FIELDS[kind] - {"kind", "patch"}):
        if field not in entry or entry[field] is None:
            raise UserError(f"{at}.{field}: missing (required for kind {kind}"
                            f"{_SOURCE_FIELD_HELP.get(field, '')})")
        problem = checks[field](entry[field])
        if problem:
            raise UserError(f"{at}.{field}: {problem}, got {entry[field]!r}")
    if "patch" not in entry:
        raise UserError(f"{at}.patch: missing (name the patch file, or null for none)")
    patch = entry["patch"]
    if patch is None:
        return
    if _text(patch) or os.path.isabs(patch) or ".." in patch.replace("\\", "/").split("/"):
        raise UserError(f"{at}.patch: expected a file name in the model folder or null, "
                        f"got {patch!r}")
    if folder is not None and not os.path.isfile(os.path.join(folder, patch)):
        raise UserError(f"{at}.patch: {patch} not found in {os.path.relpath(folder, REPO_ROOT)}")


_PERF_FIELDS = {"loop", "warmup", "source"}


def _validate_perf(perf, where):
    if not isinstance(perf, dict):
        raise UserError(f"{where}: perf: expected a mapping with loop and warmup")
    unknown = sorted(set(perf) - _PERF_FIELDS)
    if unknown:
        raise UserError(f"{where}: perf: unknown field {unknown[0]!r} (fields: loop, warmup, "
                        "source)")
    for field in ("loop", "warmup"):
        if perf.get(field) is None:
            raise UserError(f"{where}: perf.{field}: missing (required with perf: the guide's "
                            f"--{'loop' if field == 'loop' else 'warmup_count'})")


# reference.perf.<chip>: fps {batch size: images/s} as published, and what one figure covers:
# `per: chip` (the default: one device, the unit a run here measures) or `per: card` with
# `chips:` the chips of that card (the ModelZoo's Ascend310 tables are per Atlas 300I card,
# four 310 chips: "310*4", "310单卡"). reference_perf_per_chip() divides them. `source:` (required)
# says where the figures come from: the guide's table, or a README other than the guide.
_REFERENCE_PERF_FIELDS = {"fps", "per", "chips", "note", "source"}


def _validate_reference_perf(perf, where):
    if not isinstance(perf, dict):
        raise UserError(f"{where}: reference.perf: expected a mapping of chip to table")
    for chip, table in perf.items():
        if chip == "source":
            continue
        at = f"{where}: reference.perf.{chip}"
        rows = table.get("fps") if isinstance(table, dict) else None
        if not isinstance(rows, dict) or not rows:
            raise UserError(f"{at}.fps: expected a mapping of batch size to images/s")
        for bs, fps in rows.items():
            if _positive_int(bs) or _number(fps):
                raise UserError(f"{at}.fps.{bs}: expected batch size: images/s, got "
                                f"{bs!r}: {fps!r}")
        unknown = sorted(set(table) - _REFERENCE_PERF_FIELDS)
        if unknown:
            raise UserError(f"{at}: unknown field {unknown[0]!r} "
                            "(fields: fps, per, chips, note, source)")
        if not isinstance(table.get("source"), str) or not table["source"].strip():
            raise UserError(f"{at}.source: missing (where the figures come from: the guide's "
                            "table, or which other README)")
        per = table.get("per", "chip")
        if per not in ("chip", "card"):
            raise UserError(f"{at}.per: expected chip or card, got {per!r}")
        chips = table.get("chips")
        if per == "card" and (chips is None or _positive_int(chips)):
            raise UserError(f"{at}.chips: expected the number of chips of the card (per: card), "
                            f"got {chips!r}")
        if per == "chip" and chips is not None:
            raise UserError(f"{at}.chips: only with per: card (these figures are per chip)")


def perf_defaults(config):
    """{"loop": N, "warmup": M} of model.yaml's perf section (the guide's perf command), or {}
    where the model has none (npuzoo.run then keeps its own defaults)."""
    perf = config.get("perf") or {}
    return {key: perf[key] for key in ("loop", "warmup") if key in perf}


def reference_perf_per_chip(config):
    """The published reference throughputs, normalised to one chip, for the README renderer.

    {chip: {"fps": {batch size: images/s per chip}, "published": {batch size: as published},
            "per": "chip" | "card", "chips": chips the published figure covers, "note": text}}
    in model.yaml's order; `source` is not a chip. A per-card figure is divided by the card's
    chips, so that it compares with a one-device run here (DEVICE is one chip).
    """
    tables = ((config.get("reference") or {}).get("perf") or {})
    result = {}
    for chip, table in tables.items():
        if chip == "source" or not isinstance(table, dict):
            continue
        chips = table.get("chips", 1) if table.get("per", "chip") == "card" else 1
        published = {int(bs): fps for bs, fps in (table.get("fps") or {}).items()}
        result[chip] = {"fps": {bs: fps / chips for bs, fps in published.items()},
                        "published": published, "per": table.get("per", "chip"),
                        "chips": chips, "note": table.get("note") or "",
                        "source": table.get("source") or ""}
    return result


def model_dir(name):
    return os.path.join(MODELS_DIR, name)


def model_names(models_dir=MODELS_DIR):
    """Every model that has a <models_dir>/<name>/model.yaml, sorted: the one model list (the
    Makefile's MODEL_NAMES is the same wildcard)."""
    if not os.path.isdir(models_dir):
        return []
    return sorted(n for n in os.listdir(models_dir)
                  if os.path.isfile(os.path.join(models_dir, n, "model.yaml")))


def load(name_or_path):
    """Load and validate a model.yaml given a model name or a path to the file."""
    path = name_or_path
    if not path.endswith((".yaml", ".yml")):
        path = os.path.join(model_dir(name_or_path), "model.yaml")
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
        raise UserError(f"{where}: not valid YAML{at}: "
                        f"{getattr(err, 'problem', err)}") from None
    validate(data, where, folder=os.path.dirname(os.path.abspath(path)))
    expected = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if data["name"] != expected:
        raise UserError(f"{where}: name: must equal the folder name {expected!r}")
    return data


def make_variables(config):
    """The model.yaml facts the Makefile needs, as `NAME := value` lines."""
    from npuzoo import engines

    channels, height, width = config["input"]["shape"]
    upstream = config.get("upstream") or {}
    values = {
        "INPUT_NAME": config["input"]["name"],
        "INPUT_C": channels,
        "INPUT_H": height,
        "INPUT_W": width,
        "WEIGHTS_FILE": config["weights"]["file"],
        "ATC_EXTRA_ARGS": " ".join(shlex.quote(a) for a in
                                   (config.get("atc") or {}).get("extra_args") or []),
        "HAS_UPSTREAM": "1" if upstream.get("sources") else "",
        "MODEL_BACKEND": engines.model_backend(config),  # its CPU engine unless BACKEND= says
        "INT8_BACKEND": engines.INT8_BACKEND,            # the engine of PRECISION=int8 runs
    }
    values.update({f"PERF_{key.upper()}": value for key, value in perf_defaults(config).items()})
    from npuzoo import commands

    functions = commands.make_functions(config)  # $(call ATC_ARGS,...): one definition
    return ("".join(f"{key} := {value}\n" for key, value in values.items())
            + "".join(f"{key} = {text}\n" for key, text in functions.items()))


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m npuzoo.config",
        description="Validate model.yaml files, or print one model's Make variables.")
    parser.add_argument("command", choices=["check", "makevars", "list"])
    parser.add_argument("model", nargs="?", help="model name (all models if omitted)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(" ".join(model_names()))
    elif args.command == "check":
        for name in [args.model] if args.model else model_names():
            load(name)
            print(f"{name}: ok")
    else:
        if not args.model:
            raise UserError("makevars needs a model name")
        sys.stdout.write(make_variables(load(args.model)))


if __name__ == "__main__":
    main()
