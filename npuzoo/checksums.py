"""Content identity of input files: sha256 cached by stat, as git's index does, so a second run
re-hashes nothing; concurrent writers can only lose cache entries, never record a wrong one."""

import json
import os
import time
from typing import Any

from npuzoo.files import atomic_write, sha256_file

RACY_NS = 2 * 10**9  # coarser than any file system's timestamp tick (FAT's is 2 s)


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class HashCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        self.changed = False
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: everything is hashed again

    def sha256(self, path: str) -> str:
        path = os.path.abspath(path)
        key = _stat_key(os.stat(path))
        entry = self.entries.get(path)
        if isinstance(entry, dict) and entry.get("stat") == key and entry.get("sha256"):
            return str(entry["sha256"])
        digest = sha256_file(path)
        # A file that changed while being hashed is not cached (its stat no longer matches),
        # nor one stamped too recently for a later change to be sure to show in its stat.
        fresh = time.time_ns() - max(key[1], key[2]) < RACY_NS
        if _stat_key(os.stat(path)) == key and not fresh:
            self.entries[path] = {"stat": key, "sha256": digest}
            self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        # Merge with what another run may have written meanwhile; ours win.
        merged = HashCache(self.path).entries | self.entries
        atomic_write(self.path, json.dumps({"files": merged}, separators=(",", ":")) + "\n")
        self.changed = False
