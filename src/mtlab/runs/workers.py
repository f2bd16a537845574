"""Sweeps in worker processes on this machine: the command line's default executor.

:class:`WorkerExecutor` runs each chunk that :func:`mtlab.runs.executor.execute` plans in one of
``workers`` processes (default: one per core granted to this process), each with one intra-op
thread. The plan is the deterministic ensemble plan of every executor and a chunk's numbers
depend only on its runs and the thread count, so the results are bitwise equal for any number
of workers, idle or under load (``--workers 1`` included). The driver stays the only writer of
the store: a worker *returns* rows, curves and parameters, and the driver stores them
(idempotently, by run id). A chunk is handed out as soon as the runs it depends on are stored
(:class:`~mtlab.runs.executor.Schedule`).

Faults, as with Ray: a chunk whose worker dies (killed, out of memory) is retried on a fresh
worker up to ``retries`` times, then its runs are tried one at a time, and a run that still
cannot finish is stored ``failed`` with the reason. Workers ignore Ctrl-C: the driver stops them
and keeps every finished run. A worker dies with its driver, even on ``kill -9`` (Linux's
parent-death signal; elsewhere it exits when it next talks to the dead driver).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from mtlab.runs.config import RunConfig
from mtlab.runs.executor import ExecutorError, Schedule, failed_row, train_remote_chunk
from mtlab.runs.family import Pretrained

PR_SET_PDEATHSIG = 1
#: glibc ``mallopt`` parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: allocations up to this size come from the heap, not from a fresh ``mmap`` (glibc's maximum)
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap kept for the next step instead of returned to the system
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Make glibc's allocator reuse the memory an ensemble step frees instead of returning it
    to the system and faulting it in again at the next step (measured: 551 minor page faults
    per step of a ReLU ensemble of 16 runs × 256 samples × 256 units, 0 after this;
    BENCHMARKS.md). Changes no number. Returns False where the C library has no ``mallopt``."""
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(ok and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):  # not glibc
        return False
#: the longest the driver waits before it can react to Ctrl-C
WAIT_S = 0.5


def granted_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker exits on its next EOF instead
        pass
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(0)


def _worker(conn: Connection, parent: int, threads: int, device: str) -> None:
    """A worker's loop: receive a chunk, train it, send back everything the driver stores."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C stops
    torch.set_num_threads(threads)
    keep_freed_memory()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        part, deps = msg
        t0 = time.perf_counter()
        results = train_remote_chunk(part, deps, device)
        out = {"results": results, "compute_seconds": time.perf_counter() - t0,
               "pid": os.getpid()}  # fmt: skip
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any, threads: int, device: str) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker, args=(child, os.getpid(), threads, device), daemon=True,
            name="mtlab-worker",
        )  # fmt: skip
        self.proc.start()
        child.close()
        self.job: tuple[list[RunConfig], int, float] | None = None  # part, tries, start

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class WorkerExecutor:
    """Run each chunk in one of ``workers`` local processes (see the module docstring)."""

    name = "workers"

    def __init__(
        self,
        workers: int | None = None,
        *,
        device: str = "cpu",
        retries: int = 3,
        threads: int = 1,
    ) -> None:
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be >= 1 (got {workers}; 0 = in this process)")
        if retries < 0:
            raise ExecutorError(f"--retries must be >= 0 (got {retries})")
        self.slots = int(workers or granted_cores())
        self.device = str(device)
        self.retries = int(retries)
        self.threads = int(threads)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._workers: list[_Worker] = []
        self._started = False

    def start(self) -> bool:
        """True if this call started the executor (the workers themselves start with the
        first chunks, as many as there is work for)."""
        started, self._started = self._started, True
        return not started

    def close(self) -> None:
        """Stop every worker; safe to call twice."""
        self._started = False
        workers, self._workers = self._workers, []
        for w in workers:
            w.stop(kill=w.job is not None)  # a busy one is mid-chunk: nothing of it is stored

    def _idle(self) -> _Worker | None:
        for w in self._workers:
            if w.job is None and w.proc.is_alive():
                return w
        if len(self._workers) < self.slots:
            w = _Worker(self._ctx, self.threads, self.device)
            self._workers.append(w)
            return w
        return None

    def run(self, schedule: Schedule, pretrained: Pretrained, sink: Any, on_chunk: Any) -> None:
        # long: the dispatch / wait / retry loop is one piece
        queue: deque[tuple[list[RunConfig], int]] = deque()

        def dispatch() -> None:
            queue.extend((part, 0) for part in schedule.ready())
            while queue and (w := self._idle()) is not None:
                part, tries = queue.popleft()
                deps = {d.run_id(): pretrained(d.run_id()) for c in part for d in c.dependencies()}
                try:
                    w.conn.send((part, deps))
                except (BrokenPipeError, OSError):  # died while idle: replaced, chunk kept
                    self._drop(w)
                    queue.appendleft((part, tries))
                    continue
                w.job = (part, tries, time.perf_counter())
            busy = sum(w.job is not None for w in self._workers)
            schedule.check_progress(busy + len(queue))

        try:
            dispatch()
            while any(w.job is not None for w in self._workers):
                busy = [w for w in self._workers if w.job is not None]
                waitables: list[Any] = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
                ready = wait(waitables, timeout=WAIT_S)
                if not ready:
                    continue
                for w in busy:
                    if w.conn not in ready and w.proc.sentinel not in ready:
                        continue
                    assert w.job is not None
                    part, tries, t0 = w.job
                    try:
                        out = w.conn.recv() if w.conn.poll() else None
                    except (EOFError, OSError):
                        out = None
                    if out is None:  # the worker died mid-chunk
                        w.proc.join(timeout=5)  # its pipe closes a moment before it is reaped
                        code = w.proc.exitcode
                        self._drop(w)
                        self._lost(part, tries, code, queue, sink, on_chunk, t0)
                        continue
                    w.job = None
                    for result in out["results"]:
                        sink(*result)
                    info = {k: out[k] for k in ("compute_seconds", "pid")}
                    on_chunk(part, time.perf_counter() - t0, info)
                dispatch()
        except BaseException:
            self.close()  # Ctrl-C or a failing driver: busy workers are killed
            raise

    def _drop(self, w: _Worker) -> None:
        self._workers.remove(w)
        w.job = None
        w.stop(kill=True)

    def _lost(
        self,
        part: list[RunConfig],
        tries: int,
        code: int | None,
        queue: deque[tuple[list[RunConfig], int]],
        sink: Any,
        on_chunk: Any,
        t0: float,
    ) -> None:
        """A chunk whose worker died: again, then its runs one at a time, then failed."""
        if tries < self.retries:
            queue.appendleft((part, tries + 1))
            return
        if len(part) > 1:
            queue.extendleft(([cfg], 0) for cfg in reversed(part))
            return
        how = f"exit code {code}" if code is not None else "no answer"
        reason = f"its worker process died {tries + 1} time(s) ({how})"
        sink(failed_row(part[0], reason), [], {})
        on_chunk(part, time.perf_counter() - t0, {"lost": True})


def make_local_executor(workers: int | None, device: str = "cpu", retries: int = 3) -> Any:
    """``workers`` = 0: :class:`~mtlab.runs.executor.LocalExecutor` (in this process);
    None: one worker per granted core; N: N workers."""
    from mtlab.runs.executor import LocalExecutor

    if workers == 0:
        return LocalExecutor(device)
    if torch.device(device).type == "cuda":
        return LocalExecutor(device)  # one process owns the GPU; chunks already fill it
    return WorkerExecutor(workers, device=device, retries=retries)


__all__ = ["WorkerExecutor", "granted_cores", "keep_freed_memory", "make_local_executor"]
