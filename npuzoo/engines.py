"""The CPU engines behind npuzoo.bench, ONNX Runtime (ORT_ENABLE_ALL, sequential) and OpenVINO
(the export reshaped and compiled with INFERENCE_PRECISION_HINT=f32, as bf16 CPUs would default
to bf16; NUM_STREAMS or a PERFORMANCE_HINT), both as objects like an ONNX Runtime session."""

import os
import queue
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuzoo.config import BACKEND_LABELS as BACKEND_LABELS
from npuzoo.config import BACKENDS as BACKENDS
from npuzoo.config import DEFAULT_BACKEND as DEFAULT_BACKEND
from npuzoo.errors import UserError
from npuzoo.soc import package_version

PRECISIONS = ("fp32", "int8")
STREAMS_PER_CORE = 4  # beyond a few per core streams only queue, and each holds a session
# Operators that make a graph quantised (QDQ, integer and ORT's fused variants; QLinear*).
QUANTISED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
    "MatMulInteger", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention"})
ORT_DTYPES: dict[str, type[Any]] = {   # ONNX Runtime's names are numpy's but two
    f"tensor({name})": np.dtype({"float": "float32", "double": "float64"}.get(name, name)).type
    for name in ("float", "float16", "double", "int8", "uint8", "int16", "uint16", "int32",
                 "uint32", "int64", "uint64", "bool")}


@dataclass
class TensorDesc:
    """One model input or output: name, numpy dtype, model shape (-1 where dynamic); for an
    input, the shape of this run and the bytes of one batch once resolved."""
    name: str
    datatype: type[Any]
    shape: list[int]
    resolved: list[int] | None = None
    realsize: int | None = None


def max_streams() -> int:
    return STREAMS_PER_CORE * len(os.sched_getaffinity(0))


def check_streams(streams: int, name: str) -> int:
    if streams > max_streams():
        raise UserError(f"{name}={streams}: at most {max_streams()} here ({STREAMS_PER_CORE} per "
                        f"usable core, {len(os.sched_getaffinity(0))} cores); lower it")
    return streams


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _openvino_reason(err: BaseException) -> str:
    """The line of an OpenVINO error that says what failed: its messages start with lines of
    source locations (`Exception from src/...`, `Check '...' failed at ...`)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check "))]
    return said[-1] if said else first_line(err)


backend_version = package_version   # each engine is installed as the package of its name


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def check_model_path(model_path: str, backend: str) -> None:
    """One line for a missing file, an Ascend .om, or a file the engine cannot read."""
    lower = model_path.lower()
    if not os.path.isfile(model_path):
        raise UserError(f"model file not found: {model_path}")
    if lower.endswith(".om"):
        raise UserError(f"{model_path}: an Ascend .om model needs the real ais_bench; this "
                        "runner executes the ONNX model (.onnx)")
    if backend == "openvino" and lower.endswith(".ort"):
        raise UserError(f"{model_path}: OpenVINO cannot read an ONNX Runtime .ort file; give it "
                        "the exported ONNX (build/<model>/onnx/<weights>/<model>.onnx)")
    if not lower.endswith((".onnx", ".ort")):
        raise UserError(f"{model_path}: expected an ONNX model file (.onnx)")


def graph_ops(model_path: str) -> set[str]:
    """The set of operator types of an ONNX file (subgraphs included)."""
    import onnx

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as err:  # DecodeError and friends
        raise UserError(f"{model_path}: not a readable ONNX model ({first_line(err)})") from None
    ops, graphs = set(), [model.graph]
    while graphs:
        for node in graphs.pop().node:
            ops.add(node.op_type)
            for attr in node.attribute:   # an unset attr.g is an empty graph
                graphs.extend([attr.g, *attr.graphs])
    return ops


def check_precision(model_path: str, precision: str) -> None:
    if model_path.lower().endswith(".ort"):
        return  # an ORT flatbuffer: no ONNX graph to read; trust the caller
    quantised = sorted(op for op in graph_ops(model_path)
                       if op in QUANTISED_OPS or op.startswith("QLinear"))
    if precision == "int8" and not quantised:
        raise UserError(f"{model_path}: --precision int8, but the graph has no quantised "
                        "operator (QuantizeLinear, QLinearConv, ...); give the int8 model")
    if precision == "fp32" and quantised:
        raise UserError(f"{model_path}: --precision fp32, but the graph is quantised "
                        f"({', '.join(quantised[:3])}); say --precision int8")


def _ort_descs(model_path: str, nodes: list[Any]) -> list[TensorDesc]:
    for node in nodes:
        if node.type not in ORT_DTYPES:
            raise UserError(f"{model_path}: tensor '{node.name}' has type {node.type}, which "
                            "this runner does not handle")
    return [TensorDesc(node.name, ORT_DTYPES[node.type],
                       [d if isinstance(d, int) and d > 0 else -1 for d in node.shape or []])
            for node in nodes]


def open_onnxruntime(model_path: str, threads: int
                     ) -> tuple[Any, list[TensorDesc], list[TensorDesc]]:
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
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    except Exception as err:
        if type(err).__module__.startswith("onnxruntime"):
            raise UserError(f"{model_path}: ONNX Runtime cannot load it: {first_line(err)}") \
                from None
        raise
    return (session, _ort_descs(model_path, session.get_inputs()),
            _ort_descs(model_path, session.get_outputs()))


class OpenVINOSession:
    """One OpenVINO model for all streams, compiled by prepare() with one infer request per
    stream; each run() takes an idle one."""

    def __init__(self, model_path: str, threads_per_stream: int, streams: int,
                 hint: str | None = None) -> None:
        check_model_path(model_path, "openvino")
        try:
            import openvino as ov
        except ImportError:
            raise UserError("--backend openvino needs the `openvino` package (pip install "
                            "openvino; requirements.txt pins it)") from None
        self.ov, self.path, self.streams, self.hint = ov, model_path, streams, hint
        self.threads = threads_per_stream * streams
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(model_path)
        except Exception as err:
            raise UserError(f"OpenVINO cannot read {model_path} ({first_line(err)}); it reads the "
                            "exported ONNX, not ONNX Runtime's compiled graph: give it "
                            "build/<model>/onnx/<weights>/<model>.onnx") from None
        self.inputs = [self._desc(port, "input") for port in self.model.inputs]
        self.outputs = [self._desc(port, "output") for port in self.model.outputs]
        self.compiled: Any = None
        self.idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _desc(self, port: Any, kind: str) -> TensorDesc:
        name = port.get_any_name() if port.get_names() else f"{kind}{port.get_index()}"
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except Exception:
            raise UserError(f"{self.path}: {kind} '{name}' has type {port.get_element_type()}, "
                            "which this runner does not handle") from None
        shape = port.get_partial_shape()
        dims = [] if shape.rank.is_dynamic else [
            d.get_length() if d.is_static and d.get_length() > 0 else -1 for d in shape]
        return TensorDesc(name, dtype.type, dims)

    def prepare(self, shapes: dict[str, list[int]] | None = None) -> None:
        """Compile for {input name: static shape} (None: as the model is, dynamic dims kept)."""
        try:
            if shapes:
                self.model.reshape({k: self.ov.PartialShape(list(v)) for k, v in shapes.items()})
            # a hint (npuzoo.tune's THROUGHPUT) lets OpenVINO choose the streams itself
            layout = {"PERFORMANCE_HINT": self.hint} if self.hint \
                else {"NUM_STREAMS": str(self.streams)}
            self.compiled = self.core.compile_model(self.model, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(self.threads),
                **layout})
        except Exception as err:
            raise UserError(f"OpenVINO cannot compile {self.path} for the CPU: "
                            f"{_openvino_reason(err)}") from None
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != "f32":
            raise UserError(f"OpenVINO compiled {self.path} with precision {got} although f32 "
                            "was asked")
        for _ in range(self.streams):
            self.idle.put(self.compiled.create_infer_request())

    def get_providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.compiled.get_property('NUM_STREAMS')} streams, "
                f"{self.compiled.get_property('INFERENCE_NUM_THREADS')} threads, precision "
                f"{self.compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name()})"]

    def run(self, output_names: None, feeds: dict[str, Any]) -> list[np.ndarray]:
        request = self.idle.get_nowait()   # one per stream: never short
        try:
            request.infer({name: np.ascontiguousarray(value) for name, value in feeds.items()},
                          share_inputs=True)
            return [np.array(request.get_output_tensor(k).data, copy=True)
                    for k in range(len(self.outputs))]
        except Exception as err:
            raise UserError(f"OpenVINO failed to run {self.path}: {_openvino_reason(err)}") \
                from None
        finally:
            self.idle.put(request)


def open_sessions(model_path: str, threads_per_stream: int, engine: str = "onnxruntime",
                  streams: int = 1, hint: str | None = None
                  ) -> tuple[list[Any], list[TensorDesc], list[TensorDesc]]:
    """([one session per stream], inputs, outputs) of a layout (npuzoo.tune): OpenVINO's shared."""
    if check_backend(engine) == "openvino":
        model = OpenVINOSession(model_path, threads_per_stream, streams, hint)
        return [model] * streams, model.inputs, model.outputs
    opened = [open_onnxruntime(model_path, threads_per_stream) for _ in range(streams)]
    return [session for session, _, _ in opened], opened[0][1], opened[0][2]
