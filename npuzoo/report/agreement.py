"""An int8 run against fp32 (`int8_agreement`, `fp32_speedup`); `compare` serves bench_int8 too."""

import os

import numpy as np

from npuzoo import config, history
from npuzoo.errors import UserError
from npuzoo.report.compare import throughput
from npuzoo.report.pieces import RESULT_SUFFIX, read_logits
from npuzoo.report.read import Json, model_reports
from npuzoo.variables import CPU_PERF

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

    def image(name: str) -> np.ndarray:
        path = os.path.join(prep_dir, name[:-len(RESULT_SUFFIX)] + ".bin")
        try:
            return np.fromfile(path, dtype=np.float32).reshape(shape)
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not a float32 {shape} image ({err})") from None

    batches = [names[start:start + BATCH] for start in range(0, len(names), BATCH)]
    return np.concatenate([session.run(None, {graph_input.name: np.stack(
        [image(name) for name in chunk])})[0].reshape(len(chunk), -1) for chunk in batches])


def compare(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """fp32 and int8 logits of the same images (a row each): top1 = % with the same top class,
    top5 = % whose fp32 top class is in the int8 top 5; the max and mean |logit difference|."""
    top = fp32.argmax(axis=1)
    top5 = np.argsort(-int8, axis=1)[:, :5]
    error = np.abs(int8 - fp32)
    return {"top1": round(float((int8.argmax(axis=1) == top).mean() * 100), 2),
            "top5": round(float((top5 == top[:, None]).any(axis=1).mean() * 100), 2),
            "max_abs_logit_error": round(float(error.max()), 5),
            "mean_abs_logit_error": round(float(error.mean()), 5)}


def agreement(fp32_model: str, prep_dir: str, results_dir: str, names: list[str],
              limit: int = IMAGES) -> Json:
    names = sorted(names)[:limit]
    if not names:
        raise UserError(f"{results_dir}: no result files to compare with the fp32 model")
    fp32 = _fp32_logits(fp32_model, prep_dir, names)
    int8 = np.stack([read_logits(os.path.join(results_dir, name))[0] for name in names])
    if int8.shape != fp32.shape:
        raise UserError(f"{results_dir}: logits of shape {int8.shape[1:]}, the fp32 model "
                        f"gives {fp32.shape[1:]}; rerun the inference step")
    return {"images": len(names), **compare(fp32, int8),
            "reference": f"fp32 export ({os.path.basename(fp32_model)}) on ONNX Runtime, "
                         f"the run's first {len(names)} images"}


def _fp32_run(report: Json) -> str:
    """The `make` line whose report fp32_twin would match."""
    dataset, perf = report.get("dataset") or {}, report.get("perf") or {}
    source = (report.get("weights") or {}).get("source")
    words = [f"make {report.get('model')} DATA=<this run's DATA> BS={report.get('batch_size')}",
             dataset.get("subset") and isinstance(dataset.get("images"), int)
             and f"N={dataset['images']}", source == "random" and "WEIGHTS=random",
             # a fixed layout: the same streams, untuned
             not history.tuned(report) and f"STREAMS={perf.get('streams') or 1}",
             perf.get("loop") not in (None, CPU_PERF["loop"]) and f"LOOP={perf.get('loop')}",
             perf.get("loop_seconds") not in (None, CPU_PERF["seconds"])
             and f"PERF_SECONDS={perf.get('loop_seconds'):g}",
             source not in ("random", "published") and "WEIGHTS=<this run's WEIGHTS>"]
    return " ".join(word for word in words if word)


def _shown(path: str) -> str:
    """`path` relative to the repository when inside it (`reports/...`), else absolute."""
    relative = os.path.relpath(os.path.abspath(path), config.REPO_ROOT)
    return os.path.abspath(path) if relative.startswith("..") else relative


def fp32_speedup(report: Json, reports_dir: str) -> Json:
    """The int8 run's throughput over its fp32 twin's; when there is none, why and what to run."""
    folder = os.path.join(reports_dir, str(report.get("model")))
    found = model_reports(reports_dir, str(report.get("model")))
    twin = history.fp32_twin(report, [r for _, r in found])
    if twin is None:
        return {"ratio": None, "fp32": None, "reason": f"no fp32 report in {_shown(folder)}/ "
                "of this machine, images, weights, setup and batch size", "run": _fp32_run(report)}
    path = next(p for p, r in found if r is twin)
    speed, base = throughput(report), throughput(twin)
    return {"ratio": round(speed / base, 3) if speed and base else None,
            "fp32": {"path": _shown(path), "throughput": base,
                     "engine": (twin.get("backend") or {}).get("name"),
                     "timestamp": twin.get("timestamp")}}
