"""Result files (docs/ais_bench_compatibility.md, "The output layout", "File formats"):
`O/<%Y_%m_%d-%H_%M_%S | output_dirname>` joined as T23 joins them, `{stem}_{i}.{bin|npy|txt}`
per input file, outputs split with np.array_split, filesinfo as T23 keys it."""

import argparse
import logging
import os
import time
from typing import Any

import numpy as np

from npuzoo.bench.inputs import PADDING_INFER_FAKE_FILE, Batch
from npuzoo.errors import UserError

FLOAT_TYPES = (np.float16, np.float32, np.float64)
FilesInfo = dict[str, dict[str, list[str]]]


def txt_bytes(ndata: Any) -> bytes:
    """ais_bench's TXT: reshape (-1, last_dim), each value `%f` (floats) or `%d` (others)
    followed by one space, each row ending with " \\n". Same text as its np.savetxt loop."""
    ndata = np.asarray(ndata)
    if ndata.ndim == 0:
        ndata = ndata.reshape(1)
    ncols = ndata.shape[-1]
    nrows = int(np.prod(ndata.shape[:-1], dtype=np.int64))
    if ncols == 0:
        return b"\n" * nrows
    rows = ndata.reshape(nrows, ncols)
    line = ("%f " if ndata.dtype.type in FLOAT_TYPES else "%d ") * ncols + "\n"
    step = max(1, 65536 // ncols)
    return "".join((line * len(block)) % tuple(block.ravel().tolist())
                   for block in (rows[s:s + step] for s in range(0, nrows, step))).encode("ascii")


def save_data_to_file(path: str, ndata: np.ndarray) -> None:
    """Write one output in the format its extension names (.bin raw bytes, .npy, .txt)."""
    try:
        if path.endswith((".npy", ".NPY")):
            np.save(path, ndata)
        elif path.endswith((".txt", ".TXT")):
            with open(path, "wb") as handle:
                handle.write(txt_bytes(ndata))
        else:
            ndata.tofile(path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None


def split_outputs(outputs: list[np.ndarray], files_per_batch: int, axis: int,
                  batch: Batch) -> list[list[np.ndarray]]:
    """Per output, its parts for each input file (np.array_split along axis)."""
    splits = []
    for i, ndata in enumerate(outputs):
        if axis >= ndata.ndim:
            raise UserError(f"error i:{i} ndata.shape:{ndata.shape} len:{ndata.ndim} <= "
                            f"output_batchsize_axis:{axis} is invalid")
        if files_per_batch != 1 and ndata.shape[axis] % files_per_batch:
            raise UserError(f"save out files error array shape:{ndata.shape} filesinfo:{batch} "
                            f"files_count_perbatch:{files_per_batch} "
                            f"ndata.shape{axis}:{ndata.shape[axis]} (try --output_batchsize_axis)")
        splits.append(np.array_split(ndata, files_per_batch, axis))
    return splits


def save_outputs(splits: list[list[np.ndarray]], output_prefix: str, batch: Batch, outfmt: str,
                 index: int, filesinfo: FilesInfo) -> None:
    """Write `{stem}_{i}.{fmt}` for every non-padded slot and record it in filesinfo."""
    files_per_batch = len(batch[0])
    for i, parts in enumerate(splits):
        for j in range(files_per_batch):
            sample = [files[j] for files in batch]
            if sample[0] == PADDING_INFER_FAKE_FILE:
                continue
            stem = os.path.basename(sample[0]).split(".")[0]
            path = os.path.join(output_prefix, f"{stem}_{i}.{outfmt.lower()}")
            entry = filesinfo.setdefault(str(index * files_per_batch + j),
                                         {"infiles": [], "outfiles": []})
            if not entry["infiles"]:
                entry["infiles"].extend(sample)
            entry["outfiles"].append(path)
            save_data_to_file(path, parts[j])


def output_prefix(args: argparse.Namespace) -> str | None:
    """The results folder, None without --output. As T23: `dir/` puts the summary inside."""
    if args.output is None:
        return None
    name = args.output_dirname
    prefix = os.path.join(args.output, time.strftime("%Y_%m_%d-%H_%M_%S") if name is None else name)
    logging.getLogger("npuzoo.bench").info(f"output path:{prefix}")
    return prefix


def make_output_dir(prefix: str) -> None:
    """Created once the inputs are checked, so a refused run leaves no empty folder."""
    try:
        os.makedirs(prefix, 0o755, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {prefix}: {err.strerror}") from None
