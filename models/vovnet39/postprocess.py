"""VoVNet39 top-1..5 accuracy: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

As the Ascend ModelZoo vovnet39 guide's vovnet39_postprocess.py (Apache-2.0): the same JSON, byte
for byte. Files read sorted.
"""

import json
import os
import sys

import numpy as np


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)  # a user's error, as in npuzoo


def main():
    if len(sys.argv) != 5:
        fail("usage: python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME")
    result_dir, label_file, out_dir, json_name = sys.argv[1:]
    hits, labels, where = np.zeros(5), {}, label_file  # where: the file being read
    try:
        with open(label_file, encoding="utf-8-sig") as handle:  # `<image name> <class index>`
            for number, fields in enumerate(map(str.split, handle), 1):
                if len(fields) == 2 and fields[1].isdigit():
                    labels[fields[0].split(".")[0]] = int(fields[1])
                elif fields:
                    raise ValueError(f"line {number}: expected '<image name> <class index>'")
        where = result_dir
        names = sorted(n for n in os.listdir(result_dir)
                       if not n.endswith(("sumary.json", "summary.json")))  # ais_bench's
        if not names:
            raise ValueError("no result files in it (expected <image>_<n>.txt)")
        for name in names:
            where, key = os.path.join(result_dir, name), name.split(".")[0].rpartition("_")[0]
            with open(where, encoding="ascii") as handle:  # scores separated by single spaces
                scores = np.array(handle.readline().strip().split(" "), dtype=np.float32)
            top = list(np.argsort(-scores, kind="stable")[:5])  # ties: the lower index; NaN last
            truth = labels[key] + (len(scores) == 1001)  # index 0 of 1001 scores: background
            if truth in top:
                hits[top.index(truth):] += 1  # a hit for every k from its rank on
    except (OSError, UnicodeDecodeError) as err:
        fail(f"{where}: cannot read ({getattr(err, 'strerror', None) or err})")
    except ValueError as err:
        fail(f"{where}: {err}")
    except KeyError:
        fail(f"{where}: no label for it in {label_file}")
    table = {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(len(names))},
        {"key": "Number of classes", "value": str(len(scores))},
        *({"key": f"Top{k + 1} accuracy", "value": str(round(accuracy * 100, 2)) + "%"}
          for k, accuracy in enumerate((hits / len(names))[:min(len(scores), 5)]))]}
    path, tmp = os.path.join(out_dir, json_name), os.path.join(out_dir, f".{json_name}.tmp")
    try:  # written under a temporary name, then renamed
        os.makedirs(out_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(table, handle)
        os.replace(tmp, path)
    except OSError as err:
        fail(f"{path}: cannot write ({err.strerror or err})")
    print("\n".join(f"{e['key']:<18}  {e['value']}" for e in table["value"]) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
