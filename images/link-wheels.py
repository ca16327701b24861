#!/usr/bin/env python3
"""Hard-link the local wheel files that pip would pick for a requirements file into DIR.

Usage: python3 images/link-wheels.py DIR REQUIREMENTS

`pip download -d DIR` copies every wheel it takes from a local index or find-links folder;
the export image's (torch and its CUDA libraries) are about 4 GB, which a second copy on a
small disk cannot hold. pip skips a file that is already in DIR, so linking first turns the
copy into a link. Wheels that pip would fetch over the network, and files on another
filesystem or that the user may not link, are left to `pip download` (which checks them).
"""

import json
import os
import subprocess
import sys
import tempfile
from urllib.parse import unquote, urlparse


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python3 images/link-wheels.py DIR REQUIREMENTS", file=sys.stderr)
        return 2
    folder, requirements = sys.argv[1:]
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "report.json")
        # The same resolution as `pip download --only-binary=:all:`, without fetching wheels.
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                               "--disable-pip-version-check", "--ignore-installed",
                               "--only-binary=:all:", "--report", report, "-r", requirements],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:  # pip download, next, says why in full
            return 0
        with open(report, encoding="utf-8") as handle:
            items = json.load(handle)["install"]
    linked = 0
    for item in items:
        url = urlparse(item["download_info"]["url"])
        if url.scheme != "file":
            continue
        source = unquote(url.path)
        target = os.path.join(folder, os.path.basename(source))
        try:
            if not os.path.exists(target):
                os.link(source, target)
                linked += 1
        except OSError:
            pass  # another filesystem, or not ours to link: pip download copies it
    if linked:
        print(f"images: linked {linked} local wheels into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
