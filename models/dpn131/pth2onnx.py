"""Export DPN131 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX [--source DIR]` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/DPN131/dpn131_pth2onnx.py
(Apache-2.0): with Cadene/pretrained-models.pytorch (patched with dpn.diff) first on sys.path,
`pretrainedmodels.dpn131(pretrained=None)` (test_time_pool=True, but dpn.diff disables that
branch), the checkpoint loaded as a plain state_dict, strictly, `.eval()`, a traced export of
`randn(1, 3, 224, 224)` with input `image`, output `class`, opset 11 and axis 0 of both named '-1'.

--source DIR is the patched upstream tree (the folder holding `pretrainedmodels/`): the build
passes build/dpn131/src/upstream, made by `python3 -m npuzoo.source fetch dpn131 ...`; the
default is ./pretrained-models.pytorch, where the ModelZoo guide clones it. The tree must be
patched: unpatched, the dynamic-batch export fails (pool kernels from x.size()), and this
script checks for dpn.diff's change before exporting.

Differences from the ModelZoo script, all on purpose:
- WEIGHTS may be the word `random` (seed 0; a warning says accuracy will not be meaningful).
- The file is read with `torch.load(weights_only=True)` (the published file is a plain
  state_dict of tensors). Wrong keys or shapes end with one line naming the file and the first
  missing and first unexpected key. `num_batches_tracked` may be absent (pre-0.4.1 checkpoints).
- `pretrainedmodels` must come from --source: an installed copy shadowing it is an error.
- `dynamo=False` is passed (torch >= 2.9 otherwise uses the dynamo exporter, which silently
  writes opset 18); the written opset is asserted, `onnx.checker` runs, and the file is written
  under a temporary name and renamed, so a failed export leaves nothing behind.

Parameters (opset, tensor names, input shape, classes) come from model.yaml beside this file.
Python API (for tests and benchmark scripts that import this file by path):
    model = build_model(weights, source)   # returns the module in eval()
    export(model, onnx_path)

A checkpoint that torch.load(weights_only=True) refuses because it pickles an object (a
class, or a function such as os.system) is reported as exactly that, one line naming the
GLOBAL and saying what to do (save a plain state_dict); it is never run.

Temporary files: only `.<ONNX name>.<pid>.tmp` beside ONNX, renamed to ONNX once checked and
removed on any failure (ExportError, a full disk, Ctrl-C). Everything this script creates
under a temporary name matches `.*.tmp` in the folder of ONNX, so a driver can remove what a
SIGKILLed run left when no run is active. ONNX gets the mode a plain open() gives (0666
minus the umask). A write that fails (folder not writable, disk full) is one `error:` line;
Ctrl-C at any point, even during `import torch`, is `error: interrupted` (exit 130).
"""

import argparse
import errno
import importlib
import os
import re
import sys
import time
import warnings
from collections import OrderedDict


def _exit_on_interrupt(kind, value, traceback, _previous=sys.excepthook):
    """sys.excepthook: a Ctrl-C that main() cannot catch yet (e.g. during `import torch`, which
    takes seconds) prints one line and exits 130, like the one main() catches."""
    if issubclass(kind, KeyboardInterrupt):
        try:
            sys.stdout.flush()
        except Exception:
            pass
        print("error: interrupted", file=sys.stderr, flush=True)
        os._exit(130)
    _previous(kind, value, traceback)


if __name__ == "__main__":  # installed before the third-party imports below
    sys.excepthook = _exit_on_interrupt

import onnx  # noqa: E402  (after the hook on purpose)
import torch  # noqa: E402
import yaml  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_PATH = os.path.join(HERE, "model.yaml")
DEFAULT_SOURCE = "pretrained-models.pytorch"  # beside the current directory, as the guide clones
RANDOM = "random"
RANDOM_SEED = 0
DUMMY_BATCH = 1  # as the ModelZoo script; the graph does not depend on it (dynamic batch)
DYNAMIC_DIM = "-1"  # the ModelZoo's literal name of the dynamic batch axis
PATCH_MARK = "F.adaptive_avg_pool2d(features"  # dpn.diff's change in DPN.logits


class ExportError(Exception):
    """An error the user can fix; the command line prints it as one line and exits 2."""


WRITE_HINTS = {
    errno.ENOSPC: "no space left on the device; free some and rerun",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun",
    errno.EACCES: "the folder is not writable by this user",
    errno.EPERM: "the folder is not writable by this user",
    errno.EROFS: "the file system is read-only",
}


def write_error(path, err):
    """One line for a failed write of `path` (folder not writable, disk full, ...)."""
    reason = err.strerror or str(err) or type(err).__name__
    hint = WRITE_HINTS.get(err.errno)
    return ExportError(f"{path}: cannot write ({reason})" + (f"; {hint}" if hint else ""))


def refused_global(err):
    """(GLOBAL name, blocked module or None) when torch.load(weights_only=True) refused to run
    a pickled object of the file (torch >= 2.6 wording); None for any other error."""
    text = str(err)
    blocked = re.search(r"unsupported GLOBAL ([\w.]+) whose module ([\w.]+) is blocked", text)
    if blocked:
        return blocked.group(1), blocked.group(2)
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return unsupported.group(1), None
    return None


def refused_error(path, refused):
    """The file is a checkpoint, but one that runs code when loaded: say so, and what to do."""
    name, module = refused
    what = f"GLOBAL {name}" + (f", whose module {module} torch never unpickles" if module else "")
    return ExportError(
        f"{path}: contains a pickled object that this loader refuses to run ({what}; "
        "torch.load(weights_only=True) reads tensors and plain containers only); if you trust "
        "the file, load it in your own code and save a plain state_dict with "
        "torch.save(model.state_dict(), 'weights.pth'), then pass that file")


def load_error_reason(err):
    """The first line of any other torch.load error, without the weights_only boilerplate."""
    text = str(err)
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        return "not a torch.save file"
    return text.splitlines()[0] if text else type(err).__name__


# -- configuration ------------------------------------------------------------------------

def load_config(path=CONFIG_PATH):
    """The fields of model.yaml this script uses, checked; ExportError names a bad field."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise ExportError(f"{path}: cannot read model.yaml ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ExportError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None

    def field(dotted, check, expected):
        value = data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ExportError(f"{path}: {dotted}: missing")
            value = value[part]
        if not check(value):
            raise ExportError(f"{path}: {dotted}: expected {expected}, got {value!r}")
        return value

    def positive_int(value):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def name(value):
        return isinstance(value, str) and value.strip() != ""

    shape = field("input.shape", lambda v: isinstance(v, list) and len(v) == 3
                  and all(positive_int(d) for d in v), "a list of 3 positive integers")
    return {
        "opset": field("onnx.opset", positive_int, "a positive integer"),
        "input_name": field("input.name", name, "a non-empty string"),
        "input_shape": tuple(shape),
        "output_name": field("output.name", name, "a non-empty string"),
        "classes": field("output.classes", positive_int, "a positive integer"),
    }


# -- upstream network -----------------------------------------------------------------------

def import_pretrainedmodels(source):
    """`pretrainedmodels` from the tree `source` (first on sys.path), never an installed copy."""
    source = os.path.abspath(source)
    package = os.path.join(source, "pretrainedmodels")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise ExportError(f"{source}: no pretrainedmodels/ package in it; pass --source with the "
                          "patched upstream tree (python3 -m npuzoo.source fetch dpn131 DIR, or a "
                          "clone of Cadene/pretrained-models.pytorch with dpn.diff applied)")
    for name in [n for n in sys.modules if n == "pretrainedmodels" or n.startswith("pretrainedmodels.")]:
        del sys.modules[name]  # another tree may have been imported by this process
    sys.path.insert(0, source)
    try:
        with warnings.catch_warnings():  # upstream's `is 'proj'` comparisons, on Python >= 3.8
            warnings.simplefilter("ignore", SyntaxWarning)
            module = importlib.import_module("pretrainedmodels")
    except ImportError as err:
        raise ExportError(f"{source}: cannot import pretrainedmodels ({err}); "
                          "its requirements are in requirements.txt beside this script") from None
    if os.path.dirname(os.path.abspath(module.__file__)) != package:
        raise ExportError(f"pretrainedmodels was imported from {module.__file__}, not from "
                          f"{source}; uninstall the installed copy or fix --source")
    return module


def check_patched(pretrainedmodels):
    """dpn.diff must be applied: unpatched, the dynamic-batch export fails."""
    path = importlib.import_module("pretrainedmodels.models.dpn").__file__
    with open(path, encoding="utf-8") as handle:
        if PATCH_MARK not in handle.read():
            raise ExportError(f"{path}: dpn.diff is not applied (apply it with "
                              f"`patch -p1 < {os.path.join(HERE, 'dpn.diff')}` in the tree)")


def upstream_factory(source):
    """dpn131(num_classes) from the patched tree `source`."""
    pretrainedmodels = import_pretrainedmodels(source)
    check_patched(pretrainedmodels)
    return lambda classes: pretrainedmodels.dpn131(num_classes=classes, pretrained=None)


# -- weights ------------------------------------------------------------------------------

def read_state_dict(path):
    """The plain state_dict in `path` (tensors only), read on the CPU."""
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such file; give the checkpoint path or the word {RANDOM}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError ... on bad files
        refused = refused_global(err)
        if refused is not None:
            raise refused_error(path, refused) from None
        raise ExportError(f"{path}: cannot read as a PyTorch state_dict "
                          f"({load_error_reason(err)})") from None
    if not isinstance(state, dict) or not state:
        raise ExportError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ExportError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                              "not a plain state_dict")
    return OrderedDict(state)


def check_state_dict(state, expected, path):
    """Same keys (num_batches_tracked may be absent) and shapes; strict, no prefix stripping."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ExportError(f"{path}: not a DPN131 state_dict: keys " + ", ".join(parts))
    for key, value in state.items():
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            raise ExportError(f"{path}: {key} has shape {tuple(value.shape)} in the file, "
                              f"the network expects {want}")


def build_model(weights, source=DEFAULT_SOURCE, config=None):
    """The patched upstream network in eval() with `weights`: a state_dict path or "random"."""
    config = config or load_config()
    new_network = upstream_factory(source)
    if str(weights) == RANDOM:
        torch.manual_seed(RANDOM_SEED)
        print(f"warning: WEIGHTS={RANDOM}: random weights (seed {RANDOM_SEED}); "
              "accuracy will not be meaningful", file=sys.stderr)
        return new_network(config["classes"]).eval()
    path = os.fspath(weights)
    state = read_state_dict(path)
    model = new_network(config["classes"])
    expected = model.state_dict()
    check_state_dict(state, expected, path)
    for key, value in expected.items():  # absent num_batches_tracked: keep the module's own
        state.setdefault(key, value)
    model.load_state_dict(state, strict=True)
    return model.eval()


# -- export -------------------------------------------------------------------------------

def default_opset(model_proto):
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def export(model, onnx_path, config=None):
    """Trace `model` to `onnx_path` (opset and names from model.yaml), checked, atomically."""
    config = config or load_config()
    onnx_path = os.path.abspath(os.fspath(onnx_path))
    folder = os.path.dirname(onnx_path)
    tmp = os.path.join(folder, f".{os.path.basename(onnx_path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        model = model.eval()
        dummy = torch.randn(DUMMY_BATCH, *config["input_shape"])
        with warnings.catch_warnings():  # the legacy exporter's DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                torch.onnx.export(
                    model, dummy, tmp, dynamo=False,
                    opset_version=config["opset"],
                    input_names=[config["input_name"]],
                    output_names=[config["output_name"]],
                    dynamic_axes={config["input_name"]: {0: DYNAMIC_DIM},
                                  config["output_name"]: {0: DYNAMIC_DIM}},
                )
        written = onnx.load(tmp)
        opset = default_opset(written)
        if opset != config["opset"]:
            raise ExportError(f"{onnx_path}: the exporter wrote opset {opset}, not "
                              f"{config['opset']}; check that dynamo=False is honoured")
        onnx.checker.check_model(tmp, full_check=True)  # by path: no second serialisation
        os.replace(tmp, onnx_path)
    except OSError as err:  # the folder is not writable, the disk is full (ENOSPC), ...
        raise write_error(onnx_path, err) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return onnx_path


# -- command line -------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Export DPN131 to ONNX (opset, names and shapes from model.yaml).")
    parser.add_argument("weights", metavar="WEIGHTS",
                        help=f"checkpoint (a plain state_dict .pth), or '{RANDOM}'")
    parser.add_argument("onnx", metavar="ONNX", help="the ONNX file to write")
    parser.add_argument("--source", default=DEFAULT_SOURCE, metavar="DIR",
                        help="patched Cadene/pretrained-models.pytorch tree "
                             f"(default: ./{DEFAULT_SOURCE})")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        start = time.perf_counter()
        config = load_config()
        model = build_model(args.weights, args.source, config)
        path = export(model, args.onnx, config)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"exported {args.weights} to {path} (opset {config['opset']}, dynamic batch, "
          f"upstream {os.path.abspath(args.source)}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
