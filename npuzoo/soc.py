"""Which chip a run targets: `cpu`, an Ascend `--soc_version`, or `auto` (read npu-smi).

Names. ATC's `--soc_version` is `Ascend` + the Name column of `npu-smi info`
(docs/ais_bench_compatibility.md, "SOC names and npu-smi"). Any name of the documented shape is
accepted (ASCEND_SHAPE); whether this toolkit can compile for it is the toolkit's
platform_config (npuzoo.ascend) or atc itself to say:

    Ascend310                 Atlas 200/300/500 (one 310 per device; four on an Atlas 300I card)
    Ascend310P<d>             Atlas 300I Pro/Duo, 300V (310P1, 310P3, 310P5, 310P7, ...)
    Ascend310B<d>             Atlas 200I/500 A2 (310B1..310B4)
    Ascend910, Ascend910A, Ascend910B, Ascend910ProA, Ascend910ProB, Ascend910PremiumA
    Ascend910B<d>             Atlas 800/900 A2 (910B1..910B4)
    Ascend910B<d>C            e.g. Ascend910B2C
    Ascend910B<d>-<d>         e.g. Ascend910B4-1
    Ascend910_93<dd>          Atlas A3 (Ascend910_9391, _9392, _9381, _9382, _9372, _9362, ...)

`auto` (SOC=auto only: with an explicit SOC nothing here runs npu-smi) parses the `npu-smi info`
table (parse_table) of every generation listed in tests/fixtures/npu-smi/:

- a chip row `| <NPU id>  <Name> | <Health> | ...` then, per chip, a second row
  `| <Chip>  <Device> | <Bus-Id> | ...` (310, 310P3, 310B4 whose Bus-Id is `NA`), or
  `| <Chip> | <Bus-Id> | ...` without a Device column (910B), or `| <Chip> <Phy-ID> | ...`
  (Atlas A3, whose chip rows repeat the NPU id once per chip);
- the Name column is `310P3`, `910B4-1`, ... (soc_version `Ascend` + Name) or, on Atlas A3,
  `Ascend910`: that one is not a soc_version; `npu-smi info -t board -i <NPU> -c <Chip>` gives
  `Chip Name` and `NPU Name`, and the soc_version is `<Chip Name>_<NPU Name>` (Ascend910_9392).

DEVICE is the logical id ais_bench `--device` and ACL take. Where the table has a Device
column, DEVICE is the chip whose Device equals it; without one (910B, A3) devices are numbered
0, 1, ... over the chips in the order npu-smi lists them, which is how ACL numbers the visible
chips, so DEVICE=0 is the first chip listed even when NPU 0 is absent.

npu-smi is looked for on PATH, then in /usr/local/sbin and /usr/local/bin (310B hosts keep it
in /usr/local/sbin, which is not on a user's PATH); none means `auto` is `cpu`.

The device node. DEVICE (a Chip Logic ID) is not always the N of the host's /dev/davinci<N>,
the chip's physical id: on a host without NPU 0, logical 0 is /dev/davinci4. RUNNER=docker
passes the node, so `device-node` maps DEVICE to it from `npu-smi info -m` (rows `NPU ID  Chip
ID  Chip Logic ID  [Chip Phy-ID]  Chip Name`; a `-` logic id is no compute chip, e.g. `Mcu`):
the Chip Phy-ID column where npu-smi prints one; otherwise the driver numbers logical ids in
the order of the physical ones, so logical k is the k-th /dev/davinci<N> present, provided the
nodes present are as many as the compute chips listed. Anything else is refused in one line.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess

from npuzoo.errors import UserError, cli

# The documented shapes of soc_version names (module docstring). Anything else is refused in
# one line before any tool runs; a name of this shape that the toolkit lacks is refused by
# npuzoo.ascend (platform_config) or by atc.
ASCEND_SHAPE = re.compile(
    r"^Ascend(310|310P\d|310B\d|910|910A|910B|910ProA|910ProB|910PremiumA"
    r"|910B\d|910B\dC|910B\d-\d|910_93\d\d)$")
SHAPE_EXAMPLES = ("Ascend310, Ascend310P3, Ascend310B4, Ascend910B3, Ascend910B4-1, "
                  "Ascend910B2C, Ascend910_9392")
NPU_SMI_FALLBACK_DIRS = ("/usr/local/sbin", "/usr/local/bin")

# `| 0       310P3     | OK     | ...`: NPU id, Name, Health (any word: OK, Warning, Alarm, ...).
NPU_SMI_CHIP_ROW = re.compile(
    r"^\|\s*(\d+)\s+((?:Ascend)?\d{3}[0-9A-Za-z_-]*)\s+\|\s*([A-Za-z]+)\s*\|")
# The second row: `| Chip  Device | Bus-Id | ...`, `| Chip | Bus-Id |` or `| Chip Phy-ID | ...`.
NPU_SMI_DEVICE_ROW = re.compile(
    r"^\|\s*(\d+)(?:\s+(\d+))?\s+\|\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d|NA)\s*\|")
# The header of the second row names its second column, if any.
NPU_SMI_HEADER = re.compile(r"^\|\s*Chip(?:\s+(Device|Phy-ID))?\s+\|\s*Bus-Id")


def is_ascend_name(soc):
    return bool(ASCEND_SHAPE.match(soc or ""))


def soc_version(name):
    """The soc_version of a Name column: `310P3` -> `Ascend310P3`; `Ascend910` stays."""
    return name if name.startswith("Ascend") else "Ascend" + name


def needs_board_query(name):
    """An Atlas A3 Name (`Ascend910`, already prefixed) is the chip family, not a soc_version."""
    return name.startswith("Ascend") and not is_ascend_name(name) or name == "Ascend910"


def parse_table(text):
    """The chips of an `npu-smi info` table, in the order listed: a list of dicts with
    npu (NPU id), name (Name column), chip (Chip column or None), device (the logical id)
    and column (the second row's second column: "Device", "Phy-ID" or None)."""
    column = None
    chips, pending = [], None

    def flush():
        if pending is not None and not pending["used"]:
            chips.append({"npu": pending["npu"], "name": pending["name"], "chip": None,
                          "second": None})

    for raw in text.splitlines():
        line = raw.strip()
        header = NPU_SMI_HEADER.match(line)
        if header:
            column = header.group(1)
            continue
        row = NPU_SMI_CHIP_ROW.match(line)
        if row:
            flush()
            pending = {"npu": int(row.group(1)), "name": row.group(2), "used": False}
            continue
        second = NPU_SMI_DEVICE_ROW.match(line)
        if second and pending is not None:
            chips.append({"npu": pending["npu"], "name": pending["name"],
                          "chip": int(second.group(1)),
                          "second": int(second.group(2)) if second.group(2) else None})
            pending["used"] = True
    flush()
    by_device = column == "Device" and chips and all(c["second"] is not None for c in chips)
    for index, chip in enumerate(chips):
        chip["device"] = chip.pop("second") if by_device else index
        chip["column"] = column
        if not by_device:
            chip.pop("second", None)
    return chips


def parse_npu_smi(text):
    """[(npu id, soc_version from the Name column)], one per chip listed."""
    return [(c["npu"], soc_version(c["name"])) for c in parse_table(text)]


def parse_npu_smi_devices(text):
    """{logical device id: soc_version from the Name column}."""
    return {c["device"]: soc_version(c["name"]) for c in parse_table(text)}


def parse_board(text):
    """soc_version from `npu-smi info -t board -i N -c C`: `<Chip Name>_<NPU Name>` where an
    NPU Name is given (Atlas A3), else `Ascend` + Chip Name; None when there is no Chip Name."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    chip = info.get("Chip Name")
    if not chip:
        return None
    chip = soc_version(chip)
    npu = info.get("NPU Name")
    return f"{chip}_{npu}" if npu else chip


# -- running npu-smi ------------------------------------------------------------------------------

def find_npu_smi(env=None):
    """npu-smi on PATH, else in NPU_SMI_FALLBACK_DIRS; None when there is none."""
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which("npu-smi", path=path)
    if found:
        return found
    return shutil.which("npu-smi", path=os.pathsep.join(NPU_SMI_FALLBACK_DIRS))


def npu_smi(args, env=None, npu_smi_path=None):
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


def chip_of_device(chips, device):
    """The chip (parse_table entry) ACL calls `device`, or UserError naming the devices listed."""
    for chip in chips:
        if chip["device"] == device:
            return chip
    listed = ", ".join(str(c["device"]) for c in chips)
    how = ("the Device column" if chips and chips[0]["column"] == "Device"
           else "its chips in order (no Device column)")
    raise UserError(f"DEVICE={device}: npu-smi info lists devices {listed} ({how}); "
                    "pick one of them")


def detect(device=0, env=None):
    """The soc_version of device `device` as npu-smi reports it, or `cpu` without npu-smi.

    `env`: the environment to find and run npu-smi in (default: this process's). Every failure
    (npu-smi failing, no chip rows, no such device, an A3 board query failing) is a UserError
    of one line.
    """
    path = find_npu_smi(env)
    if not path:
        return "cpu"
    hint = "; pass SOC=<chip> explicitly (e.g. SOC=Ascend310P3)"
    try:
        chips = parse_table(npu_smi(["info"], env, path))
    except UserError as err:
        raise UserError(f"{err}{hint}") from None
    if not chips:
        raise UserError("npu-smi info lists no chip rows" + hint)
    chip = chip_of_device(chips, device)
    if not needs_board_query(chip["name"]):
        return soc_version(chip["name"])
    board = ["info", "-t", "board", "-i", str(chip["npu"]), "-c", str(chip["chip"] or 0)]
    try:
        found = parse_board(npu_smi(board, env, path))
    except UserError as err:
        raise UserError(f"DEVICE={device} is an {chip['name']} (Atlas A3), whose soc_version "
                        f"only the board query gives: {err}{hint}") from None
    if not found:
        raise UserError(f"npu-smi {' '.join(board)} shows no Chip Name for DEVICE={device}"
                        + hint)
    return found


# `npu-smi info -m`: its header names the columns; a row is NPU ID, Chip ID, Chip Logic ID
# (digits or `-`), Chip Phy-ID where the header has it, then the Chip Name (may hold spaces).
NPU_SMI_MAP_HEADER = re.compile(r"^\s*NPU ID\s+Chip ID\s+Chip Logic ID\s+(Chip Phy-ID\s+)?Chip Name")
DAVINCI_NODE = re.compile(r"davinci(\d+)")


def parse_chip_map(text: str) -> list[dict]:
    """The compute chips of `npu-smi info -m`: dicts npu, chip, logic, phy (None without the
    Chip Phy-ID column), name; rows whose logic id is not a number (Mcu) left out."""
    chips, has_phy = [], None
    for line in text.splitlines():
        header = NPU_SMI_MAP_HEADER.match(line)
        if header:
            has_phy = bool(header.group(1))
            continue
        fields = line.split()
        width = 4 if has_phy else 3
        if has_phy is None or len(fields) <= width or not all(f.isdigit() for f in fields[:2]):
            continue
        if fields[2].isdigit() and (not has_phy or fields[3].isdigit()):
            chips.append({"npu": int(fields[0]), "chip": int(fields[1]), "logic": int(fields[2]),
                          "phy": int(fields[3]) if has_phy else None,
                          "name": " ".join(fields[width:])})
    return chips


def device_node(device: int, map_text: str, nodes: list[int]) -> int:
    """N of the /dev/davinci<N> of Chip Logic ID `device` (module docstring, "The device node"),
    from `npu-smi info -m`'s text and the davinci numbers present on the host."""
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
    nodes = sorted(nodes)
    if len(nodes) != len(chips) or sorted(c["logic"] for c in chips) != list(range(len(chips))):
        raise UserError(f"DEVICE={device}: npu-smi info -m has no Chip Phy-ID column and the host "
                        f"has {len(nodes)} /dev/davinci<N> nodes for {len(chips)} chips, so the "
                        "node of this logical id is unknown; pass ASCEND_DEVICE_NODE=<N>")
    return nodes[device]


def check(soc: str) -> str:
    """SOC itself, if `cpu`, `auto` or an Ascend name of a documented shape: the one check of
    a SOC value (npuzoo.run, npuzoo.sweep and mk/docker.mk call it)."""
    if soc not in ("cpu", "auto") and not is_ascend_name(soc):
        raise UserError(f"SOC={soc if soc.isprintable() else repr(soc)}: unknown chip; use cpu, "
                        f"auto, or an Ascend --soc_version of a documented shape "
                        f"({SHAPE_EXAMPLES}, ...)")
    return soc


def resolve(soc: str, device: int = 0) -> str:
    """Check SOC and turn `auto` into a concrete chip (npu-smi runs for `auto` only)."""
    return check(detect(device) if check(soc) == "auto" else soc)


def cpu_description():
    """`<model name> (<n> cores)` from /proc/cpuinfo where it exists."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({len(os.sched_getaffinity(0))} cores)"


# The instruction-set extensions the CPU engines pick their kernels by: two CPUs of the same
# name and core count but other extensions (a VM that hides AVX-512) are other machines.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


def cpu_isa():
    """`<arch> <flags>`: the architecture and the ISA_FLAGS that /proc/cpuinfo lists."""
    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return " ".join([platform.machine()] + [f for f in ISA_FLAGS if f in flags])


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.soc",
                                     description="Resolve the SOC Make variable.")
    parser.add_argument("command", choices=["check", "resolve", "device-node"])
    parser.add_argument("soc", nargs="?", default="auto")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--root", default="", help="device-node: the host's root (ASCEND_HOST_ROOT)")
    args = parser.parse_args(argv)
    if args.command in ("check", "resolve"):
        print(check(args.soc) if args.command == "check" else resolve(args.soc, args.device))
        return
    # device-node: the davinci number of DEVICE; DEVICE itself where no npu-smi can tell.
    root = args.root.rstrip("/")
    found = [f"{root}{d}/npu-smi" for d in NPU_SMI_FALLBACK_DIRS if os.path.isfile(f"{root}{d}/npu-smi")]
    path = found[0] if found else (None if root else find_npu_smi())
    if not path:
        print(args.device)
        return
    dev = f"{root}/dev"
    nodes = [int(m.group(1)) for m in map(DAVINCI_NODE.fullmatch, os.listdir(dev)) if m] \
        if os.path.isdir(dev) else []
    print(device_node(args.device, npu_smi(["info", "-m"], npu_smi_path=path), nodes))


if __name__ == "__main__":
    main()
