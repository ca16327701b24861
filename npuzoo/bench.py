"""ais_bench-compatible inference runner on the CPU (ONNX Runtime or OpenVINO): `python3 -m npuzoo.bench`.

Provenance. This module reproduces ais_bench as of T23 (the 2023 `python3 -m ais_bench`,
Ascend/tools 9d6da90 `ais_bench/infer/*.py`), as docs/ais_bench_compatibility.md describes it;
the sections of that document, by name:

- "The command line": every T23 flag, its default and its checks; values after a space or
      `=`; unique prefixes (`--output_dir`); booleans as T23's str2bool (yes/true/t/y/1,
      no/false/f/n/0, any case), each taking one value as in T23 (a bare `--debug` is refused:
      "expected one argument").
- "Inputs and batching": input lists (files or directories), files per batch from input 0,
      the `arg0 tensorsize: X filesize: Y not match` error, padding of the last batch with
      its first file, output splitting with np.array_split and `save out files error`, pure
      inference with zero or random bytes, warm-up, loop.
- "The output layout", "File formats", "The summary JSON": the results directory
      (`O/<%Y_%m_%d-%H_%M_%S | output_dirname>`, joined as T23 joins them, unnormalised), file
      names `{stem}_{i}.{bin|npy|txt}`, the BIN/NPY/TXT formats, and the summary JSON written
      atomically to `<that path>_summary.json`: beside the results directory, or, as in T23,
      inside it as `_summary.json` when --output_dirname ends with `/` (the InceptionV4
      guide's `--output_dirname ./result_bs4/`). With T23's flags only, the summary has T23's
      keys and no others (npuzoo's flags add keys after them, below).
- "The printed summary block": the Performance Summary block in the T23 format (H2D/D2H
      lines only with --display_all_summary) and the multi-device lines.

Timing: NPU_compute_time is the wall time of `session.run` alone (time.perf_counter, ms);
H2D_latency the time to assemble one batch's input arrays (file reads included); D2H_latency
the time to take the outputs as host arrays and split them per input file. Throughput is
1000 * batchsize / mean(NPU_compute_time), batchsize being --batchsize or the resolved batch
dimension of input 0, and includes the padded last batch, as ais_bench.

Choices where the CPU differs from an NPU:

- The model is an ONNX file (`.onnx`, or an ONNX Runtime `.ort`); an `.om` is refused with
  one line. A dynamic dim 0 is resolved by --dymBatch, else --batchsize, else 1. --dymHW
  sets H,W of 4-D inputs whose H/W are dynamic; --dymDims and --dymShape give whole shapes
  ("name:1,3,224,224;name2:..."). As in T23 only the first of dymBatch, dymHW, dymDims,
  dymShape is applied. --auto_set_dymshape_mode / --auto_set_dymdims_mode feed each `.npy`
  with its own shape, one file per batch.
- --device: a single id is accepted and has no effect (it is the same CPU). A comma list
  runs once per device, sequentially, splitting the input over the devices as T23 does,
  into `<dirname>/device{N}/` result folders, then prints the per-device lines
  `i:{i} device_{d} throughput:{t} start_time:{s} end_time:{e}` and
  `[INFO] summary throughput:{sum}`. The sum is therefore not a real multi-device figure.
- --run_mode array|files|tensor|full are accepted and behave the same (array mode).
  --outputSize is accepted and ignored: the engine sizes its outputs itself.
- --profiler, --dump, --acl_json_path and --dymShape_range have no meaning here: a
  non-default value stops the run with one line saying it is not supported by this runner.
- filesinfo follows the T23 code: one entry per input-file sample, keyed
  batch * files_per_batch + slot, holding the files of that sample (one per model input) and
  its output files. With one file per batch that is one entry per batch.
- A later input file whose size differs from the first one's stops the run before
  inference with the `tensorsize ... filesize ... not match` line naming that file (T23 would
  mis-batch or fail inside ACL). Directories given for several inputs must hold the same
  number of files.
- Threads: intra-op threads = usable cores (len(os.sched_getaffinity(0))), or env
  NPUZOO_THREADS (divided among --streams); inter-op 1; ORT_ENABLE_ALL; sequential execution.
- The progress bar goes to stderr and only when stderr is a terminal.

npuzoo's own flags (none of them is ais_bench's; the newer ais_bench (AIT24) also calls its
engine choice --backend). Each takes a value; the first three default as shown:

- --streams N (default 1, as ais_bench): N batches in flight at once, each on its own session
  with max(1, T // N) intra-op threads (T: NPUZOO_THREADS or the usable cores), N Python
  threads calling them (both engines release the GIL while they compute). One batch (pure
  inference: the perf step) shares its runs among the streams; several batches (dataset mode)
  are handed out in order to whichever stream is free. The result files, filesinfo (same keys,
  same order) and the number of timed calls are those of one stream; results are merged in
  batch order. Warm-up: every stream's session runs --warmup_count times.
- --backend onnxruntime|openvino (default npuzoo.engines.DEFAULT_BACKEND, openvino, chosen by
  benchmarks/bench_engines.py; an `.ort` file defaults to onnxruntime, the only engine that
  reads it): the engine, see npuzoo/engines.py. OpenVINO runs standard ONNX (the export; version 2026.4 also reads
  npuzoo.compile's graphs with com.microsoft FusedConv), compiled for the resolved static
  shapes with INFERENCE_PRECISION_HINT=f32, NUM_STREAMS = --streams, one infer request per
  stream. Same CLI, batching, outputs, summary and printed lines as ONNX Runtime.
- --precision fp32|int8 (default fp32): what the model file is; checked against the graph's
  operators (quantised or not) and recorded. The int8 model itself is made elsewhere.
- --tune DIR: the engine, streams and threads (and OpenVINO's THROUGHPUT hint) chosen by
  npuzoo/tune.py, timed on first use and cached in DIR per machine and graph; --backend is the
  layout kept on a tie, --streams is refused with it. The summary's `tuning` says what was
  chosen among what, and whether the cache was reused.
- --loop_seconds S (default 0): a time-bounded loop. Each batch runs at least --loop times AND
  until at least S seconds have passed since its first timed run; `loop_runs` records the
  runs (the fewest any batch got: in pure-inference mode, all of them).

What the throughputs mean. T23's `throughput` keeps its meaning: 1000 * batchsize /
mean(NPU_compute_time), a per-call figure, which is what ais_bench prints (it runs one call at
a time). With N streams the calls overlap, each one is slower, and that figure understates
what the CPU delivers; `throughput_wall` is images / wall time across the streams:
1000 * batchsize * timed calls / wall_time_ms, wall_time_ms running from the first timed call
to the end of the last (in dataset mode it includes reading inputs and writing outputs between
calls, which the per-call figure leaves out). With one stream and pure inference the two agree
to within the loop's own overhead.

Any npuzoo flag on the command line (even at its default) adds these keys to the summary,
after T23's: backend, backend_version, precision, streams, threads_per_stream, batchsize,
timed_runs, wall_time_ms, throughput_wall, loop_runs, loop_seconds, the steadiness of the loop
(throughput_windows: images/s of WINDOWS consecutive groups of calls; throughput_median;
throughput_spread: (max - min) / median), and what else ran during the timed section
(LoadMonitor): loadavg_1m_start, loadavg_1m_end, cpus, own_cpu_s, other_cpu_s, steal_s,
other_cpu_share, reference_ms and reference_change (a fixed kernel timed before and after),
contended, contended_rule; with --tune, `tuning` too. The rule: contended = other processes'
CPU time on this process's CPUs (from /proc/stat minus this process's own user+system time)
> 10% of cpus x wall time, or the reference kernel's time changed by more than 15%; else
null when that capacity is under 100 clock ticks (too short to judge) or /proc/stat is
absent. Two `[INFO] npuzoo: ...` lines (three with --tune) then say the same before the
Performance Summary block, which stays last; they never contain the word `throughput`, so the
ModelZoo scripts that take the last field of the line containing it still read T23's figure.

Python API: `run(argv, threads=None)` takes the argument list (without the program name) and
returns the summary dict (the JSON's content, written or not); for a device list it returns
{"devices": [{"index", "device", "throughput", "start_time", "end_time", "summary"}, ...],
"throughput": sum}. User errors raise npuzoo.errors.UserError.
"""

import argparse
import copy
import json
import logging
import math
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from npuzoo import engines
from npuzoo.engines import _ORT_DTYPES, TensorDesc  # noqa: F401  (re-exported: bench.TensorDesc)
from npuzoo.errors import UserError, cli

NPUZOO_FLAGS = ("streams", "backend", "precision", "loop_seconds", "tune")  # argparse dests
CONTENDED_SHARE = 0.10   # other processes' share of the CPUs above which a figure is contended
REFERENCE_CHANGE = 0.15  # the reference kernel's time change, before vs after, that is contended
PURE_INFER_FAKE_FILE = "pure_infer_data"
PADDING_INFER_FAKE_FILE = "padding_infer_fake_file"
PERCENTILE_SCALE = 99
INPUT_EXTENSIONS = (".bin", ".BIN", ".npy", ".NPY")
FLOAT_TYPES = (np.float16, np.float32, np.float64)

# -- logging: `[%(levelname)s] %(message)s` to whatever sys.stdout is at the time ---------

class _StdoutHandler(logging.Handler):
    def emit(self, record):
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


logger = logging.getLogger("npuzoo.bench")
if not logger.handlers:
    _handler = _StdoutHandler()
    _handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)


# -- command line (doc: "The command line") --------------------------------------------------

def str2bool(value):
    """T23's str2bool: yes/true/t/y/1 and no/false/f/n/0, case-insensitive."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(
        "Boolean value expected true, 1, false, 0 with case insensitive, got '{}'".format(value))


def _int(value):
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("'{}' is not an integer".format(value)) from None


def check_positive_integer(value):
    ivalue = _int(value)
    if ivalue <= 0:
        raise argparse.ArgumentTypeError("%s is an invalid positive int value" % value)
    return ivalue


def check_nonnegative_integer(value):
    ivalue = _int(value)
    if ivalue < 0:
        raise argparse.ArgumentTypeError("%s is an invalid nonnegative int value" % value)
    return ivalue


def check_nonnegative_float(value):
    try:
        fvalue = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("'{}' is not a number".format(value)) from None
    if not fvalue >= 0 or math.isinf(fvalue):
        raise argparse.ArgumentTypeError("%s is an invalid nonnegative number" % value)
    return fvalue


def check_device_range_valid(value):
    """An int 0-255, or a comma list of them (returned as a list)."""
    def one(text):
        ivalue = _int(text)
        if not 0 <= ivalue <= 255:
            raise argparse.ArgumentTypeError(
                "device:{} is invalid. valid value range is [0, 255]".format(value))
        return ivalue

    if "," in value:
        return [one(v) for v in value.split(",")]
    return one(value)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one UserError line, and treats aliases of one option
    (--warmup_count / --warmup-count) as one when a prefix matches both."""

    def error(self, message):
        raise UserError("{} (see {} --help)".format(message, self.prog))

    def _get_option_tuples(self, option_string):
        seen, unique = set(), []
        for option_tuple in super()._get_option_tuples(option_string):
            if id(option_tuple[0]) not in seen:
                seen.add(id(option_tuple[0]))
                unique.append(option_tuple)
        return unique


def build_parser(prog="python3 -m npuzoo.bench"):
    parser = _Parser(
        prog=prog, allow_abbrev=True,
        description="ais_bench (G2, T23) compatible inference runner on ONNX Runtime, CPU.")
    add = parser.add_argument

    def add_bool(*names, help):
        add(*names, type=str2bool, default=False, metavar="BOOL",
            help=help + " (yes/true/t/y/1 or no/false/f/n/0)")

    add("--model", "-m", required=True, help="path of the ONNX model (.onnx)")
    add("--input", "-i", default=None,
        help="comma list of input files, or of directories (one per model input) of .bin/.npy")
    add("--output", "-o", default=None,
        help="parent folder of the results; without it nothing is saved")
    add("--output_dirname", type=str, default=None,
        help="results subfolder name under --output (default: %%Y_%%m_%%d-%%H_%%M_%%S)")
    add("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"], help="output file format")
    add("--loop", "-l", type=check_positive_integer, default=1, help="executions per batch")
    add_bool("--debug", help="debug logging and the model I/O table")
    add("--device", "-d", type=check_device_range_valid, default=0,
        help="device id 0-255, or a comma list (run once per device, sequentially)")
    add("--dymBatch", type=_int, default=0, help="dynamic batch size")
    add("--dymHW", type=str, default=None, help='dynamic image size "h,w"')
    add("--dymDims", type=str, default=None, help='dynamic dims "name:1,600;name2:1,600"')
    add("--dymShape", type=str, default=None, help='dynamic shape "name:1,3,224,224;..."')
    add("--outputSize", type=str, default=None, help="accepted and ignored (ONNX Runtime sizes outputs)")
    add_bool("--auto_set_dymshape_mode", help="take each input's shape from its .npy")
    add_bool("--auto_set_dymdims_mode", help="take each input's shape from its .npy")
    add("--batchsize", type=check_positive_integer, default=None,
        help="batch size for the throughput formula (and for a dynamic batch without --dymBatch)")
    add("--pure_data_type", type=str, default="zero", choices=["zero", "random"],
        help="pure-inference input bytes")
    add_bool("--profiler", help="not supported by this runner")
    add_bool("--dump", help="not supported by this runner")
    add("--acl_json_path", type=str, default=None, help="not supported by this runner")
    add("--output_batchsize_axis", type=check_nonnegative_integer, default=0,
        help="axis along which outputs are split per input file")
    add("--run_mode", type=str, default="array", choices=["array", "files", "tensor", "full"],
        help="accepted; every mode runs as array")
    add_bool("--display_all_summary", help="also print H2D/D2H latencies")
    add("--warmup_count", "--warmup-count", dest="warmup_count", type=check_nonnegative_integer,
        default=1, help="warm-up runs on batch 0 before timing")
    add("--dymShape_range", type=str, default=None, help="not supported by this runner")
    # npuzoo's own flags (not ais_bench's). Any of them on the command line, even at its
    # default, adds the npuzoo keys to the summary JSON (see the module doc).
    add("--streams", type=check_positive_integer, default=None,
        help="batches in flight at once, each on its own session of max(1, T // N) threads "
             "(T: NPUZOO_THREADS or the usable cores); default 1, as ais_bench")
    add("--backend", choices=list(engines.BACKENDS), default=None,
        help="CPU engine (default: {}; onnxruntime for an .ort file)".format(engines.DEFAULT_BACKEND))
    add("--precision", choices=list(engines.PRECISIONS), default=None,
        help="what the model file is: fp32, or int8 (a quantised graph); checked against the "
             "graph and recorded (default: fp32, unchecked)")
    add("--loop_seconds", type=check_nonnegative_float, default=None,
        help="time-bounded loop: run each batch at least --loop times AND until at least this "
             "many seconds have passed since its first timed run (default 0: --loop alone)")
    add("--tune", metavar="DIR", default=None,
        help="choose the engine and streams by a short timing pass, cached in DIR per machine "
             "and graph (npuzoo.tune); --backend is then the one kept on a tie")
    return parser


def parse_args(argv, prog="python3 -m npuzoo.bench"):
    args = build_parser(prog).parse_args(argv)
    if args.output is None and args.output_dirname is not None:
        raise UserError("parameter --output_dirname can't be used alone; "
                        "use it together with --output")
    if args.output_dirname is not None and not args.output_dirname.strip("/\\ "):
        raise UserError("--output_dirname '{}' is not a folder name".format(args.output_dirname))
    for flag, value, why in (
            ("--profiler", args.profiler, "there is no Ascend profiler on CPU"),
            ("--dump", args.dump, "there is no Ascend data dump on CPU"),
            ("--acl_json_path", args.acl_json_path is not None, "there is no ACL on CPU"),
            ("--dymShape_range", args.dymShape_range is not None,
             "run once per shape with --dymShape instead")):
        if value:
            raise UserError("{} is not supported by this runner (ONNX Runtime on CPU: {})"
                            .format(flag, why))
    if args.dymBatch < 0:
        raise UserError("--dymBatch {} is invalid: give a positive batch size".format(args.dymBatch))
    args.no_combine_tensor_mode = bool(args.auto_set_dymshape_mode or args.auto_set_dymdims_mode)
    # npuzoo's flags: were any given (the summary then has the npuzoo keys), then their defaults
    args.npuzoo_keys = any(getattr(args, name) is not None for name in NPUZOO_FLAGS)
    args.precision_given = args.precision is not None
    if args.tune is not None and args.streams is not None:
        raise UserError("--tune chooses the streams; give --tune or --streams, not both")
    args.streams = 1 if args.streams is None else engines.check_streams(args.streams, "--streams")
    if args.backend is None:
        args.backend = engines.default_backend_for(args.model)
        if not engines.backend_version(args.backend) and engines.backend_version("onnxruntime"):
            # a runner installed without its default engine still runs, and says on which
            print("note: {} (the default engine) is not installed; running on ONNX Runtime "
                  "(pip install {} for it, or pass --backend)".format(
                      engines.BACKEND_LABELS[args.backend], args.backend), file=sys.stderr)
            args.backend = "onnxruntime"
    args.precision = "fp32" if args.precision is None else args.precision
    args.loop_seconds = 0.0 if args.loop_seconds is None else args.loop_seconds
    return args


# -- model -----------------------------------------------------------------------------------

def _ort_error(err):
    return type(err).__module__.startswith("onnxruntime")


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def default_threads():
    """NPUZOO_THREADS, else the cores this process may run on."""
    env = os.environ.get("NPUZOO_THREADS")
    if env not in (None, ""):
        try:
            threads = int(env)
        except ValueError:
            threads = 0
        if threads <= 0:
            raise UserError("NPUZOO_THREADS={!r} is not a positive integer".format(env))
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def open_session(model_path, threads, backend="onnxruntime"):
    """(session, inputs, outputs): one session of `backend` with `threads` intra-op threads.
    The session is an onnxruntime.InferenceSession, or an object with the same run(None, feeds)
    (npuzoo.engines.OpenVINOSession)."""
    engines.check_backend(backend)
    if backend == "openvino":
        sessions, inputs, outputs = engines.open_openvino(model_path, threads, 1)
        return sessions[0], inputs, outputs
    return engines.open_onnxruntime(model_path, threads)


def open_sessions(model_path, threads_per_stream, backend, streams, hint=None):
    """([one session per stream], inputs, outputs). ONNX Runtime: one InferenceSession per
    stream; OpenVINO: one compiled model with NUM_STREAMS=streams (or its performance `hint`)
    and one infer request each."""
    if hint is not None:
        return engines.open_openvino(model_path, threads_per_stream, streams, hint)
    if streams == 1:
        session, inputs, outputs = open_session(model_path, threads_per_stream, backend)
        return [session], inputs, outputs
    if backend == "openvino":
        return engines.open_openvino(model_path, threads_per_stream, streams)
    sessions = []
    for _ in range(streams):
        session, inputs, outputs = open_session(model_path, threads_per_stream, backend)
        sessions.append(session)
    return sessions, inputs, outputs


def _parse_named_shapes(text, flag, inputs):
    shapes = {}
    names = [d.name for d in inputs]
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, sep, dims = item.rpartition(":")
        try:
            if not sep:
                raise ValueError
            shape = [int(v) for v in dims.split(",")]
        except ValueError:
            raise UserError('{} "{}": expected "name:d,d,...;name2:d,..."'.format(flag, text)) from None
        if name not in names:
            raise UserError("{}: the model has no input '{}' (inputs: {})".format(
                flag, name, ", ".join(names)))
        shapes[name] = shape
    return shapes


def resolve_shapes(inputs, args):
    """Fill desc.resolved / desc.realsize for each input. Returns an error text for the first
    input whose shape stays unknown (raised only when that shape is needed), else None."""
    named, hw = {}, None
    if args.dymBatch:
        if inputs and inputs[0].shape and inputs[0].shape[0] not in (-1, args.dymBatch):
            raise UserError("--dymBatch {}: model input '{}' has a static batch of {}; export it "
                            "with a dynamic batch".format(args.dymBatch, inputs[0].name,
                                                          inputs[0].shape[0]))
    elif args.dymHW is not None:
        try:
            hw = [int(v) for v in args.dymHW.split(",")]
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError
        except ValueError:
            raise UserError('--dymHW "{}": expected "h,w"'.format(args.dymHW)) from None
    elif args.dymDims is not None:
        named = _parse_named_shapes(args.dymDims, "--dymDims", inputs)
    elif args.dymShape is not None:
        named = _parse_named_shapes(args.dymShape, "--dymShape", inputs)

    batch = args.dymBatch or args.batchsize or 1
    problem = None
    for desc in inputs:
        model = desc.shape
        if desc.name in named:
            shape = named[desc.name]
            if len(shape) != len(model) or any(m != -1 and m != s for m, s in zip(model, shape)):
                raise UserError("input '{}': shape {} does not fit the model's {}".format(
                    desc.name, shape, model))
            if min(shape, default=1) <= 0:
                raise UserError("input '{}': shape {} has a non-positive dim".format(desc.name, shape))
        else:
            shape = list(model)
            if shape and shape[0] == -1:
                shape[0] = batch
            if hw is not None and len(shape) == 4:
                if model[1] != -1 and (model[2] == -1 or model[3] == -1):
                    shape[2:4] = hw          # NCHW
                elif model[3] != -1 and (model[1] == -1 or model[2] == -1):
                    shape[1:3] = hw          # NHWC
        if -1 in shape:
            desc.resolved, desc.realsize = None, None
            problem = problem or ('input \'{}\' has dynamic dims {}; give its shape with --dymShape '
                                  '"{}:{}"'.format(desc.name, model, desc.name,
                                                   ",".join("d" if d == -1 else str(d) for d in model)))
            continue
        desc.resolved = shape
        desc.realsize = int(np.prod(shape, dtype=np.int64)) * np.dtype(desc.datatype).itemsize
    return problem


# -- inputs (doc: "Inputs and batching") -----------------------------------------------------

def natural_sort(paths):
    def key(text):  # odd parts are the digit runs
        return [int(c) if i % 2 else c.lower() for i, c in enumerate(re.split("([0-9]+)", text))]
    return sorted(paths, key=key)


def files_from_dir(folder):
    """The .bin/.BIN/.npy/.NPY files of a folder (no recursion), sorted then natural-sorted."""
    if not os.path.isdir(folder):
        raise UserError("input dir not found: {}".format(folder))
    files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(INPUT_EXTENSIONS)]
    if not files:
        raise UserError("{} of input args holds no valid file (valid: *.npy *.NPY *.bin *.BIN)"
                        .format(folder))
    files.sort()
    return natural_sort(files)


def _is_npy(path):
    return path.endswith((".npy", ".NPY"))


def file_datasize(path):
    """Bytes a file contributes: the array bytes of a .npy (header only read), else its size."""
    try:
        if _is_npy(path):
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return os.path.getsize(path)
    except OSError as err:
        raise UserError("cannot read input file {}: {}".format(path, err.strerror)) from None
    except ValueError as err:
        raise UserError("{}: not a valid .npy file ({})".format(path, err)) from None


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError("{}: cannot load it as .npy ({})".format(path, err)) from None


def list_input_files(inputs_list, n_inputs):
    """Per model input, its files: a comma list of files cut into n_inputs consecutive chunks,
    or one directory per input."""
    first = inputs_list[0]
    if os.path.isfile(first):
        for index, path in enumerate(inputs_list):
            if not os.path.isfile(path):
                raise UserError("--input: input[{}] '{}' is not a file".format(index, path))
        if len(inputs_list) % n_inputs:
            raise UserError("--input gives {} files for a model with {} inputs; give a multiple "
                            "of {}".format(len(inputs_list), n_inputs, n_inputs))
        chunk = len(inputs_list) // n_inputs
        return [inputs_list[k * chunk:(k + 1) * chunk] for k in range(n_inputs)]
    if os.path.isdir(first):
        if len(inputs_list) != n_inputs:
            raise UserError("--input gives {} directories but the model has {} inputs".format(
                len(inputs_list), n_inputs))
        fileslists = [files_from_dir(folder) for folder in inputs_list]
        counts = [len(files) for files in fileslists]
        if len(set(counts)) > 1:
            raise UserError("--input directories hold different numbers of files: {}".format(
                ", ".join("{} ({})".format(d, c) for d, c in zip(inputs_list, counts))))
        return fileslists
    raise UserError("--input: '{}' is neither a file nor a directory".format(first))


def _size_error(k, tensorsize, filesize, path, detail):
    return UserError("arg{} tensorsize: {} filesize: {} not match ({}: {})".format(
        k, tensorsize, filesize, path, detail))


def plan_batches(fileslists, inputs, no_combine):
    """files_per_batch, and the batches: batches[i][k] = the files of input k in batch i,
    the last one padded with PADDING_INFER_FAKE_FILE."""
    if no_combine:
        files_per_batch = 1
        filesize = file_datasize(fileslists[0][0])
        tensorsize = inputs[0].realsize
    else:
        tensorsize = inputs[0].realsize
        filesize = file_datasize(fileslists[0][0])
        if filesize == 0 or tensorsize % filesize:
            raise _size_error(0, tensorsize, filesize, fileslists[0][0],
                              "input 0 of the model must take a whole number of such files")
        files_per_batch = tensorsize // filesize
        for k, (desc, files) in enumerate(zip(inputs, fileslists)):
            if desc.realsize % files_per_batch:
                raise _size_error(k, desc.realsize, file_datasize(files[0]), files[0],
                                  "{} files per batch do not divide input {}".format(files_per_batch, k))
            expected = desc.realsize // files_per_batch
            for path in files:
                size = file_datasize(path)
                if size != expected:
                    raise _size_error(k, desc.realsize, size, path,
                                      "every file of input {} must hold {} bytes".format(k, expected))
    runcount = math.ceil(len(fileslists[0]) / files_per_batch)
    logger.info("get filesperbatch files0 size:{} tensor0size:{} filesperbatch:{} runcount:{}"
                .format(filesize, tensorsize, files_per_batch, runcount))
    batches = []
    for i in range(runcount):
        batch = []
        for files in fileslists:
            chunk = files[i * files_per_batch:(i + 1) * files_per_batch]
            batch.append(chunk + [PADDING_INFER_FAKE_FILE] * (files_per_batch - len(chunk)))
        batches.append(batch)
    return files_per_batch, batches


def _read_into(buf, offset, size, path):
    """Put the bytes of one input file at buf[offset:offset+size]."""
    if _is_npy(path):
        data = np.ascontiguousarray(_load_npy(path)).reshape(-1).view(np.uint8)
        if data.size != size:
            raise _size_error(0, buf.size, data.size, path, "the file changed size during the run")
        buf[offset:offset + size] = data
        return
    try:
        with open(path, "rb") as handle:
            got = handle.readinto(memoryview(buf)[offset:offset + size])
            extra = handle.read(1)
    except OSError as err:
        raise UserError("cannot read input file {}: {}".format(path, err.strerror)) from None
    if got != size or extra:
        raise _size_error(0, buf.size, os.path.getsize(path), path, "the file changed size during the run")


def pure_infer_data(size, pure_data_type):
    """realsize uint8 bytes, zeros or random 0-255, fresh on each call."""
    if pure_data_type == "random":
        return np.random.default_rng().integers(0, 256, size=size, dtype=np.uint8)
    return np.zeros(size, dtype=np.uint8)


def make_feeds(batch, inputs, args, batchsizes=None):
    """The input arrays of one batch: the files concatenated as raw bytes (no dtype
    conversion), padded slots filled with the batch's first file."""
    feeds = {}
    for desc, files in zip(inputs, batch):
        if args.no_combine_tensor_mode and files[0] != PURE_INFER_FAKE_FILE:
            path = files[0]
            if not _is_npy(path):
                raise UserError("{}: --auto_set_dymshape_mode/--auto_set_dymdims_mode need .npy "
                                "inputs, which carry their shape".format(path))
            array = _load_npy(path)
            if array.dtype != np.dtype(desc.datatype):
                raise UserError("{}: dtype {} but model input '{}' takes {}".format(
                    path, array.dtype, desc.name, np.dtype(desc.datatype).name))
            feeds[desc.name] = np.ascontiguousarray(array)
            if batchsizes is not None and desc is inputs[0]:
                batchsizes.append(array.shape[0] if array.ndim else 1)
            continue
        if desc.resolved is None:
            raise UserError(args.unresolved)
        if files[0] == PURE_INFER_FAKE_FILE:
            buf = pure_infer_data(desc.realsize, args.pure_data_type)
        else:
            buf = np.empty(desc.realsize, dtype=np.uint8)
            per_file = desc.realsize // len(files)
            for slot, path in enumerate(files):
                real = files[0] if path == PADDING_INFER_FAKE_FILE else path
                _read_into(buf, slot * per_file, per_file, real)
        feeds[desc.name] = buf.view(desc.datatype).reshape(desc.resolved)
    return feeds


# -- outputs (doc: "The output layout", "File formats") ----------------------------------------

def txt_bytes(ndata):
    """ais_bench's TXT: reshape (-1, last_dim), each value `%f` (floats) or `%d` (others)
    followed by one space, each row ending with " \\n". Same text as its np.savetxt loop."""
    ndata = np.asarray(ndata)
    if ndata.ndim == 0:
        ndata = ndata.reshape(1)
    ncols = ndata.shape[-1]
    nrows = int(np.prod(ndata.shape[:-1], dtype=np.int64))
    if ncols == 0:
        return b"\n" * nrows
    rows = ndata.reshape(nrows, ncols)
    fmt = "%f " if ndata.dtype.type in FLOAT_TYPES else "%d "
    line = fmt * ncols + "\n"
    step = max(1, 65536 // ncols)
    parts = []
    for start in range(0, nrows, step):
        block = rows[start:start + step]
        parts.append((line * block.shape[0]) % tuple(block.ravel().tolist()))
    return "".join(parts).encode("ascii")


def save_data_to_file(path, ndata):
    """Write one output in the format its extension names (.bin raw bytes, .npy, .txt)."""
    try:
        if path.endswith((".npy", ".NPY")):
            np.save(path, ndata)
        elif path.endswith((".txt", ".TXT")):
            with open(path, "wb") as handle:
                handle.write(txt_bytes(ndata))
        else:
            ndata.tofile(path)
    except OSError as err:
        raise UserError("cannot write {}: {}".format(path, err.strerror)) from None


def split_outputs(outputs, files_per_batch, axis, batch):
    """Per output, its parts for each input file (np.array_split along axis)."""
    splits = []
    for i, out in enumerate(outputs):
        ndata = np.asarray(out)
        if axis >= ndata.ndim:
            raise UserError("error i:{} ndata.shape:{} len:{} <= output_batchsize_axis:{} is "
                            "invalid".format(i, ndata.shape, ndata.ndim, axis))
        if files_per_batch != 1 and ndata.shape[axis] % files_per_batch:
            raise UserError("save out files error array shape:{} filesinfo:{} files_count_perbatch:{} "
                            "ndata.shape{}:{} (try --output_batchsize_axis)".format(
                                ndata.shape, batch, files_per_batch, axis, ndata.shape[axis]))
        splits.append(np.array_split(ndata, files_per_batch, axis))
    return splits


def save_outputs(splits, output_prefix, batch, outfmt, index, filesinfo):
    """Write `{stem}_{i}.{fmt}` for every non-padded slot and record it in filesinfo."""
    files_per_batch = len(batch[0])
    ext = outfmt.lower()
    for i, parts in enumerate(splits):
        for j in range(files_per_batch):
            sample = [files[j] for files in batch]
            if sample[0] == PADDING_INFER_FAKE_FILE:
                continue
            stem = os.path.basename(sample[0]).split(".")[0]
            path = os.path.join(output_prefix, "{}_{}.{}".format(stem, i, ext))
            entry = filesinfo.setdefault(str(index * files_per_batch + j),
                                         {"infiles": [], "outfiles": []})
            if not entry["infiles"]:
                entry["infiles"].extend(sample)
            entry["outfiles"].append(path)
            save_data_to_file(path, parts[j])


# -- summary (doc: "The summary JSON", "The printed summary block") ----------------------------

def list_info(values):
    """numpy min/max/mean/median/percentile over a list of ms; zeros when empty (as T23)."""
    if len(values) == 0:
        info = dict.fromkeys(["min", "max", "mean", "median"], 0.0)
        info.update({"percentile(99%)": 0.0, "count": 0})
        return info
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": float(np.min(array)), "max": float(np.max(array)),
        "mean": float(np.mean(array)), "median": float(np.median(array)),
        "percentile(99%)": float(np.percentile(array, 99)),
        "count": len(values),
    }


def _summary_line(name, info):
    return "{} (ms): min = {}, max = {}, mean = {}, median = {}, percentile({}%) = {}".format(
        name, info["min"], info["max"], info["mean"], info["median"], PERCENTILE_SCALE,
        info["percentile(99%)"])


def write_json_atomic(path, data):
    """Write JSON through a temporary file in the same folder, then rename (mode per umask)."""
    tmp = "{}.{}.tmp".format(path, os.getpid())
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UserError("cannot write {}: {}".format(path, err.strerror)) from None


def report(batchsize, filesinfo, argv, compute, h2d, d2h, output_prefix, display_all_summary,
           extras=None, engine_label="ONNX Runtime"):
    """Build the summary dict, print the T23 block, write `<prefix>_summary.json`. `extras`
    (npuzoo's keys, present when one of npuzoo's flags was given) go after T23's keys, and
    their two lines are printed before the block, so that the block stays the last lines."""
    npu = list_info(compute)
    h2d_info = list_info(h2d)
    d2h_info = list_info(d2h)
    throughput = 0 if npu["mean"] == 0 else 1000 * batchsize / npu["mean"]
    infodict = {
        "filesinfo": filesinfo,
        "args": list(argv),
        "NPU_compute_time": npu,
        "H2D_latency": h2d_info,
        "D2H_latency": d2h_info,
        "throughput": throughput,
        "npu_compute_time_list": [float(t) for t in compute],
        "pid": os.getpid(),
    }
    if extras is not None:
        infodict.update(extras)
        _extras_lines(extras)
    if sys.stdout.isatty() and not os.environ.get("NPUZOO_BENCH_T23_OUTPUT"):
        _friendly_summary(batchsize, npu, throughput, engine_label)
    else:
        _t23_summary(batchsize, npu, h2d_info, d2h_info, throughput, display_all_summary)
    if output_prefix is not None:
        write_json_atomic(output_prefix + "_summary.json", infodict)
    return infodict


def _extras_lines(extras):
    """Two lines on npuzoo's figures (three after a tuned layout). They never contain the word
    the ModelZoo scripts grep for (`throughput`), which stays on the T23 block's line alone."""
    tuning = extras.get("tuning")
    if tuning:
        logger.info("npuzoo: engine and streams tuned for this machine and graph ({}, {})".format(
            tuning["path"], "reused" if tuning["cache"] == "reused" else "timed now"))
    logger.info("npuzoo: {} {}, {}, {} stream{} x {} thread{}: {} runs of batch {} in {:.3f} s of "
                "wall time = {:.2f} images/s across the streams (the figure below is per call: "
                "1000*batchsize/mean call time){}".format(
                    engines.BACKEND_LABELS.get(extras["backend"], extras["backend"]),
                    extras["backend_version"], extras["precision"], extras["streams"],
                    "" if extras["streams"] == 1 else "s", extras["threads_per_stream"],
                    "" if extras["threads_per_stream"] == 1 else "s", extras["timed_runs"],
                    _bs_text(extras["batchsize"]), extras["wall_time_ms"] / 1000.0,
                    extras["throughput_wall"],
                    "; time-bounded loop: {} runs in at least {:g} s".format(
                        extras["loop_runs"], extras["loop_seconds"]) if extras["loop_seconds"] else ""))
    steadiness = "" if extras.get("throughput_spread") is None else \
        "; {} windows: median {:.2f} images/s, spread {:.1%}".format(
            len(extras["throughput_windows"]), extras["throughput_median"],
            extras["throughput_spread"])
    if extras.get("reference_change") is not None:
        steadiness += "; reference kernel {:+.0%} after the loop".format(extras["reference_change"])
    if extras.get("other_cpu_s") is None:
        logger.info("npuzoo: load average (1 min) {} -> {}; other processes' CPU time unknown "
                    "(no /proc/stat){}".format(extras["loadavg_1m_start"], extras["loadavg_1m_end"],
                                               steadiness))
        return
    logger.info("npuzoo: load average (1 min) {:.2f} -> {:.2f}; other processes took {:.2f} CPU-s "
                "of {:.2f} on {} CPU{} ({:.0%}): {}{}".format(
                    extras["loadavg_1m_start"], extras["loadavg_1m_end"], extras["other_cpu_s"],
                    extras["cpus"] * extras["wall_time_ms"] / 1000.0, extras["cpus"],
                    "" if extras["cpus"] == 1 else "s", extras["other_cpu_share"],
                    {True: "CONTENDED, the figures are not a clean measurement",
                     False: "not contended"}.get(extras["contended"], "too short to judge"),
                    steadiness))


def _friendly_summary(batchsize, npu, throughput, engine_label="ONNX Runtime"):
    """On a terminal: what ran where, in rounded figures (the summary JSON keeps them whole)."""
    logger.info("-----------------Performance Summary (CPU, {})------------------".format(engine_label))
    logger.info("compute time per batch of {} on the CPU (ms): mean {:.2f}, median {:.2f}, "
                "min {:.2f}, max {:.2f}, p99 {:.2f} ({} runs)".format(
                    _bs_text(batchsize), npu["mean"], npu["median"], npu["min"], npu["max"],
                    npu["percentile(99%)"], npu["count"]))
    logger.info("throughput: {:.1f} images/s".format(throughput))
    logger.info("------------------------------------------------------")


def _bs_text(batchsize):
    return str(int(batchsize)) if float(batchsize).is_integer() else "{:.2f}".format(batchsize)


def _t23_summary(batchsize, npu, h2d_info, d2h_info, throughput, display_all_summary):
    """Piped or logged (and NPUZOO_BENCH_T23_OUTPUT=1): the T23 block, verbatim, for the
    scripts that parse it."""
    logger.info("-----------------Performance Summary------------------")
    if display_all_summary:
        logger.info(_summary_line("H2D_latency", h2d_info))
    logger.info(_summary_line("NPU_compute_time", npu))
    if display_all_summary:
        logger.info(_summary_line("D2H_latency", d2h_info))
    logger.info("throughput 1000*batchsize.mean({})/NPU_compute_time.mean({}): {}".format(
        batchsize, npu["mean"], throughput))
    logger.info("------------------------------------------------------")


# -- running ---------------------------------------------------------------------------------

def _debug_table(model_path, session, inputs, outputs, threads):
    logger.debug("model: {}  providers: {}  intra-op threads: {}".format(
        model_path, session.get_providers(), threads))
    logger.debug("{:<6} {:<4} {:<24} {:<9} {:<22} {:<22} {}".format(
        "kind", "idx", "name", "dtype", "model shape", "run shape", "realsize"))
    for kind, descs in (("input", inputs), ("output", outputs)):
        for k, desc in enumerate(descs):
            logger.debug("{:<6} {:<4} {:<24} {:<9} {:<22} {:<22} {}".format(
                kind, k, desc.name, np.dtype(desc.datatype).name, str(desc.shape),
                str(desc.resolved) if desc.resolved is not None else "-",
                desc.realsize if desc.realsize is not None else "-"))


def _output_prefix(args):
    if args.output is None:
        return None
    name = args.output_dirname if args.output_dirname is not None else time.strftime("%Y_%m_%d-%H_%M_%S")
    prefix = os.path.join(args.output, name)  # as T23: `dir/` puts the summary inside dir
    logger.info("output path:{}".format(prefix))
    return prefix


def _make_output_dir(prefix):
    """Created once the inputs are checked, so a refused run leaves no empty folder."""
    try:
        os.makedirs(prefix, 0o755, exist_ok=True)
    except OSError as err:
        raise UserError("cannot create output folder {}: {}".format(prefix, err.strerror)) from None


class LoadMonitor:
    """What else ran on this process's CPUs while it measured.

    start() and stop() bracket the timed section; stop() returns the 1-minute load average at
    both ends and, from /proc/stat (user+nice+system+irq+softirq+steal of the CPUs in this
    process's affinity set) minus this process's own user+system time (os.times, every
    thread), the CPU time other processes (and the hypervisor: steal) took on those CPUs.
    The verdict: contended = other_cpu_s > CONTENDED_SHARE (10%) of cpus x wall time. The load
    average is recorded but not judged: it is a one-minute mean that counts this runner's own
    threads and whatever ran before it. Where /proc/stat is absent the CPU figures and the
    verdict are None; so is the verdict of a window shorter than MIN_TICKS clock ticks of CPU
    capacity (1 s on one CPU at 100 Hz), which /proc/stat's whole ticks cannot resolve.

    A slowdown from outside the machine (another tenant of the host) shows in no /proc/stat
    of a guest that reports no steal, so a fixed reference kernel (`reference_kernel_ms`) is
    timed just before start and just after stop: a time that differs by more than
    REFERENCE_CHANGE (15%) marks the run contended as well."""

    MIN_TICKS = 100   # of CPU capacity (cpus x wall time) below which no verdict is given
    RULE = ("other_cpu_s > {:g} * cpus * wall_s (other processes' CPU time on this process's "
            "CPUs, from /proc/stat minus its own), or a reference kernel's time before vs after "
            "the loop changed by more than {:.0%}; null when cpus * wall_s is under {} clock "
            "ticks (too short to judge) or /proc/stat is absent".format(
                CONTENDED_SHARE, REFERENCE_CHANGE, MIN_TICKS))

    def __init__(self, stat_path="/proc/stat", clock=time.perf_counter, reference=None):
        self.stat_path = stat_path
        self.clock = clock
        self.reference = reference or reference_kernel_ms
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            self.cpus = list(range(os.cpu_count() or 1))
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy(self):
        """(busy jiffies, steal jiffies, cpus counted) of our CPUs, or None."""
        try:
            with open(self.stat_path) as handle:
                lines = [line.split() for line in handle if line.startswith("cpu")]
        except OSError:
            return None
        per_cpu = {fields[0]: fields[1:] for fields in lines}
        names = ["cpu{}".format(c) for c in self.cpus]
        if all(name in per_cpu for name in names):
            rows, count = [per_cpu[name] for name in names], len(names)
        elif "cpu" in per_cpu:
            rows, count = [per_cpu["cpu"]], max(1, len(per_cpu) - 1)
        else:
            return None
        busy = steal = 0
        for row in rows:
            values = [int(v) for v in row] + [0] * 8
            # user nice system idle iowait irq softirq steal (guest is inside user)
            busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
            steal += values[7]
        return busy, steal, count

    @staticmethod
    def _own():
        times = os.times()
        return times.user + times.system

    @staticmethod
    def _loadavg():
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover
            return None

    def start(self):
        self.ref0 = self.reference()
        self.load0 = self._loadavg()
        self.busy0 = self._busy()
        self.own0 = self._own()
        self.t0 = self.clock()
        return self

    def stop(self):
        wall = self.clock() - self.t0
        own = self._own() - self.own0
        busy1 = self._busy()
        ref1 = self.reference()
        change = ref1 / self.ref0 - 1 if self.ref0 and ref1 else None
        outside = change is not None and max(ref1 / self.ref0, self.ref0 / ref1) - 1 > REFERENCE_CHANGE
        result = {"loadavg_1m_start": self.load0, "loadavg_1m_end": self._loadavg(),
                  "cpus": len(self.cpus), "own_cpu_s": round(own, 3), "other_cpu_s": None,
                  "steal_s": None, "other_cpu_share": None,
                  "reference_ms": [self.ref0, ref1], "reference_change": change,
                  "contended": True if outside else None, "contended_rule": self.RULE}
        if self.busy0 is None or busy1 is None:
            return result
        cpus = busy1[2]
        busy = (busy1[0] - self.busy0[0]) / self.tick
        other = max(0.0, busy - own)
        share = other / (cpus * wall) if wall > 0 else 0.0
        result.update({"cpus": cpus, "other_cpu_s": round(other, 3),
                       "steal_s": round((busy1[1] - self.busy0[1]) / self.tick, 3),
                       "other_cpu_share": round(share, 4),
                       "contended": bool(share > CONTENDED_SHARE)})
        if cpus * wall * self.tick < self.MIN_TICKS:   # /proc/stat counts whole clock ticks
            result["contended"] = None
        if outside:
            result["contended"] = True
        return result


def reference_kernel_ms(repeats=7):
    """The median time (ms) of a fixed single-thread numpy kernel of about 1 ms: a machine
    slowed from outside runs it slower. (A multi-threaded BLAS product was tried and dropped:
    its threads wait for each other, so any busy core made it 10-100x slower.)"""
    values = np.linspace(0, 1, 1 << 16, dtype=np.float32)
    out = np.empty_like(values)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            np.multiply(values, 1.0001, out=out)
            np.add(out, 0.5, out=out)
            np.sqrt(out, out=out)
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(float(np.median(times)), 4)


def _in_threads(work, items, stop):
    """work(item) for every item, each in its own thread (inline for a single item); the first
    error stops the others (they finish their current call) and is raised here."""
    if len(items) == 1:
        work(items[0])
        return
    errors = []

    def target(item):
        try:
            work(item)
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)
            stop.set()

    workers = [threading.Thread(target=target, args=(item,), daemon=True) for item in items]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException:
        stop.set()
        raise
    if errors:
        raise errors[0]


def run_batch(sessions, feeds, loop, seconds, stop, progress=None, ends=None):
    """Run one batch on the sessions (sharing the runs when there are several) until at least
    `loop` runs have been started AND `seconds` have passed since the first; return (call
    times in ms in order of completion, the outputs of the last call to complete). `ends`, a
    list, gets the perf_counter time at which each call completed."""
    lock = threading.Lock()
    perf = time.perf_counter
    state = {"claimed": 0, "start": perf(), "results": None}
    times = []

    def claim():
        with lock:
            if stop.is_set():
                return False
            if state["claimed"] >= loop and perf() - state["start"] >= seconds:
                return False
            state["claimed"] += 1
            return True

    def work(session):
        while claim():
            t0 = perf()
            results = session.run(None, feeds)
            elapsed = (perf() - t0) * 1000.0
            with lock:
                times.append(elapsed)
                state["results"] = results
                if ends is not None:
                    ends.append(t0 + elapsed / 1000.0)
            if progress is not None:
                progress.update()

    _in_threads(work, sessions, stop)
    return times, state["results"]


def run_single(args, argv, threads):
    """One device: warm-up, timed inference, outputs, summary. Returns (summary, start, end).

    With N streams: N sessions; one batch (pure inference, the perf step) shares its runs among
    them, several batches are handed out in order to whichever stream is free. Results are
    collected per batch and merged in batch order, so the files, filesinfo and the order of
    npu_compute_time_list's batches are those of one stream (within a shared batch the call
    times are in order of completion)."""
    streams, hint, tuning = args.streams, None, None
    per_stream = max(1, threads // streams)
    if args.tune is not None:
        tuning = tuned_layout(args, threads)
        chosen = tuning["chosen"]
        args.backend, streams, per_stream, hint = (
            chosen["engine"], chosen["streams"], chosen["threads_per_stream"], chosen["hint"])
    sessions, inputs, outputs = open_sessions(args.model, per_stream, args.backend, streams, hint)
    if args.precision_given:
        engines.check_precision(args.model, args.precision)
    session = sessions[0]
    args.unresolved = resolve_shapes(inputs, args)
    batchsize = args.batchsize
    if batchsize is None:
        first = inputs[0]
        if first.resolved:
            batchsize = first.resolved[0]
        else:
            batchsize = first.shape[0] if first.shape and first.shape[0] != -1 else (args.dymBatch or 1)
        logger.info("try get model batchsize:{}".format(batchsize))
    if args.outputSize is not None:
        logger.debug("--outputSize {} ignored: the engine sizes its outputs".format(args.outputSize))

    output_prefix = _output_prefix(args)

    inputs_list = [] if args.input is None else args.input.split(",")
    if not inputs_list:
        files_per_batch = 1
        batches = [[[PURE_INFER_FAKE_FILE] for _ in inputs]]
        if args.unresolved:
            raise UserError(args.unresolved)
    else:
        fileslists = list_input_files(inputs_list, len(inputs))
        if not args.no_combine_tensor_mode and args.unresolved:
            raise UserError(args.unresolved)
        files_per_batch, batches = plan_batches(fileslists, inputs, args.no_combine_tensor_mode)

    prepare = getattr(session, "prepare", None)   # OpenVINO: compile for the resolved shapes
    if prepare is not None:
        static = not args.no_combine_tensor_mode and all(d.resolved for d in inputs)
        prepare({d.name: d.resolved for d in inputs} if static else None)
    if args.debug:
        _debug_table(args.model, session, inputs, outputs, per_stream)

    if output_prefix is not None:
        _make_output_dir(output_prefix)
    batchsizes = [] if args.no_combine_tensor_mode else None
    count = len(batches)
    compute = [[] for _ in range(count)]
    h2d, d2h = [0.0] * count, [0.0] * count
    files = [{} for _ in range(count)]
    stop = threading.Event()
    perf = time.perf_counter
    try:
        feeds = make_feeds(batches[0], inputs, args)

        def warm(one):
            for _ in range(args.warmup_count):
                one.run(None, feeds)

        _in_threads(warm, sessions, stop)
        del feeds
        logger.info("warm up {} done".format(args.warmup_count))

        from tqdm import tqdm
        # One step per session.run, so a long perf loop (one batch, many runs) moves too.
        progress = tqdm(total=None if args.loop_seconds else count * args.loop, file=sys.stderr,
                        unit="run", desc="Inference array Processing",
                        disable=not sys.stderr.isatty())
        lock = threading.Lock()
        queue = {"next": 0}

        def read_batch(index):
            t0 = perf()
            feeds = make_feeds(batches[index], inputs, args, batchsizes)
            h2d[index] = (perf() - t0) * 1000.0
            return feeds

        def write_batch(index, results):
            t0 = perf()
            results = [np.asarray(r) for r in results]
            splits = (split_outputs(results, files_per_batch, args.output_batchsize_axis,
                                    batches[index]) if output_prefix is not None else None)
            d2h[index] = (perf() - t0) * 1000.0
            if splits is not None:
                save_outputs(splits, output_prefix, batches[index], args.outfmt, index, files[index])

        def do_batch(index, runners):
            compute[index], results = run_batch(runners, read_batch(index), args.loop,
                                                args.loop_seconds, stop, progress, ends)
            if not stop.is_set():
                write_batch(index, results)

        def claim():
            with lock:
                if stop.is_set() or queue["next"] >= count:
                    return None
                queue["next"] += 1
                return queue["next"] - 1

        def next_batches(one):
            """One stream's share of the batches. While a batch runs (the engines release the
            GIL), a reader thread loads the next one's files and a writer thread writes the
            previous one's outputs: file I/O no longer adds to the dataset mode's wall time."""
            with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
                index, writing = claim(), None
                reading = None if index is None else reader.submit(read_batch, index)
                while index is not None:
                    feeds = reading.result()
                    following = claim()
                    reading = None if following is None else reader.submit(read_batch, following)
                    compute[index], results = run_batch([one], feeds, args.loop,
                                                        args.loop_seconds, stop, progress, ends)
                    del feeds
                    if stop.is_set():
                        break
                    if writing is not None:
                        writing.result()
                    writing = writer.submit(write_batch, index, results)
                    index = following
                if writing is not None:
                    writing.result()

        ends = []
        monitor = LoadMonitor().start()
        start_time = time.time()
        wall_start = perf()
        if count == 1:
            do_batch(0, sessions)               # the streams share the batch's runs
        else:
            _in_threads(next_batches, sessions, stop)
        wall_ms = (perf() - wall_start) * 1000.0
        end_time = time.time()
        load = monitor.stop()
        progress.close()
    except Exception as err:
        if _ort_error(err):
            raise UserError("ONNX Runtime failed to run {}: {}".format(args.model, _first_line(err))) from None
        raise

    if batchsizes:
        batchsize = sum(batchsizes) / len(batchsizes)
    filesinfo = {}
    for part in files:
        filesinfo.update(part)
    times = [t for part in compute for t in part]
    extras = None
    if args.npuzoo_keys:
        extras = {
            "backend": args.backend,
            "backend_version": engines.backend_version(args.backend),
            "precision": args.precision,
            "streams": streams,
            "threads_per_stream": per_stream,
            "batchsize": batchsize,
            "timed_runs": len(times),
            "wall_time_ms": wall_ms,
            "throughput_wall": 0 if wall_ms == 0 else 1000.0 * batchsize * len(times) / wall_ms,
            "loop_runs": min(len(part) for part in compute),
            "loop_seconds": args.loop_seconds,
            **spread(window_throughputs(ends, wall_start, batchsize)),
        }
        extras.update(load)
        if tuning is not None:
            extras["tuning"] = {k: tuning[k] for k in ("cache", "path", "key", "seconds",
                                                       "chosen", "candidates")}
    summary = report(batchsize, filesinfo, argv, times, h2d, d2h, output_prefix,
                     args.display_all_summary, extras, engines.BACKEND_LABELS[args.backend])
    return summary, start_time, end_time


WINDOWS = 5   # the timed loop is judged in this many consecutive windows


def window_throughputs(ends, start, batchsize, windows=WINDOWS):
    """Images/s in `windows` consecutive groups of equally many calls (completion times `ends`,
    timed from `start`): a slowdown during the loop shows as a spread between them."""
    ends, found, previous = sorted(ends), [], start
    count = min(windows, len(ends))
    if count < 2:
        return []
    for j in range(count):
        group = ends[j * len(ends) // count:(j + 1) * len(ends) // count]
        if group[-1] > previous:
            found.append(batchsize * len(group) / (group[-1] - previous))
        previous = group[-1]
    return found


def spread(values):
    """{throughput_windows, throughput_median, throughput_spread}: the spread is
    (max - min) / median, None with fewer than two windows."""
    if len(values) < 2:
        return {"throughput_windows": values, "throughput_median": None, "throughput_spread": None}
    median = float(np.median(values))
    return {"throughput_windows": [round(v, 3) for v in values], "throughput_median": median,
            "throughput_spread": (max(values) - min(values)) / median if median else None}


def measure_layout(args, layout, seconds):
    """Images/s of one tuning layout: pure inference of one batch for `seconds` (at least one
    call per stream), after one warm-up call per stream."""
    try:
        sessions, inputs, _ = open_sessions(args.model, layout["threads_per_stream"],
                                            layout["engine"], layout["streams"], layout["hint"])
        problem = resolve_shapes(inputs, args)
        if problem:
            raise UserError(problem)
        prepare = getattr(sessions[0], "prepare", None)
        if prepare is not None:
            prepare({d.name: d.resolved for d in inputs})
        feeds = make_feeds([[PURE_INFER_FAKE_FILE] for _ in inputs], inputs, args)
        stop = threading.Event()
        _in_threads(lambda one: one.run(None, feeds), sessions, stop)
        start = time.perf_counter()
        times, _ = run_batch(sessions, feeds, len(sessions), seconds, stop)
        return inputs[0].resolved[0] * len(times) / (time.perf_counter() - start)
    except Exception as err:
        if isinstance(err, UserError) or _ort_error(err):
            raise UserError(_first_line(err)) from None
        raise


def tuned_layout(args, threads):
    """npuzoo.tune's choice for this graph, batch, precision and machine: cached, else timed
    now, each layout in a process of its own (tune.isolated: an engine that crashes on this
    graph costs its layouts, not the run)."""
    from npuzoo import tune

    if args.no_combine_tensor_mode:
        raise UserError("--tune times one static batch; drop --auto_set_dym*_mode or --tune")
    engines.check_model_path(args.model, "onnxruntime")   # before it is hashed for the key
    key, fields = tune.cache_key(args.model, args.precision, args.dymBatch or args.batchsize,
                                 threads)
    return tune.choose(args.tune, key, fields, tune.layouts(args.backend, threads),
                       lambda layout: tune.isolated(measure_layout, args, layout, tune.SECONDS),
                       f" {os.path.basename(args.model)}")


def split_inputs_for_devices(inputs, n_inputs, jobs):
    """T23 split_inputs_new: every device gets its share of each model input's files."""
    inputs_list = inputs.split(",")
    if os.path.isfile(inputs_list[0]):
        files = inputs_list
        if len(files) % n_inputs:
            raise UserError("--input gives {} files for a model with {} inputs; give a multiple "
                            "of {}".format(len(files), n_inputs, n_inputs))
    elif os.path.isdir(inputs_list[0]):
        fileslists = list_input_files(inputs_list, n_inputs)
        files = [path for group in fileslists for path in group]
    else:
        raise UserError("--input: '{}' is neither a file nor a directory".format(inputs_list[0]))
    per_input = math.ceil(len(files) / n_inputs)
    shares = [[] for _ in range(jobs)]
    for start in range(0, len(files), per_input):
        chunk = files[start:start + per_input]
        per_device = math.ceil(len(chunk) / jobs)
        for j, begin in enumerate(range(0, len(chunk), per_device)):
            shares[j].extend(chunk[begin:begin + per_device])
    if any(not share for share in shares):
        raise UserError("--device lists {} devices but --input has only {} files per model input; "
                        "give fewer devices".format(jobs, per_input))
    return [",".join(share) for share in shares]


def run_multidevice(args, argv, threads):
    devices = args.device
    logger.info("multidevice:{} run begin".format(devices))
    splits = None
    if args.input is not None:
        _, inputs, _ = open_session(args.model, threads)
        splits = split_inputs_for_devices(args.input, len(inputs), len(devices))
    base = args.output_dirname if args.output_dirname is not None else time.strftime("%Y_%m_%d-%H_%M_%S")
    results = []
    for i, device in enumerate(devices):
        cur = copy.copy(args)
        cur.device = device
        cur.input = None if splits is None else splits[i]
        cur.output_dirname = os.path.join(base, "device{}".format(device))
        summary, start, end = run_single(cur, argv, threads)
        results.append({"index": i, "device": device, "throughput": summary["throughput"],
                        "start_time": start, "end_time": end, "summary": summary})
    logger.info("multidevice run end qsize:{} result:{}".format(2 * len(results), 0))
    for res in results:
        print("i:{} device_{} throughput:{} start_time:{} end_time:{}".format(
            res["index"], res["device"], res["throughput"], res["start_time"], res["end_time"]),
            flush=True)
    total = sum(res["throughput"] for res in results)
    logger.info("summary throughput:{}".format(total))
    return {"devices": results, "throughput": total}


def run(argv=None, threads=None):
    """Run like `python3 -m npuzoo.bench *argv`; return the summary dict (see module doc).
    argv None means sys.argv[1:]. threads overrides NPUZOO_THREADS / the core count."""
    if argv is None:
        recorded = list(sys.argv)
        argv = sys.argv[1:]
    else:
        argv = [str(a) for a in argv]
        recorded = [os.path.abspath(__file__)] + argv
    args = parse_args(argv)
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    if threads is None:
        threads = default_threads()
    elif int(threads) <= 0:
        raise UserError("threads must be a positive integer, got {}".format(threads))
    if isinstance(args.device, list):
        return run_multidevice(args, recorded, int(threads))
    summary, _, _ = run_single(args, recorded, int(threads))
    return summary


@cli
def main(argv=None):
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
