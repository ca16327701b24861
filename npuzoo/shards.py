"""SHARDS=k (mk/pipeline.mk's sweep-shard, sweep-merge): shard i holds the contiguous batches
floor(i*B/k) .. floor((i+1)*B/k)-1 of the B batches in the order the inference reads a folder,
so every batch holds the same files as in a one-device run and the merged results are
identical."""

import argparse
import json
import os
import shutil
from collections.abc import Sequence

from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, input_files
from npuzoo.report.pieces import RESULT_SUFFIX


def batches(count: int, bs: int) -> int:
    return -(-count // bs)


def effective_shards(count: int, bs: int, shards: int) -> int:
    """The number of shards used: at most one per batch (a shard holds whole batches)."""
    return max(1, min(shards, batches(count, bs)))


def bounds(count: int, bs: int, shards: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard `index` in the ordered file list."""
    total = batches(count, bs)
    if not 0 <= index < shards or shards > max(total, 1):
        raise UserError(f"shard {index} of {shards}: {count} files make {total} batches of "
                        f"{bs}; use at most {total} shards")
    first, last = index * total // shards, (index + 1) * total // shards
    return first * bs, min(last * bs, count)


def _linked(files: list[str], folder: str, done: dict[str, int] | None = None) -> None:
    """`folder` holding hard links to `files` (copies where a link fails), replaced whole
    through a temporary sibling; `done`, when given, written into it as `.done`."""
    tmp = folder.rstrip("/") + ".part"
    shutil.rmtree(tmp, ignore_errors=True)   # a killed run's leftover
    os.makedirs(tmp)
    for path in files:
        target = os.path.join(tmp, os.path.basename(path))
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    if done is not None:
        atomic_write(os.path.join(tmp, ".done"), json.dumps(done) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def split(prep_dir: str, input_dir: str, shard: int, shards: int, bs: int) -> None:
    files = input_files(prep_dir)
    start, stop = bounds(len(files), bs, shards, shard)
    _linked(files[start:stop], input_dir, {"shard": shard, "shards": shards, "bs": bs,
                                           "first": start, "files": stop - start,
                                           "of": len(files)})
    print(f"shard {shard} of {shards}: files {start + 1}..{stop} of {len(files)} "
          f"({stop - start} images, {batches(stop - start, bs)} batches of {bs})")


def merge(shard_root: str, out_dir: str, shards: int, prep_dir: str) -> None:
    """OUT_DIR/results from the shards' results; UserError unless each file has one result."""
    expected = [os.path.splitext(os.path.basename(p))[0] + RESULT_SUFFIX
                for p in input_files(prep_dir)]
    found: dict[str, str] = {}  # result name: the shard's results folder
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
    _linked([os.path.join(found[name], name) for name in expected], results)
    atomic_write(os.path.join(out_dir, "shards.json"),
                 json.dumps({"shards": described, "images": len(expected)}, indent=2) + "\n")
    atomic_write(os.path.join(out_dir, "infer.done"), "")
    print(f"merged {len(expected)} results of {shards} shards into {results}")


@cli
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.shards", description=(
        "Split a preprocessed set into contiguous shards of whole batches; merge the results."))
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="hard-link one shard's files into INPUT_DIR")
    sp.add_argument("prep_dir")
    sp.add_argument("input_dir")
    for name in ("--shard", "--shards", "--bs"):
        sp.add_argument(name, type=int, required=True)
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
