"""Inputs and batching (docs/ais_bench_compatibility.md, "Inputs and batching")."""

import argparse
import math
import os

import numpy as np

from npuzoo.engines import TensorDesc
from npuzoo.errors import UserError
from npuzoo.files import input_files

PURE_INFER_FAKE_FILE = "pure_infer_data"
PADDING_INFER_FAKE_FILE = "padding_infer_fake_file"
NPY = (".npy", ".NPY")   # the extensions read as arrays (str.endswith)
Batch = list[list[str]]   # per model input, the files of one batch
Feeds = dict[str, np.ndarray]


def _named_shapes(text: str, flag: str, inputs: list[TensorDesc]) -> dict[str, list[int]]:
    shapes = {}
    names = [d.name for d in inputs]
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, sep, dims = item.rpartition(":")
        try:
            if not sep:
                raise ValueError
            shape = [int(v) for v in dims.split(",")]
        except ValueError:
            raise UserError(f'{flag} "{text}": expected "name:d,d,...;name2:d,..."') from None
        if name not in names:
            raise UserError(f"{flag}: the model has no input '{name}' (inputs: {', '.join(names)})")
        shapes[name] = shape
    return shapes


def _dynamic_request(inputs: list[TensorDesc], args: argparse.Namespace
                     ) -> tuple[dict[str, list[int]], list[int] | None]:
    """(named shapes, [h, w] or None): the first of --dymBatch, --dymHW, --dymDims, --dymShape
    given (as T23, only that one applies)."""
    if args.dymBatch:
        if inputs and inputs[0].shape and inputs[0].shape[0] not in (-1, args.dymBatch):
            raise UserError(f"--dymBatch {args.dymBatch}: model input '{inputs[0].name}' has a "
                            f"static batch of {inputs[0].shape[0]}; export it with a dynamic batch")
    elif args.dymHW is not None:
        try:
            hw = [int(v) for v in args.dymHW.split(",")]
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError
        except ValueError:
            raise UserError(f'--dymHW "{args.dymHW}": expected "h,w"') from None
        return {}, hw
    elif args.dymDims is not None:
        return _named_shapes(args.dymDims, "--dymDims", inputs), None
    elif args.dymShape is not None:
        return _named_shapes(args.dymShape, "--dymShape", inputs), None
    return {}, None


def _shape_of(desc: TensorDesc, named: dict[str, list[int]], hw: list[int] | None,
              batch: int) -> list[int]:
    model = desc.shape
    if desc.name in named:
        shape = named[desc.name]
        if len(shape) != len(model) or any(m not in (-1, s) for m, s in zip(model, shape)):  # noqa: B905
            raise UserError(f"input '{desc.name}': shape {shape} does not fit the model's {model}")
        if min(shape, default=1) <= 0:
            raise UserError(f"input '{desc.name}': shape {shape} has a non-positive dim")
        return shape
    shape = list(model)
    if shape and shape[0] == -1:
        shape[0] = batch
    if hw is not None and len(shape) == 4:
        if model[1] != -1 and (model[2] == -1 or model[3] == -1):
            shape[2:4] = hw          # NCHW
        elif model[3] != -1 and (model[1] == -1 or model[2] == -1):
            shape[1:3] = hw          # NHWC
    return shape


def resolve_shapes(inputs: list[TensorDesc], args: argparse.Namespace) -> str | None:
    """Fill desc.resolved / desc.realsize for each input. Returns an error text for the first
    input whose shape stays unknown (raised only when that shape is needed), else None."""
    named, hw = _dynamic_request(inputs, args)
    batch = args.dymBatch or args.batchsize or 1
    problem = None
    for desc in inputs:
        shape = _shape_of(desc, named, hw, batch)
        if -1 in shape:
            desc.resolved, desc.realsize = None, None
            dims = ",".join("d" if d == -1 else str(d) for d in desc.shape)
            problem = problem or (f"input '{desc.name}' has dynamic dims {desc.shape}; give its "
                                  f'shape with --dymShape "{desc.name}:{dims}"')
            continue
        desc.resolved = shape
        desc.realsize = int(np.prod(shape, dtype=np.int64)) * np.dtype(desc.datatype).itemsize
    return problem


def file_datasize(path: str) -> int:
    """Bytes a file contributes: the array bytes of a .npy (mapped, not read), else its size."""
    try:
        if path.endswith(NPY):
            return int(np.load(path, mmap_mode="r", allow_pickle=False).nbytes)
        return os.path.getsize(path)
    except OSError as err:
        raise UserError(f"cannot read input file {path}: {err.strerror}") from None
    except ValueError as err:
        raise UserError(f"{path}: not a valid .npy file ({err})") from None


def load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot load it as .npy ({err})") from None


def list_input_files(inputs_list: list[str], n_inputs: int) -> list[list[str]]:
    """Per model input, its files: a comma list of files cut into n_inputs consecutive chunks,
    or one directory per input."""
    first = inputs_list[0]
    if os.path.isfile(first):
        for index, path in enumerate(inputs_list):
            if not os.path.isfile(path):
                raise UserError(f"--input: input[{index}] '{path}' is not a file")
        if len(inputs_list) % n_inputs:
            raise UserError(f"--input gives {len(inputs_list)} files for a model with {n_inputs} "
                            f"inputs; give a multiple of {n_inputs}")
        chunk = len(inputs_list) // n_inputs
        return [inputs_list[k * chunk:(k + 1) * chunk] for k in range(n_inputs)]
    if os.path.isdir(first):
        if len(inputs_list) != n_inputs:
            raise UserError(f"--input gives {len(inputs_list)} directories but the model has "
                            f"{n_inputs} inputs")
        fileslists = [input_files(folder) for folder in inputs_list]
        if len({len(files) for files in fileslists}) > 1:
            raise UserError("--input directories hold different numbers of files: {}".format(
                ", ".join(f"{d} ({len(f)})" for d, f in zip(inputs_list, fileslists, strict=True))))
        return fileslists
    raise UserError(f"--input: '{first}' is neither a file nor a directory")


def split_inputs_for_devices(inputs: str, n_inputs: int, jobs: int) -> list[str]:
    """T23 split_inputs_new: every device gets its share of each model input's files."""
    files = [path for group in list_input_files(inputs.split(","), n_inputs) for path in group]
    per_input = math.ceil(len(files) / n_inputs)
    shares: list[list[str]] = [[] for _ in range(jobs)]
    for start in range(0, len(files), per_input):
        chunk = files[start:start + per_input]
        per_device = math.ceil(len(chunk) / jobs)
        for j, begin in enumerate(range(0, len(chunk), per_device)):
            shares[j].extend(chunk[begin:begin + per_device])
    if any(not share for share in shares):
        raise UserError(f"--device lists {jobs} devices but --input has only {per_input} files "
                        "per model input; give fewer devices")
    return [",".join(share) for share in shares]


def size_error(k: int, tensorsize: int, filesize: int, path: str, detail: str) -> UserError:
    return UserError(f"arg{k} tensorsize: {tensorsize} filesize: {filesize} not match "
                     f"({path}: {detail})")


def _files_per_batch(fileslists: list[list[str]], inputs: list[TensorDesc]) -> int:
    """How many files make one batch of input 0; every file of every input checked."""
    tensorsize, filesize = inputs[0].realsize or 0, file_datasize(fileslists[0][0])
    if filesize == 0 or tensorsize % filesize:
        raise size_error(0, tensorsize, filesize, fileslists[0][0],
                         "input 0 of the model must take a whole number of such files")
    files_per_batch = tensorsize // filesize
    for k, (desc, files) in enumerate(zip(inputs, fileslists, strict=True)):
        realsize = desc.realsize or 0
        if realsize % files_per_batch:
            raise size_error(k, realsize, file_datasize(files[0]), files[0],
                             f"{files_per_batch} files per batch do not divide input {k}")
        expected = realsize // files_per_batch
        for path in files:
            if (size := file_datasize(path)) != expected:
                raise size_error(k, realsize, size, path,
                                 f"every file of input {k} must hold {expected} bytes")
    return files_per_batch


def plan_batches(fileslists: list[list[str]], inputs: list[TensorDesc], no_combine: bool
                 ) -> tuple[int, list[Batch]]:
    """(files per batch, batches): batches[i][k] the files of input k in batch i, padded."""
    files_per_batch = 1 if no_combine else _files_per_batch(fileslists, inputs)
    padded = -len(fileslists[0]) % files_per_batch   # the input lists are as long
    slots = [files + [PADDING_INFER_FAKE_FILE] * padded for files in fileslists]
    return files_per_batch, [[files[start:start + files_per_batch] for files in slots]
                             for start in range(0, len(slots[0]), files_per_batch)]


def read_into(buf: np.ndarray, offset: int, size: int, path: str) -> None:
    if path.endswith(NPY):
        data = np.ascontiguousarray(load_npy(path)).reshape(-1).view(np.uint8)
        if data.size != size:
            raise size_error(0, buf.size, data.size, path, "the file changed size during the run")
        buf[offset:offset + size] = data
        return
    try:
        with open(path, "rb") as handle:
            got = handle.readinto(memoryview(buf)[offset:offset + size])  # type: ignore[arg-type]
            extra = handle.read(1)
    except OSError as err:
        raise UserError(f"cannot read input file {path}: {err.strerror}") from None
    if got != size or extra:
        raise size_error(0, buf.size, os.path.getsize(path), path,
                         "the file changed size during the run")


def _npy_feed(path: str, desc: TensorDesc) -> np.ndarray:
    """--auto_set_dym*_mode: one .npy with its own shape."""
    if not path.endswith(NPY):
        raise UserError(f"{path}: --auto_set_dymshape_mode/--auto_set_dymdims_mode need .npy "
                        "inputs, which carry their shape")
    array = load_npy(path)
    if array.dtype != np.dtype(desc.datatype):
        raise UserError(f"{path}: dtype {array.dtype} but model input '{desc.name}' takes "
                        f"{np.dtype(desc.datatype).name}")
    return np.ascontiguousarray(array)


def make_feeds(batch: Batch, inputs: list[TensorDesc], args: argparse.Namespace,
               batchsizes: list[int] | None = None) -> Feeds:
    """The input arrays of one batch: the files' raw bytes concatenated (no dtype conversion),
    padded slots filled with the first file; pure inference's zeros or fresh random bytes."""
    feeds = {}
    for desc, files in zip(inputs, batch, strict=True):
        if args.no_combine_tensor_mode and files[0] != PURE_INFER_FAKE_FILE:
            feeds[desc.name] = array = _npy_feed(files[0], desc)
            if batchsizes is not None and desc is inputs[0]:
                batchsizes.append(array.shape[0] if array.ndim else 1)
            continue
        if desc.resolved is None or desc.realsize is None:
            raise UserError(args.unresolved)
        if files[0] == PURE_INFER_FAKE_FILE:
            buf = (np.random.default_rng().integers(0, 256, size=desc.realsize, dtype=np.uint8)
                   if args.pure_data_type == "random" else np.zeros(desc.realsize, dtype=np.uint8))
        else:
            buf = np.empty(desc.realsize, dtype=np.uint8)
            per_file = desc.realsize // len(files)
            for slot, path in enumerate(files):
                real = files[0] if path == PADDING_INFER_FAKE_FILE else path
                read_into(buf, slot * per_file, per_file, real)
        feeds[desc.name] = buf.view(desc.datatype).reshape(desc.resolved)
    return feeds
