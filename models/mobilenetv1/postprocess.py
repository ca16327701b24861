"""Top-1..5 accuracy of TXT inference results: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

Mirrors the Ascend ModelZoo-PyTorch `imagenet_acc_eval.py` that the MobileNet-v1 guide runs
(ACL_PyTorch/contrib/cv/classfication/MobileNet-v1; the same logic in C/DPN131, C/TResNet,
C/vovnet39; Apache-2.0), and writes the same accuracy JSON, byte for byte:

- Result files are ais_bench `--outfmt TXT` outputs, `<image stem>_<n>.txt`. The label key of
  a file is its name up to the first '.', then up to the LAST '_'.
- Only the first line is read; it is stripped and split on single spaces into float32 scores;
  n_label = the number of scores.
- Ground truth = the label-file index, +1 when n_label == 1001 (index 0 = background).
- Scores are ranked in descending order; for i < min(n_label, 5) the first rank whose index is
  the ground truth gets hit[i] += 1. TopK = cumsum(hit)[K-1] / number of result files.
- JSON: one line from plain json.dump, every value a string, percentages
  `str(round(acc * 100, 2)) + "%"` (so "86.6%", not "86.60%"), "Number of classes" = n_label of
  the last file read, one TopK entry for K = 1..min(n_label, 5).

Differences from the ModelZoo script, on purpose:
- Files are read in sorted name order (os.listdir order is arbitrary), so "the last file read"
  and the result are deterministic. Ties between equal scores rank the lower class index first
  (a stable sort; the ModelZoo's default argsort leaves ties in an unspecified order).
- ais_bench's `sumary.json` and any name ending in `summary.json` are skipped.
- Errors end with one line naming the file: a result file whose key has no label (the ModelZoo
  script raises KeyError), a result name without `_<n>`, an unreadable or non-numeric first
  line, a malformed label line (file:line), an empty result folder. Exit status 2.
- The JSON is written under a temporary name in OUT_DIR and renamed; OUT_DIR is created.
- The rank of the ground truth is counted directly (scores above it, plus equal scores at lower
  indices) instead of sorting all scores: the same rank as the stable sort, and fast enough for
  50,000 files.
- Result files whose scores hold NaN or infinite values (a broken export or input) are counted
  as before, and one `warning:` line on stderr says how many there are (the JSON is unchanged).
- The label file may start with a UTF-8 byte-order mark (read as utf-8-sig).
- Ctrl-C at any point, even during the imports, ends with `error: interrupted` (exit 130).

Temporary files: only `OUT_DIR/.<JSON_NAME>.<pid>.tmp`. Every temporary name this script
creates matches `.*.tmp` in OUT_DIR, so a driver can remove the orphans of a killed run
(`find OUT_DIR -maxdepth 1 -name '.*.tmp' -delete`) when no run is active.
"""

import argparse
import json
import os
import sys


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

TOPN = 5
BACKGROUND_CLASSES = 1001  # a 1001-way classifier puts "background" at index 0
SUMMARY_NAMES = ("sumary.json",)  # ais_bench's own spelling
SUMMARY_SUFFIX = "summary.json"


class PostprocessError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


# -- inputs -------------------------------------------------------------------------------

def read_labels(label_file):
    """{key: label} from lines `<image name> <class index>`; key = name up to its first '.'.

    utf-8-sig: a byte-order mark at the start is not part of the first image name."""
    try:
        with open(label_file, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise PostprocessError(f"{label_file}: no such label file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PostprocessError(f"{label_file}: cannot read the label file ({err})") from None
    labels, where = {}, {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.strip().split(" ")
        if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()) or not fields[0].split(".")[0]:
            raise PostprocessError(f"{label_file}:{number}: expected '<image name> <class index>', "
                                   f"got {line.strip()!r}")
        key, label = fields[0].split(".")[0], int(fields[1])
        if key in labels and labels[key] != label:
            raise PostprocessError(f"{label_file}:{number}: {key} is labelled {label} here and "
                                   f"{labels[key]} on line {where[key]}")
        labels[key], where[key] = label, number
    if not labels:
        raise PostprocessError(f"{label_file}: no labels in it")
    return labels


def is_summary(name):
    return name in SUMMARY_NAMES or name.endswith(SUMMARY_SUFFIX)


def result_names(result_dir):
    """The result file names of RESULT_DIR, sorted, summaries left out."""
    try:
        names = sorted(name for name in os.listdir(result_dir) if not is_summary(name))
    except FileNotFoundError:
        raise PostprocessError(f"{result_dir}: no such result folder") from None
    except NotADirectoryError:
        raise PostprocessError(f"{result_dir}: not a folder (RESULT_DIR holds the "
                               "<image>_<n>.txt files of the inference step)") from None
    except OSError as err:
        raise PostprocessError(f"{result_dir}: cannot list it ({err.strerror or err})") from None
    if not names:
        raise PostprocessError(f"{result_dir}: no result files in it (expected <image>_<n>.txt "
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
        raise PostprocessError(f"{path}: a folder among the result files; RESULT_DIR should "
                               "hold only <image>_<n>.txt files") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PostprocessError(f"{path}: cannot read the result file ({err})") from None
    text = line.strip()
    try:
        if not text:
            raise ValueError("empty")
        return np.array(text.split(" "), dtype=np.float32)
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise PostprocessError(f"{path}: first line is not scores separated by single spaces "
                               f"({shown!r})") from None


# -- the metric ---------------------------------------------------------------------------

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
            raise PostprocessError(f"{path}: not a result file name (expected <image>_<n>.txt)")
        if key not in labels:
            raise PostprocessError(f"{path}: no label for {key} in the label file "
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
        raise PostprocessError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


# -- command line -------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Top-1..5 accuracy of ais_bench TXT results, as the ModelZoo JSON.")
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="folder of <image>_<n>.txt results")
    parser.add_argument("label_file", metavar="LABEL_FILE", help="val_label.txt (`<image> <index>`)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the JSON")
    parser.add_argument("json_name", metavar="JSON_NAME", help="file name of the JSON, e.g. result.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        labels = read_labels(args.label_file)
        check = {}
        counts = evaluate(args.result_dir, labels, check=check)
        table = accuracy_table(*counts)
        path = write_json_atomic(table, args.out_dir, args.json_name)
    except PostprocessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if check["nonfinite"]:
        print(f"warning: {args.result_dir}: {check['nonfinite']} of {counts[0]} result files "
              f"hold NaN or infinite scores (first: {check['first_nonfinite']}); the model's "
              "outputs are broken, so this accuracy means little", file=sys.stderr)
    width = max(len(entry["key"]) for entry in table["value"])
    for entry in table["value"]:
        print(f"{entry['key']:<{width}}  {entry['value']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
