"""Which chip a run targets: `cpu`, an Ascend `--soc_version`, or `auto` (read npu-smi).

`auto` parses `npu-smi info` (ais_bench_contract.md §9): the Name column of each chip row,
e.g. `310P3`, becomes `Ascend310P3`; no npu-smi on PATH means `cpu`.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess

from npuzoo.errors import UserError, cli

# soc_version values ATC accepts for the inference chips these guides target.
KNOWN_ASCEND = (
    "Ascend310", "Ascend310P1", "Ascend310P3", "Ascend310B1", "Ascend310B4",
    "Ascend910", "Ascend910A", "Ascend910B", "Ascend910ProB", "Ascend910PremiumA",
    "Ascend910B1", "Ascend910B2", "Ascend910B3", "Ascend910B4",
)
KNOWN = ("cpu",) + KNOWN_ASCEND

NPU_SMI_CHIP_ROW = re.compile(r"^\|\s*(\d+)\s+(\w+)\s+\|\s*(OK|Warning|Alarm|Critical)\b")
# The second row of each pair: `| Chip  Device | Bus-Id | ...`; Device is the logical id that
# ais_bench --device and ACL take (it differs from the NPU id on multi-chip cards).
NPU_SMI_DEVICE_ROW = re.compile(r"^\|\s*(\d+)\s+(\d+)\s+\|\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:")


def parse_npu_smi(text):
    """[(npu id, soc_version)] from `npu-smi info` output."""
    chips = []
    for line in text.splitlines():
        match = NPU_SMI_CHIP_ROW.match(line.strip())
        if match:
            chips.append((int(match.group(1)), "Ascend" + match.group(2)))
    return chips


def parse_npu_smi_devices(text):
    """{logical device id: soc_version} from the Chip/Device rows under each NPU row."""
    devices, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        chip = NPU_SMI_CHIP_ROW.match(line)
        if chip:
            current = "Ascend" + chip.group(2)
            continue
        row = NPU_SMI_DEVICE_ROW.match(line)
        if row and current:
            devices[int(row.group(2))] = current
    return devices


def detect(device=0, env=None):
    """The soc_version of device `device` as npu-smi reports it, or `cpu` without npu-smi.

    `device` is the logical id of ais_bench --device (the Device column of npu-smi's second
    row); where npu-smi shows no such column, the NPU id of the first row. `env`: the
    environment to find and run npu-smi in (default: this process's).
    """
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    npu_smi = shutil.which("npu-smi", path=path)
    if not npu_smi:
        return "cpu"
    try:
        text = subprocess.run([npu_smi, "info"], capture_output=True, text=True, env=env,
                              check=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError) as err:
        raise UserError(f"npu-smi info failed ({err}); pass SOC=<chip> explicitly") from None
    chips = parse_npu_smi(text)
    if not chips:
        raise UserError("npu-smi info lists no chip rows; pass SOC=<chip> explicitly")
    devices = parse_npu_smi_devices(text)
    if device in devices:
        return devices[device]
    for npu_id, soc in chips:
        if npu_id == device:
            return soc
    raise UserError(f"DEVICE={device}: npu-smi lists NPUs {[n for n, _ in chips]}; "
                    "pick one of them")


def resolve(soc, device=0):
    """Check SOC and turn `auto` into a concrete chip."""
    if soc == "auto":
        soc = detect(device)
    if soc not in KNOWN:
        raise UserError(f"SOC={soc}: unknown chip; use cpu, auto, or one of "
                        + ", ".join(KNOWN_ASCEND))
    return soc


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


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.soc",
                                     description="Resolve the SOC Make variable.")
    parser.add_argument("command", choices=["resolve"])
    parser.add_argument("soc")
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args(argv)
    print(resolve(args.soc, args.device))


if __name__ == "__main__":
    main()
