"""Weights: download the published file, verify its checksum, describe what a run used.

The Make variable WEIGHTS selects the weights:
  (unset)     the published file from model.yaml's URL, checked against its md5/sha256;
  a path      the user's own file, used as given (recorded as `published` when its checksum
              equals model.yaml's, else `custom`);
  random      seeded random initialisation (accuracy not meaningful).
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from npuzoo import config
from npuzoo.errors import UserError, atomic_write, cli, file_digests

CHUNK = 1 << 20  # download block size


def matches_published(spec, digests):
    """True/False against model.yaml's checksum; None when none is published."""
    for algorithm in ("sha256", "md5"):
        if spec.get(algorithm):
            return digests[algorithm] == spec[algorithm].lower()
    return None


def verify(spec, path):
    """Raise UserError unless `path` has the published checksum (if one is published)."""
    digests = file_digests(path)
    if matches_published(spec, digests) is False:
        algorithm = "sha256" if spec.get("sha256") else "md5"
        raise UserError(f"{path}: {algorithm} {digests[algorithm]} does not match the published "
                        f"{spec[algorithm]}; delete the file to download it again, or pass "
                        "WEIGHTS=/path/to/your.pth to use your own weights")
    return digests


def download(spec, dest):
    """Download the published weights to `dest` (through a .part file), then verify them."""
    url = spec["url"]
    part = dest + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            _copy_with_progress(response, out, total, os.path.basename(dest))
    except (urllib.error.URLError, OSError, ValueError) as err:
        if os.path.exists(part):
            os.unlink(part)
        reason = getattr(err, "reason", err)
        raise UserError(f"cannot download {url} ({reason}); fetch {spec['file']} elsewhere and "
                        "pass WEIGHTS=/path/to/it, or WEIGHTS=random to check the pipeline") from None
    try:
        verify(spec, part)
    except UserError:
        os.unlink(part)
        raise UserError(f"{url}: the downloaded file does not match model.yaml's checksum; "
                        "the server may have changed it: pass WEIGHTS=/path/to/file") from None
    os.replace(part, dest)


def _copy_with_progress(source, out, total, label):
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc=label,
              disable=not sys.stderr.isatty()) as bar:
        for block in iter(lambda: source.read(CHUNK), b""):
            out.write(block)
            bar.update(len(block))


def describe(spec, weights):
    """What the report records about the weights a run used."""
    if weights == "random":
        return {"source": "random", "seed": 0, "file": None, "md5": None, "sha256": None}
    if not os.path.isfile(weights):
        raise UserError(f"WEIGHTS={weights}: no such file; pass a checkpoint path, "
                        "leave WEIGHTS unset to download the published one, or WEIGHTS=random")
    digests = file_digests(weights)
    published = matches_published(spec, digests)
    source = {True: "published", False: "custom", None: "unverified"}[published]
    return {"source": source, "file": os.path.abspath(weights), **digests}


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.weights",
                                     description="Fetch, verify and describe model weights.")
    parser.add_argument("command", choices=["fetch", "verify", "describe"])
    parser.add_argument("model", help="model name")
    parser.add_argument("path", help="weights file (`random` for describe)")
    parser.add_argument("--out", help="describe: write the JSON here (atomically)")
    args = parser.parse_args(argv)
    spec = config.load(args.model)["weights"]
    if args.command == "fetch":
        if os.path.exists(args.path):
            verify(spec, args.path)
        else:
            download(spec, args.path)
        print(f"weights: {args.path} ok")
    elif args.command == "verify":
        verify(spec, args.path)
    else:
        text = json.dumps(describe(spec, args.path), indent=2) + "\n"
        if args.out:
            atomic_write(args.out, text)
        else:
            sys.stdout.write(text)


if __name__ == "__main__":
    main()
