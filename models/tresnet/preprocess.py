"""Preprocess ImageNet images for TResNet-M: `python3 preprocess.py SRC DST [--limit N] [--workers K]`.

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/TResNet/
TResNet_preprocess.py (Apache-2.0, run there as `SRC DST`), which uses timm 0.4.5's
`create_loader(input_size=(3, 224, 224), interpolation='bilinear', mean=(0, 0, 0),
std=(1, 1, 1), crop_pct=0.875, use_prefetcher=True)`: torchvision Resize(floor(224 / 0.875) =
256, BILINEAR), CenterCrop(224), uint8 CHW, then the prefetcher's float() - 0 / (1 * 255).
Here: PIL open, convert('RGB'), resize the shorter side to 256 with BILINEAR (the long side
`int(256 * long / short)`, truncated; untouched when the short side is already 256), centre crop
224 at offsets `int(round((dim - 224) / 2))`, /255 in float32, (x - mean) / std with mean 0 and
std 1 (no change: NO ImageNet normalisation for this model), float32 CHW written raw with
`tofile` as `DST/<stem>.bin`, stem = the file name up to its first '.'. The values are
identical to torchvision's Resize(256), CenterCrop(224), ToTensor() (the tests compare them
pixel for pixel). Every parameter comes from model.yaml beside this file (`preprocess`,
`input`). This file is a copy of models/mobilenetv1/preprocess.py (standalone folders).

Images: SRC/*.ext and SRC/*/*.ext (one level of class subfolders), ext = jpeg, jpg, png or bmp in
any case (the project's npuzoo.dataset.IMAGE_EXTENSIONS, which a test keeps equal to
IMAGE_EXTENSIONS here), in sorted path order; `--limit N` takes the first N of that order.
`--workers K` (default: the usable cores) runs K processes that decode and write files themselves
and return only names; work is dispatched in chunks. Each output is written under a temporary name
in DST and renamed, so DST never holds a partial .bin.

Differences from the ModelZoo script, on purpose:
- An image that cannot be decoded STOPS the run (exit 2) with one line naming it, and asks for
  it to be removed from the dataset and from the label file. Skipping it would silently shrink
  the accuracy denominator (the postprocess counts result files), and writing a placeholder
  would count it as a wrong answer; stopping keeps the published accuracy comparable. The outputs
  already written are complete files and are kept; rerunning after the fix rewrites them all.
- Two images with the same stem (e.g. in two class folders) are an error before anything is
  written, instead of one output silently overwriting the other.
- A missing SRC, or one without images, is a one-line error (exit 2).
- Images are SRC/* and SRC/*/* in sorted path order (the ModelZoo's timm loader walks SRC
  recursively in natural order); the order changes nothing but `--limit`.
- No tresnet_prep_bin.info is written (ais_bench reads the folder itself).

Temporary files: only DST/.<stem>.bin.<pid>.tmp, renamed to DST/<stem>.bin when complete and
removed when a run fails or is interrupted. Everything this script creates under a temporary
name matches `.*.tmp` directly in DST, so a driver can remove what a SIGKILLed run left
(`find DST -maxdepth 1 -name '.*.tmp' -exec rm -rf {} +`) when no run is active. Outputs get
the mode a plain open() gives (0666 minus the umask).
Ctrl-C at any point, even during the imports, ends with `error: interrupted` (exit 130); the
workers ignore it and stop with the parent, which keeps every complete output.
"""

import argparse
import contextlib
import multiprocessing
import os
import re
import signal
import sys
import time
import warnings


def _exit_on_interrupt(kind, value, traceback, _previous=sys.excepthook):
    """sys.excepthook: a Ctrl-C that main() cannot catch yet (e.g. during `import numpy`)
    prints one line and exits 130, like the one main() catches; anything else as before."""
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

import numpy as np  # noqa: E402  (after the hook on purpose)
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_PATH = os.path.join(HERE, "model.yaml")
# What an image is: exactly npuzoo.dataset.IMAGE_EXTENSIONS (a copy: this folder imports
# nothing from the project; a test keeps the two equal). An image the dataset step selects
# but this script skipped would silently shrink the accuracy's denominator.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
INTERPOLATIONS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
CROP_OFFSETS = ("round", "floor")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
MAX_CHUNK = 16
TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.bin\.\d+\.tmp$")


class PreprocessError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


# -- configuration ------------------------------------------------------------------------

def load_config(path=CONFIG_PATH):
    """The preprocessing parameters of model.yaml, checked; errors name the field."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise PreprocessError(f"{path}: cannot read model.yaml ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise PreprocessError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None

    def field(dotted, check, expected):
        value = data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise PreprocessError(f"{path}: {dotted}: missing")
            value = value[part]
        if not check(value):
            raise PreprocessError(f"{path}: {dotted}: expected {expected}, got {value!r}")
        return value

    def positive_int(value):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def numbers(value, positive=False):
        return (isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 or not positive)
            for v in value))

    resize = field("preprocess.resize", positive_int, "a positive integer")
    crop = field("preprocess.crop", lambda v: positive_int(v) and v <= resize,
                 f"a positive integer no larger than preprocess.resize ({resize})")
    field("preprocess.resize_rule", lambda v: v == "shorter_side", "shorter_side")
    interpolation = field("preprocess.interpolation", lambda v: v in INTERPOLATIONS,
                          "one of " + ", ".join(INTERPOLATIONS))
    offset = field("preprocess.crop_offset", lambda v: v in CROP_OFFSETS,
                   "one of " + ", ".join(CROP_OFFSETS))
    mean = field("preprocess.mean", numbers, "a list of 3 numbers")
    std = field("preprocess.std", lambda v: numbers(v, positive=True),
                "a list of 3 positive numbers")
    field("input.shape", lambda v: v == [3, crop, crop], f"[3, {crop}, {crop}] (preprocess.crop)")
    field("input.dtype", lambda v: v == "float32", "float32")
    return {"resize": resize, "crop": crop, "interpolation": interpolation,
            "crop_offset": offset, "mean": mean, "std": std}


# -- one image ----------------------------------------------------------------------------

class DecodeError(Exception):
    pass


class Preprocessor:
    """Turns one image file into the model's float32 CHW input; picklable (plain config)."""

    def __init__(self, config, uint8=False):
        self.config = config
        # --uint8: the resized and cropped RGB pixels as uint8 HWC, for an om whose AIPP
        # (atc --insert_op_conf) does the normalisation on the chip
        self.uint8 = uint8
        self.resize_to = config["resize"]
        self.crop = config["crop"]
        self.resample = INTERPOLATIONS[config["interpolation"]]
        self.round_offsets = config["crop_offset"] == "round"
        # float32, shaped to broadcast over CHW: the same arithmetic as torchvision's Normalize
        self.mean = np.array(config["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(config["std"], dtype=np.float32).reshape(3, 1, 1)

    def __reduce__(self):
        return (Preprocessor, (self.config, self.uint8))

    @staticmethod
    def decode(path):
        """The decoded RGB image; convert('RGB') only when needed (it copies otherwise)."""
        try:
            with Image.open(path) as image:
                image.load()
                return image if image.mode == "RGB" else image.convert("RGB")
        except DECODE_ERRORS as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise DecodeError(reason) from None

    def resize(self, image):
        """Shorter side to `resize`, long side truncated; unchanged if already that size."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        if short == self.resize_to:
            return image
        new_long = int(self.resize_to * long / short)
        size = (self.resize_to, new_long) if width <= height else (new_long, self.resize_to)
        return image.resize(size, self.resample)

    def offset(self, dim):
        return int(round((dim - self.crop) / 2)) if self.round_offsets else int((dim - self.crop) / 2)

    def __call__(self, path):
        image = self.resize(self.decode(path))
        width, height = image.size
        top, left = self.offset(height), self.offset(width)
        pixels = np.asarray(image)[top:top + self.crop, left:left + self.crop]  # HWC uint8 view
        if self.uint8:  # raw HWC bytes, a quarter of the float32 size
            return np.ascontiguousarray(pixels)
        out = np.empty((3, self.crop, self.crop), dtype=np.float32)
        np.copyto(out, pixels.transpose(2, 0, 1))  # HWC uint8 -> CHW float32, one pass
        out /= 255  # in place, float32 throughout
        out -= self.mean
        out /= self.std
        return out


def output_stem(path):
    return os.path.basename(path).split(".", 1)[0]


def write_atomic(array, dst, stem):
    """DST/<stem>.bin via a temporary name in DST (removed if anything fails)."""
    final = os.path.join(dst, stem + ".bin")
    tmp = os.path.join(dst, f".{stem}.bin.{os.getpid()}.tmp")
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


# -- the per-process worker ---------------------------------------------------------------

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


def _init_worker(preprocessor, dst, stop):
    _worker.update(preprocessor=preprocessor, dst=dst, stop=stop)


def _process(path):
    """stem on success; None when the run is stopping; ("decode"|"write", path, reason) on error."""
    stop = _worker.get("stop")
    if stop is not None and stop.is_set():
        return None
    try:
        array = _worker["preprocessor"](path)
    except DecodeError as err:
        return ("decode", path, str(err))
    stem = output_stem(path)
    try:
        write_atomic(array, _worker["dst"], stem)
    except OSError as err:
        return ("write", os.path.join(_worker["dst"], stem + ".bin"), err.strerror or str(err))
    return stem


def error_line(kind, path, reason):
    if kind == "decode":
        return (f"{path}: cannot decode image ({reason}); remove it from the dataset and its "
                "line from the label file")
    return f"{path}: cannot write ({reason})"


# -- the run ------------------------------------------------------------------------------

def list_images(src):
    """Image files in SRC and in its immediate subfolders, sorted by path."""
    if not os.path.exists(src):
        raise PreprocessError(f"{src}: no such folder (SRC should hold the validation images)")
    if not os.path.isdir(src):
        raise PreprocessError(f"{src}: not a folder (SRC should hold the validation images)")

    def images_in(folder):
        found, subfolders = [], []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                    found.append(entry.path)
        return found, subfolders

    paths, subfolders = images_in(src)
    for folder in subfolders:
        paths.extend(images_in(folder)[0])
    if not paths:
        raise PreprocessError(f"{src}: no {'/'.join(IMAGE_EXTENSIONS)} images in it or in its "
                              "subfolders")
    return sorted(paths)


def check_stems(paths):
    seen = {}
    for path in paths:
        stem = output_stem(path)
        if not stem:
            raise PreprocessError(f"{path}: its name gives an empty output name "
                                  "(the output is the name up to its first '.')")
        if stem in seen:
            raise PreprocessError(f"{seen[stem]} and {path} would both be written as {stem}.bin; "
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


def run_serial(paths, preprocessor, dst, bar):
    _init_worker(preprocessor, dst, None)
    done = 0
    for path in paths:
        result = _process(path)
        if isinstance(result, tuple):
            raise PreprocessError(error_line(*result))
        done += 1
        if bar is not None:
            bar.update()
    return done


def pool_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def run_parallel(paths, preprocessor, dst, workers, bar):
    """K processes; on the first error every worker skips what is left and the pool drains."""
    context = pool_context()
    stop = context.Event()
    chunk = max(1, min(MAX_CHUNK, len(paths) // (workers * 8)))
    error, done = None, 0
    pool = None
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns on fork of a threaded process
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            with sigint_held():
                pool = context.Pool(workers, _init_pool_worker, (preprocessor, dst, stop))
        for result in pool.imap_unordered(_process, paths, chunksize=chunk):
            if isinstance(result, tuple):
                if error is None:
                    error = result
                    stop.set()
            elif result is not None:
                done += 1
                if bar is not None:
                    bar.update()
        pool.close()
        pool.join()
    except BaseException:
        if pool is not None:
            pool.terminate()
            pool.join()
        remove_temporaries(dst, {output_stem(p) for p in paths})
        raise
    if error is not None:
        raise PreprocessError(error_line(*error))
    return done


def remove_temporaries(dst, stems):
    """Temporary files of a killed worker (only names this run could have made)."""
    try:
        names = os.listdir(dst)
    except OSError:
        return
    for name in names:
        match = TEMP_NAME.match(name)
        if match and match.group("stem") in stems:
            try:
                os.unlink(os.path.join(dst, name))
            except OSError:
                pass


def preprocess(src, dst, limit=None, workers=None, config=None, uint8=False):
    """Write DST/<stem>.bin for the first `limit` images of SRC; returns (count, seconds)."""
    start = time.perf_counter()
    preprocessor = Preprocessor(config or load_config(), uint8)
    paths = list_images(src)
    if limit is not None:
        paths = paths[:limit]
    check_stems(paths)
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise PreprocessError(f"{dst}: exists and is not a folder")
    try:
        os.makedirs(dst, exist_ok=True)
    except OSError as err:
        raise PreprocessError(f"{dst}: cannot create the folder ({err.strerror or err})") from None
    workers = max(1, min(workers or usable_cores(), len(paths)))
    bar = progress_bar(len(paths))
    try:
        if workers == 1:
            done = run_serial(paths, preprocessor, dst, bar)
        else:
            done = run_parallel(paths, preprocessor, dst, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    return done, time.perf_counter() - start


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv):
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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        count, seconds = preprocess(args.src, args.dst, args.limit, args.workers, uint8=args.uint8)
    except PreprocessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    rate = count / seconds if seconds > 0 else float("inf")
    print(f"preprocessed {count} images to {args.dst} in {seconds:.2f} s ({rate:.1f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
