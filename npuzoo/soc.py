"""Which chip a run targets: `cpu`, an Ascend `--soc_version` of a documented shape
(ASCEND_SHAPE), or `auto`: the chip of DEVICE in `npu-smi info` (an Atlas A3's Name needs the
board query), `cpu` without npu-smi. `device-node` maps DEVICE to the host's /dev/davinci<N>
from `npu-smi info -m` (docs/ais_bench_compatibility.md, "SOC names and npu-smi").
"""

import argparse
import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import TypedDict

from npuzoo.errors import UserError, cli

# The documented shapes of soc_version names; anything else is refused before any tool runs.
ASCEND_SHAPE = re.compile(
    r"^Ascend(310|310P\d|310B\d|910|910A|910B|910ProA|910ProB|910PremiumA"
    r"|910B\d|910B\dC|910B\d-\d|910_93\d\d)$")
NPU_SMI_FALLBACK_DIRS = ("/usr/local/sbin", "/usr/local/bin")
# `| 0       310P3     | OK     | ...`: NPU id, Name, Health (any word: OK, Warning, Alarm, ...).
NPU_SMI_CHIP_ROW = re.compile(
    r"^\|\s*(\d+)\s+((?:Ascend)?\d{3}[0-9A-Za-z_-]*)\s+\|\s*([A-Za-z]+)\s*\|")
# The second row: `| Chip  Device | Bus-Id | ...`, `| Chip | Bus-Id |` or `| Chip Phy-ID | ...`.
NPU_SMI_DEVICE_ROW = re.compile(
    r"^\|\s*(\d+)(?:\s+(\d+))?\s+\|\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d|NA)\s*\|")
# The header of the second row names its second column, if any.
NPU_SMI_HEADER = re.compile(r"^\|\s*Chip(?:\s+(Device|Phy-ID))?\s+\|\s*Bus-Id")
# `npu-smi info -m`: NPU ID, Chip ID, Chip Logic ID (digits or `-`), [Chip Phy-ID,] Chip Name.
NPU_SMI_MAP_HEADER = re.compile(
    r"^\s*NPU ID\s+Chip ID\s+Chip Logic ID\s+(Chip Phy-ID\s+)?Chip Name")
HINT = "; pass SOC=<chip> explicitly (e.g. SOC=Ascend310P3)"


class Chip(TypedDict):
    """A chip of `npu-smi info`: NPU id, Name column, Chip column (None without a second row),
    DEVICE (logical id) and the second row's second column ("Device", "Phy-ID" or None)."""

    npu: int
    name: str
    chip: int | None
    device: int
    column: str | None


class MappedChip(TypedDict):
    """A compute chip of `npu-smi info -m` (phy: None without the Chip Phy-ID column)."""

    npu: int
    chip: int
    logic: int
    phy: int | None
    name: str


def soc_version(name: str) -> str:
    """The soc_version of a Name column: `310P3` -> `Ascend310P3`; `Ascend910` stays."""
    return name if name.startswith("Ascend") else "Ascend" + name


def parse_table(text: str) -> list[Chip]:
    """The chips of an `npu-smi info` table, in the order listed."""
    column = None
    rows: list[tuple[int, str, int | None, int | None]] = []  # npu, name, chip, second column
    placeholder = False  # rows[-1] is a chip row's, to be replaced by its second rows
    for line in (raw.strip() for raw in text.splitlines()):
        if header := NPU_SMI_HEADER.match(line):
            column = header.group(1)
        elif row := NPU_SMI_CHIP_ROW.match(line):
            rows.append((int(row.group(1)), row.group(2), None, None))
            placeholder = True
        elif (second := NPU_SMI_DEVICE_ROW.match(line)) and rows:
            npu, name = (rows.pop() if placeholder else rows[-1])[:2]
            rows.append((npu, name, int(second.group(1)),
                         int(second.group(2)) if second.group(2) else None))
            placeholder = False
    by_device = column == "Device" and rows and all(r[3] is not None for r in rows)
    return [Chip(npu=npu, name=name, chip=chip, column=column,
                 device=second if by_device and second is not None else index)
            for index, (npu, name, chip, second) in enumerate(rows)]


def parse_board(text: str) -> str | None:
    """soc_version from `npu-smi info -t board -i N -c C`: `<Chip Name>_<NPU Name>` where an
    NPU Name is given (Atlas A3), else `Ascend` + Chip Name; None without a Chip Name."""
    info = {key.strip(): value.strip() for key, sep, value in
            (line.partition(":") for line in text.splitlines()) if sep}
    if not info.get("Chip Name"):
        return None
    chip = soc_version(info["Chip Name"])
    return f"{chip}_{info['NPU Name']}" if info.get("NPU Name") else chip


def find_npu_smi(env: Mapping[str, str] | None = None) -> str | None:
    """npu-smi on PATH, else in NPU_SMI_FALLBACK_DIRS; None when there is none."""
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    return (shutil.which("npu-smi", path=path)
            or shutil.which("npu-smi", path=os.pathsep.join(NPU_SMI_FALLBACK_DIRS)))


def npu_smi(args: list[str], env: Mapping[str, str] | None = None,
            npu_smi_path: str | None = None) -> str:
    """The standard output of `npu-smi ARGS`; UserError (one line) when it cannot run or fails."""
    command = [npu_smi_path or find_npu_smi(env) or "npu-smi", *args]
    shown = "npu-smi " + " ".join(args)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise UserError(f"{shown} failed ({err})") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"{shown} failed (exit status {proc.returncode}"
                        + (f": {why[-1].strip()}" if why else "") + ")")
    return proc.stdout


def detect(device: int = 0, env: Mapping[str, str] | None = None) -> str:
    """The soc_version of `device` by npu-smi (in `env`), `cpu` without npu-smi."""
    path = find_npu_smi(env)
    if not path:
        return "cpu"
    try:
        chips = parse_table(npu_smi(["info"], env, path))
    except UserError as err:
        raise UserError(f"{err}{HINT}") from None
    if not chips:
        raise UserError("npu-smi info lists no chip rows" + HINT)
    chip = next((chip for chip in chips if chip["device"] == device), None)
    if chip is None:
        how = ("the Device column" if chips[0]["column"] == "Device"
               else "its chips in order (no Device column)")
        raise UserError(f"DEVICE={device}: npu-smi info lists devices "
                        f"{', '.join(str(c['device']) for c in chips)} ({how}); pick one of them")
    # An Atlas A3 Name (`Ascend910`, already prefixed) is the chip family, not a soc_version.
    name = chip["name"]
    if not ((name.startswith("Ascend") and not ASCEND_SHAPE.match(name)) or name == "Ascend910"):
        return soc_version(name)
    board = ["info", "-t", "board", "-i", str(chip["npu"]), "-c", str(chip["chip"] or 0)]
    try:
        found = parse_board(npu_smi(board, env, path))
    except UserError as err:
        raise UserError(f"DEVICE={device} is an {name} (Atlas A3), whose soc_version "
                        f"only the board query gives: {err}{HINT}") from None
    if not found:
        raise UserError(f"npu-smi {' '.join(board)} shows no Chip Name for DEVICE={device}{HINT}")
    return found


def parse_chip_map(text: str) -> list[MappedChip]:
    """The compute chips of `npu-smi info -m` (rows whose logic id is no number, Mcu, left out)."""
    chips: list[MappedChip] = []
    has_phy = None
    for line in text.splitlines():
        fields, width = line.split(), 4 if has_phy else 3
        if header := NPU_SMI_MAP_HEADER.match(line):
            has_phy = bool(header.group(1))
        elif has_phy is not None and len(fields) > width and all(map(str.isdigit, fields[:width])):
                chips.append(MappedChip(npu=int(fields[0]), chip=int(fields[1]),
                                    logic=int(fields[2]), phy=int(fields[3]) if has_phy else None,
                                    name=" ".join(fields[width:])))
    return chips


def device_node(device: int, map_text: str, nodes: list[int]) -> int:
    """N of /dev/davinci<N> for Chip Logic ID `device`, by `npu-smi info -m` and the nodes."""
    chips = parse_chip_map(map_text)
    if not chips:
        raise UserError("npu-smi info -m lists no chips with a Chip Logic ID; pass "
                        "ASCEND_DEVICE_NODE=<N> for the host's /dev/davinci<N>")
    chip = next((c for c in chips if c["logic"] == device), None)
    if chip is None:
        listed = ", ".join(f"{c['logic']} (NPU {c['npu']} chip {c['chip']})" for c in chips)
        raise UserError(f"DEVICE={device}: npu-smi info -m lists Chip Logic IDs {listed}; "
                        "DEVICE is a Chip Logic ID: pick one of them")
    if chip["phy"] is not None:
        return chip["phy"]
    if len(nodes) != len(chips) or sorted(c["logic"] for c in chips) != list(range(len(chips))):
        raise UserError(f"DEVICE={device}: npu-smi info -m has no Chip Phy-ID column and the host "
                        f"has {len(nodes)} /dev/davinci<N> nodes for {len(chips)} chips, so the "
                        "node of this logical id is unknown; pass ASCEND_DEVICE_NODE=<N>")
    return sorted(nodes)[device]


def check(soc: str) -> str:
    """The one check of a SOC value (mk/docker.mk's too): `cpu`, `auto` or of ASCEND_SHAPE."""
    if soc not in ("cpu", "auto") and not ASCEND_SHAPE.match(soc):
        raise UserError(f"SOC={soc if soc.isprintable() else repr(soc)}: unknown chip; use cpu, "
                        "auto, or an Ascend --soc_version of a documented shape (Ascend310, "
                        "Ascend310P3, Ascend310B4, Ascend910B3, Ascend910B4-1, Ascend910B2C, "
                        "Ascend910_9392, ...)")
    return soc


def resolve(soc: str, device: int = 0) -> str:
    """Check SOC and turn `auto` into a concrete chip (npu-smi runs for `auto` only)."""
    return check(detect(device) if check(soc) == "auto" else soc)


def _cpuinfo(keys: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `keys`, if any."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(keys)),
                    None)
    return None


def cpu_description() -> str:
    """`<model name> (<n> cores)` from /proc/cpuinfo where it exists."""
    name = _cpuinfo(("model name",)) or platform.processor() or platform.machine()
    return f"{name} ({len(os.sched_getaffinity(0))} cores)"


# The instruction-set extensions the CPU engines pick their kernels by: two CPUs of the same
# name and core count but other extensions (a VM that hides AVX-512) are other machines.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


def cpu_isa() -> str:
    """`<arch> <flags>`: the architecture and the ISA_FLAGS that /proc/cpuinfo lists."""
    flags = set((_cpuinfo(("flags", "Features")) or "").split())
    return " ".join([platform.machine()] + [f for f in ISA_FLAGS if f in flags])


def package_version(name: str) -> str | None:
    """The installed version of a package, None when it is not installed."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(name)
    return None


def package_versions(names: tuple[str, ...] | list[str] = (
        "torch", "torchvision", "onnx", "onnxruntime", "numpy", "pillow")) -> dict[str, str | None]:
    """Python's version and the installed version of each package."""
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.soc",
                                     description="Check or resolve the SOC Make variable.")
    parser.add_argument("command", choices=["check", "resolve", "device-node"])
    parser.add_argument("soc", nargs="?", default="auto")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--root", default="", help="device-node: the host's root")
    args = parser.parse_args(argv)
    if args.command in ("check", "resolve"):
        print(check(args.soc) if args.command == "check" else resolve(args.soc, args.device))
        return
    # device-node: the davinci number of DEVICE; DEVICE itself where no npu-smi can tell.
    root = args.root.rstrip("/")
    found = [f"{root}{d}/npu-smi" for d in NPU_SMI_FALLBACK_DIRS
             if os.path.isfile(f"{root}{d}/npu-smi")]
    path = found[0] if found else (None if root else find_npu_smi())
    if not path:
        print(args.device)
        return
    dev = f"{root}/dev"
    nodes = [int(name[len("davinci"):]) for name in os.listdir(dev)
             if re.fullmatch(r"davinci\d+", name)] if os.path.isdir(dev) else []
    print(device_node(args.device, npu_smi(["info", "-m"], npu_smi_path=path), nodes))


if __name__ == "__main__":
    main()
