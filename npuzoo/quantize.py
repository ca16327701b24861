"""PRECISION=int8 on the CPU. `model MODEL.onnx CALIB_PREP OUT.onnx --method METHOD`: the export
quantised statically by one of METHODS, calibrated on CALIB_PREP's .bin files (images outside
the evaluated ones). `backend OUT.json --calibration DATASET_JSON --method METHOD`: the report's
--extra JSON."""

import argparse
import glob
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version

import numpy as np

from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, umask

# What each method does, as the report's calibration.method says it (the version is added).
METHODS = {"onnxruntime": "quantize_static, QDQ, MinMax, per-channel int8 weights, uint8 "
                          "activations",
           "nncf": "nncf.quantize, default settings (preset PERFORMANCE: symmetric int8 "
                   "weights per channel and activations, MinMax, fast bias correction)"}


def described(method: str) -> str:
    return f"{method} {version(method)} {METHODS[method]}"


def calibration_files(prep_dir: str, shape: list[int]) -> list[str]:
    """The .bin files of `prep_dir`, each checked to hold one float32 image of `shape`."""
    files = sorted(glob.glob(os.path.join(prep_dir, "*.bin")))
    if not files:
        raise UserError(f"{prep_dir}: no preprocessed calibration images; rerun the make command")
    size = int(np.prod(shape)) * 4
    for path in files:
        if os.path.getsize(path) != size:
            raise UserError(f"{path}: {os.path.getsize(path)} bytes, expected {size} "
                            f"(float32 {shape}); rerun the make command")
    return files


Feed = Callable[[str], dict[str, np.ndarray]]   # a calibration file's inputs, read when needed


def _onnxruntime(source: str, written: str, files: list[str], feed: Feed) -> None:
    from onnxruntime import quantization as ortq

    class Reader(ortq.CalibrationDataReader):  # type: ignore[misc]
        pending = map(feed, files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.pending, None)

    ortq.quantize_static(source, written, Reader(), quant_format=ortq.QuantFormat.QDQ,
                         per_channel=True, activation_type=ortq.QuantType.QUInt8,
                         weight_type=ortq.QuantType.QInt8,
                         calibrate_method=ortq.CalibrationMethod.MinMax)


def _nncf(source: str, written: str, files: list[str], feed: Feed) -> None:
    import nncf
    import onnx
    import rich

    if not sys.stdout.isatty():
        rich.reconfigure(quiet=True)   # its progress bars, printed whole into a log file
    dataset = nncf.Dataset(files, feed)
    onnx.save(nncf.quantize(onnx.load(source), dataset, subset_size=len(files)), written)


def quantize(model_path: str, prep_dir: str, out_path: str, method: str) -> None:
    import onnx
    from onnx import version_converter

    model = onnx.load(model_path)
    graph_input = model.graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:]
    files = calibration_files(prep_dir, dims)

    def feed(path: str) -> dict[str, np.ndarray]:
        return {graph_input.name: np.fromfile(path, np.float32).reshape(1, *dims)}

    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    # The quantisers (and torch, which nncf imports) log warnings and hints to stderr.
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix=".quantize-", suffix=".tmp", dir=folder) as tmp:
            # per-channel scales need opset 13 (DequantizeLinear's axis); the export is opset 11
            opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                        default=11)
            source = os.path.join(tmp, "opset13.onnx")
            onnx.save(version_converter.convert_version(model, 13) if opset < 13 else model, source)
            written = os.path.join(tmp, "int8.onnx")
            (_nncf if method == "nncf" else _onnxruntime)(source, written, files, feed)
            os.chmod(written, 0o666 & ~umask())
            os.replace(written, out_path)
    finally:
        logging.disable(logging.NOTSET)
    print(f"quantized {model_path} -> {out_path} (int8, {method}, calibrated on {len(files)} "
          "images)")


@cli
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.quantize",
                                     description="Static int8 quantisation for the CPU.")
    sub = parser.add_subparsers(dest="action", required=True)
    model = sub.add_parser("model", help="quantise an exported ONNX")
    model.add_argument("onnx")
    model.add_argument("prep", help="preprocessed calibration images (.bin)")
    model.add_argument("out")
    backend = sub.add_parser("backend", help="the report's --extra JSON of an int8 run")
    backend.add_argument("out")
    backend.add_argument("--calibration", required=True, help="the calibration dataset.json")
    for parsed in (model, backend):
        parsed.add_argument("--method", required=True, choices=sorted(METHODS), help="quantiser")
    args = parser.parse_args(argv)
    if args.action == "model":
        quantize(args.onnx, args.prep, args.out, args.method)
        return
    with open(args.calibration, encoding="utf-8") as handle:
        info = json.load(handle)
    # The engine's name and version come from the runner's summary (npuzoo.report).
    calibration = {"dataset": info.get("name"), "images": info.get("images"),
                   "offset": info.get("offset", 0), "labels_sha256": info.get("labels_sha256"),
                   "method": described(args.method)}
    atomic_write(args.out, json.dumps({"backend": {"precision": "int8"},
                                       "calibration": calibration}, indent=2) + "\n")


if __name__ == "__main__":
    main()
