"""What every model folder needs: model.yaml, preprocessing, accuracy, checkpoint and export.

This is models/_zoo.py of the npuzoo repository. `make vendor` copies it byte for byte, under a
one-line generated-file header, into every models/<name>/ as _zoo.py, because a model folder
imports only third-party packages and its own files: copied alone anywhere, it still runs. Edit
models/_zoo.py, never a copy, then run `make vendor`; a test fails while a copy differs. This
module imports no folder script: each script passes in what is its model's own (its folder, the
network factory). The three scripts of a folder are thin callers:

    preprocess.py   SRC DST [--limit N] [--workers K] [--uint8]   preprocess_main(folder)
    pth2onnx.py     WEIGHTS ONNX [--source DIR]                   export_commands(folder, ...)
    postprocess.py  RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME       postprocess_main()

Errors a user can fix end with one line, `error: ...`, naming the file (and the model.yaml
field), and exit status 2, with no traceback. Ctrl-C at any point, even during the third-party
imports (torch takes seconds), ends with `error: interrupted` and exit status 130.

Temporary files: everything created under a temporary name matches `.*.tmp` directly in the
output's folder (DST/.preprocess-XXXXXXXX.tmp/, `.<ONNX name>.<pid>.tmp` beside ONNX,
`OUT_DIR/.<JSON_NAME>.<pid>.tmp`), is renamed into place once complete and removed on any
failure; a driver may remove what a SIGKILLed run left (`find DIR -maxdepth 1 -name '.*.tmp'
-exec rm -rf {} +`) when no run is active. Outputs get the mode a plain open() gives (0666
minus the umask).
"""

import argparse
import contextlib
import errno
import hashlib
import importlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def _exit_on_interrupt(kind, value, traceback, _previous=sys.excepthook):
    """sys.excepthook: a Ctrl-C that no main() catches yet (e.g. during `import torch`) prints
    one line and exits 130, like the one main() catches; anything else as before."""
    if issubclass(kind, KeyboardInterrupt):
        try:
            sys.stdout.flush()
        except Exception:
            pass
        print("error: interrupted", file=sys.stderr, flush=True)
        os._exit(130)
    _previous(kind, value, traceback)


def _run_by_a_script_beside_this_file():
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return bool(main) and os.path.dirname(os.path.abspath(main)) == \
        os.path.dirname(os.path.abspath(__file__))


if _run_by_a_script_beside_this_file():  # a command line, not a test importing the folder
    sys.excepthook = _exit_on_interrupt  # installed before the third-party imports below

import numpy as np  # noqa: E402  (after the hook on purpose; torch and onnx load when used)
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

RANDOM = "random"  # WEIGHTS=random: seeded random weights
RANDOM_SEED = 0


class UserError(Exception):
    """An error the user can fix; a command prints it as one line and exits 2."""


def command(body):
    """Run a command's body: UserError -> `error: ...` and 2, Ctrl-C -> `error: interrupted`
    and 130, otherwise what the body returns (0)."""
    try:
        return body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


WRITE_HINTS = {
    errno.ENOSPC: "no space left on {folder}; free some and rerun",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun",
    errno.EACCES: "the folder is not writable by this user",
    errno.EPERM: "the folder is not writable by this user",
    errno.EROFS: "the file system is read-only",
}


def write_error(path, err):
    """UserError for a failed write of `path` (folder not writable, disk full, ...)."""
    reason = err.strerror or str(err) or type(err).__name__
    hint = WRITE_HINTS.get(err.errno, "").format(
        folder=os.path.dirname(os.path.abspath(path)))
    return UserError(f"{path}: cannot write ({reason})" + (f"; {hint}" if hint else ""))


# -- model.yaml: this folder's own fields, by the rules of npuzoo/config.py -------------------
#
# The checkers and FIELDS repeat npuzoo/config.py's for the fields the folder's scripts read
# (same texts: the error lines are identical); a shared list of invalid model.yaml cases runs
# against both readers. EXTRA_RULES are this reader's own, for values that would break the
# preprocessing or the export (npuzoo/config.py should adopt them).

def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "expected a positive integer"


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "expected a number"


def _text(value):
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty string"


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


# How the published checkpoint file holds the state_dict (model.yaml weights.layout). Each also
# takes the simpler forms (state_dict_key > module_prefix > plain), down to the plain state_dict
# that the refused-pickle error tells a user to save.
LAYOUTS = {
    "plain": "a state_dict with the network's own keys",
    "state_dict_key": "a dict with the state_dict under 'state_dict', or that state_dict alone, "
                      "keys with or without `module.`",
    "module_prefix": "a state_dict, keys with or without the `module.` of nn.DataParallel",
}
INTERPOLATIONS = ("bilinear",)  # PIL's Image.Resampling.<NAME>
CROP_OFFSETS = ("round", "floor")

# (dotted field, required, checker), as npuzoo/config.py's SCHEMA for these fields.
FIELDS = [
    ("name", True, _text),
    ("weights.md5", False, _hex(32)),
    ("weights.previous.md5", False, _hex(32)),  # EXTRA_RULES: config.py does not check it
    ("weights.layout", True, _one_of(*LAYOUTS)),
    ("input.name", True, _text),
    ("input.shape", True, _list_of(_positive_int, 3)),
    ("input.layout", True, _one_of("NCHW")),
    ("input.dtype", True, _one_of("float32")),
    ("output.name", True, _text),
    ("output.classes", True, _one_of(1000, 1001)),
    ("preprocess.resize", True, _positive_int),
    ("preprocess.resize_rule", True, _one_of("shorter_side")),
    ("preprocess.interpolation", True, _one_of(*INTERPOLATIONS)),
    ("preprocess.crop", True, _positive_int),
    ("preprocess.crop_offset", True, _one_of(*CROP_OFFSETS)),
    ("preprocess.mean", True, _list_of(_number, 3)),
    ("preprocess.std", True, _list_of(_number, 3)),
    ("onnx.opset", True, _one_of(11, 13)),
    ("onnx.dynamic_batch", True, _one_of(True, False)),
]
EXTRA_RULES = ["weights.previous.md5", "preprocess.std positive",
               "preprocess.crop no larger than preprocess.resize", "input.shape [3, crop, crop]"]
_MISSING = object()


def _get(data, dotted):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def validate(data, where):
    """Raise UserError naming the first of this folder's fields that breaks the rules."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of fields at the top level")
    for field, required, check in FIELDS:
        value = _get(data, field)
        if value is _MISSING or value is None:
            if required:
                raise UserError(f"{where}: {field}: missing (required)")
            continue
        problem = check(value)
        if problem:
            raise UserError(f"{where}: {field}: {problem}, got {value!r}")
    shape, pre = data["input"]["shape"], data["preprocess"]
    if shape[1] != pre["crop"]:
        raise UserError(f"{where}: preprocess.crop: must equal input.shape[1] ({shape[1]})")
    # EXTRA_RULES
    if shape != [3, pre["crop"], pre["crop"]]:
        raise UserError(f"{where}: input.shape: expected [3, {pre['crop']}, {pre['crop']}] "
                        f"(RGB, the square crop of preprocess.crop), got {shape!r}")
    if pre["crop"] > pre["resize"]:
        raise UserError(f"{where}: preprocess.crop: must not exceed preprocess.resize "
                        f"({pre['resize']})")
    if any(value <= 0 for value in pre["std"]):
        raise UserError(f"{where}: preprocess.std: expected positive numbers, got {pre['std']!r}")
    return data


def load_config(folder):
    """The checked fields of `folder`/model.yaml as one flat dict (plain values: picklable)."""
    path = os.path.join(folder, "model.yaml")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise UserError(f"{path}: cannot read model.yaml ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    validate(data, path)
    pre, weights = data["preprocess"], data["weights"]
    known_md5 = {weights.get("md5"), _get(data, "weights.previous.md5")}
    return {
        "name": data["name"],
        "resize": pre["resize"], "crop": pre["crop"], "interpolation": pre["interpolation"],
        "crop_offset": pre["crop_offset"], "mean": pre["mean"], "std": pre["std"],
        "input_name": data["input"]["name"], "input_shape": tuple(data["input"]["shape"]),
        "output_name": data["output"]["name"], "classes": data["output"]["classes"],
        "opset": data["onnx"]["opset"], "dynamic_batch": data["onnx"]["dynamic_batch"],
        "layout": weights["layout"],
        "known_md5": frozenset(m.lower() for m in known_md5 if isinstance(m, str)),
    }


# -- preprocess -----------------------------------------------------------------------------
#
# As the ModelZoo preprocessing scripts: PIL open, convert('RGB'), resize the shorter side to
# `resize` (the long side `int(resize * long / short)`, truncated; untouched when the short side
# is already `resize`), centre crop `crop` at offsets `int(round((dim - crop) / 2))` (or
# `int((dim - crop) / 2)` with crop_offset: floor), /255, (x - mean) / std, float32 CHW written
# raw (as `tofile`) to DST/<stem>.bin, stem = the file name up to its first '.'. With round
# offsets the values are those of torchvision's Resize, CenterCrop, ToTensor, Normalize.
# --uint8 writes the resized and cropped pixels as raw uint8 HWC instead (a quarter of the
# size), for an om whose AIPP (atc --insert_op_conf) normalises on the chip.
#
# Images: SRC/*.ext and SRC/*/*.ext (one level of class subfolders), ext in IMAGE_EXTENSIONS in
# any case (npuzoo.dataset.IMAGE_EXTENSIONS; a test keeps the two equal: an image the dataset
# step selects but this one skipped would silently shrink the accuracy's denominator), in sorted
# path order; --limit N takes the first N. --workers K (default: the usable cores) runs K
# processes that decode and write files themselves and return only names, fed in chunks. Each
# output is written in a private folder per worker, DST/.preprocess-*.tmp/worker-<pid>/, and
# renamed into DST, so DST never holds a partial .bin. Private folders, because creating a file
# locks its folder and on ext4 costs as much as writing the 602 kB: workers creating files in
# one folder queue behind each other (measured: no gain from a second worker).
#
# Differences from the ModelZoo scripts, on purpose:
# - An image that cannot be decoded STOPS the run (exit 2) with one line naming it, asking for
#   it to be removed from the dataset and the label file: skipping it would silently shrink the
#   accuracy denominator, a placeholder would count as a wrong answer. The outputs already
#   written are complete and kept; rerunning after the fix rewrites them all.
# - An image over Pillow's pixel limit (Image.MAX_IMAGE_PIXELS), as it is or once resized (a
#   100-byte 8000x1 PNG would become 256x2048000), stops the run the same way, read from its
#   header; so do pixels without an 8-bit scale (floating point, beyond 16 bits). 16-bit grey
#   is scaled to 8 bits, where convert('RGB') alone would clip it to white (to_rgb).
# - Two images with the same stem (e.g. in two class folders) are an error before anything is
#   written, instead of one output silently overwriting the other.
# - A missing SRC, or one without images, is a one-line error; flat folders and one level of
#   class subfolders both work.
# - Ctrl-C: the workers ignore SIGINT and stop with the parent, which keeps every complete
#   output and removes its temporary folder.

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)
warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused
MAX_CHUNK = 16
PIL_BLOCKS_MAX = 8
TEMP_PREFIX = ".preprocess-"  # DST/.preprocess-XXXX.tmp/<worker>/: this run's temporary files


class DecodeError(Exception):
    pass


def to_rgb(image):
    """The RGB image that convert('RGB') (torchvision's loader) gives, 16-bit grey first scaled
    to 8 bits (round(v / 257), as libpng's png_set_scale_16) where convert would clip it to
    white; 32-bit values beyond 16 bits and floating-point pixels have no agreed scale: refused.
    A palette's transparency is dropped, as convert('RGB') does (without its warning)."""
    if image.mode == "RGB":
        return image  # convert() would copy it
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.asarray(image)
        if image.mode == "F" or pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError(f"mode {image.mode} pixels from {pixels.min()} to {pixels.max()}: "
                             "not 8- or 16-bit; save the image as 8-bit RGB or grey")
        scaled = (pixels.astype(np.uint32) * 255 + 32895) >> 16  # round(v / 257), exactly
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Palette images with Transparency")
        return image.convert("RGB")


class Preprocessor:
    """Turns one image file into the model's input array; picklable (a plain config)."""

    def __init__(self, config, uint8=False):
        self.config = config
        self.uint8 = uint8
        self.resize_to = config["resize"]
        self.crop = config["crop"]
        self.resample = getattr(Image.Resampling, config["interpolation"].upper())
        self.round_offsets = config["crop_offset"] == "round"
        # float32, shaped to broadcast over CHW: the same arithmetic as torchvision's Normalize
        self.mean = np.array(config["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(config["std"], dtype=np.float32).reshape(3, 1, 1)

    def __reduce__(self):
        return (Preprocessor, (self.config, self.uint8))

    def decode(self, path):
        """The decoded RGB image; convert('RGB') only when needed (it copies otherwise)."""
        try:
            with Image.open(path) as image:
                self.check_pixels(image.size)  # from the header, before decoding anything
                image.load()
                return to_rgb(image)
        except DECODE_ERRORS as err:
            raise DecodeError((str(err).splitlines() or [type(err).__name__])[0]) from None

    def resized_size(self, width, height):
        """Shorter side to `resize`, long side truncated."""
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.resize_to * long / short)
        return (self.resize_to, new_long) if width <= height else (new_long, self.resize_to)

    def check_pixels(self, size):
        """Pillow's decompression-bomb limit, for the image and for its resized copy: a 103-byte
        PNG of 8000x1 pixels would otherwise become a 256x2048000 image (GBs)."""
        if min(size) < 1:
            raise ValueError(f"{size[0]}x{size[1]} pixels: an empty image")
        limit = Image.MAX_IMAGE_PIXELS
        for width, height in (size, self.resized_size(*size)):
            if limit and width * height > limit:
                resized = f", resized to {width}x{height}" if (width, height) != size else ""
                raise ValueError(f"{size[0]}x{size[1]} pixels{resized}: over Pillow's limit of "
                                 f"{limit} pixels (a decompression bomb?)")

    def resize(self, image):
        """Shorter side to `resize`, long side truncated; unchanged if already that size."""
        if min(image.size) == self.resize_to:
            return image
        return image.resize(self.resized_size(*image.size), self.resample)

    def offset(self, dim):
        return int(round((dim - self.crop) / 2)) if self.round_offsets else int((dim - self.crop) / 2)

    def new_output(self):
        if self.uint8:
            return np.empty((self.crop, self.crop, 3), dtype=np.uint8)
        return np.empty((3, self.crop, self.crop), dtype=np.float32)

    def __call__(self, path, out=None):
        """The input array of one image, in `out` (reused by workers) or a new array."""
        image = self.resize(self.decode(path))
        width, height = image.size
        top, left = self.offset(height), self.offset(width)
        pixels = np.asarray(image)[top:top + self.crop, left:left + self.crop]  # HWC uint8 view
        if out is None:
            out = self.new_output()
        if self.uint8:
            np.copyto(out, pixels)  # raw HWC bytes
            return out
        np.copyto(out, pixels.transpose(2, 0, 1))  # HWC uint8 -> CHW float32, one pass
        out /= 255  # in place, float32 throughout
        out -= self.mean
        out /= self.std
        return out


def output_stem(path):
    return os.path.basename(path).split(".", 1)[0]


def write_atomic(array, dst, stem, tmp_dir):
    """DST/<stem>.bin: written in `tmp_dir` (a private folder inside DST), then renamed."""
    final = os.path.join(dst, stem + ".bin")
    tmp = os.path.join(tmp_dir, stem + ".bin.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(array.data)  # the same bytes as ndarray.tofile
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_worker = {}


def _init_pool_worker(*args):
    """A pool worker ignores SIGINT: on Ctrl-C the parent alone stops the run (the workers skip
    what is left), instead of every worker printing a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _init_worker(*args)


@contextlib.contextmanager
def sigint_held():
    """SIGINT blocked while the worker processes are forked: they inherit the mask and ignore
    SIGINT before unblocking it; a Ctrl-C meanwhile reaches this process on leaving."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(preprocessor, dst, tmp_root, stop):
    # Keep a few of Pillow's image memory blocks for reuse instead of freeing and faulting
    # in new ones for every image (Pillow's documented block allocator; pixels are unchanged).
    Image.core.set_blocks_max(PIL_BLOCKS_MAX)
    tmp_dir = os.path.join(tmp_root, f"worker-{os.getpid()}")
    os.makedirs(tmp_dir, exist_ok=True)
    _worker.update(preprocessor=preprocessor, dst=dst, tmp_dir=tmp_dir, stop=stop,
                   out=preprocessor.new_output())


def _process(path):
    """stem on success; None when the run is stopping; ("decode"|"write", path, reason) on error."""
    stop = _worker.get("stop")
    if stop is not None and stop.is_set():
        return None
    try:
        array = _worker["preprocessor"](path, _worker["out"])
    except DecodeError as err:
        return ("decode", path, str(err))
    stem = output_stem(path)
    try:
        write_atomic(array, _worker["dst"], stem, _worker["tmp_dir"])
    except OSError as err:
        return ("write", os.path.join(_worker["dst"], stem + ".bin"), err.strerror or str(err))
    return stem


def error_line(kind, path, reason):
    if kind == "decode":
        return (f"{path}: cannot decode image ({reason}); remove it from the dataset and its "
                "line from the label file")
    return f"{path}: cannot write ({reason})"


def list_images(src):
    """Image files in SRC and in its immediate subfolders, sorted by path."""
    if not os.path.exists(src):
        raise UserError(f"{src}: no such folder (SRC should hold the validation images)")
    if not os.path.isdir(src):
        raise UserError(f"{src}: not a folder (SRC should hold the validation images)")

    def images_in(folder):
        found, subfolders = [], []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                    found.append(entry.path)
        return found, subfolders

    try:
        paths, subfolders = images_in(src)
        for folder in subfolders:
            paths.extend(images_in(folder)[0])
    except OSError as err:  # a symlink loop (ELOOP), an unreadable folder
        raise UserError(f"{err.filename or src}: cannot read ({err.strerror}); fix or remove "
                        "it") from None
    if not paths:
        raise UserError(f"{src}: no {'/'.join(IMAGE_EXTENSIONS)} images in it or in its "
                        "subfolders")
    return sorted(paths)


def check_stems(paths):
    seen = {}
    for path in paths:
        stem = output_stem(path)
        if not stem:
            raise UserError(f"{path}: its name gives an empty output name "
                            "(the output is the name up to its first '.')")
        if stem in seen:
            raise UserError(f"{seen[stem]} and {path} would both be written as {stem}.bin; "
                            "rename or remove one")
        seen[stem] = path


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def progress_bar(total):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="img", desc="preprocess", file=sys.stderr)


def run_serial(paths, preprocessor, dst, tmp_root, bar):
    _init_worker(preprocessor, dst, tmp_root, None)
    done = 0
    for path in paths:
        result = _process(path)
        if isinstance(result, tuple):
            raise UserError(error_line(*result))
        done += 1
        if bar is not None:
            bar.update()
    return done


def pool_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def run_parallel(paths, preprocessor, dst, tmp_root, workers, bar):
    """K processes fed in chunks. On the first error, or an interrupt, a shared event makes every
    worker skip what is left, so the pool drains quickly and no worker is killed mid-write."""
    context = pool_context()
    stop = context.Event()
    chunk = max(1, min(MAX_CHUNK, len(paths) // (workers * 8)))
    error, done = None, 0
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork of a threaded process
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_pool_worker,
                                       initargs=(preprocessor, dst, tmp_root, stop))
        try:
            with sigint_held():  # map() forks the workers (all of them, with fork)
                results = executor.map(_process, paths, chunksize=chunk)
            for result in results:
                if isinstance(result, tuple):
                    if error is None:
                        error = result
                        stop.set()
                elif result is not None:
                    done += 1
                    if bar is not None:
                        bar.update()
        except BrokenProcessPool:
            raise UserError("a worker process died (killed for lack of memory?); the "
                            f"outputs written so far in {dst} are complete") from None
        except BaseException:
            stop.set()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise UserError(error_line(*error))
    return done


def preprocess(src, dst, config, limit=None, workers=None, uint8=False):
    """Write DST/<stem>.bin for the first `limit` images of SRC; returns (count, seconds)."""
    start = time.perf_counter()
    preprocessor = Preprocessor(config, uint8)
    paths = list_images(src)
    if limit is not None:
        paths = paths[:limit]
    check_stems(paths)
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise UserError(f"{dst}: exists and is not a folder")
    try:
        os.makedirs(dst, exist_ok=True)
    except OSError as err:
        raise UserError(f"{dst}: cannot create the folder ({err.strerror or err})") from None
    workers = max(1, min(workers or usable_cores(), len(paths)))
    try:
        tmp_root = tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=dst)
    except OSError as err:
        raise UserError(f"{dst}: cannot write in it ({err.strerror or err})") from None
    bar = progress_bar(len(paths))
    try:
        if workers == 1:
            done = run_serial(paths, preprocessor, dst, tmp_root, bar)
        else:
            done = run_parallel(paths, preprocessor, dst, tmp_root, workers, bar)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp_root, ignore_errors=True)  # only partial files of a dead worker
    return done, time.perf_counter() - start


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def preprocess_main(folder, argv=None):
    """preprocess.py SRC DST [--limit N] [--workers K] [--uint8], parameters from model.yaml."""
    parser = argparse.ArgumentParser(
        description="Resize, crop and normalise images to float32 CHW .bin files "
                    "(parameters from model.yaml).")
    parser.add_argument("src", metavar="SRC", help="folder of images, flat or one level of class folders")
    parser.add_argument("dst", metavar="DST", help="output folder for <stem>.bin files")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="only the first N images in sorted path order")
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help=f"worker processes (default: the usable cores, {usable_cores()})")
    parser.add_argument("--uint8", action="store_true",
                        help="write the resized and cropped RGB pixels as raw uint8 HWC (H*W*3 "
                             "bytes) for an om with AIPP, instead of normalised float32 CHW")
    args = parser.parse_args(argv)

    def body():
        count, seconds = preprocess(args.src, args.dst, load_config(folder), args.limit,
                                    args.workers, args.uint8)
        rate = count / seconds if seconds > 0 else float("inf")
        print(f"preprocessed {count} images to {args.dst} in {seconds:.2f} s ({rate:.1f} images/s)")
        return 0

    return command(body)


# -- postprocess: top-1..5 accuracy as the ModelZoo's imagenet_acc_eval.py --------------------
#
# The same accuracy JSON, byte for byte, as imagenet_acc_eval.py (and the InceptionV4 guide's
# inceptionv4_postprocess.py, the same logic):
# - Result files are ais_bench `--outfmt TXT` outputs, `<image stem>_<n>.txt`. The label key of
#   a file is its name up to the first '.', then up to the LAST '_'.
# - Only the first line is read; it is stripped and split on single spaces into float32 scores;
#   n_label = the number of scores.
# - Ground truth = the label-file index, +1 when n_label == 1001 (index 0 = background).
# - Scores ranked in descending order; for i < min(n_label, 5) the first rank whose index is the
#   ground truth gets hit[i] += 1. TopK = cumsum(hit)[K-1] / number of result files.
# - JSON: one line from plain json.dump, every value a string, percentages
#   `str(round(acc * 100, 2)) + "%"` (so "86.6%", not "86.60%"), "Number of classes" = n_label
#   of the last file read, one TopK entry for K = 1..min(n_label, 5).
#
# Differences from the ModelZoo script, on purpose:
# - Files are read in sorted name order (os.listdir order is arbitrary), so "the last file read"
#   is deterministic. Ties between equal scores rank the lower class index first (a stable
#   sort; the ModelZoo's argsort leaves ties in an unspecified order). The rank is counted
#   directly (scores above, plus equal scores at lower indices): the same as the stable sort.
# - ais_bench's `sumary.json` and any name ending in `summary.json` are skipped.
# - One-line errors naming the file: a result whose key has no label (the ModelZoo raises
#   KeyError), a name without `_<n>`, an unreadable or non-numeric first line, a malformed
#   label line (file:line), an empty result folder.
# - Result files whose scores hold NaN or infinite values are counted as before, and one
#   `warning:` line says how many there are (the JSON is unchanged).
# - The label file may start with a UTF-8 byte-order mark. The JSON is written under a
#   temporary name in OUT_DIR (created) and renamed.

TOPN = 5
BACKGROUND_CLASSES = 1001  # a 1001-way classifier puts "background" at index 0
SUMMARY_NAMES = ("sumary.json",)  # ais_bench's own spelling
SUMMARY_SUFFIX = "summary.json"


def read_labels(label_file):
    """{key: label} from lines `<image name> <class index>`; key = name up to its first '.'."""
    try:
        with open(label_file, encoding="utf-8-sig") as handle:  # a BOM is not part of a name
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{label_file}: no such label file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{label_file}: cannot read the label file ({err})") from None
    labels, where = {}, {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.strip().split(" ")
        if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()) or not fields[0].split(".")[0]:
            raise UserError(f"{label_file}:{number}: expected '<image name> <class index>', "
                            f"got {line.strip()!r}")
        key, label = fields[0].split(".")[0], int(fields[1])
        if key in labels and labels[key] != label:
            raise UserError(f"{label_file}:{number}: {key} is labelled {label} here and "
                            f"{labels[key]} on line {where[key]}")
        labels[key], where[key] = label, number
    if not labels:
        raise UserError(f"{label_file}: no labels in it")
    return labels


def is_summary(name):
    return name in SUMMARY_NAMES or name.endswith(SUMMARY_SUFFIX)


def result_names(result_dir):
    """The result file names of RESULT_DIR, sorted, summaries left out."""
    try:
        names = sorted(name for name in os.listdir(result_dir) if not is_summary(name))
    except FileNotFoundError:
        raise UserError(f"{result_dir}: no such result folder") from None
    except NotADirectoryError:
        raise UserError(f"{result_dir}: not a folder (RESULT_DIR holds the "
                        "<image>_<n>.txt files of the inference step)") from None
    except OSError as err:
        raise UserError(f"{result_dir}: cannot list it ({err.strerror or err})") from None
    if not names:
        raise UserError(f"{result_dir}: no result files in it (expected <image>_<n>.txt "
                        "from the inference step)")
    return names


def label_key(name):
    """`ILSVRC2012_val_00000001_0.txt` -> `ILSVRC2012_val_00000001`, or None without a '_'."""
    stem = name.split(".")[0]
    cut = stem.rfind("_")
    return stem[:cut] if cut > 0 else None


def read_scores(path):
    """The float32 scores of the first line of a result file."""
    try:
        with open(path, encoding="ascii") as handle:
            line = handle.readline()
    except IsADirectoryError:
        raise UserError(f"{path}: a folder among the result files; RESULT_DIR should "
                        "hold only <image>_<n>.txt files") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the result file ({err})") from None
    text = line.strip()
    try:
        if not text:
            raise ValueError("empty")
        return np.array(text.split(" "), dtype=np.float32)
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UserError(f"{path}: first line is not scores separated by single spaces "
                        f"({shown!r})") from None


def rank_of(scores, index):
    """Position of `index` in a stable descending sort of `scores` (NaN sorts last)."""
    value = scores[index]
    if np.isnan(value):
        return int(np.count_nonzero(~np.isnan(scores)) + np.count_nonzero(np.isnan(scores[:index])))
    return int(np.count_nonzero(scores > value) + np.count_nonzero(scores[:index] == value))


def evaluate(result_dir, labels, topn=TOPN, check=None):
    """(count, n_label of the last file, hits per rank, number of TopK entries).

    `check`, a dict when given, receives "nonfinite" (the number of files whose scores hold NaN
    or infinite values) and "first_nonfinite" (the first such file)."""
    hits = np.zeros(topn)
    count, n_label, res_cnt = 0, 0, 0
    if check is not None:
        check.update(nonfinite=0, first_nonfinite=None)
    for name in result_names(result_dir):
        path = os.path.join(result_dir, name)
        key = label_key(name)
        if key is None:
            raise UserError(f"{path}: not a result file name (expected <image>_<n>.txt)")
        if key not in labels:
            raise UserError(f"{path}: no label for {key} in the label file "
                            "(a stray file, or the wrong label file)")
        scores = read_scores(path)
        count += 1
        if check is not None and not np.isfinite(scores).all():
            check["nonfinite"] += 1
            check["first_nonfinite"] = check["first_nonfinite"] or path
        n_label = len(scores)
        truth = labels[key] + 1 if n_label == BACKGROUND_CLASSES else labels[key]
        res_cnt = min(n_label, topn)
        if truth < n_label:
            rank = rank_of(scores, truth)
            if rank < res_cnt:
                hits[rank] += 1
    return count, n_label, hits, res_cnt


def accuracy_table(count, n_label, hits, res_cnt):
    """The ModelZoo accuracy JSON as a dict (key order as the ModelZoo writes it)."""
    table = {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(count)},
        {"key": "Number of classes", "value": str(n_label)},
    ]}
    accuracy = np.cumsum(hits) / count
    for i in range(res_cnt):
        # numpy float64 rounding, exactly as the ModelZoo's round(accuracy[i] * 100, 2)
        table["value"].append({"key": f"Top{i + 1} accuracy",
                               "value": str(round(accuracy[i] * 100, 2)) + "%"})
    return table


def write_json_atomic(table, out_dir, json_name):
    path = os.path.join(out_dir, json_name)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = os.path.join(os.path.dirname(path) or ".",
                           f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(table, handle)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def postprocess_main(argv=None):
    """postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME."""
    parser = argparse.ArgumentParser(
        description="Top-1..5 accuracy of ais_bench TXT results, as the ModelZoo JSON.")
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="folder of <image>_<n>.txt results")
    parser.add_argument("label_file", metavar="LABEL_FILE", help="val_label.txt (`<image> <index>`)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the JSON")
    parser.add_argument("json_name", metavar="JSON_NAME", help="file name of the JSON, e.g. result.json")
    args = parser.parse_args(argv)

    def body():
        labels, check = read_labels(args.label_file), {}
        counts = evaluate(args.result_dir, labels, check=check)
        table = accuracy_table(*counts)
        path = write_json_atomic(table, args.out_dir, args.json_name)
        if check["nonfinite"]:
            print(f"warning: {args.result_dir}: {check['nonfinite']} of {counts[0]} result files "
                  f"hold NaN or infinite scores (first: {check['first_nonfinite']}); the model's "
                  "outputs are broken, so this accuracy means little", file=sys.stderr)
        width = max(len(entry["key"]) for entry in table["value"])
        for entry in table["value"]:
            print(f"{entry['key']:<{width}}  {entry['value']}")
        print(f"wrote {path}")
        return 0

    return command(body)


# -- checkpoint: read by model.yaml's weights.layout, checked strictly -----------------------
#
# Differences from the ModelZoo scripts, on purpose:
# - WEIGHTS may be the word `random` (seed 0; a warning says accuracy will not be meaningful). A
#   missing file is an error (some ModelZoo scripts silently exported random weights).
# - The file is read with torch.load(weights_only=True): tensors and plain containers only, plus
#   the objects the pth2onnx.py passes as safe (e.g. argparse.Namespace of timm's train.py). A
#   file that pickles anything else is refused with one line naming the GLOBAL and saying what
#   to do (save a plain state_dict); it is never run. Only when the file's md5 is a published one
#   (model.yaml weights.md5 or weights.previous.md5) is it read again with weights_only=False,
#   saying so on stderr; a GLOBAL of a module torch blocks (os, sys, ...) never is.
# - The state_dict is taken as weights.layout says (see LAYOUTS); its keys and shapes must equal
#   the network's (strict), except that `num_batches_tracked` may be absent (checkpoints of
#   torch < 0.4.1 or of InplaceAbn lack it; eval-mode BatchNorm never reads it). A mismatch is
#   one line naming the file, the first missing and first unexpected key, or the key and both
#   shapes.

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
    return UserError(
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


def md5sum(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_inflated_size(path):
    """torch.save writes a zip archive whose members are stored, not compressed: members that
    would inflate to over twice the file (plus 64 MiB for the pickles) are a zip bomb, refused
    before torch.load allocates what their headers claim."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (a legacy torch.save file): torch.load says what it is
    size = os.path.getsize(path)
    if inflated > 2 * size + (64 << 20):
        raise UserError(f"{path}: its zip members would inflate to {inflated} bytes from a "
                        f"{size}-byte file; torch.save files are not compressed, so this is not "
                        "one (a zip bomb?)")


def read_checkpoint(path, known_md5=(), safe_globals=()):
    """torch.load the file on the CPU, weights only (the full unpickle for published files)."""
    import pickle

    import torch
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file; give the checkpoint path or the word {RANDOM}")
    check_inflated_size(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ValueError ... on bad files
        refused = refused_global(err)
        weights_only = refused is not None or isinstance(err, pickle.UnpicklingError) and (
            "weights_only" in str(err) or "Weights only" in str(err))
        digest = md5sum(path) if weights_only and known_md5 and (
            refused is None or refused[1] is None) else None  # blocked modules: never
        if digest is None or digest not in known_md5:
            if refused is not None:
                raise refused_error(path, refused) from None
            raise UserError(f"{path}: cannot read as a PyTorch checkpoint "
                            f"({load_error_reason(err)})") from None
    print(f"note: {path}: the published checkpoint (md5 {digest}) needs a full "
          "unpickle; loading it with weights_only=False", file=sys.stderr)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: cannot read as a PyTorch checkpoint ({reason})") from None


def state_dict_of(checkpoint, path, layout):
    """The state_dict in `checkpoint` as weights.layout says, `module.` stripped where allowed."""
    import torch
    if layout == "state_dict_key" and isinstance(checkpoint, dict) \
            and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    expected = f"not a state_dict (model.yaml weights.layout {layout}: {LAYOUTS[layout]})"
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise UserError(f"{path}: holds a {type(checkpoint).__name__}, {expected}")
    state = OrderedDict()
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                            + expected)
        if layout != "plain" and isinstance(key, str) and key.startswith("module."):
            key = key[len("module."):]
        state[key] = value
    return state


def check_state_dict(state, expected, path, name):
    """Same keys (num_batches_tracked may be absent) and shapes as the network's."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise UserError(f"{path}: not a {name} checkpoint: keys " + ", ".join(parts))
    for key, value in state.items():
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            raise UserError(f"{path}: {key} has shape {tuple(value.shape)} in the file, "
                            f"the network expects {want}")


def build_model(weights, new_network, config, safe_globals=()):
    """new_network(classes) in eval() with `weights` loaded: a checkpoint path or "random"."""
    import torch
    if str(weights) == RANDOM:
        torch.manual_seed(RANDOM_SEED)
        model = new_network(config["classes"])
        print(f"warning: seeded random weights (seed {RANDOM_SEED}), not trained ones: "
              "accuracy will not be meaningful", file=sys.stderr)
        return model.eval()
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file; give the checkpoint path or the word {RANDOM}")
    model = new_network(config["classes"])  # an upstream tree's problems first
    checkpoint = read_checkpoint(path, config["known_md5"], safe_globals)
    state = state_dict_of(checkpoint, path, config["layout"])
    expected = model.state_dict()
    check_state_dict(state, expected, path, config["name"])
    for key, value in expected.items():  # an absent num_batches_tracked: the module's own
        state.setdefault(key, value)
    model.load_state_dict(state, strict=True)
    return model.eval()


def import_tree(source, package, required, hint):
    """`package` imported from the upstream tree `source` (put first on sys.path), never from an
    installed copy; `required` is a file the tree must hold, `hint` how to get the tree."""
    source = os.path.abspath(source)
    folder = os.path.join(source, package)
    if not os.path.isfile(os.path.join(source, required)):
        raise UserError(f"{source}: no {required} in it; pass --source with {hint}")
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]  # another tree may have been imported by this process
    sys.path.insert(0, source)
    try:
        with warnings.catch_warnings():  # upstream's own deprecation and syntax noise
            warnings.simplefilter("ignore")
            module = importlib.import_module(package)
    except Exception as err:  # ImportError, or an error raised while scripting at import time
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{source}: cannot import {package} ({reason}); "
                        "its requirements are in requirements.txt beside this script") from None
    if os.path.dirname(os.path.abspath(module.__file__)) != folder:
        raise UserError(f"{package} was imported from {module.__file__}, not from {source}; "
                        "uninstall the installed copy or fix --source")
    return module


# -- export: traced ONNX, checked, written atomically ----------------------------------------
#
# As the ModelZoo pth2onnx scripts: `.eval()`, a traced export of a random input of
# model.yaml's input.shape (batch 1; with dynamic_batch the graph does not depend on it), input
# and output named from model.yaml, its opset, and axis 0 of both named '-1' (the ModelZoo's
# literal name of the dynamic batch axis). Differences, on purpose: `dynamo=False` is passed
# (torch >= 2.9 otherwise uses the dynamo exporter, which silently writes opset 18); the written
# model's default-domain opset is asserted and onnx.checker runs (full check); the file is
# written under a temporary name and renamed, so a failed export (an error, a full disk, Ctrl-C)
# leaves nothing behind. The tracer's warnings are silenced: the shapes some upstream networks
# compute in Python (InceptionV4's final pool, TResNet's blur filter) are meant to become
# constants, and the per-model tests compare every export with the network in eager mode.

DUMMY_BATCH = 1
DYNAMIC_DIM = "-1"


def default_opset(model_proto):
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def export(model, onnx_path, config):
    """Trace `model` to `onnx_path` (names, opset and batch axis from model.yaml), checked."""
    import onnx
    import torch
    onnx_path = os.path.abspath(os.fspath(onnx_path))
    folder = os.path.dirname(onnx_path)
    tmp = os.path.join(folder, f".{os.path.basename(onnx_path)}.{os.getpid()}.tmp")
    names = {"input_names": [config["input_name"]], "output_names": [config["output_name"]]}
    if config["dynamic_batch"]:
        names["dynamic_axes"] = {config["input_name"]: {0: DYNAMIC_DIM},
                                 config["output_name"]: {0: DYNAMIC_DIM}}
    try:
        os.makedirs(folder, exist_ok=True)
        model = model.eval()
        dummy = torch.randn(DUMMY_BATCH, *config["input_shape"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            with torch.no_grad():
                torch.onnx.export(model, dummy, tmp, dynamo=False,
                                  opset_version=config["opset"], **names)
        opset = default_opset(onnx.load(tmp, load_external_data=False))
        if opset != config["opset"]:
            raise UserError(f"{onnx_path}: the exporter wrote opset {opset}, not "
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


def export_commands(folder, new_network, description, weights_help, source=None,
                    source_help=None, safe_globals=()):
    """(build_model, export, main) of a folder's pth2onnx.py.

    new_network(classes, source) returns a new network (random weights); `source` is the default
    of --source DIR (the upstream tree), None for a network defined in the folder (no option).
        model = build_model(weights, source=..., config=None)   # in eval()
        export(model, onnx_path, config=None)
        main(argv=None) -> exit status                           # the command line
    """
    def build(weights, source=source, config=None):
        return build_model(weights, lambda classes: new_network(classes, source),
                           config or load_config(folder), safe_globals)

    def export_to(model, onnx_path, config=None):
        return export(model, onnx_path, config or load_config(folder))

    def main(argv=None):
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("weights", metavar="WEIGHTS", help=weights_help + f", or '{RANDOM}'")
        parser.add_argument("onnx", metavar="ONNX", help="the ONNX file to write")
        if source is not None:
            parser.add_argument("--source", default=source, metavar="DIR",
                                help=f"{source_help} (default: ./{source})")
        args = parser.parse_args(argv)
        chosen = getattr(args, "source", None)

        def body():
            start = time.perf_counter()
            config = load_config(folder)
            path = export_to(build(args.weights, chosen, config), args.onnx, config)
            batch = "dynamic batch" if config["dynamic_batch"] else f"batch {DUMMY_BATCH}"
            upstream = f", upstream {os.path.abspath(chosen)}" if chosen is not None else ""
            print(f"exported {args.weights} to {path} (opset {config['opset']}, {batch}"
                  f"{upstream}) in {time.perf_counter() - start:.1f} s")
            return 0

        return command(body)

    return build, export_to, main
