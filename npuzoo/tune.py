"""`npuzoo.bench --tune DIR`: the layouts of `layouts()` timed in ROUNDS interleaved rounds, each
in a process of its own kept for all rounds; the choice cached per cache_key() in DIR/<key>.json
with every sample. The untuned engine, listed first, stays unless another layout is faster in
most rounds and MARGIN faster in the median of the rounds' ratios: one noisy sample does not
decide. A layout that can no longer win most rounds, or is BEHIND slower than the fallback in a
round, is not timed again, which keeps the pass short."""

import hashlib
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from npuzoo import engines, history
from npuzoo.errors import UserError
from npuzoo.files import atomic_write, sha256_file
from npuzoo.soc import cpu_description, cpu_isa

ROUNDS = 3      # samples per layout, interleaved: a burst of load hits one round, not a layout
SECONDS = 0.3   # per sample, after one warm-up call per stream
CALLS = 1       # per stream and sample at least: a big graph's sample is its calls, not the clock
MAJORITY = ROUNDS // 2 + 1   # rounds another layout must win against the fallback to replace it
MARGIN = 0.01   # ... and this much faster in the median of its ratios to the fallback
BEHIND = 0.15   # a layout this much slower than the fallback in a round is not timed again:
                # more than the host's round-to-round noise, or one burst drops a real winner
VERSION = 6     # of layouts() and of the measurement: a change retunes
CHILD_TIMEOUT = 600   # seconds a layout's process may take (loading a big graph included)
Layout = dict[str, Any]


def layouts(fallback: str, threads: int,
            allowed: tuple[str, ...] = engines.BACKENDS) -> list[Layout]:
    """The fallback's one stream first; per engine (of `allowed`) one stream of all threads;
    ONNX Runtime's one stream of one thread per thread, OpenVINO's THROUGHPUT hint (one infer
    request per thread, its streams its own choice). OpenVINO's explicit one stream per thread
    is left out: side by side it ran within 3% of the hint either way (benchmarks/
    bench_layouts.py), a gap this pass cannot resolve, and one layout fewer shortens it."""
    installed = [e for e in engines.BACKENDS if e in allowed and engines.backend_version(e)]
    ordered = [fallback] + [e for e in installed if e != fallback]
    found: list[Layout] = []
    for engine in ordered:
        shapes = [(1, threads)]
        if threads > 1 and engine != "openvino":   # OpenVINO's several streams: the hint below
            shapes.append((threads, 1))
        found += [{"engine": engine, "streams": s, "threads_per_stream": t, "hint": None}
                  for s, t in shapes]
    if "openvino" in installed:
        found.append({"engine": "openvino", "streams": threads, "threads_per_stream": 1,
                      "hint": "THROUGHPUT"})
    return found


def _child(conn: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        values = target(*args)
        while conn.recv():
            conn.send(("ok", next(values)))
    except EOFError:
        pass   # the parent is done with this layout
    except Exception as err:  # said in the parent as this layout's error
        conn.send(("error", engines.first_line(err)))


class Isolated:
    """The generator target(*args) in a spawned process, next() its next value: an exception, a
    crash or no answer within `timeout` is a UserError here (it costs a layout, not the run)."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_child, args=(child_conn, target, args), daemon=True)
        self.process.start()
        child_conn.close()

    def next(self, timeout: float = CHILD_TIMEOUT) -> Any:
        try:
            self.conn.send(True)
            if not self.conn.poll(timeout):
                self.close()
                raise UserError(f"no answer within {timeout} s")
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join()
            code = self.process.exitcode
            how = f"signal {-code}" if code and code < 0 else f"exit status {code}"
            raise UserError(f"the engine's process stopped ({how})") from None
        if kind == "error":
            raise UserError(value)
        return value

    def close(self) -> None:
        self.conn.close()   # the child's recv() ends: it exits
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def machine_id() -> str:
    """This machine's fingerprint id (npuzoo.history): the tuning cache's and the reference
    product's best figure (npuzoo.bench.load) are kept per machine."""
    return str(history.fingerprint("cpu", cpu_description(), cpu_isa())["id"])


def cache_key(model_path: str, precision: str, batchsize: int, threads: int
              ) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes) of a tuning choice."""
    fields = {"machine": machine_id(),
              "graph_sha256": sha256_file(model_path), "precision": precision,
              "batchsize": batchsize, "threads": threads, "version": VERSION,
              "engines": {e: engines.backend_version(e) for e in engines.BACKENDS}}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16], fields


def describe(layout: Layout) -> str:
    engine = engines.BACKEND_LABELS.get(layout["engine"], layout["engine"])
    if layout.get("hint"):
        return f"{engine} {layout['hint']} hint"
    return f"{engine} {layout['streams']} stream(s) x {layout['threads_per_stream']} thread(s)"


def choose(cache_dir: str, key: str, fields: dict[str, Any], candidates: list[Layout],
           measure: Callable[[Layout], float], label: str = "") -> dict[str, Any]:
    """The cached choice of `key`, else the module's rounds (order rotated each round) of
    `measure(layout)` (images/s; a UserError drops the layout); the best median if the fallback
    failed. Cached, and returned with `cache` "reused" or "new"."""
    path = os.path.join(cache_dir, f"{key}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("key") == key and cached.get("chosen", {}).get("engine") in engines.BACKENDS:
            return dict(cached, cache="reused", path=path)
    except (OSError, ValueError, AttributeError):
        pass   # none yet, or unreadable: tune again
    print(f"tuning{label}: timing {len(candidates)} engine/stream layouts in {ROUNDS} "
          f"interleaved rounds, {SECONDS:g} s and {CALLS} call(s) per stream each at least; "
          f"{describe(candidates[0])} stays unless another is faster in most rounds and by "
          f"{MARGIN:.0%}; once per machine and graph (TUNE=0 skips it) ...", end="", flush=True)
    began = time.perf_counter()
    samples: list[list[float]] = [[] for _ in candidates]
    errors: dict[int, str] = {}
    active = list(range(len(candidates)))
    for index in range(ROUNDS):
        order = active[index % len(active):] + active[:index % len(active)] if active else []
        for k in order:
            try:
                samples[k].append(float(measure(candidates[k])))
            except UserError as err:
                errors[k] = str(err)
        active = [k for k in active if k not in errors]
        if 0 in active:   # out: clearly slower this round, or too many rounds lost to win most
            lost = {k: sum(a <= b for a, b in zip(samples[k], samples[0], strict=True))
                    for k in active}
            active = [k for k in active if k == 0 or (lost[k] <= ROUNDS - MAJORITY
                      and samples[k][-1] > (1 - BEHIND) * samples[0][-1])]
    ran = [k for k in range(len(candidates)) if k not in errors]
    if not ran:
        print(" none ran", flush=True)
        raise UserError(f"tuning: no layout ran ({errors[0]}); run with TUNE=0")
    ratios = {k: [a / b for a, b in zip(samples[k], samples[0], strict=False)]
              for k in range(1, len(candidates)) if samples[k] and samples[0]}
    winners = {k: statistics.median(r) for k, r in ratios.items()   # faster in most rounds
               if k in ran and len(r) == ROUNDS and sum(x > 1 for x in r) >= MAJORITY}
    winners = {k: ratio for k, ratio in winners.items() if ratio > 1 + MARGIN}
    chosen = max(winners, key=winners.__getitem__, default=0) if 0 in ran \
        else max(ran, key=lambda k: statistics.median(samples[k]))   # no fallback: best median
    tried = [dict(layout, samples=[round(x, 2) for x in samples[k]])
             | ({"images_per_s": round(statistics.median(samples[k]), 2)} if samples[k] else {})
             | ({"ratios_to_fallback": [round(r, 4) for r in ratios[k]]} if k in ratios else {})
             | ({"error": errors[k]} if k in errors else {})
             for k, layout in enumerate(candidates)]
    seconds = time.perf_counter() - began
    print(f" {describe(candidates[chosen])} ({tried[chosen]['images_per_s']:g} images/s, median) "
          f"in {seconds:.1f} s", flush=True)
    record = {"key": key, "fields": fields, "seconds": round(seconds, 2),
              "measured": {"rounds": ROUNDS, "seconds_per_sample": SECONDS,
                           "calls_per_stream": CALLS, "margin": MARGIN,
                           "majority": MAJORITY, "behind": BEHIND},
              "chosen": dict(candidates[chosen]), "candidates": tried}
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return dict(record, cache="new", path=path)
