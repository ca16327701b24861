"""Upstream source step: fetch a model's upstream code, apply its patch, record what was used.

MODEL's `upstream.sources` are tried in order; the first that can be fetched is used (one that
cannot is reported in one line). git: a clone with no prompt and a time limit, at the pinned
commit. pypi: the sdist from the cache folder, else fetched as a file from where pip's
configuration points (never `pip download`, which runs the build backend). An sdist whose
sha256 is not the pinned one and a patch that does not apply stop the step rather than fall
through. DEST is built as DEST.tmp and renamed; `verify` rebuilds the patched tree from what
model.yaml pins, not from the record (which only names the source), and names the first
differing path. `cache` fills .venv/sdists with the pinned sdists (make venv).
"""
import argparse
import ast
import contextlib
import hashlib
import html as html_module
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from npuzoo import config
from npuzoo.config import GitSource, PypiSource, Source, UpstreamSpec
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, sha256_file

DEFAULT_CACHE = os.path.join(config.REPO_ROOT, ".venv", "sdists")
Record = dict[str, Any]  # the JSON record of the source used


def timeout_s(name: str) -> int:
    """NPUZOO_GIT_TIMEOUT / NPUZOO_PIP_TIMEOUT: whole seconds, checked like any user value."""
    text = os.environ.get(name, "300")
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= 86400):
        raise UserError(f"{name}={text!r}: expected whole seconds from 1 to 86400, "
                        "or leave it unset for 300")
    return int(text)


MAX_PAGE_BYTES = 16 << 20  # of an index page
MAX_SDIST_BYTES = 256 << 20
REJECT_LINES = 12  # of a rejected hunk shown in the error line


class SourceUnavailable(Exception):
    """This source cannot be fetched here (network, missing commit or release): try the next."""


def last_line(text: str | None) -> str:
    """The last non-empty line of a tool's output (where git and pip put the reason)."""
    return next((line.strip() for line in reversed((text or "").splitlines()) if line.strip()), "")


def run(command: list[str], cwd: str | None = None, timeout: float | None = None,
        env: dict[str, str] | None = None) -> "subprocess.CompletedProcess[str]":
    """subprocess.run, text output captured; a timeout or a missing tool: SourceUnavailable."""
    try:
        return subprocess.run(command, cwd=cwd, timeout=timeout, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"`{' '.join(command[:2])}` took longer than {timeout} s") from None
    except FileNotFoundError:
        raise SourceUnavailable(f"`{command[0]}` is not installed") from None


def describe(entry: Source) -> str:
    """`git <url>@<commit>` or `pypi <requirement>`: how a source is named in messages."""
    return (f"git {entry.url}@{entry.commit}" if isinstance(entry, GitSource)
            else f"pypi {entry.requirement}")


def fetch_git(entry: GitSource, tree: str) -> Record:
    """Clone entry.url into `tree` and check out entry.commit; returns the record fields."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", SSH_ASKPASS="true")
    clone = run(["git", "clone", "--quiet", "--no-checkout", entry.url, tree],
                timeout=timeout_s("NPUZOO_GIT_TIMEOUT"), env=env)
    if clone.returncode != 0:
        raise SourceUnavailable(f"git clone failed: {last_line(clone.stdout) or clone.returncode}")
    checkout = run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet",
                    entry.commit], cwd=tree, timeout=timeout_s("NPUZOO_GIT_TIMEOUT"), env=env)
    if checkout.returncode != 0:
        raise SourceUnavailable(f"commit {entry.commit} not found in the clone: "
                                f"{last_line(checkout.stdout)}")
    head = run(["git", "rev-parse", "HEAD"], cwd=tree, env=env).stdout.strip()
    if not head.startswith(entry.commit.lower()):  # a tag or branch spelled like a hash
        raise SourceUnavailable(f"{entry.commit} resolved to commit {head}, not to itself")
    # The commit object names the tree by its git hash; its own hash is the commit: verify
    # checks the tree against it (git_tree_id) without the repository.
    commit_object = run(["git", "cat-file", "commit", "HEAD"], cwd=tree, env=env).stdout
    shutil.rmtree(os.path.join(tree, ".git"))  # the tree, not a repository: patch -p1 only
    return {"url": entry.url, "commit": head, "commit_object": commit_object}


def parse_requirement(requirement: str) -> tuple[str, str]:
    """(name, version) of a pinned `name==version` (checked by npuzoo.config)."""
    name, _, version = requirement.partition("==")
    return name.strip(), version.strip()


def canonical(name: str) -> str:
    """A project name as PyPI compares them (- _ . alike, any case)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_sdist_of(base: str, name: str, version: str) -> bool:
    match = re.fullmatch(r"([^/]*)-([^-/]*)\.(?:tar\.gz|tgz|zip|tar\.bz2)", base)
    return match is not None and match[2] == version and canonical(match[1]) == canonical(name)


def sdist_candidates(folder: str, name: str, version: str) -> list[str]:
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [os.path.join(folder, base) for base in names if is_sdist_of(base, name, version)]


def pinned_sdist(folder: str, entry: PypiSource) -> str | None:
    """The sdist of entry.requirement in `folder` that has the pinned sha256, if any."""
    return next((path for path in sdist_candidates(folder, *parse_requirement(entry.requirement))
                 if sha256_file(path) == entry.sha256.lower()), None)


def pip_locations() -> list[tuple[str, str]]:
    """`pip config list`'s ("index", URL) for the index and extra indexes, then its find-links."""
    listed = run([sys.executable, "-m", "pip", "config", "list"],
                 timeout=timeout_s("NPUZOO_PIP_TIMEOUT"))
    settings = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        with contextlib.suppress(ValueError, SyntaxError):
            settings[key] = str(ast.literal_eval(value))

    def setting(name: str, default: str = "") -> list[str]:  # PIP_*, `download`, `global`
        keys = [f"{section}.{name}" for section in (":env:", "download", "global")]
        return next((settings[key] for key in keys if key in settings), default).split()
    indexes = [] if setting("no-index") in (["1"], ["true"], ["yes"], ["on"]) else \
        setting("index-url", "https://pypi.org/simple") + setting("extra-index-url")
    return [("index", url) for url in indexes] + [("find", where) for where in
                                                   setting("find-links")]


def page_links(url: str) -> list[tuple[str, str]]:
    """(file name, absolute URL) of each link of an HTML page (a file: folder: its index.html)."""
    if url.startswith("file:"):
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        if os.path.isdir(path):
            url = pathlib.Path(path, "index.html").as_uri()
    with urllib.request.urlopen(url, timeout=timeout_s("NPUZOO_PIP_TIMEOUT")) as response:
        html = response.read(MAX_PAGE_BYTES).decode("utf-8", "replace")
    targets = [urllib.parse.urljoin(url, html_module.unescape(href)) for href in
               re.findall(r"""<a\s[^>]*href\s*=\s*["']([^"']+)["']""", html, re.IGNORECASE)]
    return [(urllib.parse.unquote(target.split("#")[0].rsplit("/", 1)[-1]), target)
            for target in targets]


def links(kind: str, location: str, name: str) -> list[tuple[str, str]]:
    """(file name, URL) offered for `name` by an index (PEP 503), a find-links folder or page."""
    if kind == "index":
        return page_links(location.rstrip("/") + f"/{canonical(name)}/")
    folder = (urllib.request.url2pathname(urllib.parse.urlparse(location).path)
              if location.startswith("file:") else location)
    if "://" not in location or location.startswith("file:"):
        return [(base, pathlib.Path(os.path.abspath(folder), base).as_uri())
                for base in sorted(os.listdir(folder))]
    return page_links(location)


def download_sdist(requirement: str, folder: str, sha256: str) -> str:
    """The sdist of `requirement` fetched as a file into `folder` (pip would run its build
    backend first): the first with `sha256`, else the last seen (its pin check then fails)."""
    name, version = parse_requirement(requirement)
    fetched, failures, seconds = None, [], timeout_s("NPUZOO_PIP_TIMEOUT")
    for kind, location in pip_locations():
        try:
            candidates = [(base, url) for base, url in links(kind, location, name)
                          if is_sdist_of(base, name, version)]
            for base, url in candidates:
                fetched = os.path.join(folder, base)
                with urllib.request.urlopen(url, timeout=seconds) as response, \
                        open(fetched, "wb") as out:
                    if out.write(response.read(MAX_SDIST_BYTES + 1)) > MAX_SDIST_BYTES:
                        raise ValueError(f"{url}: larger than {MAX_SDIST_BYTES >> 20} MiB")
                if sha256_file(fetched) == sha256:
                    return fetched
        except (OSError, ValueError) as err:  # urllib's errors are OSErrors
            failures.append(f"{location}: {getattr(err, 'reason', None) or err}")
    if fetched:
        return fetched
    raise SourceUnavailable(f"no sdist of {requirement} found"
                            + (f" ({'; '.join(failures)})" if failures else ""))


def extract_sdist(archive: str, tree: str) -> None:
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
    finally:
        shutil.rmtree(unpack, ignore_errors=True)


def check_sdist(archive: str, entry: PypiSource, origin: str) -> None:
    """UserError unless `archive` has the pinned sha256 (no other source replaces it)."""
    expected, actual = entry.sha256.lower(), sha256_file(archive)
    if actual != expected:
        where, advice = ((shown_path(archive), f"delete {shown_path(archive)} to download it again")
                         if origin == "cache" else
                         (f"{os.path.basename(archive)} downloaded from the package index",
                          "the index served another file than the pinned one (check the sha256 "
                          "in model.yaml)"))
        raise UserError(f"{where}: sha256 is {actual}, expected {expected} (pinned in model.yaml "
                        f"for {describe(entry)}); not unpacked: {advice}")


def fetch_pypi(entry: PypiSource, tree: str, cache: str) -> Record:
    """The pinned sdist (cached, else downloaded) unpacked as `tree`; a copy stays for verify."""
    name, version = parse_requirement(entry.requirement)
    cached = sdist_candidates(cache, name, version)
    if cached:
        archive = cached[0]
        check_sdist(archive, entry, "cache")
        kept = os.path.join(os.path.dirname(tree), os.path.basename(archive))
        if not os.path.exists(kept):
            shutil.copyfile(archive, kept + ".part")
            os.replace(kept + ".part", kept)
    else:
        archive = cache_sdist(entry, os.path.dirname(tree))
    extract_sdist(archive, tree)
    return {"requirement": entry.requirement, "version": version,
            "from": "cache" if cached else "pypi",
            "sdist": os.path.basename(archive), "sdist_sha256": entry.sha256.lower()}


def cache_sdist(entry: PypiSource, folder: str) -> str:
    """The pinned sdist of `entry` in `folder`, fetched unless there, kept only if pinned."""
    if found := pinned_sdist(folder, entry):
        return found
    os.makedirs(folder, exist_ok=True)
    download = tempfile.mkdtemp(prefix=".sdist-", dir=folder)
    try:
        archive = download_sdist(entry.requirement, download, entry.sha256.lower())
        check_sdist(archive, entry, "pypi")
        kept = os.path.join(folder, os.path.basename(archive))
        os.replace(archive, kept)
        return kept
    finally:
        shutil.rmtree(download, ignore_errors=True)


def rejected_hunk(tree: str) -> str:
    """`; rejected hunk in <file>: <its first lines>` of the first .rej file `patch` left."""
    for root, _, files in sorted(os.walk(tree)):
        for name in sorted(name for name in files if name.endswith(".rej")):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                lines = [line.rstrip("\n") for line in handle
                         if not line.startswith(("--- ", "+++ "))][:REJECT_LINES]
            target = os.path.relpath(os.path.join(root, name[:-len(".rej")]), tree)
            return f"; rejected hunk in {target}: " + " | ".join(lines)
    return ""


def patch_summary(output: str) -> str:
    """patch's `N out of M hunks FAILED` line, without the `-- saving rejects` tail."""
    found = next((line for wanted in (" out of ", "can't find file", "malformed", "FAILED")
                  for line in output.splitlines() if wanted in line), None)
    return found.split(" -- ")[0].strip() if found else last_line(output)


def apply_patch(patch_path: str, tree: str, source_name: str) -> None:
    """`patch -p1` in `tree`; a failed hunk is a UserError: the step stops, no source is next."""
    try:
        result = run(["patch", "-p1", "--forward", "--batch", "-i", patch_path], cwd=tree)
    except SourceUnavailable:
        raise UserError("`patch` is not installed (apt-get install patch)") from None
    if result.returncode != 0:
        raise UserError(f"patch {os.path.basename(patch_path)} does not apply to {source_name}: "
                        f"{patch_summary(result.stdout)}{rejected_hunk(tree)}")


IGNORED_DIRS = ("__pycache__",)   # written by Python when the tree is imported
IGNORED_SUFFIXES = (".pyc",)


def tree_manifest(path: str) -> dict[str, str]:
    """{relative path ("/"): `file <sha256>`, `exec <sha256>`, `link <target>` (never
    followed) or `other`} for every file and symlink under `path`, bytecode left out."""
    manifest = {}
    for root, dirs, files in os.walk(path):
        links = [name for name in dirs if os.path.islink(os.path.join(root, name))]
        dirs[:] = sorted(set(dirs) - set(links) - set(IGNORED_DIRS))
        for name in [name for name in files + links if not name.endswith(IGNORED_SUFFIXES)]:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                entry = "link " + os.readlink(full)
            elif stat.S_ISREG(mode):
                entry = ("exec " if mode & stat.S_IXUSR else "file ") + sha256_file(full)
            else:
                entry = "other"
            manifest[os.path.relpath(full, path).replace(os.sep, "/")] = entry
    return manifest


def manifest_sha256(manifest: dict[str, str]) -> str:
    """sha256 of the sorted (path, entry) pairs, serialised unambiguously (JSON)."""
    text = json.dumps(sorted(manifest.items()), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def tree_sha256(path: str) -> str:
    return manifest_sha256(tree_manifest(path))


def git_tree_id(tree: str, work: str) -> str:
    """The git hash of `tree` as a commit's tree (git add of every file, ignore rules aside)."""
    env = dict(os.environ, GIT_DIR=os.path.join(work, "git"), GIT_WORK_TREE=tree,
               GIT_INDEX_FILE=os.path.join(work, "index"), GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull)
    for command in (["git", "init", "--quiet"], ["git", "add", "--all", "--force", "."],
                    ["git", "write-tree"]):
        result = run(command, cwd=tree, env=env, timeout=timeout_s("NPUZOO_GIT_TIMEOUT"))
        if result.returncode != 0:
            raise SourceUnavailable(f"`{' '.join(command[:2])}`: {last_line(result.stdout)}")
    return result.stdout.strip()


def pristine_git(entry: GitSource, record: Record, dest: str, patch_path: str | None,
                 work: str) -> str:
    """The tree of the pinned commit, from `dest`: with its patch undone it must be the tree of
    the recorded commit object (which must hash to the pinned commit)."""
    commit_object = str(record.get("commit_object") or "")
    commit = str(record.get("commit", ""))
    data = commit_object.encode("utf-8")
    if not (commit.startswith(entry.commit.lower())
            and hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest() == commit):
        raise SourceUnavailable("the record holds no commit object of the pinned commit")
    tree = os.path.join(work, "tree")
    shutil.copytree(dest, tree, symlinks=True, ignore=shutil.ignore_patterns(
        *IGNORED_DIRS, *(f"*{suffix}" for suffix in IGNORED_SUFFIXES)))
    if patch_path and run(["patch", "-R", "-p1", "--batch", "--no-backup-if-mismatch",
                           "--silent", "-i", patch_path], cwd=tree).returncode != 0:
        raise SourceUnavailable(f"{os.path.basename(patch_path)} cannot be undone in it")
    if f"tree {git_tree_id(tree, work)}\n" not in commit_object.split("\n\n")[0] + "\n":
        raise SourceUnavailable(f"with its patch undone, it is not the tree of commit {commit}")
    return tree


def pristine_pypi(entry: PypiSource, record_path: str, cache: str, work: str) -> str:
    """The tree of the pinned sdist (the copy kept beside the record, else the cached one)."""
    for folder in (os.path.dirname(os.path.abspath(record_path)), cache):
        if archive := pinned_sdist(folder, entry):
            extract_sdist(archive, os.path.join(work, "tree"))
            return os.path.join(work, "tree")
    raise SourceUnavailable(f"no sdist with the pinned sha256 beside {record_path} nor in {cache}")


def verify_tree(upstream: UpstreamSpec, model_folder: str, dest: str, record_path: str,
                cache: str = DEFAULT_CACHE) -> str | None:
    """None when `dest` is the patched tree of a pinned source, else the first differing path,
    or "unknown, <why>" where the pinned tree cannot be rebuilt here."""
    if not os.path.isdir(dest):
        raise UserError(f"{dest}: no such folder (the patched upstream tree); run the make "
                        "command again to rebuild it")
    try:
        record = json.loads(pathlib.Path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        why = ("no such source record" if isinstance(err, FileNotFoundError)
               else f"cannot read the source record ({err})")
        raise UserError(f"{record_path}: {why}; run the make command again to rebuild it") \
            from None
    record = record if isinstance(record, dict) else {}
    entry = next((e for e in upstream.sources if (
        record.get("requirement") == e.requirement if isinstance(e, PypiSource)
        else record.get("url") == e.url)), None)
    if entry is None:
        return "unknown, the record names no source of model.yaml"
    patch_path = os.path.join(model_folder, entry.patch) if entry.patch else None
    work = tempfile.mkdtemp(prefix=".verify-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        tree = (pristine_pypi(entry, record_path, cache, work) if isinstance(entry, PypiSource)
                else pristine_git(entry, record, dest, patch_path, work))
        if patch_path:
            apply_patch(patch_path, tree, describe(entry))
        expected, actual = tree_manifest(tree), tree_manifest(dest)
    except (SourceUnavailable, UserError) as why:
        return f"unknown, {describe(entry)}: {why}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return next((relative for relative in sorted(set(expected) | set(actual))
                 if expected.get(relative) != actual.get(relative)), None)


def shown_path(path: str) -> str:
    """Relative to the repository when inside it (reports are committed), else absolute."""
    relative = os.path.relpath(path, config.REPO_ROOT)
    return path if relative.startswith("..") else relative


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def fetch(upstream: UpstreamSpec, model_folder: str, dest: str, cache: str = DEFAULT_CACHE,
          log: Callable[[str], object] = print, record_path: str | None = None) -> Record:
    """Fetch the first available source of `upstream` into `dest`, patched; the record."""
    dest = os.path.abspath(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    building = dest + ".tmp"
    skipped = []
    for entry in upstream.sources:
        remove(building)
        name = describe(entry)
        try:
            fetched = (fetch_git(entry, building) if isinstance(entry, GitSource)
                       else fetch_pypi(entry, building, cache))
            patch_path = os.path.join(model_folder, entry.patch) if entry.patch else None
            if patch_path:  # a patch that does not apply stops the step (a UserError)
                apply_patch(patch_path, building, name)
            manifest = tree_manifest(building)
            remove(dest)
            os.rename(building, dest)
        except SourceUnavailable as why:
            skipped.append({"source": name, "error": str(why)})
            continue
        finally:
            remove(building)
        record = {"kind": entry.kind, **fetched, "patch": entry.patch,
                  "patch_sha256": patch_path and sha256_file(patch_path), "why": entry.why,
                  "repo": upstream.repo, "pinned_commit": upstream.commit, "skipped": skipped,
                  "tree": shown_path(dest), "tree_sha256": manifest_sha256(manifest),
                  "tree_files": len(manifest)}
        if record_path:
            atomic_write(record_path, json.dumps(record, indent=2) + "\n")
        for skip in skipped:
            log(f"source: skipped {skip['source']}: {skip['error']}")
        patch_text = f"patch {entry.patch} applied" if entry.patch else "no patch"
        log(f"source: using {name} ({patch_text}): {entry.why.strip()}")
        return record
    lines = "; ".join(f"{skip['source']}: {skip['error']}" for skip in skipped)
    raise UserError(f"no upstream source could be fetched ({lines})")


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.source", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "verify", "cache"])
    parser.add_argument("model", nargs="?", help="model name, or a path to a model.yaml "
                                                 "(cache: all models if omitted)")
    parser.add_argument("dest", nargs="?", help="fetch: folder to create with the patched "
                                                "source tree; verify: that folder")
    parser.add_argument("--record", help="the JSON record of the source used (fetch writes it "
                                         "and keeps a pypi sdist beside it; verify reads it)")
    parser.add_argument("--cache", default=os.environ.get("NPUZOO_SDIST_CACHE", DEFAULT_CACHE),
                        help="folder of cached sdists, looked in before the package index "
                             "(default: .venv/sdists, filled by `make venv`)")
    args = parser.parse_args(argv)
    if args.command == "cache":
        for model in [args.model] if args.model else config.model_names():
            for entry in config.load(model).upstream.sources:
                try:
                    if isinstance(entry, PypiSource):
                        cache_sdist(entry, args.cache)
                except SourceUnavailable as why:
                    raise UserError(f"{describe(entry)}: {why}") from None
        return
    if not (args.model and args.dest):
        parser.error(f"{args.command} needs MODEL and DEST")
    spec = config.load(args.model)
    if not spec.upstream.sources:
        raise UserError(f"{args.model}: model.yaml has no upstream.sources; nothing to "
                        f"{args.command}")
    if args.command == "verify":
        if not args.record:
            raise UserError("verify needs --record JSON (the record written by fetch)")
        first = verify_tree(spec.upstream, spec.folder, args.dest, args.record, args.cache)
        if first is not None:
            raise UserError(f"{args.dest}: differs from the pinned source's patched tree "
                            f"(first difference: {first}); run the make command again to "
                            "rebuild it")
        return
    fetch(spec.upstream, spec.folder, args.dest, cache=args.cache, record_path=args.record)


if __name__ == "__main__":
    main()
