"""Top-1..5 accuracy of VoVNet39's TXT results: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

As the Ascend ModelZoo vovnet39 guide's vovnet39_postprocess.py (Apache-2.0): the same JSON,
byte for byte.
RESULT_DIR: ais_bench TXT results `<image stem>_<n>.txt`; LABEL_FILE: `<image name> <class
index>` lines. Unlike the guide: sorted reading, ties ranked lower index first, one `error:`
line for a missing label or a malformed line, a `warning:` for NaN, the JSON renamed into place.
"""

import json
import os
import sys

import numpy as np


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_labels(label_file):
    """{image name up to its first '.': class index}; a byte-order mark is not part of a name."""
    try:
        with open(label_file, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        fail(f"{label_file}: cannot read the label file ({getattr(err, 'strerror', None) or err})")
    labels = {}
    for number, fields in enumerate((line.split() for line in lines), 1):
        key = fields[0].split(".")[0] if fields else None
        if fields and (len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()) or not key):
            fail(f"{label_file}:{number}: expected '<image name> <class index>', got {lines[number - 1]!r}")
        if fields and labels.setdefault(key, int(fields[1])) != int(fields[1]):
            fail(f"{label_file}:{number}: {key} is labelled {fields[1]} here, {labels[key]} before")
    return labels or fail(f"{label_file}: no labels in it")


def read_scores(path):
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.readline().strip()
        return np.array(text.split(" "), dtype=np.float32)
    except (OSError, UnicodeDecodeError) as err:
        fail(f"{path}: cannot read the result file ({getattr(err, 'strerror', None) or err})")
    except ValueError:
        fail(f"{path}: first line is not scores separated by single spaces ({text[:60]!r})")


def accuracy(result_dir, labels, topn=5):
    """(the accuracy JSON as a dict, the number of result files with NaN or infinite scores)."""
    try:
        names = sorted(n for n in os.listdir(result_dir) if not n.endswith(("sumary.json", "summary.json")))
    except OSError as err:
        fail(f"{result_dir}: cannot list the result folder ({err.strerror or err})")
    hits, n_label, nonfinite = np.zeros(topn), 0, 0
    for name in names or fail(f"{result_dir}: no result files in it (expected <image>_<n>.txt)"):
        stem = name.split(".")[0]
        key = stem[:stem.rfind("_")] if stem.rfind("_") > 0 else None
        if key not in labels:
            fail(f"{os.path.join(result_dir, name)}: no label for it in the label file")
        scores = read_scores(os.path.join(result_dir, name))
        nonfinite += not np.isfinite(scores).all()
        n_label = len(scores)
        truth = labels[key] + (n_label == 1001)  # index 0 of 1001 scores is background
        if truth < n_label:  # its rank in a stable descending sort, NaN last
            value, nan = scores[truth], np.isnan(scores)
            rank = (np.count_nonzero(~nan) + np.count_nonzero(nan[:truth]) if np.isnan(value) else
                    np.count_nonzero(scores > value) + np.count_nonzero(scores[:truth] == value))
            if rank < min(n_label, topn):
                hits[rank] += 1
    table = {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(len(names))},
        {"key": "Number of classes", "value": str(n_label)}]}
    top = np.cumsum(hits) / len(names)
    for k in range(min(n_label, topn)):
        table["value"].append({"key": f"Top{k + 1} accuracy", "value": str(round(top[k] * 100, 2)) + "%"})
    return table, nonfinite


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    result_dir, label_file, out_dir, json_name = args if len(args) == 4 else fail(
        "usage: python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME")
    table, nonfinite = accuracy(result_dir, read_labels(label_file))
    path, tmp = os.path.join(out_dir, json_name), os.path.join(out_dir, f".{json_name}.{os.getpid()}.tmp")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(table, handle)
        os.replace(tmp, path)
    except OSError as err:
        fail(f"{path}: cannot write ({err.strerror or err})")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if nonfinite:
        print(f"warning: {result_dir}: {nonfinite} of {table['value'][0]['value']} result files hold NaN "
              "or infinite scores; the model's outputs are broken, this accuracy means little", file=sys.stderr)
    print("\n".join(f"{e['key']:<18}  {e['value']}" for e in table["value"]) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
