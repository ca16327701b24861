"""TResNet-M preprocessing: `python3 preprocess.py SRC DST [--uint8]`.

After the Ascend ModelZoo TResNet guide's TResNet_preprocess.py (Apache-2.0), which runs timm
0.4.5's eval loader: Resize(int(224 / crop_pct)) bilinear, CenterCrop(224), then the loader's
prefetcher: float, minus 0, divided by 255 (mean 0, std 1: no normalisation). model.yaml's
`preprocess` says the same (npuzoo reads it for AIPP).
"""

import os
import sys
import warnings

import numpy as np
from PIL import Image

CROP_PCT = 0.875  # tresnet_m's default_cfg: the crop is 87.5% of the resized shorter side
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")  # npuzoo.dataset's: the images it selects
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # resized_rgb() refuses them
warnings.filterwarnings("ignore", "Palette images with Transparency")  # convert("RGB") drops it


def preprocess(path, uint8=False):
    """One image: float32 CHW in [0, 1], or (uint8) the cropped HWC pixels for AIPP."""
    image = resized_rgb(path, int(224 / CROP_PCT))  # 256
    top, left = round((image.height - 224) / 2), round((image.width - 224) / 2)
    pixels = np.asarray(image)[top:top + 224, left:left + 224]
    if uint8:
        return np.ascontiguousarray(pixels)
    return pixels.transpose(2, 0, 1).astype(np.float32) / 255  # the prefetcher's float() / 255


def resized_rgb(path, size):
    """The image in RGB, its shorter side bilinearly resized to `size` (the other truncated)."""
    with Image.open(path) as image:
        w, h = image.size  # the header's
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        if Image.MAX_IMAGE_PIXELS and max(w * h, new[0] * new[1]) > Image.MAX_IMAGE_PIXELS:
            raise ValueError(f"{w}x{h} pixels, resized to {new[0]}x{new[1]}: over Pillow's limit "
                             f"of {Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb?)")
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # convert() clips 16 bits
            grey = np.asarray(image)
            if image.mode == "F" or grey.min() < 0 or grey.max() > 65535:
                raise ValueError(f"mode {image.mode}: not 8- or 16-bit pixels")
            image = Image.fromarray(((grey.astype(np.uint32) * 255 + 32895) >> 16).astype(np.uint8))
        image = image.convert("RGB")
    return image if min(w, h) == size else image.resize(new, Image.Resampling.BILINEAR)


def main():
    args = [arg for arg in sys.argv[1:] if arg != "--uint8"]
    if len(args) != 2:
        return "usage: python3 preprocess.py SRC DST [--uint8]"
    (src, dst), stems = args, {}  # stems: DST/<name up to its first '.'>.bin for each image
    try:  # the images of SRC and of its subfolders, sorted
        folders = [src, *sorted(e.path for e in os.scandir(src) if e.is_dir())]
        for path in sorted(e.path for folder in folders for e in os.scandir(folder)
                           if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()):
            if stems.setdefault(stem := os.path.basename(path).split(".")[0], path) != path:
                return f"{stems[stem]} and {path} would both be written as {stem}.bin; rename one"
        os.makedirs(dst, exist_ok=True)
        for stem, path in stems.items():
            try:
                array = preprocess(path, "--uint8" in sys.argv)
            except DECODE_ERRORS as err:
                reason = str(err).split("\n")[0] or type(err).__name__
                return (f"{path}: cannot decode image ({reason}); remove it from the dataset "
                        "and its line from the label file")
            array.tofile(tmp := os.path.join(dst, f".{stem}.tmp"))  # renamed: never a partial .bin
            os.replace(tmp, os.path.join(dst, f"{stem}.bin"))
    except OSError as err:  # SRC unreadable (a loop of symbolic links...), DST unwritable
        return f"{err.filename or dst}: {err.strerror or err}"
    print(f"preprocessed {len(stems)} images for TResNet-M to {dst}")


if __name__ == "__main__" and (error := main()):
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)  # a user's error, as in npuzoo
