"""`int8_agreement`: how far an int8 run's logits are from the fp32 export's on its first
images (`write --fp32-model`)."""

import os
from typing import Any

import numpy as np

from npuzoo.errors import UserError
from npuzoo.report.pieces import RESULT_SUFFIX, read_logits

IMAGES = 200   # the run's first images compared with fp32: a bounded extra pass
BATCH = 8


def _fp32_logits(fp32_model: str, prep_dir: str, names: list[str]) -> np.ndarray:
    """The fp32 export's logits (ONNX Runtime) on the preprocessed `<stem>.bin` of `names`."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(fp32_model, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise UserError(f"{fp32_model}: ONNX Runtime cannot load it ({str(err)[:200]})") from None
    graph_input = session.get_inputs()[0]
    shape = [int(d) for d in graph_input.shape[1:]]
    found = []
    for start in range(0, len(names), BATCH):
        chunk = names[start:start + BATCH]
        images = []
        for name in chunk:
            path = os.path.join(prep_dir, name[:-len(RESULT_SUFFIX)] + ".bin")
            try:
                images.append(np.fromfile(path, dtype=np.float32).reshape(shape))
            except (OSError, ValueError) as err:
                raise UserError(f"{path}: not a float32 {shape} image ({err})") from None
        found.append(session.run(None, {graph_input.name: np.stack(images)})[0]
                     .reshape(len(chunk), -1))
    return np.concatenate(found)


def agreement(fp32_model: str, prep_dir: str, results_dir: str, names: list[str],
              limit: int = IMAGES) -> dict[str, Any]:
    """On the first `limit` result files `names`: top1 = % of images with the same top class,
    top5 = % whose fp32 top class is among the int8 top 5, the largest and mean absolute
    logit difference."""
    names = sorted(names)[:limit]
    if not names:
        raise UserError(f"{results_dir}: no result files to compare with the fp32 model")
    fp32 = _fp32_logits(fp32_model, prep_dir, names)
    int8 = np.stack([read_logits(os.path.join(results_dir, name))[0] for name in names])
    if int8.shape != fp32.shape:
        raise UserError(f"{results_dir}: logits of shape {int8.shape[1:]}, the fp32 model "
                        f"gives {fp32.shape[1:]}; rerun the inference step")
    top = fp32.argmax(axis=1)
    top5 = np.argsort(-int8, axis=1)[:, :5]
    error = np.abs(int8 - fp32)
    return {"images": len(names),
            "top1": round(float((int8.argmax(axis=1) == top).mean() * 100), 2),
            "top5": round(float((top5 == top[:, None]).any(axis=1).mean() * 100), 2),
            "max_abs_logit_error": round(float(error.max()), 5),
            "mean_abs_logit_error": round(float(error.mean()), 5),
            "reference": f"fp32 export ({os.path.basename(fp32_model)}) on ONNX Runtime, "
                         f"the run's first {len(names)} images"}
