"""Export MobileNetV1 to ONNX: `python3 pth2onnx.py WEIGHTS ONNX` (WEIGHTS may be `random`).

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/MobileNet-v1/
mobilenet-v1_pth2onnx.py (Apache-2.0): the network of wjc852456/pytorch-mobilenet-v1 @8b3bde3e
`main.py` (here in network.py beside this file), the checkpoint's `state_dict` with `module.`
stripped and loaded strictly, `.eval()`, a traced export of `randn(32, 3, 224, 224)` with input
`image`, output `class`, opset 11 and axis 0 of both named '-1'.

Differences from the ModelZoo script, all on purpose:
- WEIGHTS may be the published `torch.save` dict (`state_dict` under that key, keys prefixed
  `module.`), a plain state_dict with or without `module.`, or the word `random` (seed 0; a
  warning says accuracy will not be meaningful). A missing file is an error, where the ModelZoo
  script silently exported random weights.
- The file is read with `torch.load(weights_only=True)`. Only if that refuses the file AND its
  md5 is the published checkpoint's (model.yaml `weights.md5`) is it read again with
  weights_only=False, saying so on stderr; any other such file is refused.
- Wrong keys, wrong shapes and unreadable files end with one line naming the file and key.
- `dynamo=False` is passed (torch >= 2.9 otherwise uses the dynamo exporter, which silently
  writes opset 18); the written model's default-domain opset is then asserted, `onnx.checker`
  runs, and the file is written under a temporary name and renamed, so a failed export leaves
  nothing behind.

Parameters (opset, tensor names, input shape, classes) come from model.yaml beside this file.
Python API, used by benchmark scripts that import this file by path:
    model = build_model(weights)   # weights: a path or "random"; returns the module in eval()
    export(model, onnx_path)

A checkpoint that torch.load(weights_only=True) refuses because it pickles an object (a
class, or a function such as os.system) is reported as exactly that, one line naming the
GLOBAL and saying what to do (save a plain state_dict); it is never run. A GLOBAL of a module
torch blocks (os, sys, posix, nt) is refused whatever the file's checksum.

Temporary files: only `.<ONNX name>.<pid>.tmp` beside ONNX, renamed to ONNX once checked and
removed on any failure (ExportError, a full disk, Ctrl-C). Everything this script creates
under a temporary name matches `.*.tmp` in the folder of ONNX, so a driver can remove what a
SIGKILLed run left when no run is active. ONNX gets the mode a plain open() gives (0666
minus the umask). A write that fails (folder not writable, disk full) is one `error:` line;
Ctrl-C at any point, even during `import torch`, is `error: interrupted` (exit 130).
"""

import argparse
import errno
import hashlib
import importlib.util
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
RANDOM = "random"
RANDOM_SEED = 0
DUMMY_BATCH = 32  # as the ModelZoo script; the graph does not depend on it (dynamic batch)
DYNAMIC_DIM = "-1"  # the ModelZoo's literal name of the dynamic batch axis


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


# -- configuration and network ------------------------------------------------------------

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
    md5 = data.get("weights", {}).get("md5") if isinstance(data.get("weights"), dict) else None
    return {
        "opset": field("onnx.opset", positive_int, "a positive integer"),
        "input_name": field("input.name", name, "a non-empty string"),
        "input_shape": tuple(shape),
        "output_name": field("output.name", name, "a non-empty string"),
        "classes": field("output.classes", positive_int, "a positive integer"),
        "published_md5": md5.lower() if isinstance(md5, str) else None,
    }


def load_network_module():
    """network.py from this folder, under a private name (other model folders may have one too)."""
    path = os.path.join(HERE, "network.py")
    spec = importlib.util.spec_from_file_location("_mobilenetv1_network", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- weights ------------------------------------------------------------------------------

def md5sum(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path, published_md5=None):
    """torch.load the file on the CPU, weights only (see the module docstring for the fallback)."""
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such file; give the checkpoint path or the word {RANDOM}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ValueError ... on bad files
        refused = refused_global(err)
        if refused is None:
            raise ExportError(f"{path}: cannot read as a PyTorch checkpoint "
                              f"({load_error_reason(err)})") from None
        # a blocked module (os, sys, ...) is never run, whatever the checksum
        if refused[1] is not None or published_md5 is None or md5sum(path) != published_md5:
            raise refused_error(path, refused) from None
    print(f"note: {path}: the published checkpoint (md5 {published_md5}) needs a full "
          "unpickle; loading it with weights_only=False", file=sys.stderr)
    return _torch_load_full(path)


def _torch_load_full(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExportError(f"{path}: cannot read as a PyTorch checkpoint ({reason})") from None


def extract_state_dict(checkpoint, path):
    """The state_dict of any accepted layout, with `module.` prefixes stripped."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ExportError(f"{path}: holds a {type(checkpoint).__name__}, not a state_dict or a "
                          "dict with a 'state_dict' entry")
    state = OrderedDict()
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ExportError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                              "not a state_dict")
        name = key[len("module."):] if key.startswith("module.") else key
        state[name] = value
    return state


def check_state_dict(state, expected, path):
    """Same keys (num_batches_tracked may be absent, as in pre-0.4.1 checkpoints) and shapes."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ExportError(f"{path}: not a MobileNetV1 checkpoint: keys " + ", ".join(parts))
    for key, value in state.items():
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            raise ExportError(f"{path}: {key} has shape {tuple(value.shape)} in the file, "
                              f"the network expects {want}")


def build_model(weights, config=None):
    """The network in eval() mode with `weights` loaded: a checkpoint path or "random"."""
    config = config or load_config()
    network = load_network_module()
    if str(weights) == RANDOM:
        torch.manual_seed(RANDOM_SEED)
        print(f"warning: WEIGHTS={RANDOM}: random weights (seed {RANDOM_SEED}); "
              "accuracy will not be meaningful", file=sys.stderr)
        return network.MobileNetV1(num_classes=config["classes"]).eval()
    path = os.fspath(weights)
    checkpoint = read_checkpoint(path, config["published_md5"])
    state = extract_state_dict(checkpoint, path)
    model = network.MobileNetV1(num_classes=config["classes"])
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
        onnx.checker.check_model(written, full_check=True)
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
        description="Export MobileNetV1 to ONNX (opset, names and shapes from model.yaml).")
    parser.add_argument("weights", metavar="WEIGHTS",
                        help=f"checkpoint (.tar/.pth: torch.save dict or state_dict), or '{RANDOM}'")
    parser.add_argument("onnx", metavar="ONNX", help="the ONNX file to write")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        start = time.perf_counter()
        config = load_config()
        model = build_model(args.weights, config)
        path = export(model, args.onnx, config)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"exported {args.weights} to {path} (opset {config['opset']}, dynamic batch) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
