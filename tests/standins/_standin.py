"""Shared by the stand-ins for Ascend tools under tests/standins/: atc, npu-smi, and aclruntime
(acl/aclruntime, the backend under the unmodified ais_bench front end from ../shared/third_party,
which sits beside the repository: docs/design.md, "Beside the repository").

They enforce what docs/ais_bench_compatibility.md says ("What the aclruntime stand-in offers",
"atc", "SOC names and npu-smi") so that the Ascend path of mk/pipeline.mk can be proven on a
machine without Ascend hardware. Settings (environment variables):

- NPUZOO_STANDIN_LOG     append one JSON line {"tool", "argv", "cwd", ...} per call to this file
- NPUZOO_STANDIN_CHIP    the chip npu-smi shows and ais_bench runs on (Name column, default 310P3)
- NPUZOO_STANDIN_NPUS    how many NPUs there are (default 1; device ids 0..n-1)
- NPUZOO_STANDIN_DRIVER  driver version in npu-smi's header (default 23.0.0)
- NPUZOO_STANDIN_ATC_SOCS  comma list replacing the soc_version values the stand-in atc knows
- NPUZOO_STANDIN_ATC_SUFFIX  when set (e.g. linux_x86_64), atc writes <output>_<suffix>.om as
                             some CANN versions do, instead of <output>.om
- NPUZOO_STANDIN_NPU_SMI_TABLE / _BOARD / _FAIL  see npu-smi
- NPUZOO_STANDIN_AIT     the ait ais_bench front end's folder: under the 2023 front end, the
                         aclruntime stand-in has the paths checked by its functions (and logs
                         tool "ait-checks" when they pass)

atc, as the real one, leaves kernel_meta/ and fusion_result.json in its working directory.

The `.om` the stand-in atc writes is a container: the line `NPUZOO-STANDIN-OM 1`, one line of
JSON (chip, shapes, atc argv, source ONNX and its sha256), then the ONNX model with the
static shapes fixed, which the stand-in aclruntime runs with ONNX Runtime.
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OM_MAGIC = b"NPUZOO-STANDIN-OM 1\n"


def log_call(tool, argv, **extra):
    path = os.environ.get("NPUZOO_STANDIN_LOG")
    if path:
        entry = {"tool": tool, "argv": list(argv), "cwd": os.getcwd(), **extra}
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def chip():
    return os.environ.get("NPUZOO_STANDIN_CHIP") or "310P3"


def npu_count():
    try:
        return max(1, int(os.environ.get("NPUZOO_STANDIN_NPUS") or 1))
    except ValueError:
        return 1


def write_om(path, header, onnx_bytes):
    tmp = path + ".partial"
    with open(tmp, "wb") as handle:
        handle.write(OM_MAGIC)
        handle.write(json.dumps(header).encode() + b"\n")
        handle.write(onnx_bytes)
    os.replace(tmp, path)


def read_om(path):
    """(header, offset of the ONNX bytes), or None when `path` is not a stand-in .om."""
    with open(path, "rb") as handle:
        if handle.read(len(OM_MAGIC)) != OM_MAGIC:
            return None
        line = handle.readline()
        return json.loads(line), len(OM_MAGIC) + len(line)


def use_repo():
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
