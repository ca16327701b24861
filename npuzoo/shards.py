"""SHARDS=k: one batch size's inference split over k devices, and merged back.

    python3 -m npuzoo.shards split PREP_DIR INPUT_DIR --shard I --shards K --bs BS
    python3 -m npuzoo.shards merge SHARD_ROOT OUT_DIR --shards K --prep PREP_DIR

(mk/pipeline.mk's sweep-shard and sweep-merge targets call them; npuzoo/sweep.py runs those.)

A shard is a contiguous run of whole batches of the preprocessed files, in the order the
inference reads a folder (npuzoo.files.input_files, ais_bench's order): with B batches of
BS files, shard i holds batches floor(i*B/k) .. floor((i+1)*B/k)-1. Every batch then holds
the same files in the same slots as in the single-device run, the padded last batch included
(it is the last shard's), so each image's logits are computed exactly as there: the merged
result files, and the accuracy JSON made from them, equal the single-device ones byte for
byte. `split` hard-links the shard's files into INPUT_DIR (a link works inside the docker
images' mounts too, and costs no space); `merge` hard-links every shard's `<stem>_0.txt`
results into OUT_DIR/results, checking that each preprocessed file has exactly one result,
then touches OUT_DIR/infer.done, so that the `report` target goes on from the merged results.
"""

import argparse
import json
import os
import shutil

from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, input_files

RESULT_SUFFIX = "_0.txt"


def batches(count, bs):
    return -(-count // bs)


def effective_shards(count, bs, shards):
    """The number of shards used: at most one per batch (a shard holds whole batches)."""
    return max(1, min(shards, batches(count, bs)))


def bounds(count, bs, shards, index):
    """[start, stop) of shard `index` in the ordered file list."""
    total = batches(count, bs)
    if not 0 <= index < shards or shards > max(total, 1):
        raise UserError(f"shard {index} of {shards}: {count} files make {total} batches of "
                        f"{bs}; use at most {total} shards")
    first, last = index * total // shards, (index + 1) * total // shards
    return first * bs, min(last * bs, count)


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fresh(folder):
    """A temporary sibling of `folder`, empty (a killed run's leftover removed)."""
    tmp = folder.rstrip("/") + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def _replace(tmp, folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def split(prep_dir, input_dir, shard, shards, bs):
    files = input_files(prep_dir)
    start, stop = bounds(len(files), bs, shards, shard)
    tmp = _fresh(input_dir)
    for path in files[start:stop]:
        link_or_copy(path, os.path.join(tmp, os.path.basename(path)))
    with open(os.path.join(tmp, ".done"), "w", encoding="utf-8") as handle:
        json.dump({"shard": shard, "shards": shards, "bs": bs, "first": start,
                   "files": stop - start, "of": len(files)}, handle)
        handle.write("\n")
    _replace(tmp, input_dir)
    print(f"shard {shard} of {shards}: files {start + 1}..{stop} of {len(files)} "
          f"({stop - start} images, {batches(stop - start, bs)} batches of {bs})")


def merge(shard_root, out_dir, shards, prep_dir):
    """OUT_DIR/results from the shards' results; UserError unless each file has one result."""
    expected = [os.path.basename(p)[:-len(os.path.splitext(p)[1])] + RESULT_SUFFIX
                for p in input_files(prep_dir)]
    found = {}
    described = []
    for shard in range(shards):
        folder = os.path.join(shard_root, str(shard))
        if not os.path.isfile(os.path.join(folder, "infer.done")):
            raise UserError(f"{folder}: shard {shard} of {shards} has not run its inference; "
                            "rerun the sweep")
        results = os.path.join(folder, "results")
        names = sorted(n for n in os.listdir(results) if n.endswith(RESULT_SUFFIX))
        for name in names:
            if name in found:
                raise UserError(f"{results}/{name}: also in {found[name]}; the shards overlap: "
                                f"delete {shard_root} and rerun")
            found[name] = results
        described.append({"shard": shard, "images": len(names)})
    missing = [n for n in expected if n not in found]
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise UserError(f"{shard_root}: the shards hold {len(found)} results for "
                        f"{len(expected)} preprocessed files (first missing: "
                        f"{missing[0] if missing else '-'}, first unexpected: "
                        f"{extra[0] if extra else '-'}); delete {shard_root} and rerun")
    results = os.path.join(out_dir, "results")
    tmp = _fresh(results)
    for name in expected:
        link_or_copy(os.path.join(found[name], name), os.path.join(tmp, name))
    _replace(tmp, results)
    atomic_write(os.path.join(out_dir, "shards.json"),
                 json.dumps({"shards": described, "images": len(expected)}, indent=2) + "\n")
    with open(os.path.join(out_dir, "infer.done"), "w", encoding="utf-8"):
        pass
    print(f"merged {len(expected)} results of {shards} shards into {results}")


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.shards",
                                     description="Split a preprocessed set into contiguous "
                                                 "shards of whole batches; merge the results.")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="hard-link one shard's files into INPUT_DIR")
    sp.add_argument("prep_dir")
    sp.add_argument("input_dir")
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--shards", type=int, required=True)
    sp.add_argument("--bs", type=int, required=True)
    mg = sub.add_parser("merge", help="the shards' results into OUT_DIR/results")
    mg.add_argument("shard_root")
    mg.add_argument("out_dir")
    mg.add_argument("--shards", type=int, required=True)
    mg.add_argument("--prep", required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        split(args.prep_dir, args.input_dir, args.shard, args.shards, args.bs)
    else:
        merge(args.shard_root, args.out_dir, args.shards, args.prep)


if __name__ == "__main__":
    main()
