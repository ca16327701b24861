"""Older stand-in for `python3 -m ais_bench` (G2 as of T23, ais_bench_contract.md §2-§5).

Superseded: tests/test_ascend.py runs the unmodified front end (../shared/third_party/
ais_bench-9d6da90) on the aclruntime stand-in in tests/standins/acl/, so that a difference
between npuzoo.bench and the tool fails a test. This package is found only by a test that puts
tests/standins itself on PYTHONPATH (tests/test_aipp.py's end to end); it checks npuzoo.bench
against itself and can go once no test does that.

The command line, input batching, output files, summary JSON and printed summary block are those
of npuzoo.bench, which implements the same contract on ONNX Runtime; this stand-in adds what
only an NPU host does: it loads a `.om` (the stand-in atc's container) and refuses one built for
another chip than the device's (NPUZOO_STANDIN_CHIP), a device id that does not exist
(NPUZOO_STANDIN_NPUS), and a --dymBatch the .om was not compiled for. The model run is the ONNX
model inside the .om, so outputs are real.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import _standin  # noqa: E402

_standin.use_repo()
from npuzoo import bench  # noqa: E402
from npuzoo.errors import UserError, cli  # noqa: E402


def load_om(path):
    if not os.path.isfile(path):
        raise UserError("model file not found: {}".format(path))
    found = _standin.read_om(path)
    if found is None:
        raise UserError("{}: aclmdlLoadFromFile failed: not an offline model (.om) built by atc"
                        .format(path))
    return found


def check_device(header, args, path):
    devices = args.device if isinstance(args.device, list) else [args.device]
    running = "Ascend" + _standin.chip()
    for device in devices:
        if device >= _standin.npu_count():
            raise UserError("aclrtSetDevice({}) failed: there are {} NPUs (device ids 0-{})"
                            .format(device, _standin.npu_count(), _standin.npu_count() - 1))
    if header["soc_version"] != running:
        raise UserError("{}: aclmdlLoadFromFile failed: the om was built with --soc_version={} "
                        "but device {} is an {}".format(path, header["soc_version"], devices[0],
                                                         running))
    profiles = header.get("dynamic_batch_size")
    if args.dymBatch and not profiles:
        raise UserError("--dymBatch {}: {} has a static batch; compile it with "
                        "--dynamic_batch_size".format(args.dymBatch, path))
    if profiles and args.dymBatch and args.dymBatch not in profiles:
        raise UserError("--dymBatch {} is not one of the om's batch sizes {}".format(
            args.dymBatch, profiles))
    if profiles and not args.dymBatch:
        raise UserError("{} has a dynamic batch {}; give --dymBatch".format(path, profiles))


@cli
def main():
    _standin.log_call("ais_bench", sys.argv[1:])
    args = bench.parse_args(sys.argv[1:], prog="python3 -m ais_bench")
    header, offset = load_om(args.model)
    check_device(header, args, args.model)
    with tempfile.TemporaryDirectory(prefix="standin-om-") as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        with open(args.model, "rb") as src, open(onnx_path, "wb") as dst:
            src.seek(offset)
            while True:
                block = src.read(1 << 22)
                if not block:
                    break
                dst.write(block)
        original = bench.open_session
        om = args.model

        def open_om(model_path, threads):
            return original(onnx_path if model_path == om else model_path, threads)

        bench.open_session = open_om
        bench.run(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
