"""DPN131 top-1..5 accuracy: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

As the Ascend ModelZoo DPN131 guide's imagenet_acc_eval.py (Apache-2.0): the same JSON, byte for byte.
Unlike the guide: files read sorted, one `error:` line for a bad file or a missing label.
"""

import json
import os
import sys

import numpy as np


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    result_dir, label_file, out_dir, json_name = sys.argv[1:] if len(sys.argv) == 5 else fail(
        "usage: python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME")
    try:
        with open(label_file, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
        names = sorted(n for n in os.listdir(result_dir) if not n.endswith(("sumary.json", "summary.json")))
    except (OSError, UnicodeDecodeError) as err:
        fail(f"{getattr(err, 'filename', None) or label_file}: cannot read ({getattr(err, 'strerror', None) or err})")
    labels = {}  # image name up to its first '.' -> class index
    for number, fields in enumerate((line.split() for line in lines), 1):
        key = fields[0].split(".")[0] if fields else None
        if fields and (len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()) or not key):
            fail(f"{label_file}:{number}: expected '<image name> <class index>', got {lines[number - 1]!r}")
        if fields and labels.setdefault(key, int(fields[1])) != int(fields[1]):
            fail(f"{label_file}:{number}: {key} is labelled {fields[1]} here, {labels[key]} before")
    if not labels or not names:
        fail(f"{label_file}: no labels in it" if not labels else
             f"{result_dir}: no result files in it (expected <image>_<n>.txt)")
    hits, n_classes, nonfinite = np.zeros(5), 0, 0
    for name in names:
        path, key = os.path.join(result_dir, name), name.split(".")[0].rpartition("_")[0]
        if key not in labels:
            fail(f"{path}: no label for it in the label file")
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.readline().strip()
            scores = np.array(text.split(" "), dtype=np.float32)
        except (OSError, UnicodeDecodeError) as err:
            fail(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})")
        except ValueError:
            fail(f"{path}: first line is not scores separated by single spaces ({text[:60]!r})")
        nonfinite += not np.isfinite(scores).all()
        n_classes = len(scores)
        top = list(np.argsort(-scores, kind="stable")[:5])  # ties: the lower index first; NaN last
        truth = labels[key] + (n_classes == 1001)  # index 0 of 1001 scores is background
        if truth in top:
            hits[top.index(truth)] += 1
    table = {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(len(names))}, {"key": "Number of classes", "value": str(n_classes)},
        *({"key": f"Top{k + 1} accuracy", "value": str(round(accuracy * 100, 2)) + "%"}
          for k, accuracy in enumerate((np.cumsum(hits) / len(names))[:min(n_classes, 5)]))]}
    path, tmp = os.path.join(out_dir, json_name), os.path.join(out_dir, f".{json_name}.{os.getpid()}.tmp")
    try:  # written under a temporary name, then renamed
        os.makedirs(out_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(table, handle)
        os.replace(tmp, path)
    except OSError as err:
        fail(f"{path}: cannot write ({err.strerror or err})")
    if nonfinite:
        print(f"warning: {result_dir}: {nonfinite} of {len(names)} result files hold NaN or infinite scores; "
              "the model's outputs are broken, this accuracy means little", file=sys.stderr)
    print("\n".join(f"{e['key']:<18}  {e['value']}" for e in table["value"]) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
