"""PRECISION=int8 on the CPU. `model MODEL.onnx CALIB_PREP OUT.onnx`: the export converted to
opset 13 (per-channel scales need it) and quantised statically by ONNX Runtime (QDQ, int8
weights per channel, uint8 activations, MinMax over CALIB_PREP's .bin files, images outside the
evaluated ones). `backend OUT.json --calibration DATASET_JSON`: the report's --extra JSON."""

import argparse
import glob
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write, umask


def calibration_reader(prep_dir: str, input_name: str, shape: list[int]) -> tuple[Any, int]:
    """A CalibrationDataReader over the .bin files of `prep_dir`, one image at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    files = sorted(glob.glob(os.path.join(prep_dir, "*.bin")))
    if not files:
        raise UserError(f"{prep_dir}: no preprocessed calibration images; rerun the make command")
    size = int(np.prod(shape)) * 4

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.pending = iter(files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self.pending, None)
            if path is None:
                return None
            data = np.fromfile(path, dtype=np.float32)
            if data.size * 4 != size:
                raise UserError(f"{path}: {data.size * 4} bytes, expected {size} "
                                f"(float32 {shape}); rerun the make command")
            return {input_name: data.reshape(1, *shape)}

    return Reader(), len(files)


def quantize(model_path: str, prep_dir: str, out_path: str) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(model_path)
    graph_input = model.graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:]
    reader, count = calibration_reader(prep_dir, graph_input.name, dims)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    quiet = logging.getLogger()  # the quantiser logs a warning per bias and a hint to stderr
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with tempfile.TemporaryDirectory(prefix=".quantize-", suffix=".tmp", dir=folder) as tmp:
            # Per-channel scales need DequantizeLinear's `axis`, which opset 13 introduced; the
            # export is opset 11 (the guides'), so the copy quantised here is converted first.
            opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                        default=11)
            source = os.path.join(tmp, "opset13.onnx")
            onnx.save(version_converter.convert_version(model, 13) if opset < 13 else model,
                      source)
            written = os.path.join(tmp, "int8.onnx")
            quantize_static(source, written, reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            os.chmod(written, 0o666 & ~umask())
            os.replace(written, out_path)
    finally:
        quiet.level = level
    print(f"quantized {model_path} -> {out_path} (int8 QDQ, calibrated on {count} images)")


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
    args = parser.parse_args(argv)
    if args.action == "model":
        quantize(args.onnx, args.prep, args.out)
        return
    with open(args.calibration, encoding="utf-8") as handle:
        info = json.load(handle)
    # The engine's name and version come from the runner's summary (npuzoo.report).
    calibration = {"dataset": info.get("name"), "images": info.get("images"),
                   "offset": info.get("offset", 0), "labels_sha256": info.get("labels_sha256"),
                   "method": "onnxruntime quantize_static, QDQ, MinMax, per-channel int8 "
                             "weights, uint8 activations"}
    atomic_write(args.out, json.dumps({"backend": {"precision": "int8"},
                                       "calibration": calibration}, indent=2) + "\n")


if __name__ == "__main__":
    main()
