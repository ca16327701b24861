"""MobileNetV1 preprocessing: `python3 preprocess.py SRC DST [--uint8]`.

After the Ascend ModelZoo MobileNet-v1 guide's imagenet_torch_preprocess.py, mode `resnet`
(Apache-2.0): resize, centre crop, ToTensor, Normalize with ImageNet's mean and std. The numbers are
model.yaml's `preprocess` too (npuzoo reads them there for AIPP).
"""

import os
import sys
import warnings

import numpy as np
from PIL import Image

# the guide script's model_config entry `resnet`, the mode the guide runs
MODEL_CONFIG = {"resize": 256, "centercrop": 224,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")  # npuzoo.dataset's: the images it selects
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # resized_rgb() refuses them
warnings.filterwarnings("ignore", "Palette images with Transparency")  # convert("RGB") drops it


def center_crop(image, size):
    """The guide's center_crop(): the offsets rounded, half to even."""
    top, left = round((image.height - size) / 2), round((image.width - size) / 2)
    return image.crop((left, top, left + size, top + size))


def preprocess(path, uint8=False):
    """One image: float32 CHW, normalised, or (uint8) the cropped HWC pixels for AIPP."""
    image = resized_rgb(path, MODEL_CONFIG["resize"])
    image = center_crop(image, MODEL_CONFIG["centercrop"])
    if uint8:
        return np.asarray(image)
    img = np.array(image, dtype=np.float32).transpose(2, 0, 1) / 255.0  # ToTensor: CHW, /255
    img -= np.array(MODEL_CONFIG["mean"], dtype=np.float32)[:, None, None]  # Normalize: mean
    return img / np.array(MODEL_CONFIG["std"], dtype=np.float32)[:, None, None]  # Normalize: std


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
    print(f"preprocessed {len(stems)} images for MobileNetV1 to {dst}")


if __name__ == "__main__" and (error := main()):
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)  # a user's error, as in npuzoo
