"""The CPU inference engines behind npuzoo.bench: ONNX Runtime and OpenVINO Runtime.

`python3 -m npuzoo.bench ... --backend onnxruntime|openvino` picks one; everything else the
runner does (command line, batching, result files, summary JSON, printed lines) is the same
for both. This module opens a model with one engine and hands the runner objects that look
like an ONNX Runtime session: `session.run(None, feeds)` returns the outputs as numpy arrays
in the model's output order, and the inputs/outputs are described as TensorDesc.

ONNX Runtime (`onnxruntime`): an InferenceSession on the CPUExecutionProvider, ORT_ENABLE_ALL,
sequential execution, intra-op threads as given, inter-op 1. It reads the plain export and the
offline-optimised graphs npuzoo.compile writes (`com.microsoft` fused operators included).

OpenVINO Runtime (`openvino`, PyPI `openvino`): `Core.read_model` on the ONNX file, reshaped to
the static shapes the runner resolved (`prepare`), compiled for "CPU" with
INFERENCE_PRECISION_HINT=f32 set explicitly (on a CPU with bf16 units OpenVINO's default is
bf16, which moves logits by 1.6-3% and costs top-5 agreement), NUM_STREAMS = the runner's
streams and INFERENCE_NUM_THREADS = streams x threads per stream; one infer request per
stream (OpenVINO caps its streams and threads at the cores it finds; the requests then share
them). It reads the exported ONNX (build/<model>/onnx/<weights>/<model>.onnx, dynamic batch:
the runner fixes the batch from --batchsize/--dymBatch). OpenVINO 2026.4 also reads the graphs
npuzoo.compile writes for ONNX Runtime (`com.microsoft` FusedConv: checked on the five models,
same logits), but that support covers a few of ORT's contrib operators only: where read_model
fails the error line says to give it the export. `.ort` files are refused with one line.
A QDQ int8 model runs in int8 on both engines (the f32 hint governs the float parts only).

Precision (`--precision fp32|int8` of the runner): `check_precision` reads the graph's operator
types (the `onnx` package, no tensors kept) and refuses an fp32 claim on a quantised graph and
an int8 claim on a float one, so a summary never names the wrong precision.

The engine names, the default one and int8's are npuzoo.config's (a model names its own in
model.yaml `runtime.backend`).
"""

import importlib.metadata
import os

import numpy as np

from npuzoo.config import BACKEND_LABELS as BACKEND_LABELS
from npuzoo.config import BACKENDS as BACKENDS
from npuzoo.config import DEFAULT_BACKEND as DEFAULT_BACKEND
from npuzoo.config import INT8_BACKEND as INT8_BACKEND
from npuzoo.errors import UserError

PRECISIONS = ("fp32", "int8")
STREAMS_PER_CORE = 4  # beyond a few per core streams only queue, and each holds a session


def max_streams():
    """The most streams a run may ask for here: STREAMS_PER_CORE per usable core."""
    return STREAMS_PER_CORE * len(os.sched_getaffinity(0))


def check_streams(streams, name):
    """`streams` if at most max_streams(), else a one-line UserError naming `name` (the flag or
    Make variable) and the limit."""
    if streams > max_streams():
        raise UserError(f"{name}={streams}: at most {max_streams()} here ({STREAMS_PER_CORE} per "
                        f"usable core, {len(os.sched_getaffinity(0))} cores); lower it")
    return streams

# Operators that make a graph quantised (QDQ, QOperator, integer and ORT's fused variants).
QUANTISED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
    "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearSoftmax", "QGemm", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "QAttention",
})

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


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _openvino_reason(err):
    """The line of an OpenVINO error that says what failed: its messages start with lines of
    source locations (`Exception from src/...`, `Check '...' failed at ...`)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check "))]
    return said[-1] if said else _first_line(err)


def backend_version(backend):
    """The installed version of the engine's package, or None."""
    try:
        return importlib.metadata.version(backend)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_backend_for(model_path):
    """The engine when --backend is not given: DEFAULT_BACKEND, except for an ONNX Runtime
    `.ort` file, which only ONNX Runtime reads."""
    return "onnxruntime" if str(model_path).lower().endswith(".ort") else DEFAULT_BACKEND


def check_backend(backend):
    if backend not in BACKENDS:
        raise UserError("backend {!r}: expected one of {}".format(backend, ", ".join(BACKENDS)))
    return backend


def check_model_path(model_path, backend):
    """One line for a missing file, an Ascend .om, or a file the engine cannot read."""
    if not os.path.isfile(model_path):
        raise UserError("model file not found: {}".format(model_path))
    if model_path.lower().endswith(".om"):
        raise UserError("{}: an Ascend .om model needs the real ais_bench; this runner executes "
                        "the ONNX model (.onnx)".format(model_path))
    if backend == "openvino" and model_path.lower().endswith(".ort"):
        raise UserError("{}: OpenVINO cannot read an ONNX Runtime .ort file; give it the exported "
                        "ONNX (build/<model>/onnx/<weights>/<model>.onnx)".format(model_path))
    if not model_path.lower().endswith((".onnx", ".ort")):
        raise UserError("{}: expected an ONNX model file (.onnx)".format(model_path))


# -- precision -----------------------------------------------------------------------------

def graph_ops(model_path):
    """The set of operator types of an ONNX file (subgraphs included)."""
    import onnx

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as err:  # DecodeError and friends
        raise UserError("{}: not a readable ONNX model ({})".format(model_path, _first_line(err))) from None
    ops = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            ops.add(node.op_type)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    graphs.append(attr.g)
                graphs.extend(g for g in attr.graphs)
    del model
    return ops


def check_precision(model_path, precision):
    """UserError when the graph's operators contradict `precision` (fp32 or int8)."""
    if precision not in PRECISIONS:
        raise UserError("precision {!r}: expected one of {}".format(precision, ", ".join(PRECISIONS)))
    if model_path.lower().endswith(".ort"):
        return  # an ORT flatbuffer: no ONNX graph to read; trust the caller
    quantised = sorted(graph_ops(model_path) & QUANTISED_OPS)
    if precision == "int8" and not quantised:
        raise UserError("{}: --precision int8, but the graph has no quantised operator "
                        "(QuantizeLinear, QLinearConv, ...); give the int8 model".format(model_path))
    if precision == "fp32" and quantised:
        raise UserError("{}: --precision fp32, but the graph is quantised ({}); say "
                        "--precision int8".format(model_path, ", ".join(quantised[:3])))


# -- ONNX Runtime --------------------------------------------------------------------------

def open_onnxruntime(model_path, threads):
    """(session, inputs, outputs): an ONNX Runtime CPU session set for throughput."""
    check_model_path(model_path, "onnxruntime")
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
        if type(err).__module__.startswith("onnxruntime"):
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


# -- OpenVINO ------------------------------------------------------------------------------

def _type_name(value):
    """f32 for OpenVINO's Type f32 (a property value), else the text of the value."""
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)


class OpenVINOModel:
    """One OpenVINO model compiled once for all streams (NUM_STREAMS = streams), one infer
    request per stream. Compiled on the first prepare() (or run) with the shapes then known."""

    PRECISION_HINT = "f32"

    def __init__(self, model_path, threads_per_stream, streams, hint=None):
        check_model_path(model_path, "openvino")
        try:
            import openvino as ov
        except ImportError:
            raise UserError("--backend openvino needs the `openvino` package (pip install "
                            "openvino; requirements.txt pins it)") from None
        self.ov = ov
        self.path = model_path
        self.streams = streams
        self.threads = threads_per_stream * streams
        self.hint = hint   # "THROUGHPUT": OpenVINO picks NUM_STREAMS itself (npuzoo.tune)
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(model_path)
        except Exception as err:
            raise UserError("OpenVINO cannot read {} ({}); it reads the exported ONNX, not ONNX "
                            "Runtime's compiled graph: give it build/<model>/onnx/<weights>/"
                            "<model>.onnx".format(model_path, _first_line(err))) from None
        self.inputs = [self._desc(port, "input") for port in self.model.inputs]
        self.outputs = [self._desc(port, "output") for port in self.model.outputs]
        self.compiled = None
        self.requests = None
        self.shapes = None

    def _desc(self, port, kind):
        names = port.get_names()
        name = port.get_any_name() if names else "{}{}".format(kind, port.get_index())
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except Exception:
            raise UserError("{}: {} '{}' has type {}, which this runner does not handle".format(
                self.path, kind, name, port.get_element_type())) from None
        shape = port.get_partial_shape()
        dims = [] if shape.rank.is_dynamic else [
            d.get_length() if d.is_static and d.get_length() > 0 else -1 for d in shape]
        return TensorDesc(name, dtype.type, dims)

    def prepare(self, shapes=None):
        """Compile for {input name: static shape} (None: as the model is, dynamic dims kept)."""
        key = None if not shapes else tuple(sorted((k, tuple(v)) for k, v in shapes.items()))
        if self.compiled is not None and key == self.shapes:
            return
        ov = self.ov
        try:
            if shapes:
                self.model.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
            config = {
                "INFERENCE_PRECISION_HINT": self.PRECISION_HINT,
                "INFERENCE_NUM_THREADS": str(self.threads),
                **({"PERFORMANCE_HINT": self.hint} if self.hint
                   else {"NUM_STREAMS": str(self.streams)}),
            }
            self.compiled = self.core.compile_model(self.model, "CPU", config)
        except Exception as err:
            raise UserError("OpenVINO cannot compile {} for the CPU: {}".format(
                self.path, _openvino_reason(err))) from None
        got = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if got not in ("f32", "float32"):
            raise UserError("OpenVINO compiled {} with precision {} although f32 was asked".format(
                self.path, got))
        self.requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        self.shapes = key

    def sessions(self):
        return [OpenVINOSession(self, index) for index in range(self.streams)]


class OpenVINOSession:
    """What the runner calls: run(None, feeds) on stream `index`'s infer request."""

    def __init__(self, model, index):
        self.model = model
        self.index = index

    def prepare(self, shapes=None):
        self.model.prepare(shapes)

    def get_providers(self):
        compiled = self.model.compiled
        if compiled is None:
            return ["OpenVINO CPU (not compiled yet)"]
        return ["OpenVINO CPU ({} streams, {} threads, precision {})".format(
            compiled.get_property("NUM_STREAMS"), compiled.get_property("INFERENCE_NUM_THREADS"),
            _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")))]

    def run(self, output_names, feeds):
        model = self.model
        if model.compiled is None:
            model.prepare({name: list(np.shape(value)) for name, value in feeds.items()})
        request = model.requests[self.index]
        try:
            request.infer({name: np.ascontiguousarray(value) for name, value in feeds.items()},
                          share_inputs=True)
        except Exception as err:
            raise UserError("OpenVINO failed to run {}: {}".format(model.path, _openvino_reason(err))) from None
        outputs = [np.array(request.get_output_tensor(k).data, copy=True)
                   for k in range(len(model.outputs))]
        if output_names is None:
            return outputs
        names = [d.name for d in model.outputs]
        return [outputs[names.index(n)] for n in output_names]


def open_openvino(model_path, threads_per_stream, streams=1, hint=None):
    """([one session per stream], inputs, outputs) sharing one compiled OpenVINO model."""
    model = OpenVINOModel(model_path, threads_per_stream, streams, hint)
    return model.sessions(), model.inputs, model.outputs
