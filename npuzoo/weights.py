"""Weights: download the published file, verify its checksum, identify what a run uses.

WEIGHTS unset: the published file, checked against model.yaml's md5/sha256; a path: the user's
file (`published` when its checksum is model.yaml's, else `custom`), first copied into
build/<model>/weights/store/<sha256>.pth so the export reads the bytes hashed; `random`: seeded
random initialisation. The id `<source>-<sha256[:12]>` (or `random`) names every later artefact.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from typing import Any

from npuzoo import config
from npuzoo.checksums import HashCache
from npuzoo.config import WeightsSpec
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, file_digests, umask

Digests = Mapping[str, str | None]  # {"md5": hex, "sha256": hex}; an md5 may be unknown


def source_of(spec: WeightsSpec, digests: Digests) -> str:
    """`published` or `custom` by model.yaml's checksum; `unverified` where none is published."""
    if not spec.published:
        return "unverified"
    return "published" if digests[spec.published[0]] == spec.published[1] else "custom"


def verify(spec: WeightsSpec, path: str) -> dict[str, str]:
    """Raise UserError unless `path` has the published checksum (if one is published)."""
    digests = file_digests(path)
    if spec.published and digests[spec.published[0]] != spec.published[1]:
        algorithm, published = spec.published
        raise UserError(f"{path}: {algorithm} {digests[algorithm]} does not match the published "
                        f"{published}; delete the file to download it again, or pass "
                        "WEIGHTS=/path/to/your.pth to use your own weights")
    return digests


def download(spec: WeightsSpec, dest: str) -> None:
    part = dest + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(part, "wb") as out, \
                tqdm.wrapattr(out, "write", int(response.headers.get("Content-Length") or 0)
                              or None, desc=os.path.basename(dest),
                              disable=not sys.stderr.isatty()) as sink:
            shutil.copyfileobj(response, sink)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if os.path.exists(part):
            os.unlink(part)
        raise UserError(f"cannot download {spec.url} ({getattr(err, 'reason', err)}); fetch "
                        f"{spec.file} elsewhere and pass WEIGHTS=/path/to/it, or WEIGHTS=random "
                        "to check the pipeline") from None
    digests = file_digests(part)
    if source_of(spec, digests) == "custom":
        os.unlink(part)
        raise UserError(f"{spec.url}: the downloaded file does not match model.yaml's checksum; "
                        "the server may have changed it: pass WEIGHTS=/path/to/file") from None
    os.replace(part, dest)
    write_accepted(dest, {**digests, "url": spec.url})


ACCEPTED = ".accepted.json"  # <file>.accepted.json: the content accepted for a published file


def write_accepted(path: str, digests: Mapping[str, str | None]) -> None:
    atomic_write(path + ACCEPTED, json.dumps(digests, indent=2) + "\n")


def check_published_file(spec: WeightsSpec, path: str, cache: HashCache) -> Digests:
    """Digests of the downloaded published file, verified against model.yaml when its content
    changed (with no published checksum, against the sha256 recorded at download)."""
    sha256 = cache.sha256(path)
    accepted = None
    with contextlib.suppress(OSError, ValueError), open(path + ACCEPTED, encoding="utf-8") as file:
        accepted = json.load(file)
    accepted = accepted if isinstance(accepted, dict) and accepted.get("sha256") else None
    if accepted and accepted["sha256"] == sha256:
        return {"sha256": sha256, "md5": accepted.get("md5")}
    if not spec.published and accepted:
        # No published checksum: only the content recorded at download can vouch for the file.
        raise UserError(f"{path}: sha256 {sha256} differs from the {accepted['sha256']} "
                        "recorded when it was downloaded; delete it to download it again, "
                        "or pass WEIGHTS=/path/to/your.pth to use your own weights")
    digests = verify(spec, path)
    write_accepted(path, {**digests, "url": spec.url if spec.published else None})
    return digests


def store_copy(path: str, store_dir: str, cache: HashCache) -> tuple[str, dict[str, str] | None]:
    """(<sha256>.pth copy in `store_dir`, its digests or None if there already) of `path`."""
    sha256 = cache.sha256(path)
    stored = os.path.join(store_dir, sha256 + ".pth")
    if os.path.isfile(stored) and cache.sha256(stored) == sha256:
        return stored, None
    os.makedirs(store_dir, exist_ok=True)
    tmp = os.path.join(store_dir, f".{sha256}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(path, tmp)
        digests = file_digests(tmp)  # the bytes copied are the bytes named
        os.chmod(tmp, 0o444 & ~umask())
        stored = os.path.join(store_dir, digests["sha256"] + ".pth")
        os.replace(tmp, stored)  # (a read-only file there is replaced all the same)
    except OSError as err:
        raise UserError(f"cannot copy WEIGHTS={path} into {store_dir} ({err.strerror}); "
                        "free some disk space under build/") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return stored, digests


def check_not_a_zip_bomb(path: str) -> None:
    """torch.save writes a zip archive whose members are stored, not compressed: members that
    would inflate to over twice the file (plus 64 MiB for the pickles) are a zip bomb, refused
    before the export's torch.load allocates what their headers claim."""
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (a legacy torch.save file): torch.load says what it is
    size = os.path.getsize(path)
    if inflated > 2 * size + (64 << 20):
        raise UserError(f"{path}: its zip members would inflate to {inflated} bytes from a "
                        f"{size}-byte file; torch.save files are not compressed, so this is not "
                        "one (a zip bomb?)")


def identify(spec: WeightsSpec, weights: str, weights_dir: str,
             cache: HashCache) -> tuple[str, str, dict[str, Any]]:
    """(weights id, path the export reads, description for the report) of WEIGHTS: '' (the
    published file, fetched into `weights_dir`), `random`, or a path."""
    if weights == "random":
        return "random", "random", {"source": "random", "seed": 0, "file": None, "md5": None,
                                    "sha256": None}
    digests: Digests | None
    if not weights:
        path = original = os.path.join(weights_dir, spec.file)
        digests = check_published_file(spec, path, cache)
        check_not_a_zip_bomb(path)
        source = source_of(spec, digests)
    else:
        original = os.path.abspath(weights)
        if not os.path.isfile(original):
            raise UserError(f"WEIGHTS={weights}: no such file; pass a checkpoint path, leave "
                            "WEIGHTS unset to download the published one, or WEIGHTS=random")
        check_not_a_zip_bomb(original)
        path, digests = store_copy(original, os.path.join(weights_dir, "store"), cache)
        sha256 = os.path.basename(path)[:-len(".pth")]
        known = _read_description(weights_dir, sha256)
        if known:  # this content was identified before: its source and md5 as then
            source, digests = known["source"], {"sha256": sha256, "md5": known.get("md5")}
        else:
            digests = digests or file_digests(path)
            source = source_of(spec, digests)
    sha256 = str(digests["sha256"])
    return f"{source}-{sha256[:12]}", path, {"source": source, "file": original,
                                             "md5": digests.get("md5"), "sha256": sha256}


def _read_description(weights_dir: str, sha256: str) -> dict[str, Any] | None:
    for source in ("published", "custom", "unverified"):
        path = os.path.join(weights_dir, f"{source}-{sha256[:12]}.json")
        with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as handle:
            data = json.load(handle)
            if isinstance(data, dict) and data.get("sha256") == sha256:
                return data
    return None


def write_description(weights_dir: str, weights_id: str, description: dict[str, Any]) -> None:
    """weights/<id>.json, written only when absent or different in content (not in `file`):
    the same bytes from another path must not redo the export."""
    path = os.path.join(weights_dir, weights_id + ".json")
    with contextlib.suppress(OSError, ValueError, TypeError), open(path, encoding="utf-8") as old:
        if dict(json.load(old), file=None) == dict(description, file=None):
            return
    atomic_write(path, json.dumps(description, indent=2) + "\n")


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.weights",
                                     description="Download a model's published weights.")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("model", help="model name")
    parser.add_argument("path", help="the weights file")
    args = parser.parse_args(argv)
    if not os.path.exists(args.path):  # a file there is verified by every run (identify)
        download(config.load(args.model).weights, args.path)
        print(f"weights: {args.path} downloaded and verified")


if __name__ == "__main__":
    main()
