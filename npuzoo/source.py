"""Upstream source step: fetch a model's upstream code, apply its patch, record what was used.

    python3 -m npuzoo.source fetch  MODEL DEST --record JSON [--cache DIR]
    python3 -m npuzoo.source verify MODEL DEST --record JSON

MODEL is a model name (models/<name>/model.yaml) or a path to a model.yaml. Its
`upstream.sources` is a list of candidate sources, tried in order; each entry is data:

    - {kind: git,  url: <repository>, commit: <sha>,             patch: <file>|null, why: <text>}
    - {kind: pypi, requirement: <name>==<version>, sha256: <hex>, patch: <file>|null, why: <text>}

git   `git clone` (no prompt, time limit) and a checkout of `commit`; the commit checked out
      must start with `commit` (7 to 40 hex digits), else the source counts as unavailable.
pypi  the source distribution (`pip download --no-deps --no-binary :all:`), taken first from
      the local cache folder (.venv/sdists, filled by `make venv`), else from PyPI; its single
      top folder is the tree. Sdists keep the repository layout, so the same `patch -p1` works.
      The sdist file's sha256 must equal `sha256`, checked BEFORE it is unpacked: a mismatch,
      of a cached or of a downloaded file, STOPS the step with one line (for a cached file:
      delete it to download it again); it never falls through to another source.

The first source that can be fetched is used; a source that cannot be fetched (no network, no
such commit, no such release) is reported in one line and the next is tried. The entry's patch
is then applied with `patch -p1 --forward --batch` in the tree. A patch that does not apply
STOPS the step, naming the patch and showing the rejected hunk: falling through to another
source would silently build something else than model.yaml declares.

DEST is built as DEST.tmp and renamed at the end, so DEST is either the complete patched tree
or untouched. The record (JSON, written atomically) says which source was used, its exact
commit or version (and the sdist's sha256), the patch and its sha256, why the earlier sources
were skipped, and `tree_sha256`, the tree hash of the patched DEST (see tree_sha256()); the
report includes it. Beside it, <record>.files.json (e.g. source.files.json) lists each file's
entry of that hash, so that `verify` can name the first difference; the record stays small.

`verify` exits 0, silently, when DEST's tree hash equals the record's `tree_sha256`, and
otherwise exits 2 with one line naming the first differing relative path: the tree was edited
after the source step (or the record predates tree hashes), and the export must not import it.
verify_tree(dest, record_path) is the same check for Python callers.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile

from npuzoo import config
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, sha256_file

DEFAULT_CACHE = os.path.join(config.REPO_ROOT, ".venv", "sdists")


def timeout_s(name, default=300):
    """NPUZOO_GIT_TIMEOUT / NPUZOO_PIP_TIMEOUT: whole seconds, checked like any user value."""
    text = os.environ.get(name, str(default))
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= 86400):
        raise UserError(f"{name}={text!r}: expected whole seconds from 1 to 86400, "
                        "or leave it unset for 300")
    return int(text)

REJECT_LINES = 12  # of a rejected hunk shown in the error line
PINNED = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(?P<version>[^\s;,]+)\s*$")


class SourceUnavailable(Exception):
    """This source cannot be fetched here (network, missing commit or release): try the next."""


class PatchRejected(UserError):
    """The declared patch does not apply: stop, never fall through to another source."""


# -- small helpers --------------------------------------------------------------------------

def last_line(text):
    """The last non-empty line of a tool's output (where git and pip put the reason)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(command, cwd=None, timeout=None, env=None):
    """subprocess.run, text output captured; timeouts and a missing tool become SourceUnavailable."""
    try:
        return subprocess.run(command, cwd=cwd, timeout=timeout, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"`{' '.join(command[:2])}` took longer than {timeout} s") from None
    except FileNotFoundError:
        raise SourceUnavailable(f"`{command[0]}` is not installed") from None


def describe(entry):
    """`git <url>@<commit>` or `pypi <requirement>`: how a source is named in messages."""
    if entry["kind"] == "git":
        return f"git {entry['url']}@{entry['commit']}"
    return f"pypi {entry['requirement']}"


# -- git ------------------------------------------------------------------------------------

def fetch_git(entry, tree):
    """Clone entry['url'] into `tree` and check out entry['commit']; returns the record fields."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", SSH_ASKPASS="true")
    clone = run(["git", "clone", "--quiet", "--no-checkout", entry["url"], tree],
                timeout=timeout_s("NPUZOO_GIT_TIMEOUT"), env=env)
    if clone.returncode != 0:
        raise SourceUnavailable(f"git clone failed: {last_line(clone.stdout) or clone.returncode}")
    checkout = run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet",
                    entry["commit"]], cwd=tree, timeout=timeout_s("NPUZOO_GIT_TIMEOUT"), env=env)
    if checkout.returncode != 0:
        raise SourceUnavailable(f"commit {entry['commit']} not found in the clone: "
                                f"{last_line(checkout.stdout)}")
    head = run(["git", "rev-parse", "HEAD"], cwd=tree, env=env).stdout.strip()
    if not head.startswith(entry["commit"].lower()):  # a tag or branch spelled like a hash
        raise SourceUnavailable(f"{entry['commit']} resolved to commit {head}, not to itself")
    shutil.rmtree(os.path.join(tree, ".git"))  # the tree, not a repository: patch -p1 only
    return {"url": entry["url"], "commit": head}


# -- pypi -----------------------------------------------------------------------------------

def parse_requirement(requirement):
    match = PINNED.match(requirement)
    if not match:
        raise UserError(f"upstream.sources: requirement {requirement!r}: expected name==version")
    return match.group("name"), match.group("version")


def sdist_candidates(folder, name, version):
    """Sdist files in `folder` for name==version (PyPI spells names with - _ . and any case)."""
    if not os.path.isdir(folder):
        return []
    canonical = re.sub(r"[-_.]+", "-", name).lower()
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        base = os.path.basename(path)
        for suffix in (".tar.gz", ".tgz", ".zip", ".tar.bz2"):
            if base.endswith(suffix):
                stem = base[:-len(suffix)]
                file_name, _, file_version = stem.rpartition("-")
                if (file_version == version
                        and re.sub(r"[-_.]+", "-", file_name).lower() == canonical):
                    found.append(path)
    return found


def download_sdist(requirement, folder):
    """pip download the sdist of `requirement` into `folder`; returns its path."""
    name, version = parse_requirement(requirement)
    result = run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                  "--no-deps", "--no-binary", ":all:", "--dest", folder, requirement],
                 timeout=timeout_s("NPUZOO_PIP_TIMEOUT"))
    found = sdist_candidates(folder, name, version)
    if result.returncode != 0 or not found:
        raise SourceUnavailable(f"pip download {requirement} failed: "
                                f"{last_line(result.stdout) or 'no sdist downloaded'}")
    return found[0]


def extract_sdist(archive, tree):
    """Unpack `archive`; its single top folder becomes `tree`."""
    unpack = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(tree))
    try:
        try:
            if archive.endswith(".zip"):
                shutil.unpack_archive(archive, unpack)
            else:
                with tarfile.open(archive) as tar:
                    if hasattr(tarfile, "data_filter"):  # refuses links out of the folder, etc.
                        tar.extractall(unpack, filter="data")
                    else:
                        tar.extractall(unpack)
        except (OSError, tarfile.TarError, shutil.ReadError) as err:
            raise UserError(f"{archive}: cannot unpack ({err}); delete it and run again") from None
        tops = os.listdir(unpack)
        if len(tops) != 1 or not os.path.isdir(os.path.join(unpack, tops[0])):
            raise UserError(f"{archive}: expected one top folder in the sdist, found {tops}")
        os.rename(os.path.join(unpack, tops[0]), tree)
        return tops[0]
    finally:
        shutil.rmtree(unpack, ignore_errors=True)


def check_sdist(archive, entry, origin):
    """UserError unless the sha256 of `archive` is the one pinned in `entry` (before unpacking).

    `origin` is "cache" or "pypi"; either way a mismatch stops the step: a cached sdist that was
    altered must not be unpacked, nor silently replaced by another source. Returns the sha256.
    """
    expected = (entry.get("sha256") or "").lower()
    actual = sha256_file(archive)
    if actual == expected:
        return actual
    pinned = f"pinned in model.yaml for {describe(entry)}"
    if origin == "cache":
        raise UserError(f"{shown_path(archive)}: sha256 is {actual}, expected {expected} "
                        f"({pinned}); not unpacked: delete {shown_path(archive)} "
                        "to download it again")
    raise UserError(f"{os.path.basename(archive)} downloaded from PyPI: sha256 is {actual}, "
                    f"expected {expected} ({pinned}); not unpacked: the index served another "
                    "file than the pinned one (check the sha256 in model.yaml)")


def fetch_pypi(entry, tree, cache):
    """The sdist of entry['requirement'] (cache first, then PyPI), its sha256 checked against
    entry['sha256'], unpacked as `tree`."""
    name, version = parse_requirement(entry["requirement"])
    if not (isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
        raise UserError(f"upstream.sources: {describe(entry)}: no sha256 of the sdist pinned")
    cached = sdist_candidates(cache, name, version) if cache else []
    download = None if cached else tempfile.mkdtemp(prefix=".sdist-", dir=os.path.dirname(tree))
    try:
        archive = cached[0] if cached else download_sdist(entry["requirement"], download)
        digest = check_sdist(archive, entry, "cache" if cached else "pypi")
        extract_sdist(archive, tree)
        return {"requirement": entry["requirement"], "version": version,
                "from": "cache" if cached else "pypi",
                "sdist": os.path.basename(archive), "sdist_sha256": digest}
    finally:
        if download:
            shutil.rmtree(download, ignore_errors=True)


# -- patch ----------------------------------------------------------------------------------

def rejected_hunks(tree):
    """`<file>: <first lines of its first rejected hunk>` for each .rej file `patch` left."""
    shown = []
    for root, _, files in sorted(os.walk(tree)):
        for name in sorted(files):
            if name.endswith(".rej"):
                with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                    lines = [line.rstrip("\n") for line in handle
                             if not line.startswith(("--- ", "+++ "))][:REJECT_LINES]
                target = os.path.relpath(os.path.join(root, name[:-len(".rej")]), tree)
                shown.append(f"{target}: " + " | ".join(lines))
    return shown


def patch_summary(output):
    """patch's `N out of M hunks FAILED` line, without the `-- saving rejects` tail."""
    lines = output.splitlines()
    for wanted in (" out of ", "can't find file", "malformed", "FAILED"):
        for line in lines:
            if wanted in line:
                return line.split(" -- ")[0].strip()
    return last_line(output)


def apply_patch(patch_path, tree, source_name):
    """`patch -p1 --forward --batch` in `tree`; PatchRejected (stop) if any hunk fails."""
    try:
        result = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", patch_path],
                                cwd=tree, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("`patch` is not installed (apt-get install patch)") from None
    if result.returncode == 0:
        return
    hunks = rejected_hunks(tree)
    detail = f"; rejected hunk in {hunks[0]}" if hunks else ""
    raise PatchRejected(f"patch {os.path.basename(patch_path)} does not apply to {source_name}: "
                        f"{patch_summary(result.stdout)}{detail}")


# -- tree hash --------------------------------------------------------------------------------

IGNORED_DIRS = ("__pycache__",)   # written by Python when the tree is imported
IGNORED_SUFFIXES = (".pyc",)


def tree_manifest(path):
    """{relative path: entry} for every file and symlink under `path` (not the folders).

    Paths use "/"; an entry is `file <sha256>` or `exec <sha256>` (the owner's executable bit
    set) for a regular file, `link <target>` for a symlink (never followed, also to a folder),
    `other` for anything else. `__pycache__/` folders and `*.pyc` files are left out: importing
    the tree writes them. Empty folders are not part of the tree.
    """
    manifest = {}
    for root, dirs, files in os.walk(path):
        kept = []
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                files.append(name)
            elif name not in IGNORED_DIRS:
                kept.append(name)
        dirs[:] = sorted(kept)
        relative_root = os.path.relpath(root, path)
        for name in files:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            full = os.path.join(root, name)
            relative = name if relative_root == "." else os.path.join(relative_root, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                entry = "link " + os.readlink(full)
            elif stat.S_ISREG(mode):
                entry = ("exec " if mode & stat.S_IXUSR else "file ") + sha256_file(full)
            else:
                entry = "other"
            manifest[relative.replace(os.sep, "/")] = entry
    return manifest


def manifest_sha256(manifest):
    """sha256 of the sorted (path, entry) pairs, serialised unambiguously (JSON)."""
    text = json.dumps(sorted(manifest.items()), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def tree_sha256(path):
    """The tree hash of `path`: sha256 over its sorted relative paths, each file's executable
    bit and contents, and each symlink's target; `__pycache__/` and `*.pyc` ignored."""
    return manifest_sha256(tree_manifest(path))


def files_path(record_path):
    """The file list beside a record: build/x/src/source.json -> build/x/src/source.files.json."""
    stem, extension = os.path.splitext(record_path)
    return stem + ".files.json" if extension == ".json" else record_path + ".files.json"


def write_record(record_path, record, manifest):
    """The file list, then the record (so a record always has the list of its tree beside it)."""
    atomic_write(files_path(record_path),
                 json.dumps({"tree_sha256": record["tree_sha256"], "files": manifest},
                            indent=0, sort_keys=True) + "\n")
    atomic_write(record_path, json.dumps(record, indent=2) + "\n")


def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}; run the make command again to rebuild it") \
            from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the {what} ({err}); run the make command again "
                        "to rebuild it") from None


def recorded_manifest(record_path, expected):
    """The file list beside the record, or None if missing, unreadable or not of `expected`."""
    try:
        with open(files_path(record_path), encoding="utf-8") as handle:
            data = json.load(handle)
        files = data["files"]
        if isinstance(files, dict) and manifest_sha256(files) == expected:
            return files
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def verify_tree(dest, record_path):
    """None when `dest` is the patched tree the record describes, else the first difference.

    The first difference is the first relative path (sorted) that was edited, added or removed
    (or whose executable bit or link target changed); where no path can be named, a text that
    starts with "unknown" (a record without `tree_sha256`, written by an older version, counts
    as differing). Raises UserError (one line) when `dest` or the record is missing/unreadable.
    """
    if not os.path.isdir(dest):
        raise UserError(f"{dest}: no such folder (the patched upstream tree); run the make "
                        "command again to rebuild it")
    record = read_json(record_path, "source record")
    expected = record.get("tree_sha256") if isinstance(record, dict) else None
    if not isinstance(expected, str) or not expected:
        return "unknown, the record has no tree_sha256 (written by an older npuzoo)"
    actual = tree_manifest(dest)
    if manifest_sha256(actual) == expected:
        return None
    recorded = recorded_manifest(record_path, expected)
    if recorded is None:
        return f"unknown, no file list of the recorded tree in {files_path(record_path)}"
    for relative in sorted(set(recorded) | set(actual)):
        if recorded.get(relative) != actual.get(relative):
            return relative
    return "unknown"  # not reached: equal manifests have equal hashes


# -- the step -------------------------------------------------------------------------------

FETCHERS = {"git": lambda entry, tree, cache: fetch_git(entry, tree),
            "pypi": fetch_pypi}


def shown_path(path):
    """Relative to the repository when inside it (reports are committed), else absolute."""
    relative = os.path.relpath(path, config.REPO_ROOT)
    return path if relative.startswith("..") else relative


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def fetch(upstream, model_folder, dest, cache=DEFAULT_CACHE, log=print, record_path=None):
    """Fetch the first available source of `upstream` into `dest`, patched; returns the record.

    With `record_path`, also writes the record there and its file list beside it (files_path).
    """
    dest = os.path.abspath(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    building = dest + ".tmp"
    skipped = []
    for entry in upstream["sources"]:
        remove(building)
        name = describe(entry)
        try:
            fetched = FETCHERS[entry["kind"]](entry, building, cache)
        except SourceUnavailable as why:
            remove(building)
            skipped.append({"source": name, "error": str(why)})
            continue
        except BaseException:
            remove(building)
            raise
        try:
            record = {"kind": entry["kind"], **fetched, "patch": entry.get("patch"),
                      "patch_sha256": None, "why": entry.get("why")}
            if entry.get("patch"):
                patch_path = os.path.join(model_folder, entry["patch"])
                record["patch_sha256"] = sha256_file(patch_path)
                apply_patch(patch_path, building, name)
            manifest = tree_manifest(building)
            remove(dest)
            os.rename(building, dest)
        except BaseException:
            remove(building)
            raise
        record.update(repo=upstream.get("repo"), pinned_commit=upstream.get("commit"),
                      skipped=skipped, tree=shown_path(dest),
                      tree_sha256=manifest_sha256(manifest), tree_files=len(manifest))
        if record_path:
            write_record(record_path, record, manifest)
        for skip in skipped:
            log(f"source: skipped {skip['source']}: {skip['error']}")
        patch_text = f"patch {entry['patch']} applied" if entry.get("patch") else "no patch"
        log(f"source: using {name} ({patch_text}): {entry.get('why', '').strip()}")
        return record
    lines = "; ".join(f"{skip['source']}: {skip['error']}" for skip in skipped)
    raise UserError(f"no upstream source could be fetched ({lines})")


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m npuzoo.source",
        description="fetch: fetch a model's upstream source (model.yaml upstream.sources, in "
                    "order), apply its patch, and record which source was used. verify: check "
                    "that DEST is still the patched tree that record describes.")
    parser.add_argument("command", choices=["fetch", "verify"])
    parser.add_argument("model", help="model name, or a path to a model.yaml")
    parser.add_argument("dest", help="fetch: folder to create with the patched source tree; "
                                     "verify: that folder")
    parser.add_argument("--record", help="the JSON record of the source used (fetch writes it, "
                                         "and <record>.files.json beside it; verify reads them)")
    parser.add_argument("--cache", default=os.environ.get("NPUZOO_SDIST_CACHE", DEFAULT_CACHE),
                        help="folder of cached sdists, looked in before PyPI "
                             "(default: .venv/sdists, filled by `make venv`)")
    args = parser.parse_args(argv)
    data = config.load(args.model)
    if args.model.endswith((".yaml", ".yml")):
        folder = os.path.dirname(os.path.abspath(args.model))
    else:
        folder = config.model_dir(args.model)
    upstream = data.get("upstream") or {}
    if not upstream.get("sources"):
        raise UserError(f"{args.model}: model.yaml has no upstream.sources; nothing to "
                        f"{args.command}")
    if args.command == "verify":
        if not args.record:
            raise UserError("verify needs --record JSON (the record written by fetch)")
        first = verify_tree(args.dest, args.record)
        if first is not None:
            raise UserError(f"{args.dest}: differs from the patched tree recorded in "
                            f"{args.record} (first difference: {first}); run the make command "
                            "again to rebuild it")
        return
    fetch(upstream, folder, args.dest, cache=args.cache, record_path=args.record)


if __name__ == "__main__":
    main()
