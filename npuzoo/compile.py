"""The CPU counterpart of `atc`: a static-batch, offline-optimised ONNX model.

ATC compiles one `.om` per batch size (`--input_shape="image:BS,3,H,W"`). On the CPU we do
the same with ONNX Runtime: fix the batch dimension to BS, then let ONNX Runtime write its
offline-optimised graph (constant folding and operator fusions; ORT_ENABLE_EXTENDED, which
stays portable across CPUs, while layout optimisations are applied again at load time).
"""

import argparse
import os
import tempfile

import onnx

from npuzoo.errors import UserError, cli


def fix_batch(model, batch):
    """Set dimension 0 of every graph input and output to `batch`."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    return model


def compile_model(onnx_path, out_path, batch):
    import onnxruntime as ort

    try:
        model = onnx.load(onnx_path)
    except Exception as err:  # onnx raises DecodeError or OSError variants
        raise UserError(f"{onnx_path}: not a readable ONNX model ({err}); "
                        "delete it and export again") from None
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        static = os.path.join(tmp, "static.onnx")
        onnx.save(fix_batch(model, batch), static)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        optimised = os.path.join(tmp, "optimised.onnx")
        options.optimized_model_filepath = optimised
        ort.InferenceSession(static, options, providers=["CPUExecutionProvider"])
        os.replace(optimised, out_path)


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m npuzoo.compile",
        description="Fix the batch size of an ONNX model and optimise it for ONNX Runtime.")
    parser.add_argument("onnx")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True)
    args = parser.parse_args(argv)
    if args.batch <= 0:
        raise UserError(f"BS={args.batch}: expected a positive batch size")
    compile_model(args.onnx, args.out, args.batch)
    print(f"compiled {args.onnx} -> {args.out} (batch {args.batch})")


if __name__ == "__main__":
    main()
