"""Sessions, warm-up, the timed loop, streams and devices: `run()` and the command line. Timings
as ais_bench's (docs/ais_bench_compatibility.md). N streams: N sessions of max(1, T // N)
threads; one batch shares its runs among them, several go in order to whichever stream is free,
read and written in threads of their own, and are merged in batch order."""

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np

from npuzoo import engines
from npuzoo.bench import inputs as ins
from npuzoo.bench import load, options, outputs
from npuzoo.bench.outputs import log, summary
from npuzoo.engines import TensorDesc
from npuzoo.errors import UserError, cli

Item = TypeVar("Item")


class Session(Protocol):
    def run(self, output_names: None, feeds: ins.Feeds) -> list[Any]: ...


def default_threads() -> int:
    env = os.environ.get("NPUZOO_THREADS")
    if not env:
        return len(os.sched_getaffinity(0))
    if not env.strip().isdecimal() or int(env) <= 0:
        raise UserError(f"NPUZOO_THREADS={env!r} is not a positive integer")
    return int(env)


def in_threads(work: Callable[[Item], object], items: Sequence[Item],
               stop: threading.Event) -> None:
    """work(item) for every item, each in its own thread (inline for a single item); the first
    error stops the others (they finish their current call) and is raised here."""
    if len(items) == 1:
        work(items[0])
        return
    errors: list[BaseException] = []

    def target(item: Item) -> None:
        try:
            work(item)
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)
            stop.set()

    workers = [threading.Thread(target=target, args=(item,), daemon=True) for item in items]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException:
        stop.set()
        raise
    if errors:
        raise errors[0]


def run_batch(sessions: Sequence[Session], feeds: ins.Feeds, loop: int, seconds: float,
              stop: threading.Event, progress: Any = None, ends: list[float] | None = None
              ) -> tuple[list[float], Any]:
    """Run one batch on the sessions (sharing the runs) until `loop` runs have started AND
    `seconds` have passed, a time-bounded loop (seconds > 0) also on a multiple of the streams:
    (call times in ms, the last outputs); `ends` gets each end time."""
    lock = threading.Lock()
    perf = time.perf_counter
    state: dict[str, Any] = {"claimed": 0, "start": perf(), "results": None}
    times: list[float] = []

    def claim() -> bool:
        with lock:
            claimed = state["claimed"]
            # Whole rounds of the streams: a last odd call would run alone, the other cores
            # idle (3 calls on 2 streams take the wall time of 4, a 25% loss on a big graph).
            done = claimed >= loop and perf() - state["start"] >= seconds \
                and (not seconds or claimed % len(sessions) == 0)
            if stop.is_set() or done:
                return False
            state["claimed"] += 1
            return True

    def work(session: Session) -> None:
        while claim():
            t0 = perf()
            results = session.run(None, feeds)
            elapsed = (perf() - t0) * 1000.0
            with lock:
                times.append(elapsed)
                state["results"] = results
                if ends is not None:
                    ends.append(t0 + elapsed / 1000.0)
            if progress is not None:
                progress.update()

    in_threads(work, sessions, stop)
    return times, state["results"]


class Inference:
    """One device's timed inference over its batches; the figures of each batch by index."""

    def __init__(self, args: argparse.Namespace, sessions: list[Any],
                 inputs: list[TensorDesc], batches: list[ins.Batch], files_per_batch: int,
                 prefix: str | None) -> None:
        self.args, self.sessions, self.inputs, self.batches = args, sessions, inputs, batches
        self.files_per_batch, self.prefix = files_per_batch, prefix
        count = len(batches)
        self.compute: list[list[float]] = [[] for _ in range(count)]
        self.h2d, self.d2h = [0.0] * count, [0.0] * count
        self.files: list[outputs.FilesInfo] = [{} for _ in range(count)]
        self.batchsizes: list[int] | None = [] if args.no_combine_tensor_mode else None
        self.stop, self.lock, self.next = threading.Event(), threading.Lock(), 0
        self.ends: list[float] = []
        self.progress: Any = None

    def warm_up(self) -> None:
        feeds = ins.make_feeds(self.batches[0], self.inputs, self.args)

        def warm(one: Session) -> None:
            for _ in range(self.args.warmup_count):
                one.run(None, feeds)

        in_threads(warm, self.sessions, self.stop)
        log(f"warm up {self.args.warmup_count} done")

    def read_batch(self, index: int) -> ins.Feeds:
        t0 = time.perf_counter()
        feeds = ins.make_feeds(self.batches[index], self.inputs, self.args, self.batchsizes)
        self.h2d[index] = (time.perf_counter() - t0) * 1000.0
        return feeds

    def write_batch(self, index: int, results: list[Any]) -> None:
        t0 = time.perf_counter()
        arrays = [np.asarray(r) for r in results]
        splits = None if self.prefix is None else outputs.split_outputs(
            arrays, self.files_per_batch, self.args.output_batchsize_axis, self.batches[index])
        self.d2h[index] = (time.perf_counter() - t0) * 1000.0
        if splits is not None and self.prefix is not None:
            outputs.save_outputs(splits, self.prefix, self.batches[index], self.args.outfmt,
                                 index, self.files[index])

    def run_one(self, index: int, runners: Sequence[Session], feeds: ins.Feeds) -> list[Any]:
        self.compute[index], results = run_batch(
            runners, feeds, self.args.loop, self.args.loop_seconds, self.stop, self.progress,
            self.ends)
        return results  # type: ignore[no-any-return]

    def claim(self) -> int | None:
        with self.lock:
            if self.stop.is_set() or self.next >= len(self.batches):
                return None
            self.next += 1
            return self.next - 1

    def stream(self, one: Session) -> None:
        """One stream's share of the batches: while a batch runs (the engines release the
        GIL), a reader thread loads the next one and a writer thread writes the previous one."""
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
            index, writing = self.claim(), writer.submit(lambda: None)   # no write pending
            reading = None if index is None else reader.submit(self.read_batch, index)
            while index is not None and reading is not None:
                feeds = reading.result()
                following = self.claim()
                reading = None if following is None else reader.submit(self.read_batch, following)
                results = self.run_one(index, [one], feeds)
                del feeds
                if self.stop.is_set():
                    break
                writing.result()
                writing = writer.submit(self.write_batch, index, results)
                index = following
            writing.result()

    def timed(self) -> dict[str, Any]:
        """The timed section: {wall_start, wall_ms, start_time, end_time, load}."""
        from tqdm import tqdm

        count = len(self.batches)
        # One step per session.run, so a long perf loop (one batch, many runs) moves too.
        self.progress = tqdm(total=None if self.args.loop_seconds else count * self.args.loop,
                             file=sys.stderr, unit="run", desc="Inference array Processing",
                             disable=not sys.stderr.isatty())
        best = None
        if self.args.tune is not None:   # the tuning cache keeps this machine's best reference
            from npuzoo import tune
            best = os.path.join(self.args.tune, f"reference-{tune.machine_id()}.json")
        monitor = load.LoadMonitor(best_path=best).start()
        start_time, wall_start = time.time(), time.perf_counter()
        if count == 1:   # the streams share the batch's runs
            results = self.run_one(0, self.sessions, self.read_batch(0))
            if not self.stop.is_set():
                self.write_batch(0, results)
        else:
            in_threads(self.stream, self.sessions, self.stop)
        wall_ms = (time.perf_counter() - wall_start) * 1000.0
        found = {"wall_start": wall_start, "wall_ms": wall_ms, "start_time": start_time,
                 "end_time": time.time(), "load": monitor.stop()}
        self.progress.close()
        return found


def _batches(args: argparse.Namespace, inputs: list[TensorDesc]) -> tuple[int, list[ins.Batch]]:
    """(files per batch, batches); pure inference (no --input) is one batch of no files."""
    if args.unresolved and (args.input is None or not args.no_combine_tensor_mode):
        raise UserError(args.unresolved)   # only the .npy of --auto_set_dym*_mode give shapes
    if args.input is None:
        return 1, [[[ins.PURE_INFER_FAKE_FILE] for _ in inputs]]
    fileslists = ins.list_input_files(args.input.split(","), len(inputs))
    files_per_batch, batches = ins.plan_batches(fileslists, inputs, args.no_combine_tensor_mode)
    log(f"get filesperbatch files0 size:{ins.file_datasize(fileslists[0][0])} tensor0size:"
        f"{inputs[0].realsize} filesperbatch:{files_per_batch} runcount:{len(batches)}")
    return files_per_batch, batches


def _debug_table(args: argparse.Namespace, session: Any, inputs: list[TensorDesc],
                 outs: list[TensorDesc], threads: int) -> None:
    log(f"model: {args.model}  providers: {session.get_providers()}  intra-op threads: {threads}",
        "DEBUG")
    row = "{:<6} {:<4} {:<24} {:<9} {:<22} {:<22} {}"
    log(row.format("kind", "idx", "name", "dtype", "model shape", "run shape", "realsize"), "DEBUG")
    for kind, descs in (("input", inputs), ("output", outs)):
        for k, desc in enumerate(descs):
            log(row.format(kind, k, desc.name, np.dtype(desc.datatype).name, str(desc.shape),
                           str(desc.resolved) if desc.resolved is not None else "-",
                           desc.realsize if desc.realsize is not None else "-"), "DEBUG")


def _extras(args: argparse.Namespace, run: Inference, timed: dict[str, Any], batchsize: float,
            layout: dict[str, Any], tuning: Any) -> dict[str, Any]:
    """npuzoo's keys of the summary (docs/ais_bench_compatibility.md)."""
    times, wall_ms = sum(len(part) for part in run.compute), timed["wall_ms"]
    extras = {
        "backend": args.backend, "backend_version": engines.backend_version(args.backend),
        "precision": args.precision, "streams": layout["streams"],
        "threads_per_stream": layout["threads_per_stream"], "batchsize": batchsize,
        "timed_runs": times, "wall_time_ms": wall_ms,
        "throughput_wall": 0 if wall_ms == 0 else 1000.0 * batchsize * times / wall_ms,
        "loop_runs": min(len(part) for part in run.compute), "loop_seconds": args.loop_seconds,
        **load.spread(load.window_throughputs(run.ends, timed["wall_start"], batchsize)),
        **timed["load"]}
    if tuning is not None:
        extras["tuning"] = {k: tuning[k] for k in ("cache", "path", "key", "seconds", "chosen",
                                                   "candidates")}
    return extras


def run_single(args: argparse.Namespace, argv: list[str], threads: int
               ) -> tuple[dict[str, Any], float, float]:
    """One device: warm-up, timed inference, outputs, summary. Returns (summary, start, end)."""
    tuning = None if args.tune is None else tuned_layout(args, threads)
    layout = tuning["chosen"] if tuning else {   # npuzoo.tune's choice, engine included
        "engine": args.backend, "streams": args.streams,
        "threads_per_stream": max(1, threads // args.streams), "hint": None}
    args.backend = layout["engine"]
    sessions, inputs, outs = engines.open_sessions(args.model, **layout)
    if args.precision_given:
        engines.check_precision(args.model, args.precision)
    args.unresolved = ins.resolve_shapes(inputs, args)
    batchsize: float = args.batchsize or 0
    if not batchsize:
        first = inputs[0]
        batchsize = first.resolved[0] if first.resolved else first.shape[0] \
            if first.shape and first.shape[0] != -1 else (args.dymBatch or 1)
        log(f"try get model batchsize:{batchsize}")
    if args.outputSize is not None and args.debug:
        log(f"--outputSize {args.outputSize} ignored: the engine sizes its outputs", "DEBUG")
    prefix = outputs.output_prefix(args)
    files_per_batch, batches = _batches(args, inputs)
    prepare = getattr(sessions[0], "prepare", None)   # OpenVINO: compile for the resolved shapes
    if prepare is not None:
        static = not args.no_combine_tensor_mode and all(d.resolved for d in inputs)
        prepare({d.name: d.resolved for d in inputs} if static else None)
    if args.debug:
        _debug_table(args, sessions[0], inputs, outs, layout["threads_per_stream"])
    if prefix is not None:   # once the inputs are checked: a refused run leaves no folder
        try:
            os.makedirs(prefix, 0o755, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create output folder {prefix}: {err.strerror}") from None
    run = Inference(args, sessions, inputs, batches, files_per_batch, prefix)
    try:
        run.warm_up()
        timed = run.timed()
    except Exception as err:
        if type(err).__module__.startswith("onnxruntime"):
            raise UserError(f"ONNX Runtime failed to run {args.model}: "
                            f"{engines.first_line(err)}") from None
        raise
    if run.batchsizes:
        batchsize = sum(run.batchsizes) / len(run.batchsizes)
    filesinfo = {k: v for part in run.files for k, v in part.items()}
    extras = _extras(args, run, timed, batchsize, layout, tuning) if args.npuzoo_keys else None
    found = summary(batchsize, filesinfo, argv, [t for part in run.compute for t in part],
                    run.h2d, run.d2h, prefix, args.display_all_summary, extras,
                    engines.BACKEND_LABELS[args.backend])
    return found, timed["start_time"], timed["end_time"]


def layout_samples(args: argparse.Namespace, layout: dict[str, Any], seconds: float,
                   calls: int) -> Iterator[float]:
    """Images/s of one tuning layout per next(), after one warm-up call per stream: `seconds` of
    pure inference and at least `calls` calls per stream (in tune.Isolated's process)."""
    sessions, inputs, _ = engines.open_sessions(args.model, **layout)
    args.unresolved = ins.resolve_shapes(inputs, args)
    feeds = ins.make_feeds([[ins.PURE_INFER_FAKE_FILE] for _ in inputs], inputs, args)
    prepare = getattr(sessions[0], "prepare", None)
    if prepare is not None:
        prepare({d.name: d.resolved for d in inputs})
    stop = threading.Event()
    in_threads(lambda one: one.run(None, feeds), sessions, stop)
    images = inputs[0].resolved[0]  # type: ignore[index]
    while True:
        start = time.perf_counter()
        times, _ = run_batch(sessions, feeds, calls * len(sessions), seconds, stop)
        yield float(images * len(times) / (time.perf_counter() - start))


def tuned_layout(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """npuzoo.tune's choice for this graph, batch, precision and machine (cached, else timed)."""
    from npuzoo import tune

    if args.no_combine_tensor_mode:
        raise UserError("--tune times one static batch; drop --auto_set_dym*_mode or --tune")
    engines.check_model_path(args.model, "onnxruntime")   # before it is hashed for the key
    key, fields = tune.cache_key(args.model, args.precision, args.dymBatch or args.batchsize,
                                 threads)
    started: dict[str, tune.Isolated] = {}

    def sample(layout: dict[str, Any]) -> float:
        name = tune.describe(layout)
        if name not in started:
            started[name] = tune.Isolated(layout_samples, args, layout, tune.SECONDS, tune.CALLS)
        return float(started[name].next())

    # An int8 graph is quantised for one engine (npuzoo/config.py INT8_QUANTIZER): its layouts.
    allowed = (args.backend,) if args.precision == "int8" else engines.BACKENDS
    try:
        return tune.choose(args.tune, key, fields, tune.layouts(args.backend, threads, allowed),
                           sample, f" {os.path.basename(args.model)}")
    finally:
        for process in started.values():
            process.close()


def run_multidevice(args: argparse.Namespace, argv: list[str], threads: int) -> dict[str, Any]:
    """T23 with a device list: once per device, sequentially, over its share of the input."""
    log(f"multidevice:{args.device} run begin")
    splits = None
    if args.input is not None:
        _, model_inputs, _ = engines.open_onnxruntime(args.model, threads)
        splits = ins.split_inputs_for_devices(args.input, len(model_inputs), len(args.device))
    base = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
    results = []
    for i, device in enumerate(args.device):
        cur = argparse.Namespace(**dict(vars(args), device=device, output_dirname=os.path.join(
            base, f"device{device}"), input=None if splits is None else splits[i]))
        found, start, end = run_single(cur, argv, threads)
        results.append({"index": i, "device": device, "throughput": found["throughput"],
                        "start_time": start, "end_time": end, "summary": found})
    log(f"multidevice run end qsize:{2 * len(results)} result:{0}")
    for res in results:
        print("i:{index} device_{device} throughput:{throughput} start_time:{start_time} "
              "end_time:{end_time}".format(**res), flush=True)
    total = sum(res["throughput"] for res in results)
    log(f"summary throughput:{total}")
    return {"devices": results, "throughput": total}


def run(argv: Sequence[object] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run like `python3 -m npuzoo.bench *argv`; return the summary dict. argv None means
    sys.argv[1:]. threads overrides NPUZOO_THREADS / the core count."""
    if argv is None:
        recorded, words = list(sys.argv), sys.argv[1:]
    else:
        words = [str(a) for a in argv]
        recorded = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")] + words
    args = options.parse_args(words)
    threads = default_threads() if threads is None else int(threads)
    if threads <= 0:
        raise UserError(f"threads must be a positive integer, got {threads}")
    if isinstance(args.device, list):
        return run_multidevice(args, recorded, threads)
    return run_single(args, recorded, threads)[0]


@cli
def main(argv: Sequence[str] | None = None) -> None:
    run(argv)
