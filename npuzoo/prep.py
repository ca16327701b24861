"""Run a model folder's preprocessing in parallel: the machinery around its preprocess().

    python3 -m npuzoo.prep MODEL_DIR SRC DST [--limit N] [--workers K] [--uint8]

writes what `MODEL_DIR/preprocess.py SRC DST` writes (DST/<stem>.bin), with model.yaml validated,
the images of npuzoo.dataset.image_paths (two with one stem refused), K worker processes, a
progress bar and clean stops: an undecodable image stops the run in one line (skipping it would
shrink the accuracy's denominator), Ctrl-C lets each worker finish its file. Each output is
renamed from a per-worker temporary folder under DST: DST never holds a partial .bin."""

import argparse
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.synchronize import Event
from types import ModuleType
from typing import Any, Protocol

from npuzoo import config
from npuzoo.bench.options import positive_integer
from npuzoo.dataset import IMAGE_EXTENSIONS, image_paths
from npuzoo.errors import UserError, cli
from npuzoo.files import write_error

MAX_CHUNK = 16
PIL_BLOCKS_MAX = 8  # Pillow keeps a few image memory blocks for reuse (pixels unchanged)
TEMP_PREFIX = ".preprocess-"

_worker: dict[str, Any] = {}  # this process's share of the run (_init_worker)


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def close(self) -> None: ...


def load_script(model_dir: str, name: str) -> ModuleType:
    """MODEL_DIR/<name>.py imported by path under a name of its own (the folders are no package)."""
    module_name = f"npuzoo_folder_{os.path.basename(os.path.abspath(model_dir))}_{name}"
    if module_name not in sys.modules:
        path = os.path.join(model_dir, f"{name}.py")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"{path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def output_stem(path: str) -> str:
    return os.path.basename(path).split(".", 1)[0]


def check_images(src: str, limit: int | None) -> list[str]:
    """The first `limit` images of SRC and of its immediate subfolders, sorted by path."""
    if not os.path.isdir(src):
        raise UserError(f"{src}: no such folder (SRC should hold the validation images)")
    paths = image_paths(src)[:limit]
    if not paths:
        raise UserError(f"{src}: no {'/'.join(IMAGE_EXTENSIONS)} images in it or in its "
                        "subfolders")
    seen: dict[str, str] = {}
    for path in paths:
        stem = output_stem(path)
        if not stem:
            raise UserError(f"{path}: its name gives an empty output name "
                            "(the output is the name up to its first '.')")
        if stem in seen:
            raise UserError(f"{seen[stem]} and {path} would both be written as {stem}.bin; "
                            "rename or remove one")
        seen[stem] = path
    return paths


def _init_worker(model_dir: str, uint8: bool, dst: str, tmp_root: str, stop: Event) -> None:
    """A pool worker ignores SIGINT: on Ctrl-C the parent alone stops the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from PIL import _imaging as pillow_core  # what PIL.Image calls Image.core
    pillow_core.set_blocks_max(PIL_BLOCKS_MAX)
    tmp_dir = os.path.join(tmp_root, f"worker-{os.getpid()}")
    os.makedirs(tmp_dir, exist_ok=True)
    script = load_script(model_dir, "preprocess")
    _worker.update(preprocess=script.preprocess, decode_errors=script.DECODE_ERRORS, uint8=uint8,
                   dst=dst, tmp_dir=tmp_dir, stop=stop)


def _process(path: str) -> str | UserError | None:
    """The stem on success; None when the run is stopping; a UserError to raise on an error."""
    if _worker["stop"].is_set():
        return None
    try:
        array = _worker["preprocess"](path, _worker["uint8"])
    except _worker["decode_errors"] as err:  # what the folder's decoding raises on a bad file
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        return UserError(f"{path}: cannot decode image ({reason}); remove it from the dataset "
                         "and its line from the label file")
    stem = output_stem(path)
    final = os.path.join(_worker["dst"], stem + ".bin")
    tmp = os.path.join(_worker["tmp_dir"], stem + ".bin")
    try:
        array.tofile(tmp)
        os.replace(tmp, final)
    except OSError as err:  # a full disk, a folder made read-only: with what to do
        return UserError(str(write_error(final, err)))
    return stem


def run_parallel(paths: list[str], args: tuple[str, bool, str, str], workers: int, bar: Bar) -> int:
    """K processes (one too: the same clean stops) fed in chunks; on the first error or an
    interrupt a shared event makes every worker skip what is left, so the pool drains quickly
    and no worker is killed mid-write."""
    import multiprocessing
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    error: UserError | None = None
    done = 0
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork of a threaded process
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                       initargs=(*args, stop))
        try:
            # SIGINT blocked while the workers are forked (they inherit the mask and ignore it
            # before unblocking it); a Ctrl-C meanwhile reaches this process once restored.
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                chunk = max(1, min(MAX_CHUNK, len(paths) // (workers * 8)))
                results = executor.map(_process, paths, chunksize=chunk)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            for result in results:
                if isinstance(result, UserError) and error is None:
                    error = result
                    stop.set()
                elif isinstance(result, str):
                    done += 1
                    bar.update()
        except BrokenProcessPool:
            raise UserError("a worker process died (killed for lack of memory?); the outputs "
                            f"written so far in {args[2]} are complete") from None
        except BaseException:
            stop.set()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error
    return done


def preprocess(model_dir: str, src: str, dst: str, limit: int | None = None,
               workers: int | None = None, uint8: bool = False) -> tuple[int, float]:
    """Write DST/<stem>.bin for the first `limit` images of SRC; returns (count, seconds)."""
    start = time.perf_counter()
    config.load(os.path.join(model_dir, "model.yaml"))
    load_script(model_dir, "preprocess")  # before the fork: the workers inherit it
    paths = check_images(src, limit)
    try:
        os.makedirs(dst, exist_ok=True)
        tmp_root = tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=dst)
    except OSError as err:
        raise write_error(dst, err) from None
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(paths)))
    from tqdm import tqdm

    bar: Bar = tqdm(total=len(paths), unit="img", desc="preprocess", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    try:
        done = run_parallel(paths, (model_dir, uint8, dst, tmp_root), workers, bar)
    finally:
        bar.close()
        shutil.rmtree(tmp_root, ignore_errors=True)  # only partial files of a dead worker
    return done, time.perf_counter() - start


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.prep",
                                     description="Run a model folder's preprocessing in parallel.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="models/<name>")
    parser.add_argument("src", metavar="SRC",
                        help="folder of images, flat or one level of class folders")
    parser.add_argument("dst", metavar="DST", help="output folder for <stem>.bin files")
    parser.add_argument("--limit", type=positive_integer, metavar="N",
                        help="only the first N images")
    parser.add_argument("--workers", type=positive_integer, metavar="K",
                        help="worker processes (default: the usable cores, "
                             f"{len(os.sched_getaffinity(0))})")
    parser.add_argument("--uint8", action="store_true",
                        help="the cropped uint8 HWC pixels, for an om with AIPP")
    args = parser.parse_args(argv)
    count, seconds = preprocess(args.model_dir, args.src, args.dst, args.limit, args.workers,
                                args.uint8)
    rate = count / seconds if seconds > 0 else float("inf")
    print(f"preprocessed {count} images to {args.dst} in {seconds:.2f} s ({rate:.1f} images/s)")


if __name__ == "__main__":
    main()
