"""Values of `docker run` options that no path can break (mk/docker.mk, RUNNER=docker).

`mount` prints one `--mount` value, each field CSV-quoted as docker's reader undoes it (a `,`
or `"` in a path cannot add a field, as in `-v SRC:DST:ro`); `--resolve` mounts what a dataset
link resolves to, at the link's own target. `ascend-runtime` prints the engine's name of the
Ascend Docker Runtime, or nothing. `confine` runs `DOCKER run` with only DIR (build/..., no
link on the way) writable. Standard library only: it runs on the host, before any image.
"""

import argparse
import json
import os
import re
import stat
import subprocess
import sys

from npuzoo.errors import UserError, cli

# Characters no mount path may hold: docker's CSV reader cannot carry them reliably.
FORBIDDEN = {"\0": "a NUL byte", "\n": "a newline", "\r": "a carriage return"}
ASCEND_RUNTIME_PROGRAM = "ascend-docker-runtime"
RUNTIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_PART = re.compile(r"[A-Za-z0-9._+-]+")


def csv_field(text: str) -> str:
    """One CSV field as docker's --mount reader reads it back as `text`."""
    quote = any(ch in text for ch in ',"\r\n') or text != text.strip()
    return '"' + text.replace('"', '""') + '"' if quote else text


def check_path(path: str, what: str) -> None:
    for ch, name in FORBIDDEN.items():
        if ch in path:
            raise UserError(f"{what} {path!r} contains {name}; docker cannot mount it")
    if not path:
        raise UserError(f"{what} is empty")


def resolve_link(link: str) -> tuple[str, str]:
    """(what LINK finally points to, LINK's own target), both absolute."""
    if not os.path.islink(link):
        raise UserError(f"{link}: not a symbolic link (expected the link to the dataset folder)")
    named = os.readlink(link)
    if not os.path.isabs(named):
        raise UserError(f"{link}: its target {named!r} is not an absolute path")
    real = os.path.realpath(link)
    if not os.path.exists(real):
        raise UserError(f"{link}: its target {named} does not exist")
    return real, os.path.normpath(named)


def mount_value(source: str, target: str | None = None, readonly: bool = False,
                resolve: bool = False) -> str:
    """The `--mount` value binding SOURCE at TARGET, every field CSV-quoted as needed."""
    check_path(source, "mount source")
    if resolve:
        source, named = resolve_link(source)
        target = named if target is None else target
    else:
        source = os.path.abspath(source)
        if not os.path.exists(source):
            raise UserError(f"{source}: no such file or folder to mount")
    if target is None:
        raise UserError("mount: TARGET is needed unless --resolve takes it from the link")
    check_path(target, "mount target")
    if not os.path.isabs(target):
        raise UserError(f"mount target {target!r} is not an absolute path")
    fields = ["type=bind", f"source={source}", f"target={os.path.normpath(target)}"]
    return ",".join(csv_field(field) for field in fields + (["readonly"] if readonly else []))


def ascend_runtime(docker: str) -> str | None:
    """The engine's name for the Ascend Docker Runtime, or None when there is none or no answer."""
    try:
        proc = subprocess.run([docker, "info", "--format", "{{json .Runtimes}}"],
                              capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
        found = json.loads(proc.stdout.strip() or "null") if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    runtimes: dict[str, object] = found if isinstance(found, dict) else {}
    for name, spec in sorted(runtimes.items()):
        path = spec.get("path") if isinstance(spec, dict) else None
        program = os.path.basename(path) if isinstance(path, str) else ""
        if ASCEND_RUNTIME_PROGRAM in (program, name) and RUNTIME_NAME.fullmatch(name):
            return str(name)
    return None


def chown_tree(folder: str, uid: int, gid: int) -> None:
    """FOLDER and all under it to UID:GID, links themselves; set-id bits are cleared (one the
    container set must not become the caller's)."""
    os.lchown(folder, uid, gid)
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            os.lchown(path, uid, gid)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


def run_confined(folder: str, prefixes: list[str], docker_argv: list[str],
                 owner: str | None = None) -> int:
    """Run DOCKER_ARGV (`DOCKER run ...`) with FOLDER, made first, bound read-write at
    PREFIX/FOLDER for each PREFIX and owned by OWNER ("UID:GID") for the run if given;
    UserError for a folder outside build/ or reached by a link."""
    parts = folder.split("/")
    if parts[0] != "build" or len(parts) < 2 or not all(
            SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise UserError(f"{folder!r}: a confined step writes only a folder build/... of letters, "
                        "digits and ._+-")
    if len(docker_argv) < 2 or docker_argv[1] != "run":
        raise UserError("confine: expected `-- DOCKER run ...` after the options")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        if os.path.islink(path):
            raise UserError(f"{path} is a symbolic link; a confined step's folder must be a real "
                            "folder under build/ (remove the link)")
        os.makedirs(path, exist_ok=True)
    mounts = [word for prefix in prefixes
              for word in ("--mount", mount_value(folder, os.path.join(prefix, folder)))]
    command = [docker_argv[0], "run", *mounts, *docker_argv[2:]]
    if not owner:
        os.execvp(command[0], command)
    uid, gid = (int(n) for n in owner.split(":"))
    chown_tree(folder, uid, gid)
    try:
        return subprocess.call(command)
    finally:
        chown_tree(folder, os.getuid(), os.getgid())


def owner_value(value: str) -> str:
    if not re.fullmatch(r"[0-9]+:[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r}: expected UID:GID")
    return value


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.dockerargs",
                                     description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mount = commands.add_parser("mount", help="print one CSV-quoted --mount value")
    mount.add_argument("source", help="the host path (--resolve: a link to mount the target of)")
    mount.add_argument("target", nargs="?", help="the path in the container")
    mount.add_argument("--readonly", action="store_true")
    mount.add_argument("--resolve", action="store_true", help="SOURCE is a symbolic link")
    runtime = commands.add_parser("ascend-runtime", help="the Ascend Docker Runtime's name")
    runtime.add_argument("--docker", default="/usr/bin/docker", help="the docker client")
    confine = commands.add_parser("confine", help="run `DOCKER run ...` with only DIR writable")
    confine.add_argument("folder", help="the one folder the container may write (build/...)")
    confine.add_argument("--at", action="append", required=True, help="its place in the container")
    confine.add_argument("--owner", type=owner_value, help="UID:GID that owns DIR during the run")
    confine.add_argument("docker_argv", nargs=argparse.REMAINDER, help="-- DOCKER run ARGS...")
    args = parser.parse_args(argv)
    if args.command == "confine":
        docker_argv = args.docker_argv[1:] if args.docker_argv[:1] == ["--"] else args.docker_argv
        return run_confined(args.folder, args.at, docker_argv, args.owner)
    if args.command == "mount":
        print(mount_value(args.source, args.target, readonly=args.readonly, resolve=args.resolve))
    elif name := ascend_runtime(args.docker):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
