"""The runner's command line: T23's flags, defaults and checks (values after a space or `=`,
unique prefixes, T23's str2bool taking one value), and npuzoo's flags."""

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from npuzoo import engines
from npuzoo.errors import UserError

NPUZOO_FLAGS = ("streams", "backend", "precision", "loop_seconds", "tune")  # argparse dests
UNSUPPORTED = {"profiler": "there is no Ascend profiler on CPU",   # --<dest>: why
               "dump": "there is no Ascend data dump on CPU",
               "acl_json_path": "there is no ACL on CPU",
               "dymShape_range": "run once per shape with --dymShape instead"}


def str2bool(value: str) -> bool:
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(
        f"Boolean value expected true, 1, false, 0 with case insensitive, got '{value}'")


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an integer") from None


def _at_least(low: int, word: str) -> Callable[[str], int]:
    def check(value: str) -> int:
        if integer(value) < low:
            raise argparse.ArgumentTypeError(f"{value} is an invalid {word} int value")
        return integer(value)
    return check


positive_integer, nonnegative_integer = _at_least(1, "positive"), _at_least(0, "nonnegative")


def nonnegative_float(value: str) -> float:
    try:
        fvalue = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number") from None
    if not fvalue >= 0 or math.isinf(fvalue):
        raise argparse.ArgumentTypeError(f"{value} is an invalid nonnegative number")
    return fvalue


def device_ids(value: str) -> int | list[int]:
    """An int 0-255, or a comma list of them (returned as a list)."""
    ids = [integer(text) for text in value.split(",")]
    if not all(0 <= one <= 255 for one in ids):
        raise argparse.ArgumentTypeError(
            f"device:{value} is invalid. valid value range is [0, 255]")
    return ids if "," in value else ids[0]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one UserError line, and treats aliases of one option
    (--warmup_count / --warmup-count) as one when a prefix matches both."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        found = super()._get_option_tuples(option_string)
        return list({id(option[0]): option for option in found}.values())   # one per action


def build_parser() -> argparse.ArgumentParser:
    """T23's flags, then npuzoo's: any of these given, even at its default, adds npuzoo's keys
    to the summary JSON (docs/ais_bench_compatibility.md)."""
    parser = _Parser(prog="python3 -m npuzoo.bench", description="ais_bench (G2, T23) compatible "
                     "inference runner on the CPU (ONNX Runtime or OpenVINO).")
    add = parser.add_argument

    def add_bool(*names: str, help: str) -> None:
        add(*names, type=str2bool, default=False, metavar="BOOL",
            help=help + " (yes/true/t/y/1 or no/false/f/n/0)")

    add("--model", "-m", required=True, help="path of the ONNX model (.onnx)")
    add("--input", "-i",
        help="comma list of input files, or of directories (one per model input) of .bin/.npy")
    add("--output", "-o", help="parent folder of the results; without it nothing is saved")
    add("--output_dirname",
        help="results subfolder name under --output (default: %%Y_%%m_%%d-%%H_%%M_%%S)")
    add("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"], help="output file format")
    add("--loop", "-l", type=positive_integer, default=1, help="executions per batch")
    add_bool("--debug", help="debug logging and the model I/O table")
    add("--device", "-d", type=device_ids, default=0,
        help="device id 0-255, or a comma list (run once per device, sequentially)")
    add("--dymBatch", type=integer, default=0, help="dynamic batch size")
    add("--dymHW", help='dynamic image size "h,w"')
    add("--dymDims", help='dynamic dims "name:1,600;name2:1,600"')
    add("--dymShape", help='dynamic shape "name:1,3,224,224;..."')
    add("--outputSize", help="accepted and ignored")
    add_bool("--auto_set_dymshape_mode", help="take each input's shape from its .npy")
    add_bool("--auto_set_dymdims_mode", help="take each input's shape from its .npy")
    add("--batchsize", type=positive_integer,
        help="batch size for the throughput formula (and for a dynamic batch without --dymBatch)")
    add("--pure_data_type", default="zero", choices=["zero", "random"],
        help="pure-inference input bytes")
    add_bool("--profiler", help="not supported by this runner")
    add_bool("--dump", help="not supported by this runner")
    add("--acl_json_path", help="not supported by this runner")
    add("--output_batchsize_axis", type=nonnegative_integer, default=0,
        help="axis along which outputs are split per input file")
    add("--run_mode", default="array", choices=["array", "files", "tensor", "full"],
        help="accepted; every mode runs as array")
    add_bool("--display_all_summary", help="also print H2D/D2H latencies")
    add("--warmup_count", "--warmup-count", dest="warmup_count", type=nonnegative_integer,
        default=1, help="warm-up runs on batch 0 before timing")
    add("--dymShape_range", help="not supported by this runner")
    add("--streams", type=positive_integer, help="batches in flight at once, each on a session "
        "of max(1, T // N) threads (T: NPUZOO_THREADS or the usable cores); default 1 as ais_bench")
    add("--backend", choices=list(engines.BACKENDS),
        help=f"CPU engine (default: {engines.DEFAULT_BACKEND}; onnxruntime for an .ort file)")
    add("--precision", choices=list(engines.PRECISIONS), help="what the model file is (int8: a "
        "quantised graph); checked against the graph and recorded (default: fp32, unchecked)")
    add("--loop_seconds", type=nonnegative_float, help="time-bounded loop: each batch at least "
        "--loop runs AND this many seconds from its first timed run (default 0: --loop alone)")
    add("--tune", metavar="DIR", help="choose the engine and streams by a short timing pass, "
        "cached in DIR per machine and graph (npuzoo.tune); --backend is then the one kept on a "
        "tie (int8: the only engine tried)")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.output is None and args.output_dirname is not None:
        raise UserError("parameter --output_dirname can't be used alone; "
                        "use it together with --output")
    if args.output_dirname is not None and not args.output_dirname.strip("/\\ "):
        raise UserError(f"--output_dirname '{args.output_dirname}' is not a folder name")
    for dest, why in UNSUPPORTED.items():
        if getattr(args, dest) not in (None, False):
            raise UserError(f"--{dest} is not supported by this runner (ONNX Runtime on CPU: "
                            f"{why})")
    if args.dymBatch < 0:
        raise UserError(f"--dymBatch {args.dymBatch} is invalid: give a positive batch size")
    args.no_combine_tensor_mode = bool(args.auto_set_dymshape_mode or args.auto_set_dymdims_mode)
    # npuzoo's flags: were any given (the summary then has the npuzoo keys), then their defaults
    args.npuzoo_keys = any(getattr(args, name) is not None for name in NPUZOO_FLAGS)
    args.precision_given = args.precision is not None
    if args.tune is not None and args.streams is not None:
        raise UserError("--tune chooses the streams; give --tune or --streams, not both")
    args.streams = 1 if args.streams is None else engines.check_streams(args.streams, "--streams")
    if args.backend is None:   # an .ort file only ONNX Runtime reads
        args.backend = "onnxruntime" if args.model.lower().endswith(".ort") \
            else engines.DEFAULT_BACKEND
        if not engines.backend_version(args.backend) and engines.backend_version("onnxruntime"):
            # a runner installed without its default engine still runs, and says on which
            print(f"note: {engines.BACKEND_LABELS[args.backend]} (the default engine) is not "
                  f"installed; running on ONNX Runtime (pip install {args.backend} for it, or "
                  "pass --backend)", file=sys.stderr)
            args.backend = "onnxruntime"
    args.precision = args.precision or "fp32"
    args.loop_seconds = args.loop_seconds or 0.0
    return args
