"""Check a dataset folder and select the images a run uses.

DATA is a folder with `val/` (images, flat or one level of class folders) and `val_label.txt`
(`<image file> <label>` lines). `prepare` writes a run folder (built under a temporary name)
with `val/` (links to the first N labelled images, sorted), their label lines and dataset.json."""

import argparse
import hashlib
import json
import os
import shutil
from typing import Any

from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write

# What an image is, for the whole project: models/*/preprocess.py keep a copy of this tuple
# (they import nothing from npuzoo) and a test asserts the copies equal it. A file the dataset
# selects but the preprocessing skipped would silently shrink the accuracy's denominator.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
IMAGENET_VAL_IMAGES = 50000


def parse_labels(path: str, classes: int = 1000) -> dict[str, int]:
    """{image file name: label} of a ModelZoo label file, in file order (utf-8-sig: a byte-order
    mark, as some Windows editors write, is not part of the first name)."""
    labels: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            fields = text.split()
            # ASCII digits only: int() refuses '²', which str.isdigit() accepts
            if len(fields) != 2 or not (fields[1].isascii()
                                        and fields[1].removeprefix("-").isdigit()):
                raise UserError(f"{path}:{number}: expected '<image file> <class index>', "
                                f"got {text[:80]!r}; fix or remove that line")
            name, label = fields[0], int(fields[1])
            if not 0 <= label < classes:
                raise UserError(f"{path}:{number}: label {label} is outside 0..{classes - 1}; "
                                "labels are 0-based ImageNet class indices")
            if name in labels:
                raise UserError(f"{path}:{number}: {name} is labelled twice; keep one line")
            labels[name] = label
    if not labels:
        raise UserError(f"{path}: no labels found; expected lines like "
                        "'ILSVRC2012_val_00000001.JPEG 65'")
    return labels


def image_paths(folder: str) -> list[str]:
    """The images of `folder` and of its immediate subfolders (class folders), sorted by path."""
    try:
        folders = [folder] + sorted(e.path for e in os.scandir(folder) if e.is_dir())
        return sorted(e.path for f in folders for e in os.scandir(f)
                      if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
    except OSError as err:  # a symlink loop (ELOOP), an unreadable folder
        raise UserError(f"{err.filename or folder}: cannot read ({err.strerror}); fix or "
                        "remove it") from None


def check_layout(data_dir: str) -> tuple[str, str]:
    """(label file, val/) of DATA; UserError when DATA is unset or lacks either (nothing read)."""
    if not data_dir:
        raise UserError("DATA is not set; pass DATA=<folder with val/ and val_label.txt>")
    if not os.path.isdir(data_dir):
        raise UserError(f"DATA={data_dir}: no such folder; pass DATA=<folder with val/ "
                        "and val_label.txt>")
    label_file = os.path.join(data_dir, "val_label.txt")
    val_dir = os.path.join(data_dir, "val")
    if not os.path.isfile(label_file):
        raise UserError(f"{label_file}: missing; DATA needs a label file with lines like "
                        "'ILSVRC2012_val_00000001.JPEG 65'")
    if not os.path.isdir(val_dir):
        raise UserError(f"{val_dir}: missing; DATA needs its images in a val/ folder")
    return label_file, val_dir


def check_dataset(data_dir: str) -> tuple[dict[str, int], dict[str, str]]:
    label_file, val_dir = check_layout(data_dir)
    labels = parse_labels(label_file)
    images: dict[str, str] = {}  # file name: path (the first by path where a name repeats)
    for path in image_paths(val_dir):
        images.setdefault(os.path.basename(path), path)
    if absent := [name for name in labels if name not in images]:
        raise UserError(f"{label_file}: {len(absent)} labelled image(s) are not in {val_dir}, "
                        f"first {absent[0]}; add the images or remove their lines")
    return labels, images


def select(labels: dict[str, int], data_dir: str, limit: int | None, offset: int) -> list[str]:
    """The names of the selection: `limit` labelled images (all when None) from position
    `offset` of the sorted names (an int8 run calibrates on the images after its first N)."""
    names = sorted(labels)
    if limit is not None and limit <= 0:
        raise UserError(f"N={limit}: expected a positive number of images")
    if offset and offset >= len(names):
        raise UserError(f"DATA={data_dir} has only {len(names)} labelled images, none after "
                        f"the first {offset}; lower N or give CALIB_DATA=<folder>")
    if not offset and limit is not None and limit > len(names):
        raise UserError(f"N={limit}: DATA={data_dir} has only {len(names)} labelled "
                        "images; lower N or leave it unset for all")
    return names[offset:] if limit is None else names[offset:offset + limit]


def prepare(data_dir: str, out_dir: str, limit: int | None, offset: int = 0) -> dict[str, Any]:
    labels, images = check_dataset(data_dir)
    names = select(labels, data_dir, limit, offset)
    tmp_dir = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(os.path.join(tmp_dir, "val"))
    for name in names:
        os.symlink(os.path.abspath(images[name]), os.path.join(tmp_dir, "val", name))
    label_text = "".join(f"{name} {labels[name]}\n" for name in names)
    atomic_write(os.path.join(tmp_dir, "val_label.txt"), label_text)
    info = {
        "name": os.path.basename(os.path.abspath(data_dir)),
        "path": os.path.abspath(data_dir),
        "images": len(names),
        "labelled_images": len(labels),
        "subset": len(names) < len(labels),
        "full_validation_set": len(names) == IMAGENET_VAL_IMAGES,
        "labels_sha256": hashlib.sha256(label_text.encode()).hexdigest(),
        "offset": offset,
    }
    atomic_write(os.path.join(tmp_dir, "dataset.json"), json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)
    return info


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.dataset", description=(
        "Check DATA (val/ + val_label.txt) and select the first N images."))
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="check DATA and write a run folder")
    prep.add_argument("data")
    prep.add_argument("out")
    prep.add_argument("--limit", type=int, help="first N labelled images (sorted by name)")
    prep.add_argument("--offset", type=int, default=0,
                      help="skip the first K (an int8 run's calibration images follow its N)")
    args = parser.parse_args(argv)
    info = prepare(args.data, args.out, args.limit, args.offset)
    print(f"dataset {info['name']}: {info['images']} of {info['labelled_images']} "
          f"labelled images selected into {args.out}")


if __name__ == "__main__":
    main()
