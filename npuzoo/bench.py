"""ais_bench-compatible inference runner on ONNX Runtime (CPU): `python3 -m npuzoo.bench`.

Provenance. This module implements /work/shared/docs/ais_bench_contract.md, generation G2 as of
T23 (the 2023 `python3 -m ais_bench`, Ascend/tools 9d6da90 `ais_bench/infer/*.py`):

- §2  the command line: every T23 flag, its default and its checks; values after a space or
      `=`; unique prefixes (`--output_dir`); booleans as T23's str2bool (yes/true/t/y/1,
      no/false/f/n/0, any case), each taking one value as in T23 (a bare `--debug` is refused:
      "expected one argument").
- §3  input lists (files or directories), files per batch from input 0, the
      `arg0 tensorsize: X filesize: Y not match` error, padding of the last batch with its
      first file, output splitting with np.array_split and `save out files error`, pure
      inference with zero or random bytes, warm-up, loop.
- §4  the results directory (`O/<%Y_%m_%d-%H_%M_%S | output_dirname>`, joined as T23 joins
      them, unnormalised), file names `{stem}_{i}.{bin|npy|txt}`, the BIN/NPY/TXT formats, and
      the summary JSON written atomically to `<that path>_summary.json`: beside the results
      directory, or, as in T23, inside it as `_summary.json` when --output_dirname ends with
      `/` (the InceptionV4 guide's `--output_dirname ./result_bs4/`). The summary has T23's
      keys and no others.
- §5  the printed Performance Summary block in the T23 format (H2D/D2H lines only with
      --display_all_summary) and the multi-device lines.

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
  --outputSize is accepted and ignored: ONNX Runtime sizes its outputs itself.
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
  NPUZOO_THREADS; inter-op 1; ORT_ENABLE_ALL; sequential execution.
- The progress bar goes to stderr and only when stderr is a terminal.

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
import time

import numpy as np

from npuzoo.errors import UserError, cli

PURE_INFER_FAKE_FILE = "pure_infer_data"
PADDING_INFER_FAKE_FILE = "padding_infer_fake_file"
PERCENTILE_SCALE = 99
INPUT_EXTENSIONS = (".bin", ".BIN", ".npy", ".NPY")
FLOAT_TYPES = (np.float16, np.float32, np.float64)

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


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


# -- command line (§2) ---------------------------------------------------------------------

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
    return args


# -- model -----------------------------------------------------------------------------------

class TensorDesc:
    """One model input or output: name, numpy dtype, model shape (-1 where dynamic)."""

    def __init__(self, name, datatype, shape):
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.resolved = None   # the shape used for this run (inputs)
        self.realsize = None   # bytes of one batch (inputs)

    def __repr__(self):
        return "TensorDesc({!r}, {}, {})".format(self.name, np.dtype(self.datatype).name, self.shape)


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


def open_session(model_path, threads):
    """An ONNX Runtime CPU session set for throughput, and its input/output descriptions."""
    if not os.path.isfile(model_path):
        raise UserError("model file not found: {}".format(model_path))
    if model_path.lower().endswith(".om"):
        raise UserError("{}: an Ascend .om model needs the real ais_bench; this runner executes "
                        "the ONNX model (.onnx)".format(model_path))
    if not model_path.lower().endswith((".onnx", ".ort")):
        raise UserError("{}: expected an ONNX model file (.onnx)".format(model_path))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_path, sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as err:
        if _ort_error(err):
            raise UserError("{}: ONNX Runtime cannot load it: {}".format(
                model_path, _first_line(err))) from None
        raise

    def descs(nodes):
        result = []
        for node in nodes:
            if node.type not in _ORT_DTYPES:
                raise UserError("{}: {} '{}' has type {}, which this runner does not handle".format(
                    model_path, "tensor", node.name, node.type))
            shape = [d if isinstance(d, int) and d > 0 else -1 for d in (node.shape or [])]
            result.append(TensorDesc(node.name, _ORT_DTYPES[node.type], shape))
        return result

    return session, descs(session.get_inputs()), descs(session.get_outputs())


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


# -- inputs (§3) ---------------------------------------------------------------------------

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


# -- outputs (§4) ------------------------------------------------------------------------------

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


# -- summary (§4, §5) ----------------------------------------------------------------------

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


def report(batchsize, filesinfo, argv, compute, h2d, d2h, output_prefix, display_all_summary):
    """Build the summary dict, print the T23 block, write `<prefix>_summary.json`."""
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
    if sys.stdout.isatty() and not os.environ.get("NPUZOO_BENCH_T23_OUTPUT"):
        _friendly_summary(batchsize, npu, throughput)
    else:
        _t23_summary(batchsize, npu, h2d_info, d2h_info, throughput, display_all_summary)
    if output_prefix is not None:
        write_json_atomic(output_prefix + "_summary.json", infodict)
    return infodict


def _friendly_summary(batchsize, npu, throughput):
    """On a terminal: what ran where, in rounded figures (the summary JSON keeps them whole)."""
    logger.info("-----------------Performance Summary (CPU, ONNX Runtime)------------------")
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


def run_single(args, argv, threads):
    """One device: warm-up, timed inference, outputs, summary. Returns (summary, start, end)."""
    session, inputs, outputs = open_session(args.model, threads)
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
        logger.debug("--outputSize {} ignored: ONNX Runtime sizes its outputs".format(args.outputSize))
    if args.debug:
        _debug_table(args.model, session, inputs, outputs, threads)

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

    if output_prefix is not None:
        _make_output_dir(output_prefix)
    batchsizes = [] if args.no_combine_tensor_mode else None
    compute, h2d, d2h, filesinfo = [], [], [], {}
    perf = time.perf_counter
    try:
        feeds = make_feeds(batches[0], inputs, args)
        for _ in range(args.warmup_count):
            session.run(None, feeds)
        del feeds
        logger.info("warm up {} done".format(args.warmup_count))

        from tqdm import tqdm
        # One step per session.run, so a long perf loop (one batch, many runs) moves too.
        progress = tqdm(total=len(batches) * args.loop, file=sys.stderr, unit="run",
                        desc="Inference array Processing", disable=not sys.stderr.isatty())
        start_time = time.time()
        for index, batch in enumerate(batches):
            t0 = perf()
            feeds = make_feeds(batch, inputs, args, batchsizes)
            h2d.append((perf() - t0) * 1000.0)
            for _ in range(args.loop):
                t0 = perf()
                results = session.run(None, feeds)
                compute.append((perf() - t0) * 1000.0)
                progress.update()
            t0 = perf()
            results = [np.asarray(r) for r in results]
            splits = (split_outputs(results, files_per_batch, args.output_batchsize_axis, batch)
                      if output_prefix is not None else None)
            d2h.append((perf() - t0) * 1000.0)
            if splits is not None:
                save_outputs(splits, output_prefix, batch, args.outfmt, index, filesinfo)
        end_time = time.time()
        progress.close()
    except Exception as err:
        if _ort_error(err):
            raise UserError("ONNX Runtime failed to run {}: {}".format(args.model, _first_line(err))) from None
        raise

    if batchsizes:
        batchsize = sum(batchsizes) / len(batchsizes)
    summary = report(batchsize, filesinfo, argv, compute, h2d, d2h, output_prefix,
                     args.display_all_summary)
    return summary, start_time, end_time


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
