"""InceptionV4 preprocessing: `python3 preprocess.py SRC DST [--uint8]`.

As the Ascend ModelZoo InceptionV4 guide's inceptionv4_preprocess.py (Apache-2.0): shorter side
to 342, a 299 crop at floored offsets (21 where torchvision's CenterCrop gives 22), then
(x/255 - 0.5) / 0.5.
"""

import argparse
import os
import sys
import warnings

import numpy as np
import yaml
from PIL import Image

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.yaml"), "rb") as handle:
    PARAMS = yaml.safe_load(handle)["preprocess"]
MEAN, STD = (np.array(PARAMS[key], np.float32).reshape(3, 1, 1) for key in ("mean", "std"))
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)
warnings.simplefilter("error", Image.DecompressionBombWarning)  # over Pillow's limit: refused
warnings.filterwarnings("ignore", "Palette images with Transparency")  # convert("RGB") drops it


def preprocess(path, uint8=False):
    """One image: float32 CHW, normalised, or (uint8) the cropped HWC pixels for AIPP."""
    size, crop = PARAMS["resize"], PARAMS["crop"]
    with Image.open(path) as image:
        w, h = image.size  # the header's (open() refused more than Pillow's limit)
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)  # truncated
        if Image.MAX_IMAGE_PIXELS and new[0] * new[1] > Image.MAX_IMAGE_PIXELS:
            raise ValueError(f"{w}x{h} pixels, resized to {new[0]}x{new[1]}: over Pillow's limit "
                             f"of {Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb?)")
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # convert() clips 16 bits
            grey = np.asarray(image)
            if image.mode == "F" or grey.min() < 0 or grey.max() > 65535:
                raise ValueError(f"mode {image.mode}: not 8- or 16-bit pixels")
            image = Image.fromarray(((grey.astype(np.uint32) * 255 + 32895) >> 16).astype(np.uint8))
        image = image.convert("RGB")
    if min(w, h) != size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    top, left = (image.height - crop) // 2, (image.width - crop) // 2  # floored, as the guide
    pixels = np.asarray(image)[top:top + crop, left:left + crop]
    if uint8:
        return np.ascontiguousarray(pixels)
    return (pixels.transpose(2, 0, 1).astype(np.float32) / 255 - MEAN) / STD


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)  # a user's error, as in npuzoo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", metavar="SRC")
    parser.add_argument("dst", metavar="DST")
    parser.add_argument("--uint8", action="store_true", help="the cropped uint8 pixels, for AIPP")
    args = parser.parse_args()
    stems = {}  # DST/<name up to its first '.'>.bin for each image of SRC/* and SRC/*/*, sorted
    try:
        folders = [args.src, *sorted(e.path for e in os.scandir(args.src) if e.is_dir())]
        for path in sorted(e.path for folder in folders for e in os.scandir(folder)
                           if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()):
            stem = os.path.basename(path).split(".")[0]
            if stems.setdefault(stem, path) != path:
                fail(f"{stems[stem]} and {path} would both be written as {stem}.bin; rename one")
        os.makedirs(args.dst, exist_ok=True)
        for stem, path in stems.items():
            try:
                array = preprocess(path, args.uint8)
            except DECODE_ERRORS as err:
                reason = (str(err).splitlines() or [type(err).__name__])[0]
                fail(f"{path}: cannot decode image ({reason}); remove it from the dataset "
                     "and its line from the label file")
            tmp = os.path.join(args.dst, f".{stem}.tmp")
            array.tofile(tmp)  # then renamed: never a partial .bin
            os.replace(tmp, os.path.join(args.dst, f"{stem}.bin"))
    except OSError as err:  # SRC unreadable (a loop of symbolic links...), DST unwritable
        fail(f"{err.filename or args.dst}: {err.strerror or err}")
    print(f"preprocessed {len(stems)} images to {args.dst}")


if __name__ == "__main__":
    main()
