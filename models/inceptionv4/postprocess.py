"""InceptionV4 top-1..5 accuracy: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

The Ascend ModelZoo InceptionV4 guide's inceptionv4_postprocess.py (Apache-2.0): its JSON,
byte for byte.
"""

import json
import os
import sys

import numpy as np

# The guide's figures, printed beside the run's (model.yaml's reference.accuracy, tested equal)
GUIDE_ACCURACY = {"Top1": 79.99, "Top5": 94.86}


def main():
    if len(sys.argv) != 5:
        return "usage: python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME"
    result_dir, label_file, out_dir, json_name = sys.argv[1:]
    where, path, hits = label_file, os.path.join(out_dir, json_name), np.zeros(5)
    try:  # where: the file in hand, for the one-line error
        with open(label_file, encoding="utf-8-sig") as handle:  # `<image name> <class index>`
            rows = [line.split() for line in handle]
        for number, row in enumerate(rows, 1):
            if row and (len(row) != 2 or not row[1].isdigit()):
                raise ValueError(f"line {number}: expected '<image name> <class index>'")
        labels = {row[0].split(".")[0]: int(row[1]) for row in rows if row}
        where = result_dir  # ais_bench's <image>_<n>.txt, one line of scores, and its summary
        names = sorted(n for n in os.listdir(result_dir)
                       if not n.endswith(("sumary.json", "summary.json")))
        if not names:
            raise ValueError("no result files in it (expected <image>_<n>.txt)")
        for name in names:
            where = os.path.join(result_dir, name)
            with open(where, encoding="ascii") as handle:
                scores = np.array(handle.readline().strip().split(" "), dtype=np.float32)
            top = np.argsort(-scores, kind="stable")[:5]  # ties: the lower index; NaN last
            truth = labels[name.split(".")[0].rpartition("_")[0]]
            truth += len(scores) == 1001  # 1001 scores: index 0 is the background
            hits[:len(top)] += np.cumsum(top == truth)  # a hit for every k from its rank on
        keys = ["Number of images", "Number of classes", *(f"Top{k} accuracy" for k in range(1, 6))]
        values = [len(names), len(scores),
                  *(f"{round(a * 100, 2)}%" for a in hits[:len(top)] / len(names))]
        table = {"title": "Overall statistical evaluation",
                 "value": [{"key": k, "value": str(v)} for k, v in zip(keys, values, strict=False)]}
        where = path
        os.makedirs(out_dir, exist_ok=True)
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            json.dump(table, handle)
        os.replace(f"{path}.tmp", path)  # never a partial JSON
    except KeyError:
        return f"{where}: no label for it in {label_file}"
    except (OSError, ValueError) as err:  # unreadable, not text, not the expected format
        return f"{where}: {getattr(err, 'strerror', None) or err}"
    for entry in table["value"]:
        guide = GUIDE_ACCURACY.get(entry["key"][:4])  # "Top1 accuracy": Top1
        note = f"  (the guide: {guide}%)" if guide else ""
        print(f"{entry['key']:<18}  {entry['value']}{note}")
    print(f"wrote InceptionV4's accuracy to {path}")


if __name__ == "__main__" and (error := main()):
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)  # a user's error, as in npuzoo
