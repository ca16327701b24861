"""The Ascend toolchain around `atc` and `python3 -m ais_bench` (docs/ais_bench_compatibility.md).

mk/pipeline.mk runs each tool through `python -m npuzoo.ascend run -- <command>`: it sources
the CANN environment where needed, checks the chip (the toolkit's platform files, the .om's
record, npu-smi's chip of DEVICE), runs in a scratch folder (`--cwd`), makes the paths pass
the ait front end's checks (hand_over) and ends a failure with one `error:` line.
`record-om`/`remove-om` keep each .om's chip record; `describe` writes a report's backend JSON.
"""

import argparse
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from npuzoo import soc as socs
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, replace_link, sha256_file

INSTALL_HINT = ("install the CANN toolkit (Ascend-cann-toolkit) and `source "
                "/usr/local/Ascend/ascend-toolkit/set_env.sh` (CANN 8.5 and later: "
                "/usr/local/Ascend/cann/set_env.sh), or set ASCEND_TOOLKIT_HOME")
AIS_BENCH_HINT = ("pip install the aclruntime and ais_bench wheels (ais_bench 0.0.2, "
                  "https://aisbench.obs.myhuaweicloud.com/packet/ais_bench_infer/0.0.2/)")
# Variables set_env.sh exports; any of them means a run-only (nnrt) environment is set.
RUNTIME_VARS = ("ASCEND_HOME_PATH", "ASCEND_OPP_PATH", "ASCEND_AICPU_PATH")


def ascend_root(env: Mapping[str, str] | None = None) -> str:
    return (os.environ if env is None else env).get("NPUZOO_ASCEND_ROOT") or "/usr/local/Ascend"


def set_env_candidates(env: Mapping[str, str], runtime_only: bool = False) -> list[str]:
    """set_env.sh files to try, in order, that exist."""
    home = env.get("ASCEND_TOOLKIT_HOME")
    paths = [os.path.join(home, "set_env.sh"),
             os.path.join(os.path.dirname(home.rstrip("/")), "set_env.sh"),
             os.path.join(home, "bin", "setenv.bash")] if home else []
    root = ascend_root(env)
    # ascend-toolkit/: CANN up to 8.3; cann/: CANN 8.5 and later (cann -> cann-<version>).
    paths += [os.path.join(root, "ascend-toolkit", "set_env.sh"),
              os.path.join(root, "cann", "set_env.sh"),
              os.path.expanduser("~/Ascend/ascend-toolkit/set_env.sh"),
              os.path.expanduser("~/Ascend/cann/set_env.sh")]
    if runtime_only:
        paths.append(os.path.join(root, "nnrt", "set_env.sh"))
    found = {os.path.realpath(path): path for path in reversed(paths) if os.path.isfile(path)}
    return sorted(found.values(), key=paths.index)  # each file once, first name kept


def sourced_environment(path: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """The environment `env` after `source path` in bash, or None when sourcing fails."""
    script = 'source "$1" >/dev/null 2>&1 || exit 97; env -0'
    try:
        proc = subprocess.run(["bash", "-c", script, "bash", path], capture_output=True,
                              env=env, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    items = (item.decode("utf-8", "replace").partition("=") for item in proc.stdout.split(b"\0"))
    return {key: value for key, sep, value in items if sep and key} if not proc.returncode else None


def _which(program: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(program, path=env.get("PATH", os.defpath))


def environment_is_set(env: Mapping[str, str], runtime_only: bool) -> bool:
    return bool(_which("atc", env)) or (runtime_only and any(env.get(v) for v in RUNTIME_VARS))


def cann_environment(runtime_only: bool = False,
                     env: Mapping[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """(environment, sourced set_env.sh or None) in which the CANN tools run."""
    env = dict(os.environ if env is None else env)
    if environment_is_set(env, runtime_only):
        return env, None
    tried = set_env_candidates(env, runtime_only)
    for path in tried:
        sourced = sourced_environment(path, env)
        if sourced is not None and environment_is_set(sourced, runtime_only):
            return sourced, path
    where = f" (sourced {', '.join(tried)}, still no atc)" if tried else ""
    raise UserError(f"the CANN environment is not set: atc is not on PATH{where}; {INSTALL_HINT}")


def platform_socs(env: Mapping[str, str]) -> set[str]:
    """soc_version names the toolkit has platform_config files for (empty if not found)."""
    homes = [env.get(v) for v in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")]
    atc = _which("atc", env)
    if atc:  # <toolkit>/latest/bin/atc or <toolkit>/latest/<arch>-linux/bin/atc
        homes.append(os.path.dirname(os.path.dirname(os.path.realpath(atc))))
    return {os.path.splitext(os.path.basename(ini))[0] for home in filter(None, homes)
            for pattern in ("*/data/platform_config/*.ini", "data/platform_config/*.ini",
                            "*/*/data/platform_config/*.ini")
            for ini in glob.glob(os.path.join(home, pattern))}


# atc's `_<os>_<arch>.om` names (--host_env_os, --host_env_cpu): an os word without `_`, then
# an architecture; `<base>_aipp.om` or `<base>_aipp_linux_x86_64.om` are not `<base>`'s.
OS_ARCH_SUFFIX = re.compile(r"_[A-Za-z]+_(x86_64|aarch64|arm64|arm|x86)\.om")


def om_variants(base: str) -> list[str]:
    """The `<base>_<os>_<arch>.om` files atc may have written for --output=base."""
    folder, name = os.path.split(base)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return []
    return [os.path.join(folder, entry) for entry in entries
            if entry.startswith(name) and OS_ARCH_SUFFIX.fullmatch(entry[len(name):])]


def remove_om(base: str) -> None:
    """Delete this artefact's own names (before atc writes it again), and nothing else."""
    for path in [base + ".om", base + ".om.json", *om_variants(base)]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def record_om(base: str, soc: str, onnx: str | None = None,
              batch: int | None = None) -> dict[str, Any]:
    """Rename what atc wrote for --output=base to base.om and record the chip beside it."""
    target = base + ".om"
    if not os.path.isfile(target):
        variants = sorted(om_variants(base), key=os.path.getmtime)
        if not variants:
            raise UserError(f"atc reported success but wrote neither {target} nor "
                            f"{base}_<os>_<arch>.om")
        os.replace(variants[-1], target)
    record = {"soc_version": soc, "om": os.path.basename(target), "batch_size": batch,
              "onnx": onnx, "onnx_sha256": sha256_file(onnx) if onnx else None,
              "om_sha256": sha256_file(target)}
    atomic_write(target + ".json", json.dumps(record, indent=2) + "\n")
    return record


def check_om(om: str, soc: str | None) -> None:
    """Stop unless `om` exists and its record says it was built for `soc`."""
    if not os.path.isfile(om):
        raise UserError(f"{om}: no such .om; run make again to compile it")
    try:
        with open(om + ".json", encoding="utf-8") as handle:
            built_for = json.load(handle).get("soc_version")
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{om}: no record of the chip it was built for ({om}.json); "
                        "delete the .om and run make again to compile it here") from None
    if built_for != soc:
        raise UserError(f"{om} was built for {built_for}, not SOC={soc}; delete it and run "
                        f"make again (the path names the chip, so the .om was moved by hand)")


def host_device(device: int | str, env: Mapping[str, str] | None = None) -> int:
    """npu-smi's id of ACL's `device`: the same on a host; in a container given one NPU (ACL id
    0), the host's id, NPUZOO_HOST_DEVICE (set by mk/docker.mk)."""
    value = (os.environ if env is None else env).get("NPUZOO_HOST_DEVICE", "")
    return int(value) if value.isdigit() else int(device)


def described_device(device: int | str, env: Mapping[str, str] | None = None) -> str:
    """The host's id of `device` (as DEVICE and npu-smi name it), and ACL's in a container."""
    if not str(device).isdigit():
        return str(device)
    host = host_device(device, env)
    return f"{host}" + (f" (device {device} in the container)" if host != int(device) else "")


def check_device_chip(soc: str, device: int, env: Mapping[str, str]) -> None:
    """Where npu-smi answers, the chip of DEVICE (host_device) must be `soc`. SOC was given
    explicitly, so an npu-smi that cannot tell (fails, needs root, no DEVICE) only warns."""
    if not socs.find_npu_smi(env):
        return
    name = f"DEVICE={described_device(device, env)}"
    try:
        found = socs.detect(host_device(device, env), env=env)
    except UserError as err:
        print(f"warning: not checking that {name} is an {soc}: "
              f"{str(err).split('; pass SOC=')[0]}", file=sys.stderr, flush=True)
        return
    if found != soc:
        raise UserError(f"{name} is an {found} (npu-smi info) but SOC={soc}: an .om built for "
                        f"{soc} does not run there; use SOC={found} or SOC=auto")


def ais_bench_module(command: list[str]) -> tuple[str, str] | None:
    """(python, module) when `command` is `<python> -m <module> ...`, else None."""
    return (command[0], command[2]) if len(command) >= 3 and command[1] == "-m" else None


def check_module(python: str, module: str, env: Mapping[str, str]) -> None:
    probe = ("import importlib.util, sys; "
             f"sys.exit(importlib.util.find_spec({module + '.infer'!r}) is None)")
    if subprocess.run([python, "-c", probe], env=env, capture_output=True).returncode != 0:
        raise UserError(f"`{python} -m {module}` is not the ais_bench inference tool here (no "
                        f"{module}.infer module for {python}); {AIS_BENCH_HINT}")


def relative_roots(command: list[str], origin: str) -> list[str]:
    """Top-level entries of `origin` that the command's relative path arguments start with
    (`--model=build/x.onnx` -> build; `--input a,b` looks at each of a and b)."""
    names = []
    for word in command[3:] if ais_bench_module(command) else command[1:]:
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        for part in value.split(","):  # an empty or absolute part gives "." or ""
            first = os.path.normpath(part).split(os.sep)[0]
            if (first not in ("", ".", "..") and first not in names
                    and os.path.lexists(os.path.join(origin, first))):
                names.append(first)
    return names


def prepare_workdir(folder: str, command: list[str]) -> str:
    """The scratch folder `folder` (absolute), with relative links for relative_roots."""
    origin = os.getcwd()
    folder = os.path.join(origin, folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError(f"{folder}: cannot create the scratch folder ({err.strerror})") from None
    real = os.path.realpath(folder)
    for name in relative_roots(command, origin):
        link = os.path.join(folder, name)
        if os.path.lexists(link) and not os.path.islink(link):
            raise UserError(f"{link}: in the way of the link to {name}/ that the tool needs "
                            "there; remove it")
        replace_link(os.path.relpath(os.path.realpath(os.path.join(origin, name)), real), link)
    return folder


# What the ait front end accepts (its infer/path_security_check.py): characters, lengths, and the
# permission bits a file it reads (READ_DENIED) or a folder it writes (WRITE_DENIED) must not have.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]{1,4096}")
READ_DENIED = stat.S_IWGRP | stat.S_IWOTH
WRITE_DENIED = stat.S_IWGRP | stat.S_IRWXO
PATH_FLAGS = {"--model": "read", "-m": "read", "--input": "read", "-i": "read",
              "--output": "write", "-o": "write", "--output_dirname": "write"}


def handed_paths(argv: list[str]) -> list[tuple[str, str, str]]:
    """[(flag, path, 'read' | 'write')] of an ais_bench argument list (`--input a,b`: both)."""
    found = []
    for index, word in enumerate(argv):
        flag, sep, value = word.partition("=")
        if flag not in PATH_FLAGS or not (sep or index + 1 < len(argv)):
            continue
        value = value if sep else argv[index + 1]
        parts = value.split(",") if flag in ("--input", "-i") else [value]
        found += [(flag, part, PATH_FLAGS[flag]) for part in parts if part]
    return found


def _set_mode(cwd: str, path: str, denied: int, what: str) -> None:
    """Clear the `denied` bits of `path` (ours, from `cwd`); a link is refused."""
    full = os.path.join(cwd, path)
    info = os.lstat(full)
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"{path}: a symbolic link, which ais_bench refuses as {what}; "
                        "delete it and run make again")
    if stat.S_IMODE(info.st_mode) & denied:
        try:
            os.chmod(full, stat.S_IMODE(info.st_mode) & ~denied)
        except OSError as err:
            raise UserError(f"{path}: cannot set the mode ais_bench requires of {what} "
                            f"({err.strerror}); it must belong to you") from None


def hand_over(argv: list[str], cwd: str | None = None) -> None:
    """Make the paths of an ais_bench argument list pass the ait front end's checks, whatever
    the umask they were made under: plain characters (else UserError), no links, the model and
    inputs (an input folder's every entry too) not group/other-writable, an existing output
    folder at most 0750. Relative paths are taken from `cwd`, where ais_bench runs."""
    cwd = cwd or "."
    for flag, path, use in handed_paths(argv):
        if not PLAIN_PATH.fullmatch(path) or any(len(p) > 255 for p in path.split("/")):
            raise UserError(f"{flag} {path}: ais_bench (the ait front end) takes only the "
                            "characters A-Za-z0-9_-/. in a path (255 per name); use such a path")
        full = os.path.join(cwd, path)
        if use == "write" and os.path.lexists(full):
            _set_mode(cwd, path, WRITE_DENIED, f"its {flag} folder")
        elif use == "read" and os.path.exists(full):  # else the tool says what is missing
            _set_mode(cwd, path, READ_DENIED, f"its {flag}")
            if flag in ("--input", "-i") and os.path.isdir(full):
                for entry in os.listdir(full):
                    _set_mode(cwd, os.path.join(path, entry), READ_DENIED,
                              f"a file of its {flag} folder")


def run_tool(command: list[str], soc: str | None = None, om: str | None = None,
             device: int | None = None, cwd: str | None = None) -> None:
    """Run an atc or ais_bench command in the CANN environment after the checks (in `cwd`)."""
    if not command:
        raise UserError("no command given after --")
    is_atc = os.path.basename(command[0]) == "atc"
    env, _ = cann_environment(runtime_only=not is_atc)
    if not _which(command[0], env) and not os.path.isfile(command[0]):
        raise UserError(f"{command[0]}: not found on PATH after setting up CANN; "
                        + (INSTALL_HINT if is_atc else AIS_BENCH_HINT))
    known = platform_socs(env) if soc and is_atc else set()
    if known and soc not in known:
        raise UserError(f"SOC={soc}: this CANN toolkit has no platform file for {soc}, so atc "
                        f"cannot compile for it; it knows {', '.join(sorted(known))}")
    if om:
        check_om(om, soc)
    if device is not None and soc:
        check_device_chip(soc, device, env)
    module = ais_bench_module(command)
    if module:
        check_module(*module, env)
    workdir = prepare_workdir(cwd, command) if cwd else None
    if module:
        hand_over(command[3:], workdir)
    if workdir and not os.path.isabs(command[0]) and os.sep in command[0]:
        command = [os.path.abspath(command[0]), *command[1:]]
    try:
        status = subprocess.call(command, env=env, cwd=workdir)
    except OSError as err:
        raise UserError(f"{command[0]}: cannot run it ({err.strerror})") from None
    if status != 0:
        what = "atc" if is_atc else " ".join(command[:3] if module else command[:1])
        hint = f"; check that this CANN toolkit supports {soc}" if is_atc and soc else ""
        raise UserError(f"{what} failed{f' for SOC={soc}' if soc else ''} (exit status {status}); "
                        f"its messages are above{hint}")


def _key_value(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            name, sep, value = line.partition("=")
            if sep and name.strip().lower() == key:
                return value.strip().strip('"')
    return None


def toolkit_version(env: Mapping[str, str]) -> str | None:
    homes = [env.get("ASCEND_TOOLKIT_HOME"), env.get("ASCEND_HOME_PATH"),
             os.path.join(ascend_root(env), "ascend-toolkit", "latest"),
             os.path.join(ascend_root(env), "cann")]
    infos = [info for home in filter(None, homes)
             for info in sorted(glob.glob(os.path.join(home, "*", "ascend_toolkit_install.info")))
             + glob.glob(os.path.join(home, "ascend_toolkit_install.info"))]
    return next(filter(None, (_key_value(info, "version") for info in infos)), None)


# The ait front end has infer/args_check.py; a build this project was tested with is named by
# the sha256 of its infer/__main__.py (../shared/third_party: tools 9d6da90, ait 3baadae7).
KNOWN_FRONTENDS = {
    "ac6f77b4dc4ae28427891d86250b9dab7e4fa90c2bc0471b73fb0b591f4f13c2": "tools 9d6da90",
    "094168b3f3dfd58280210989e14a4893dbd80710d53bef4b7f079f8c8c3a5217": "ait 3baadae7",
}
# Runs in the python of ais_bench (3.7 and later), importing neither package.
INSTALL_PROBE = r"""
import hashlib, importlib.util, json, os
try:
    from importlib import metadata
    def version(name):
        try: return metadata.version(name)
        except metadata.PackageNotFoundError: return None
except ImportError:
    import pkg_resources
    def version(name):
        try: return pkg_resources.get_distribution(name).version
        except Exception: return None
def spec(name):
    try: return importlib.util.find_spec(name)
    except (ImportError, ValueError): return None
found = {"ais_bench": version("ais_bench"), "aclruntime": version("aclruntime")}
front = spec("ais_bench")
for folder in (front and front.submodule_search_locations) or []:
    main = os.path.join(folder, "infer", "__main__.py")
    if os.path.isfile(main):
        with open(main, "rb") as handle:
            found["frontend_sha256"] = hashlib.sha256(handle.read()).hexdigest()
        found["ait"] = os.path.isfile(os.path.join(folder, "infer", "args_check.py"))
        break
backend = spec("aclruntime")
found["aclruntime_file"] = os.path.basename(backend.origin) if backend and backend.origin else None
print(json.dumps(found))
"""


def ais_bench_install(python: str, env: Mapping[str, str]) -> dict[str, Any]:
    """What `python -m ais_bench` runs: versions, front end fingerprint, aclruntime's file."""
    try:
        proc = subprocess.run([python, "-c", INSTALL_PROBE], capture_output=True, text=True,
                              env=env, timeout=60)
        return dict(json.loads(proc.stdout))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError):
        return {}


def frontend_label(install: dict[str, Any]) -> str | None:
    """`0.0.2 (ait 3baadae7)`: the version and which front end; None without one."""
    if "frontend_sha256" not in install:
        return install.get("ais_bench")
    which = KNOWN_FRONTENDS.get(install["frontend_sha256"]) or (
        f"{'ait' if install.get('ait') else 'tools'} front end, unknown build "
        f"{install['frontend_sha256'][:12]}")
    return f"{install.get('ais_bench') or 'no version'} ({which})"


def aclruntime_label(install: dict[str, Any]) -> str | None:
    """`0.0.2 (cpython-311-x86_64-linux-gnu)`: the version and the build of the extension
    module; a module in Python source is no build of the real backend (the tests' stand-in)."""
    version, name = install.get("aclruntime"), install.get("aclruntime_file")
    if not name:
        return version
    build = (name.split(".", 1)[1].rsplit(".", 1)[0] if name.endswith(".so") and "." in name[:-3]
             else "Python source: a stand-in, not the compiled backend")
    return f"{version or 'no version'} ({build})"


def describe(soc: str, device: int | str, ais_bench_command: str) -> dict[str, Any]:
    """The backend/device/environment entries of an Ascend report."""
    try:
        env, _ = cann_environment(runtime_only=True)
    except UserError:
        env = dict(os.environ)
    module = ais_bench_module(shlex.split(ais_bench_command))
    install = ais_bench_install(module[0], env) if module else {}
    try:
        found = re.search(r"Version:\s*(\S+)", socs.npu_smi(["info"], env)
                          if socs.find_npu_smi(env) else "")
    except UserError:
        found = None
    npu_smi = found.group(1) if found else None
    environment: dict[str, Any] = socs.package_versions(
        ("torch", "torchvision", "onnx", "numpy", "pillow"))
    environment.update({"cann_toolkit": toolkit_version(env),
                        # <root>/driver/version.info, else the version in npu-smi's header
                        "driver": _key_value(os.path.join(ascend_root(env), "driver",
                                                          "version.info"), "version") or npu_smi,
                        "npu_smi": npu_smi,
                        "ais_bench": frontend_label(install),
                        "aclruntime": aclruntime_label(install)})
    return {
        "backend": {"name": "ais_bench", "version": install.get("ais_bench"),
                    "frontend": environment["ais_bench"],
                    "command": ais_bench_command, "compiler": "atc",
                    "cann_toolkit": environment["cann_toolkit"]},
        "device": f"{soc} NPU, device {described_device(device, env)}"
                  + (f" (npu-smi {npu_smi})" if npu_smi else ""),
        "environment": environment,
    }


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.ascend",
                                     description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run `-- <atc or ais_bench command>` after the checks")
    run.add_argument("--soc", help="chip the command compiles for or runs on")
    run.add_argument("--om", help="the .om an ais_bench run uses (its chip record is checked)")
    run.add_argument("--device", type=int, help="NPU the run uses (checked with npu-smi)")
    run.add_argument("--cwd", help="scratch folder to run in, linked to what its paths name")
    run.add_argument("tool", nargs=argparse.REMAINDER)
    rec = sub.add_parser("record-om", help="name atc's output BASE.om and record its chip")
    rec.add_argument("base", help="the --output given to atc")
    rec.add_argument("--soc", required=True)
    rec.add_argument("--onnx")
    rec.add_argument("--bs", type=int)
    rem = sub.add_parser("remove-om", help="delete BASE.om, its record and BASE_<os>_<arch>.om")
    rem.add_argument("base", help="the --output given to atc")
    desc = sub.add_parser("describe", help="write the backend JSON for `report write --extra`")
    desc.add_argument("--soc", required=True)
    desc.add_argument("--device", default="0")
    desc.add_argument("--ais-bench", default="python3 -m ais_bench")
    desc.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    if args.command == "run":
        tool = args.tool[1:] if args.tool[:1] == ["--"] else args.tool
        run_tool(tool, soc=args.soc, om=args.om, device=args.device, cwd=args.cwd)
    elif args.command == "remove-om":
        remove_om(args.base)
    elif args.command == "record-om":
        record_om(args.base, args.soc, args.onnx, args.bs)
        print(f"compiled {args.base}.om for {args.soc}")
    else:
        atomic_write(args.out, json.dumps(describe(args.soc, args.device, args.ais_bench),
                                          indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
