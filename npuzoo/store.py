"""Shared, content-keyed sets under build/, made once and reused by every run that asks for
the same key, and the artefacts' seals.

    build/data/<dataset id>/   the selected images (links), labels, dataset.json
    build/prep/<prep key>/     one preprocessed .bin per image, .done; <key>.key.json beside it
    build/<model>/refs/        links to the sets a model's runs use (for `clean`)

A dataset id names the selected images and labels by their checksums; a prep key (prep_key) and
the export key add what changes the bytes, so the runs of one model share one set. `once` runs a
command unless its stamped set exists and holds the files its stamp records, under a lock;
`clean` removes the sets no refs/ link points to; `seal`/`check` record and verify the sha256
an artefact was written with (ARTEFACTS)."""

import argparse
import ast
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from npuzoo.checksums import HashCache
from npuzoo.config import ModelSpec
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, locked, replace_link
from npuzoo.steps import split_command

BUILD = "build"
DATA_ROOT = os.path.join(BUILD, "data")
PREP_ROOT = os.path.join(BUILD, "prep")

GEOMETRY = ("resize", "resize_rule", "interpolation", "crop", "crop_offset")
HASHES = os.path.join(BUILD, ".hashes.json")  # the stat cache of npuzoo.checksums
SEAL = ".sha256"  # FILE.sha256: the digest FILE was written with
ARTEFACTS = (".onnx", ".om")  # under build/<model>/<folder>/<weights id>/


def hash_cache() -> HashCache:
    return HashCache(HASHES)


def code_fingerprint(paths: list[str]) -> str:
    """sha256 of Python files' syntax trees without docstrings (comments never reach the AST)."""
    digest = hashlib.sha256()
    for path in paths:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and ast.get_docstring(node, clean=False) is not None):
                node.body = node.body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree, annotate_fields=False).encode())
    return digest.hexdigest()


def export_key(spec: ModelSpec, model_dir: str) -> str:
    """A hash of what the export reads: its code (syntax trees) and model.yaml's name, input,
    output, onnx and weights layout and checksums (the upstream tree has its own record)."""
    weights = spec.weights
    params: dict[str, Any] = {k: asdict(getattr(spec, k)) for k in ("input", "output", "onnx")}
    params["name"] = spec.name
    params["weights"] = {"layout": weights.layout, "md5": weights.md5, "sha256": weights.sha256,
                         "previous": asdict(weights.previous) if weights.previous else None}
    # the folder's Python files but the two scripts of the other steps (a folder script
    # imports only third-party packages and its own files)
    params["code"] = code_fingerprint(sorted(
        os.path.join(model_dir, n) for n in os.listdir(model_dir)
        if n.endswith(".py") and n not in ("preprocess.py", "postprocess.py")))
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def prep_key(spec: ModelSpec, model_dir: str, dataset_id: str,
             uint8: bool) -> tuple[str, dict[str, Any]]:
    """`<dataset id>-<f32|u8>-<hash of what changes the bytes>`, and what it hashes."""
    pre = spec.preprocess
    params: dict[str, Any] = {k: getattr(pre, k) for k in GEOMETRY}
    params["shape"] = list(spec.input.shape)
    if not uint8:
        params.update(mean=list(pre.mean), std=list(pre.std))
    params["code"] = code_fingerprint([os.path.join(model_dir, "preprocess.py")])
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return f"{dataset_id}-{'u8' if uint8 else 'f32'}-{digest}", params


def prep_bytes(spec: ModelSpec, uint8: bool) -> int:
    channels, height, width = spec.input.shape
    return height * width * channels * (1 if uint8 else 4)


def reference(model: str, kind: str, name: str, target: str) -> None:
    """build/<model>/refs/<kind>-<name> -> the shared set `target` (for `clean`)."""
    link = os.path.join(BUILD, model, "refs", f"{kind}-{name}")
    replace_link(os.path.relpath(target, os.path.dirname(link)), link)


def write_key(prep_dir: str, params: dict[str, Any]) -> None:
    """<set>.key.json: what the key stands for (written once; a key names its content)."""
    path = prep_dir + ".key.json"
    if not os.path.isfile(path):
        atomic_write(path, json.dumps(params, indent=2, sort_keys=True) + "\n")


def check_reuse(prep_dir: str, dataset_json: str, size: int, cache: HashCache) -> bool:
    """Before a run: a made set is verified (count, sizes, digests) and said to be reused, or its
    stamp removed so that the run makes it again."""
    stamp = os.path.join(prep_dir, ".done")
    if not os.path.exists(stamp):
        return False
    if problem := prep_problem(prep_dir, dataset_json, size, cache):
        print(f"warning: {prep_dir}: {problem}; making it again", file=sys.stderr, flush=True)
        os.unlink(stamp)
        return False
    print(f"preprocess: reusing {prep_dir} (verified: one {size}-byte file per image, each "
          "with the sha256 it was written with)", flush=True)
    return True


# -- once -------------------------------------------------------------------------------------

def prep_problem(prep_dir: str, dataset_json: str, size: int, cache: HashCache) -> str | None:
    """Why a stamped preprocessed set cannot be reused, or None."""
    try:
        images = json.loads(Path(dataset_json).read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{dataset_json} is unreadable"
    found = [e for e in os.scandir(prep_dir) if e.name.endswith(".bin") and e.is_file()]
    if len(found) != images:
        return f"{len(found)} .bin files for {images} images"
    if wrong := next((e.name for e in found if e.stat().st_size != size), None):
        return f"{wrong} is not {size} bytes"
    try:
        recorded = dict(json.loads(Path(prep_dir, ".done").read_text(encoding="utf-8"))["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its stamp records no digests"
    if wrong := next((e.name for e in found if recorded.get(e.name) != cache.sha256(e.path)), None):
        return f"{wrong} is not the file the preprocessing wrote (its sha256 differs)"
    return None


def write_stamp(prep_dir: str, stamp: str, cache: HashCache) -> None:
    """The set's stamp: the sha256 of each .bin it holds, recorded as the set is made."""
    digests = {e.name: cache.sha256(e.path) for e in os.scandir(prep_dir)
               if e.name.endswith(".bin") and e.is_file()}
    atomic_write(stamp, json.dumps({"sha256": digests}, sort_keys=True) + "\n")


# -- artefacts: sealed when written, checked before use ----------------------------------------

def seal(path: str, cache: HashCache) -> None:
    try:
        digest = cache.sha256(path)
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    atomic_write(path + SEAL, digest + "\n")


def artefact_problem(path: str, cache: HashCache) -> str | None:
    """Why the artefact `path` is not the file its step wrote, or None."""
    try:
        recorded = Path(path + SEAL).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return "no sha256 was recorded when it was written"
    try:
        digest = cache.sha256(path)
    except OSError as err:
        return f"cannot read it ({err.strerror})"
    if digest != recorded:
        return (f"its sha256 {digest[:12]} is not the {recorded[:12]} recorded when it was "
                "written (edited or replaced since)")
    return None


def remove_unsealed(model_build: str, cache: HashCache) -> None:
    """Before a run: the artefacts of build/<model>/ whose bytes are not the sealed ones are
    removed, saying so, so that Make makes them again (an interrupted step's too)."""
    for ext in ARTEFACTS:
        for path in sorted(glob.glob(os.path.join(glob.escape(model_build), "*", "*", "*" + ext))):
            if os.path.relpath(path, model_build).split(os.sep)[0] == "src":
                continue  # the upstream tree: verified against its own record
            if problem := artefact_problem(path, cache):
                print(f"warning: {path}: {problem}; making it again", file=sys.stderr, flush=True)
                for name in (path, path + SEAL):
                    if os.path.exists(name):
                        os.unlink(name)


def once(lock: str, stamp: str, command: list[str], clean: str | None = None,
         prep_check: tuple[str, int] | None = None) -> int:
    with locked(lock, lambda _: f"{lock}: another run is making this set; waiting for it"):
        cache = hash_cache() if clean or prep_check else None  # preprocessed sets only
        if prep_check and cache:  # a made set is verified first (check_reuse)
            if check_reuse(os.path.dirname(stamp), *prep_check, cache):
                return 0
        elif os.path.exists(stamp):
            print(f"reusing {os.path.dirname(stamp)} (made by an earlier run)", flush=True)
            return 0
        if clean:
            shutil.rmtree(clean, ignore_errors=True)
        code = subprocess.call(command)
        if code == 0 and clean and cache:
            os.makedirs(os.path.dirname(stamp), exist_ok=True)
            write_stamp(clean, stamp, cache)
            cache.save()
        return code


# -- clean ------------------------------------------------------------------------------------

def clean() -> list[str]:
    """Remove the sets no link of build/<model>/refs/ points to."""
    links = glob.glob(os.path.join(BUILD, "*", "refs", "*"), include_hidden=True)
    keep = {os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
            for link in links if os.path.islink(link)}
    removed = []
    for path in sorted(path for root in (DATA_ROOT, PREP_ROOT)
                       for path in glob.glob(os.path.join(root, "*"), include_hidden=True)):
        if not os.path.isdir(path) or path in keep:
            continue
        removed.append(path)
        shutil.rmtree(path, ignore_errors=True)
        for extra in (path + ".lock", path + ".key.json"):
            if os.path.exists(extra):
                os.unlink(extra)
        print(f"removed {path}")
    print(f"removed {len(removed)} set(s) no model references; kept {len(keep)}")
    return removed


@cli
def main(argv: list[str] | None = None) -> None:
    argv, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.store",
                                     description="Shared, content-keyed sets under build/.")
    sub = parser.add_subparsers(dest="action", required=True)
    run_once = sub.add_parser("once", help="run a command unless its set is already made")
    run_once.add_argument("--lock", required=True)
    run_once.add_argument("--stamp", required=True)
    run_once.add_argument("--clean", help="folder removed before the command runs")
    run_once.add_argument("--prep-check", nargs=2, metavar=("DATASET_JSON", "BYTES"))
    sub.add_parser("clean", help="remove the sets no model references")
    for action, text in (("seal", "record the sha256 an artefact was written with"),
                         ("check", "refuse artefacts whose bytes are not the sealed ones")):
        sub.add_parser(action, help=text).add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.action == "clean":
        clean()
        return
    if args.action in ("seal", "check"):
        cache = hash_cache()
        try:
            for path in args.files:
                if args.action == "seal":
                    seal(path, cache)
                elif problem := artefact_problem(path, cache):
                    raise UserError(f"{path}: {problem}; delete it and rerun")
        finally:
            cache.save()
        return
    if not command:
        raise UserError("once: give the command after --")
    check = (args.prep_check[0], int(args.prep_check[1])) if args.prep_check else None
    sys.exit(once(args.lock, args.stamp, command, args.clean, check))


if __name__ == "__main__":
    main()
