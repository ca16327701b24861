"""Test stand-in for `aclruntime`, the C++/pybind11 backend of Huawei's ais_bench (0.0.2).

An unmodified ais_bench front end from ../shared/third_party (on PYTHONPATH with this folder:
the 2023 one, ais_bench-9d6da90, or the `ait` one, ais_bench-ait-3baadae7) parses the arguments,
checks the paths (ait), batches the input files, names and writes the outputs and the summary;
this module is what it calls where the real one drives ACL on an NPU. It offers what either
front end's `ais_bench/infer/interface.py` uses (docs/ais_bench_compatibility.md, "What the
aclruntime stand-in offers"):

    session_options()                          .loop, .log_level, .acl_json_path
    InferenceSession(path, device, options)    get_inputs(), get_outputs(), options(),
        set_staticbatch(), set_dynamic_batchsize(n), set_dynamic_hw(w, h),
        set_dynamic_dims(s), set_dynamic_shape(s), set_custom_outsize(sizes),
        run(output_names, inputs), sumary(), reset_sumaryinfo(), create_tensor_from_fileslist(
        desc, files); ait's get_dym_aipp_input_exist() (0: no dynamic AIPP input),
        get_max_dym_batchsize(), free_resource(); finalize() on the session (2023) or the
        class (ait)
    tensor_desc        .name, .datatype, .format (0 NCHW, 1 NHWC), .shape (-1 dynamic), .size,
                       .realsize (bytes of one execution's input)
    Tensor(array)      .to_device(id), .to_host(), .shape, numpy's __array__
    BaseTensor(ptr, size)   a host buffer the front end passes by address (array run mode)
    MemorySummary()    .H2D_time_list, .D2H_time_list, .reset()
    dtype              float32, float16, int8, uint8, ... (tensor_desc.datatype)

The model is the `.om` the stand-in atc writes (tests/standins/_standin.py: a header line of
JSON, then the ONNX model with the static shapes fixed); its ONNX runs with ONNX Runtime on the
CPU, `options.loop` times per run() (each execution timed, in ms, into sumary().exec_time_list),
so the outputs are real. sumary().exec_time_list is in the API of the front end beside it
(the wheels come in pairs): one time per execution for the 2023 front end, one (start, end)
pair for ait's (told apart by its infer/args_check.py). What only an NPU host does is emulated as
ACL fails, with a
RuntimeError (the front end then stops with its traceback, as with the real backend):
- a device id beyond NPUZOO_STANDIN_NPUS (aclrtSetDevice);
- a file that is not a stand-in `.om`, or one built for another chip than the device's
  (NPUZOO_STANDIN_CHIP, default 310P3) (aclmdlLoadFromFile);
- an input of another size than the model's (aclmdlExecute);
- a dynamic-batch `.om` run without a batch set, or with a batch it was not compiled for.

On import it appends one line to NPUZOO_STANDIN_LOG (tool "ais_bench"): the command line of the
process (sys.argv[1:]), its working directory, and `frontend`, the file of the `ais_bench`
package that runs, so that a test can tell the real front end from anything else. Under the
2023 front end, which checks no path, it then has the paths of the command line checked as the
ait front end checks them, by that front end's own functions (NPUZOO_STANDIN_AIT: its folder;
a separate process, since both packages are named ais_bench): a path the ait front end would
refuse stops the run here too, so every test of the pipeline holds it to both.
"""

import ctypes
import importlib.util
import os
import sys
import time
from typing import ClassVar

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_STANDINS = os.path.dirname(os.path.dirname(_HERE))
if _STANDINS not in sys.path:
    sys.path.append(_STANDINS)
import _standin  # noqa: E402

__version__ = "0.0.2"  # the ait front end runs its default (array) mode on exactly 0.0.2


def _ait_frontend():
    """True when the ais_bench beside this module is the ait one (its path checks' module)."""
    spec = importlib.util.find_spec("ais_bench")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return any(os.path.isfile(os.path.join(f, "infer", "args_check.py")) for f in folders)


def _log_process():
    frontend = getattr(sys.modules.get("ais_bench"), "__file__", None)
    _standin.log_call("ais_bench", sys.argv[1:],
                      frontend=os.path.dirname(os.path.abspath(frontend)) if frontend else None)


# Run in the ait front end's folder with the command line: its argument checks (args_check.py),
# then, as its file listing does, every entry of an input folder.
_AIT_CHECKS = r"""
import argparse, os, sys
from ais_bench.infer import args_check as check
from ais_bench.infer.path_security_check import FileStat
parser = argparse.ArgumentParser(prog="ait path checks")
parser.add_argument("--model", "-m", type=check.check_om_path_legality)
parser.add_argument("--input", "-i", type=check.check_input_path_legality)
parser.add_argument("--output", "-o", type=check.check_output_path_legality)
parser.add_argument("--output_dirname", type=check.check_output_path_legality)
args, _ = parser.parse_known_args()
for folder in (args.input or "").split(","):
    if folder and os.path.isdir(folder):
        for entry in os.listdir(folder):
            if not FileStat(os.path.join(folder, entry)).is_basically_legal("read"):
                sys.exit("input data:{} is illegal".format(os.path.join(folder, entry)))
"""


def _check_paths_as_ait():
    ait = os.environ.get("NPUZOO_STANDIN_AIT")
    if not ait or "ais_bench" not in sys.modules or _ait_frontend():
        return
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _AIT_CHECKS, *sys.argv[1:]],
                          env=dict(os.environ, PYTHONPATH=ait), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError("[ERROR] a path the ait front end refuses (its checks, above)")
    _standin.log_call("ait-checks", sys.argv[1:])


_log_process()
_check_paths_as_ait()


class dtype:
    """aclruntime.dtype: the element types of tensor_desc.datatype."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<dtype.{self.name}>"

    __str__ = __repr__


_DTYPES = {}
for _name in ("float32", "float16", "int8", "int32", "uint8", "int16", "uint16", "uint32",
              "int64", "uint64", "double", "bool"):
    setattr(dtype, _name, dtype(_name))
    _DTYPES[_name] = getattr(dtype, _name)

_ORT_TYPES = {
    "tensor(float)": (np.float32, "float32"), "tensor(float16)": (np.float16, "float16"),
    "tensor(double)": (np.float64, "double"), "tensor(int8)": (np.int8, "int8"),
    "tensor(uint8)": (np.uint8, "uint8"), "tensor(int16)": (np.int16, "int16"),
    "tensor(uint16)": (np.uint16, "uint16"), "tensor(int32)": (np.int32, "int32"),
    "tensor(uint32)": (np.uint32, "uint32"), "tensor(int64)": (np.int64, "int64"),
    "tensor(uint64)": (np.uint64, "uint64"), "tensor(bool)": (np.bool_, "bool"),
}


class session_options:
    def __init__(self):
        self.loop = 1
        self.log_level = 2
        self.acl_json_path = ""

    def __repr__(self):
        return f"session_options(loop={self.loop}, log_level={self.log_level})"


class tensor_desc:
    def __init__(self, name, datatype, fmt, shape, size, realsize):
        self.name = name
        self.datatype = datatype
        self.format = fmt
        self.shape = list(shape)
        self.size = size
        self.realsize = realsize

    def __repr__(self):
        return (f"tensor_desc(name={self.name}, datatype={self.datatype}, format={self.format}, "
                f"shape={self.shape}, size={self.size}, realsize={self.realsize})")


class _Memory:
    """The process's H2D/D2H copy times (ms), as the real backend's MemorySummary."""
    h2d: ClassVar[list[float]] = []
    d2h: ClassVar[list[float]] = []


class MemorySummary:
    def __init__(self):
        self.H2D_time_list = list(_Memory.h2d)
        self.D2H_time_list = list(_Memory.d2h)

    def reset(self):
        del _Memory.h2d[:]
        del _Memory.d2h[:]


class BaseTensor:
    """A host buffer given by address and size (the front end's ndarray, alive during run)."""

    def __init__(self, ptr, size):
        self.ptr = int(ptr)
        self.size = int(size)

    def host_bytes(self):
        return np.frombuffer(ctypes.string_at(self.ptr, self.size), dtype=np.uint8)


class Tensor:
    """A tensor on the host or the "device" (both are this process's memory here)."""

    def __init__(self, array=None):
        self._array = np.ascontiguousarray(array) if array is not None else np.zeros(0, np.uint8)
        self.device = -1

    @property
    def shape(self):
        return list(self._array.shape)

    @property
    def size(self):
        return int(self._array.nbytes)

    def to_device(self, device_id):
        start = time.perf_counter()
        self._array = self._array.copy()
        _Memory.h2d.append((time.perf_counter() - start) * 1000.0)
        self.device = int(device_id)

    def to_host(self):
        if self.device >= 0:
            start = time.perf_counter()
            self._array = self._array.copy()
            _Memory.d2h.append((time.perf_counter() - start) * 1000.0)
        self.device = -1

    def host_bytes(self):
        return self._array.reshape(-1).view(np.uint8)

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)

    def __repr__(self):
        return f"Tensor(shape={self.shape}, dtype={self._array.dtype}, device={self.device})"


class _Summary:
    def __init__(self, spans):
        """spans: (start_ms, end_ms) of each execution."""
        if _ait_frontend():
            self.exec_time_list = [tuple(span) for span in spans]
        else:
            self.exec_time_list = [end - start for start, end in spans]


def _fail(what):
    raise RuntimeError(f"[ERROR] {what}")


def _load_om(path, device_id):
    count = _standin.npu_count()
    if not 0 <= device_id < count:
        _fail(f"aclrtSetDevice({device_id}) failed: there are {count} NPUs (device ids "
              f"0-{count - 1})")
    if not os.path.isfile(path):
        _fail(f"aclmdlLoadFromFile failed: model file {path} not found")
    found = _standin.read_om(path)
    if found is None:
        _fail(f"{path}: aclmdlLoadFromFile failed: not an offline model (.om) built by atc")
    header, offset = found
    running = "Ascend" + _standin.chip()
    if header["soc_version"] != running:
        _fail("{}: aclmdlLoadFromFile failed: the om was built with --soc_version={} but device {} "
              "is an {}".format(path, header["soc_version"], device_id, running))
    return header, offset


class InferenceSession:
    def __init__(self, model_path, device_id, options=None):
        import onnxruntime as ort

        self.model_path = model_path
        self.device_id = int(device_id)
        self._options = options if options is not None else session_options()
        self.header, offset = _load_om(model_path, self.device_id)
        with open(model_path, "rb") as handle:
            handle.seek(offset)
            payload = handle.read()
        ort_options = ort.SessionOptions()
        ort_options.intra_op_num_threads = int(os.environ.get("NPUZOO_THREADS")
                                               or len(os.sched_getaffinity(0)))
        ort_options.inter_op_num_threads = 1
        ort_options.log_severity_level = 3
        self._ort = ort.InferenceSession(payload, sess_options=ort_options,
                                         providers=["CPUExecutionProvider"])
        self._in = self._ort.get_inputs()
        self._out = self._ort.get_outputs()
        self._profiles = self.header.get("dynamic_batch_size")
        self._batch = None  # the dynamic batch set, if any
        self._times = []

    # -- descriptions ------------------------------------------------------------------------
    def _shape(self, node):
        return [d if isinstance(d, int) and d > 0 else -1 for d in (node.shape or [])]

    def _resolved(self, node):
        shape = self._shape(node)
        if shape and shape[0] == -1:
            batch = self._batch or max(self._profiles or [1])
            shape[0] = batch
        return shape

    def _desc(self, node, is_input):
        np_type, name = _ORT_TYPES[node.type]
        model_shape = self._shape(node)
        fmt = 1 if is_input and self.header.get("aipp") else 0
        resolved = self._resolved(node)
        itemsize = np.dtype(np_type).itemsize
        size = int(np.prod([d if d > 0 else 1 for d in resolved], dtype=np.int64)) * itemsize
        return tensor_desc(node.name, _DTYPES[name], fmt, model_shape, size, size)

    def get_inputs(self):
        return [self._desc(node, True) for node in self._in]

    def get_outputs(self):
        return [self._desc(node, False) for node in self._out]

    def options(self):
        return self._options

    # -- dynamic settings --------------------------------------------------------------------
    def set_staticbatch(self):
        self._batch = None

    def set_dynamic_batchsize(self, batch):
        batch = int(batch)
        if not self._profiles:
            _fail(f"aclmdlSetDynamicBatchSize failed: {self.model_path} has a static batch; "
                  f"compile it with "
                  "--dynamic_batch_size")
        if batch not in self._profiles:
            _fail(f"aclmdlSetDynamicBatchSize failed: batch {batch} is not one of the om's batch "
                  f"sizes "
                  f"{self._profiles}")
        self._batch = batch

    def set_dynamic_hw(self, width, height):
        _fail("set_dynamic_hw: the stand-in .om has no dynamic image size")

    def set_dynamic_dims(self, dims):
        _fail("set_dynamic_dims: the stand-in .om has no dynamic dims")

    def set_dynamic_shape(self, shape):
        _fail("set_dynamic_shape: the stand-in .om has no dynamic shape")

    def set_custom_outsize(self, sizes):
        self._custom_outsize = list(sizes)

    def get_max_dym_batchsize(self):
        return max(self._profiles or [0])

    def get_dym_aipp_input_exist(self):
        return 0  # atc's static --insert_op_conf AIPP is part of the model, not a dynamic input

    # -- running -----------------------------------------------------------------------------
    def create_tensor_from_fileslist(self, desc, files):
        parts = []
        for path in files:
            with open(path, "rb") as handle:
                parts.append(np.frombuffer(handle.read(), dtype=np.uint8))
        tensor = Tensor(np.concatenate(parts) if parts else np.zeros(0, np.uint8))
        tensor.to_device(self.device_id)
        return tensor

    def run(self, output_names, inputs):
        if self._profiles and self._batch is None:
            _fail(f"aclmdlExecute failed: {self.model_path} has a dynamic batch {self._profiles}; "
                  f"give --dymBatch")
        if len(inputs) != len(self._in):
            _fail(f"aclmdlExecute failed: {len(inputs)} inputs given, the model has "
                  f"{len(self._in)}")
        feeds = {}
        for index, (node, tensor) in enumerate(zip(self._in, inputs, strict=False)):
            start = time.perf_counter()
            data = tensor.host_bytes()
            if isinstance(tensor, BaseTensor):
                data = data.copy()
                _Memory.h2d.append((time.perf_counter() - start) * 1000.0)
            np_type = _ORT_TYPES[node.type][0]
            shape = self._resolved(node)
            want = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_type).itemsize
            if data.nbytes != want:
                _fail(f"aclmdlExecute failed: input {index} ({node.name}) has {data.nbytes} bytes, "
                      f"the model takes {want}")
            feeds[node.name] = data.view(np_type).reshape(shape)
        names = [o.name for o in self._out]
        unknown = [n for n in (output_names or []) if n not in names]
        if unknown:
            _fail("no output named {} (outputs: {})".format(unknown[0], ", ".join(names)))
        for _ in range(max(1, int(self._options.loop))):
            start = time.perf_counter() * 1000.0
            results = self._ort.run(names, feeds)
            self._times.append((start, time.perf_counter() * 1000.0))
        outputs = []
        for result in results:
            tensor = Tensor(result)
            tensor.device = self.device_id
            outputs.append(tensor)
        return outputs

    def sumary(self):  # sic, T23
        return _Summary(self._times)

    def reset_sumaryinfo(self):  # sic, T23
        self._times = []

    def free_resource(self):
        self._ort = None

    @staticmethod
    def finalize():
        """ACL's process-wide finalize: ait calls it on the class, 2023 on the session."""

    def __repr__(self):
        return f"InferenceSession({self.model_path}, device {self.device_id}, {self._options})"
