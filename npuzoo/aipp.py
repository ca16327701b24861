"""AIPP (atc `--insert_op_conf`): the normalisation moved onto the chip, uint8 NHWC input.

As the ModelZoo AIPP configs: one static `aipp_op` block, RGB888_U8 input, per channel
`(px - mean_chn - min_chn) * var_reci_chn` with min_chn = 255*mean and var_reci_chn =
1/(255*std), so the om computes (px/255 - mean)/std from the raw bytes `preprocess.py --uint8`
writes. `prepend` puts the same computation as ONNX nodes in front of a graph (the CPU "atc"
and the stand-in atc both use it).
"""

import argparse
import contextlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from npuzoo import config as zoo_config
from npuzoo.errors import UserError, cli
from npuzoo.files import atomic_write

Field = bool | int | float | str

if TYPE_CHECKING:
    from onnx import ModelProto


def fields_for(mean: Sequence[float], std: Sequence[float], height: int,
               width: int) -> dict[str, Field]:
    fields: dict[str, Field] = {"aipp_mode": "static", "input_format": "RGB888_U8",
              "src_image_size_w": width, "src_image_size_h": height,
              "crop": False, "csc_switch": False, "rbuv_swap_switch": False}
    for i, (channel_mean, channel_std) in enumerate(zip(mean, std, strict=True)):
        fields[f"mean_chn_{i}"] = 0
        fields[f"min_chn_{i}"] = 255.0 * channel_mean
        fields[f"var_reci_chn_{i}"] = 1.0 / (255.0 * channel_std)
    return fields


def render(fields: dict[str, Field]) -> str:
    def text(value: Field) -> str:
        return (str(value).lower() if isinstance(value, bool)
                else f"{value:.10g}" if isinstance(value, float) else str(value))
    return "\n".join(["aipp_op {", *(f"    {k}: {text(v)}" for k, v in fields.items()), "}\n"])


def config_text(model: str) -> str:
    spec = zoo_config.load(model)
    _, height, width = spec.input.shape
    return render(fields_for(spec.preprocess.mean, spec.preprocess.std, height, width))


def _value(text: str) -> Field:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def parse(text: str) -> dict[str, Field]:
    """{field: value} of the single `aipp_op { ... }` block; UserError when malformed."""
    body = re.sub(r"#[^\n]*", "", text)
    match = re.fullmatch(r"\s*aipp_op\s*\{(?P<body>[^{}]*)\}\s*", body)
    if not match:
        raise UserError("AIPP config: expected one `aipp_op { key: value ... }` block")
    fields: dict[str, Field] = {}
    for line in filter(None, map(str.strip, match.group("body").split("\n"))):
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[a-z_0-9]+", key) or not value:
            raise UserError(f"AIPP config: cannot read the line {line!r} (expected key: value)")
        if key in fields:
            raise UserError(f"AIPP config: {key} is given twice")
        fields[key] = _value(value)
    return fields


def check(fields: dict[str, Field], height: int | None = None,
          width: int | None = None) -> dict[str, Field]:
    """Stop unless `fields` describe what is emulated here: static RGB888_U8, no crop/CSC/swap."""
    for key in ("aipp_mode", "input_format", "src_image_size_w", "src_image_size_h"):
        if key not in fields:
            raise UserError(f"AIPP config: {key} is required")
    for key, supported in (("aipp_mode", "static"), ("input_format", "RGB888_U8")):
        if fields[key] != supported:
            raise UserError(f"AIPP config: {key} {fields[key]}: only {supported} is supported")
    for key in ("crop", "csc_switch", "rbuv_swap_switch", "padding"):
        if fields.get(key) is True:
            raise UserError(f"AIPP config: {key}: true is not supported here")
    size = (fields["src_image_size_h"], fields["src_image_size_w"])
    if height is not None and size != (height, width):
        raise UserError(f"AIPP config: src_image_size h x w {size[0]}x{size[1]} differs from "
                        f"the model input {height}x{width}")
    for key in [f"{name}_{i}" for name in ("mean_chn", "min_chn", "var_reci_chn")
                for i in range(3)]:
        if isinstance(fields.get(key), (bool, str)):
            raise UserError(f"AIPP config: {key} must be a number")
    return fields


def prepend(model: "ModelProto", fields: dict[str, Field]) -> "ModelProto":
    """`model` (float32 NCHW input) with the AIPP computation in front: input uint8 NHWC."""
    from onnx import TensorProto, helper, numpy_helper

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"AIPP: the model has {len(inputs)} inputs; one image input is expected")
    original = inputs[0]
    dims = original.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise UserError(f"AIPP: input {original.name} is not N,3,H,W")
    height, width = dims[2].dim_value, dims[3].dim_value
    check(fields, height, width)

    name = original.name
    f32, nchw, sub, inner = (f"{name}_aipp_{step}" for step in ("f32", "nchw", "sub", "normalised"))
    for node in model.graph.node:
        for k, value in enumerate(node.input):
            if value == name:
                node.input[k] = inner
    batch = helper.make_tensor_value_info(name, TensorProto.UINT8, [None, height, width, 3])
    batch.type.tensor_type.shape.dim[0].CopyFrom(dims[0])  # the batch dimension as it was
    # per channel, shaped [1, 3, 1, 1]: mean_chn + min_chn is subtracted, then * var_reci_chn
    offset = [float(fields.get(f"mean_chn_{i}", 0)) + float(fields.get(f"min_chn_{i}", 0))
              for i in range(3)]
    scale = [float(fields.get(f"var_reci_chn_{i}", 1.0)) for i in range(3)]
    model.graph.initializer.extend(
        numpy_helper.from_array(np.array(values, np.float32).reshape(1, 3, 1, 1), name + suffix)
        for values, suffix in ((offset, "_aipp_offset"), (scale, "_aipp_scale")))
    nodes = [helper.make_node("Cast", [name], [f32], to=TensorProto.FLOAT, name="aipp_cast"),
             helper.make_node("Transpose", [f32], [nchw], perm=[0, 3, 1, 2], name="aipp_transpose"),
             helper.make_node("Sub", [nchw, name + "_aipp_offset"], [sub], name="aipp_sub"),
             helper.make_node("Mul", [sub, name + "_aipp_scale"], [inner], name="aipp_mul"),
             *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    original.CopyFrom(batch)  # in place: the input keeps its name and position
    return model


def read(path: str, height: int | None = None, width: int | None = None) -> dict[str, Field]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise UserError(f"{path}: cannot read the AIPP config ({err.strerror or err})") from None
    try:
        return check(parse(text), height, width)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.aipp",
                                     description="AIPP configs for atc --insert_op_conf.")
    sub = parser.add_subparsers(dest="command", required=True)
    conf = sub.add_parser("config", help="write the AIPP config of MODEL (from model.yaml)")
    conf.add_argument("model")
    conf.add_argument("out")
    back = sub.add_parser("backend", help="the report's --extra JSON, with backend.aipp true")
    back.add_argument("out")
    back.add_argument("--base", help="an --extra JSON to extend (Ascend: backend.json)")
    args = parser.parse_args(argv)
    if args.command == "config":
        atomic_write(args.out, config_text(args.model))
        return
    extra: dict[str, Any] = {}
    if args.base:
        with open(args.base, encoding="utf-8") as handle:
            extra = json.load(handle)
    # On the CPU the engine's name and version come from the runner's summary (npuzoo.report).
    extra["backend"] = dict(extra.get("backend") or {}, aipp=True)
    atomic_write(args.out, json.dumps(extra, indent=2) + "\n")


if __name__ == "__main__":
    main()
