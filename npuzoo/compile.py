"""The CPU counterpart of `atc`: the batch dimension fixed (one model per batch size, as atc's
.om) and ONNX Runtime's offline-optimised graph written (ORT_ENABLE_EXTENDED: portable across
CPUs). `--aipp CFG` puts the AIPP computation in front (npuzoo.aipp): uint8 NHWC input."""

import argparse
import errno
import os
import shutil
import tempfile

import onnx

from npuzoo import aipp
from npuzoo.errors import UserError, cli
from npuzoo.files import write_error


def compile_model(onnx_path: str, out_path: str, batch: int,
                  aipp_fields: dict[str, aipp.Field] | None = None, portable: bool = False) -> None:
    import onnxruntime as ort

    try:
        model = onnx.load(onnx_path)
    except Exception as err:  # onnx raises DecodeError or OSError variants
        raise UserError(f"{onnx_path}: not a readable ONNX model ({err}); "
                        "delete it and export again") from None
    if aipp_fields is not None:
        model = aipp.prepend(model, aipp_fields)
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim[:1]:   # the batch
            dim.Clear()
            dim.dim_value = batch
    folder = os.path.dirname(os.path.abspath(out_path))
    try:   # an OSError is a full disk or a folder that is not writable: not the export's fault
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            static = os.path.join(tmp, "static.onnx")
            onnx.save(model, static)
            if portable:  # standard ONNX operators only: what OpenVINO reads
                os.replace(static, out_path)
                return
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            optimised = os.path.join(tmp, "optimised.onnx")
            options.optimized_model_filepath = optimised
            try:
                ort.InferenceSession(static, options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime's InvalidGraph, Fail, ...: one line each
                if "onnxruntime" not in type(err).__module__:
                    raise
                reason = str(err).splitlines()[0][:300]
                # Writing the optimised graph failed (a full disk: "Protobuf serialization
                # failed") if the same graph loads without writing: say so, not "delete the export".
                try:
                    ort.InferenceSession(static, providers=["CPUExecutionProvider"])
                except Exception:
                    raise UserError(f"{onnx_path}: ONNX Runtime cannot load it ({reason}); "
                                    "delete it and rerun") from None
                if shutil.disk_usage(folder).free < os.path.getsize(static):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
                raise UserError(f"{out_path}: ONNX Runtime could not write the optimised graph "
                                f"({reason})") from None
            os.replace(optimised, out_path)
    except OSError as err:
        raise write_error(out_path, err) from None


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.compile", description="Fix the batch "
                                     "size of an ONNX model and optimise it for ONNX Runtime.")
    parser.add_argument("onnx")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--aipp", metavar="CFG", help="AIPP config (atc --insert_op_conf): input "
                        "uint8 NHWC, normalised in the graph")
    parser.add_argument("--portable", action="store_true", help="fix the batch only, no ONNX "
                        "Runtime fusions (com.microsoft operators), for another engine (OpenVINO)")
    args = parser.parse_args(argv)
    if args.batch <= 0:
        raise UserError(f"BS={args.batch}: expected a positive batch size")
    fields = aipp.read(args.aipp) if args.aipp else None
    compile_model(args.onnx, args.out, args.batch, fields, args.portable)
    print(f"compiled {args.onnx} -> {args.out} (batch {args.batch})")


if __name__ == "__main__":
    main()
