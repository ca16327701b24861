"""`npuzoo.bench --tune DIR`: each layout of `layouts()` timed for SECONDS of pure inference
and CALLS calls per stream at least, once per key (machine, graph sha256, precision, batch
size, threads, engine versions), the choice cached in DIR/<key>.json. The untuned engine,
listed first, keeps its place unless another layout is MARGIN faster: a choice that flips on
noise would make runs differ."""

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from npuzoo import engines, history
from npuzoo.errors import UserError
from npuzoo.files import atomic_write, sha256_file
from npuzoo.soc import cpu_description, cpu_isa

SECONDS = 0.5   # timed per layout, after one warm-up call per stream
CALLS = 2       # per stream at least, however long they take
MARGIN = 0.03   # another layout replaces the fallback only when this much faster
VERSION = 2     # of layouts() and of the measurement: a change retunes


Layout = dict[str, Any]


def layouts(fallback: str, threads: int) -> list[Layout]:
    """The fallback's one stream first; per engine one stream of all threads and one of one
    thread per thread; OpenVINO's THROUGHPUT hint (one infer request per thread)."""
    installed = [e for e in engines.BACKENDS if engines.backend_version(e)]
    ordered = [fallback] + [e for e in installed if e != fallback]
    shapes = [(1, threads)] + ([(threads, 1)] if threads > 1 else [])
    found = [{"engine": e, "streams": s, "threads_per_stream": t, "hint": None}
             for e in ordered for s, t in shapes]
    if "openvino" in installed:
        found.append({"engine": "openvino", "streams": threads, "threads_per_stream": 1,
                      "hint": "THROUGHPUT"})
    return found


CHILD_TIMEOUT = 600   # seconds a layout's process may take (loading a big graph included)


def _child(send: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        send.send(("ok", target(*args)))
    except Exception as err:  # said in the parent as this layout's error
        send.send(("error", engines.first_line(err)))


def isolated(target: Callable[..., Any], *args: Any, timeout: float = CHILD_TIMEOUT) -> Any:
    """target(*args) in a spawned process, so that an engine crash costs a layout, not the
    run; an exception, a crash or no answer within `timeout` becomes a UserError here."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, target, args), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            child.kill()
            raise UserError(f"no answer within {timeout} s")
        kind, value = receive.recv()
    except EOFError:
        child.join()
        code = child.exitcode
        how = f"signal {-code}" if code and code < 0 else f"exit status {code}"
        raise UserError(f"the engine's process stopped ({how})") from None
    finally:
        child.join()
        receive.close()
    if kind == "error":
        raise UserError(value)
    return value


def cache_key(model_path: str, precision: str, batchsize: int, threads: int
              ) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes) of a tuning choice."""
    fields = {"machine": history.fingerprint("cpu", cpu_description(), cpu_isa())["id"],
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
    """The cached choice of `key`, else: time every candidate with `measure(layout)` (images/s;
    a UserError skips that layout), keep the first one unless another beats it by MARGIN,
    cache and return the record (`cache`: "reused" or "new")."""
    path = os.path.join(cache_dir, f"{key}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("key") == key and cached.get("chosen", {}).get("engine") in engines.BACKENDS:
            return dict(cached, cache="reused", path=path)
    except (OSError, ValueError, AttributeError):
        pass   # none yet, or unreadable: tune again
    print(f"tuning{label}: timing {len(candidates)} engine/stream layouts, {SECONDS:g} s and "
          f"{CALLS} calls per stream each at least, once per machine and graph (TUNE=0 skips "
          "it) ...", end="", flush=True)
    began, tried = time.perf_counter(), []
    for layout in candidates:
        try:
            tried.append(dict(layout, images_per_s=round(measure(layout), 2)))
        except UserError as err:
            tried.append(dict(layout, error=str(err)))
    ran = [t for t in tried if "images_per_s" in t]
    if not ran:
        print(" none ran", flush=True)
        raise UserError(f"tuning: no layout ran ({tried[0].get('error')}); run with TUNE=0")
    chosen = ran[0] if ran[0] is tried[0] else None
    best = max(ran, key=lambda t: t["images_per_s"])
    if chosen is None or best["images_per_s"] > chosen["images_per_s"] * (1 + MARGIN):
        chosen = best
    seconds = time.perf_counter() - began
    print(f" {describe(chosen)} ({chosen['images_per_s']:g} images/s) in {seconds:.1f} s",
          flush=True)
    record = {"key": key, "fields": fields, "seconds": round(seconds, 2), "margin": MARGIN,
              "chosen": {k: chosen[k] for k in ("engine", "streams", "threads_per_stream", "hint")},
              "candidates": tried}
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return dict(record, cache="new", path=path)
