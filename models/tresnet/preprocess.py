"""Preprocess ImageNet images for TResNet-M: `python3 preprocess.py SRC DST [--limit N] [--workers K] [--uint8]`.

As the Ascend ModelZoo TResNet guide's TResNet_preprocess.py (Apache-2.0), timm 0.4.5's eval
loader: Resize(224 / 0.875 = 256), CenterCrop(224), /255 with mean 0 and std 1 (no ImageNet
normalisation for this model).
RGB (16-bit grey scaled to 8 bits), shorter side to model.yaml's `resize` (bilinear, the
longer truncated), centre crop `crop` at rounded offsets, /255, (x - mean) / std: float32 CHW bytes in
DST/<stem>.bin (<stem>: the name to its first '.'); --uint8: the cropped uint8 HWC pixels (AIPP).
Images: SRC/* and SRC/*/*, sorted. Unlike the guide, a bad, oversized or 32-bit image or two
with one stem stop the run with one `error:` line; outputs are renamed into place. The
pipeline runs preprocess() through `python3 -m npuzoo.prep` (workers, progress, Ctrl-C).
"""

import argparse
import os
import sys
import warnings
from contextlib import nullcontext
from multiprocessing import Pool

import numpy as np
import yaml
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "model.yaml"), encoding="utf-8") as handle:
    PARAMS = yaml.safe_load(handle)["preprocess"]
MEAN = np.array(PARAMS["mean"], dtype=np.float32).reshape(3, 1, 1)
STD = np.array(PARAMS["std"], dtype=np.float32).reshape(3, 1, 1)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)
warnings.simplefilter("error", Image.DecompressionBombWarning)  # over Pillow's limit: refused


def resized(width, height, size=PARAMS["resize"]):  # the shorter side to size, the longer truncated
    return (size, int(size * height / width)) if width <= height else (int(size * width / height), size)


def to_rgb(image):
    """convert('RGB'), as torchvision's loader, but 16-bit grey scaled to 8 bits (round(v / 257))
    where convert would clip it white; pixels beyond 16 bits or floating point are refused."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.asarray(image)
        if image.mode == "F" or pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError(f"mode {image.mode} pixels from {pixels.min()} to {pixels.max()}: "
                             "not 8- or 16-bit; save the image as 8-bit RGB or grey")
        image = Image.fromarray(((pixels.astype(np.uint32) * 255 + 32895) >> 16).astype(np.uint8), "L")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Palette images with Transparency")  # dropped, as convert does
        return image.convert("RGB")


def preprocess(path, uint8=False):
    """The model's input for one image file: float32 CHW, or the cropped uint8 HWC pixels."""
    with Image.open(path) as image:
        width, height = image.size  # the header's: a bomb is refused before it is decoded
        if min(width, height) < 1:
            raise ValueError(f"{width}x{height} pixels: an empty image")
        for w, h in ((width, height), resized(width, height)):
            if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                as_resized = f", resized to {w}x{h}" if (w, h) != (width, height) else ""
                raise ValueError(f"{width}x{height} pixels{as_resized}: over Pillow's limit of "
                                 f"{Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb?)")
        image = to_rgb(image)
    size, crop = PARAMS["resize"], PARAMS["crop"]
    if min(width, height) != size:
        image = image.resize(resized(width, height), Image.Resampling.BILINEAR)
    top, left = round((image.height - crop) / 2), round((image.width - crop) / 2)
    pixels = np.asarray(image)[top:top + crop, left:left + crop]
    if uint8:
        return np.ascontiguousarray(pixels)
    return (pixels.transpose(2, 0, 1).astype(np.float32) / 255 - MEAN) / STD


def fail(message, status=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def convert(task):
    """One image to DST/<stem>.bin (a temporary name, then renamed): None, or the error."""
    path, dst, uint8 = task
    out = os.path.join(dst, os.path.basename(path).split(".")[0] + ".bin")
    try:
        array = preprocess(path, uint8)
    except DECODE_ERRORS as err:
        return (f"{path}: cannot decode image ({(str(err).splitlines() or [type(err).__name__])[0]}); "
                "remove it from the dataset and its line from the label file")
    try:
        array.tofile(os.path.join(dst, f".{os.path.basename(out)}.tmp"))
        os.replace(os.path.join(dst, f".{os.path.basename(out)}.tmp"), out)
    except OSError as err:
        return f"{out}: cannot write ({err.strerror or err})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", metavar="SRC")
    parser.add_argument("dst", metavar="DST")
    parser.add_argument("--limit", type=int, metavar="N")
    parser.add_argument("--workers", type=int, default=1, metavar="K")
    parser.add_argument("--uint8", action="store_true")
    args = parser.parse_args(argv)
    try:
        folders = [args.src] + sorted(e.path for e in os.scandir(args.src) if e.is_dir())
        paths = sorted(e.path for folder in folders for e in os.scandir(folder)
                       if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())[:args.limit]
    except OSError as err:  # no such folder, a symlink loop, an unreadable folder
        fail(f"{err.filename or args.src}: cannot read ({err.strerror}); SRC is a folder of images")
    seen = {}
    for path in paths:
        stem = os.path.basename(path).split(".")[0]
        if not stem:
            fail(f"{path}: its name gives no output name (the name up to its first '.')")
        if stem in seen:
            fail(f"{seen[stem]} and {path} would both be written as {stem}.bin; "
                 "rename or remove one")
        seen[stem] = path
    if not paths or min(args.workers, args.limit or 1) < 1:
        fail(f"{args.src}: no {'/'.join(IMAGE_EXTENSIONS)} images in it or its "
             "subfolders (or --limit, --workers not positive)")
    try:
        os.makedirs(args.dst, exist_ok=True)
        with Pool(args.workers) if args.workers > 1 else nullcontext() as pool:
            tasks = [(path, args.dst, args.uint8) for path in paths]
            for error in pool.imap(convert, tasks, chunksize=8) if pool else map(convert, tasks):
                if error:
                    fail(f"{error}")
    except OSError as err:
        fail(f"{args.dst}: cannot write in it ({err.strerror or err})")
    except KeyboardInterrupt:
        fail("interrupted", 130)
    print(f"preprocessed {len(paths)} images to {args.dst}")


if __name__ == "__main__":
    main()
