"""Content identity of input files: sha256 with a stat cache, so a second run re-hashes nothing.

Inputs (weights, dataset images) are identified by what they contain, never by their path or
mtime alone. Hashing a 300 MB checkpoint or 50,000 images on every run would be slow, so a
small cache remembers, per absolute path, the size, mtime (ns), inode and device seen when the
file was hashed; a file whose stat differs in any of them is hashed again (the way git's index
decides whether a file changed). The cache is a JSON file written atomically; concurrent
writers can only lose entries (then re-hashed), never record a wrong one.
"""

import json
import os

from npuzoo.files import atomic_write, sha256_file


def _stat_key(stat):
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev]


class HashCache:
    """sha256 of files, re-hashed only when their stat changes; `save()` persists the cache."""

    def __init__(self, path):
        self.path = path
        self.entries = {}
        self.changed = False
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: everything is hashed again

    def sha256(self, path):
        path = os.path.abspath(path)
        key = _stat_key(os.stat(path))
        entry = self.entries.get(path)
        if isinstance(entry, dict) and entry.get("stat") == key and entry.get("sha256"):
            return entry["sha256"]
        digest = sha256_file(path)
        # A file that changed while being hashed is not cached (its stat no longer matches).
        if _stat_key(os.stat(path)) == key:
            self.entries[path] = {"stat": key, "sha256": digest}
            self.changed = True
        return digest

    def save(self):
        if not self.changed:
            return
        # Merge with what another run may have written meanwhile; ours win.
        merged = HashCache(self.path).entries
        merged.update(self.entries)
        atomic_write(self.path, json.dumps({"files": merged}, separators=(",", ":")) + "\n")
        self.changed = False
