"""Values of `docker run` options that no path can break (mk/docker.mk, RUNNER=docker).

    python3 -m npuzoo.dockerargs mount SOURCE TARGET [--readonly] [--resolve]
    python3 -m npuzoo.dockerargs mount LINK --resolve [--readonly]
    python3 -m npuzoo.dockerargs ascend-runtime [--docker DOCKER]
    python3 -m npuzoo.dockerargs confine --at PREFIX... [--owner UID:GID] DIR -- DOCKER run ARGS...

`mount` prints ONE `--mount` value, `type=bind,source=...,target=...[,readonly]`. Docker reads
that value as one CSV record, so a path holding `,` or `"` could otherwise add or change fields
(`source=/a,target=/etc`), and `-v SRC:DST:ro` splits on `:`. Here every field that needs it is
wrapped in double quotes with each `"` doubled, which is what docker's CSV reader undoes.
The recipes use it as `--mount "$$($(PY) -m npuzoo.dockerargs mount ...)"`: the path reaches
the shell only as an environment variable or a validated token, the value comes back as one
quoted word, and the shell never re-reads it.

SOURCE is made absolute (relative to the current folder). With `--resolve`, SOURCE is a
symbolic link (the pipeline's build/inputs/<dataset id>.data): the source mounted is
what it finally resolves to (`readlink -f`), and TARGET, when left out, is the link's own
target: the absolute path that the dataset links under build/ point into, so they resolve in
the container as on the host.

`ascend-runtime` prints the name under which the engine has the Ascend Docker Runtime
registered (`docker info`: a runtime whose program is `ascend-docker-runtime`, usually named
`ascend`), or nothing: no such runtime, no engine answering, or a name that is not one plain
token (it is spliced into `docker run --runtime=NAME`). mk/docker.mk asks it for SOC=Ascend...
unless ASCEND_DOCKER_RUNTIME says 0 or 1.

`confine` runs a container that may write only DIR (mk/docker.mk: the steps that run
third-party upstream code, whose build/ mount is read-only): it makes DIR (build/..., every
part a real folder, no link: a link planted under build/ would carry the writable mount
elsewhere), then runs `DOCKER run` with DIR bound read-write at PREFIX/DIR for each PREFIX
(the repository's path, /zoo in a model image) ahead of ARGS. It must make DIR itself, at run
time: the steps that run it (`npuzoo.store once --clean DIR`) remove DIR just before. With
--owner (a caller that is root: its container runs as a non-root UID:GID instead), DIR and what
is in it are handed to UID:GID for the run and back to the caller after it, so the container
can write DIR and nothing else the caller owns, and the caller owns what it wrote.

Standard library only: it runs on the host, before any image.
"""

import argparse
import json
import os
import re
import stat
import subprocess
import sys

from npuzoo.errors import UserError, cli

# Characters no mount path may hold: docker cannot carry them through its CSV reader reliably,
# and no dataset folder needs them.
FORBIDDEN = {"\0": "a NUL byte", "\n": "a newline", "\r": "a carriage return"}


def csv_field(text):
    """One CSV field as docker's --mount reader (Go encoding/csv) reads it back as `text`."""
    if any(ch in text for ch in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def check_path(path, what):
    for ch, name in FORBIDDEN.items():
        if ch in path:
            raise UserError(f"{what} {path!r} contains {name}; docker cannot mount it")
    if not path:
        raise UserError(f"{what} is empty")
    return path


def resolve_link(link):
    """(what LINK finally points to, LINK's own target), both absolute."""
    check_path(link, "link")
    if not os.path.islink(link):
        raise UserError(f"{link}: not a symbolic link (expected the link to the dataset folder)")
    named = os.readlink(link)
    if not os.path.isabs(named):
        raise UserError(f"{link}: its target {named!r} is not an absolute path")
    real = os.path.realpath(link)
    if not os.path.exists(real):
        raise UserError(f"{link}: its target {named} does not exist")
    return real, os.path.normpath(named)


def mount_value(source, target=None, readonly=False, resolve=False):
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
    if readonly:
        fields.append("readonly")
    return ",".join(csv_field(field) for field in fields)


ASCEND_RUNTIME_PROGRAM = "ascend-docker-runtime"
RUNTIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def ascend_runtime(docker="/usr/bin/docker", timeout=20):
    """The engine's name for the Ascend Docker Runtime (`docker info` .Runtimes: a runtime whose
    path's last part is ascend-docker-runtime), or None when there is none or no answer."""
    try:
        proc = subprocess.run([docker, "info", "--format", "{{json .Runtimes}}"],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        runtimes = json.loads(proc.stdout.strip() or "null")
    except ValueError:
        return None
    if not isinstance(runtimes, dict):
        return None
    for name in sorted(runtimes):
        spec = runtimes[name]
        path = spec.get("path") if isinstance(spec, dict) else None
        program = os.path.basename(path) if isinstance(path, str) else ""
        if ASCEND_RUNTIME_PROGRAM in (program, name) and RUNTIME_NAME.fullmatch(name):
            return name
    return None


SAFE_PART = re.compile(r"[A-Za-z0-9._+-]+")


def chown_tree(folder, uid, gid):
    """FOLDER and everything under it to UID:GID, links themselves (never what they name); no
    file keeps a set-user-id or set-group-id bit (one the container set must not become the
    caller's)."""
    os.lchown(folder, uid, gid)
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            os.lchown(path, uid, gid)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


def run_confined(folder, prefixes, docker_argv, owner=None):
    """Run DOCKER_ARGV confined to FOLDER (confined_argv); with OWNER ("UID:GID"), FOLDER is
    UID:GID's for the run and the caller's again after it. The docker exit status."""
    command = confined_argv(folder, prefixes, docker_argv)
    if not owner:
        os.execvp(command[0], command)
    uid, gid = (int(n) for n in owner.split(":"))
    chown_tree(folder, uid, gid)
    try:
        return subprocess.call(command)
    finally:
        chown_tree(folder, os.getuid(), os.getgid())


def confined_argv(folder, prefixes, docker_argv):
    """DOCKER_ARGV (`DOCKER run ...`) with FOLDER bound read-write at PREFIX/FOLDER for each
    PREFIX, after making FOLDER; UserError for a folder outside build/ or reached by a link."""
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
    mounts = []
    for prefix in prefixes:
        mounts += ["--mount", mount_value(folder, os.path.join(prefix, folder))]
    return [docker_argv[0], "run", *mounts, *docker_argv[2:]]


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.dockerargs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mount = commands.add_parser("mount", help="print one CSV-quoted --mount value (a bind mount)")
    mount.add_argument("source", help="the host path (with --resolve: a symbolic link to mount the target of)")
    mount.add_argument("target", nargs="?", help="the path in the container (with --resolve: default the link's target)")
    mount.add_argument("--readonly", action="store_true", help="mount read-only")
    mount.add_argument("--resolve", action="store_true",
                       help="SOURCE is a symbolic link: mount what it resolves to (readlink -f)")
    runtime = commands.add_parser("ascend-runtime", help="print the engine's name for the Ascend "
                                  "Docker Runtime (docker info), or nothing")
    runtime.add_argument("--docker", default="/usr/bin/docker", help="the docker client")
    confine = commands.add_parser("confine", help="run `DOCKER run ...` with only DIR writable")
    confine.add_argument("folder", help="the one folder the container may write (build/...)")
    confine.add_argument("--at", action="append", required=True, help="where it appears in the container")
    confine.add_argument("--owner", type=lambda v: v if re.fullmatch(r"[0-9]+:[0-9]+", v) else
                         parser.error(f"--owner {v!r}: expected UID:GID"),
                         help="UID:GID that owns DIR during the run (the container's user)")
    confine.add_argument("docker_argv", nargs=argparse.REMAINDER, help="-- DOCKER run ARGS...")
    args = parser.parse_args(argv)
    if args.command == "confine":
        docker_argv = args.docker_argv[1:] if args.docker_argv[:1] == ["--"] else args.docker_argv
        return run_confined(args.folder, args.at, docker_argv, args.owner)
    if args.command == "mount":
        print(mount_value(args.source, args.target, readonly=args.readonly, resolve=args.resolve))
    elif args.command == "ascend-runtime":
        name = ascend_runtime(args.docker)
        if name:
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
