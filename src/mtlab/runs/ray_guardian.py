"""The guardian of a local Ray instance: ``python -m mtlab.runs.ray_guardian --num-cpus N``.

When ``mtlab … --executor ray`` runs without ``--address``, the Ray instance is started by this
small process rather than by the driver, so that it cannot outlive the driver. The guardian
(a Linux *child subreaper*: every process Ray starts that loses its parent is reparented to it)
starts Ray, prints the instance's address as one JSON line, and waits for its standard input to
close — which happens when the driver closes it *or dies*, even by ``kill -9``. It then shuts Ray
down and kills whatever is left of the instance (measured: after a ``kill -9`` of a plain
``ray.init()`` driver, Ray 2.60's dashboard and runtime-env agents outlive it indefinitely).

It ignores SIGINT and runs in its own session: a Ctrl-C in the terminal reaches only the driver,
which cancels its tasks and keeps every finished run before closing the instance.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time
from typing import Any

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to init, as without the guardian
        pass


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where /proc does not exist)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z":  # a zombie is dead already
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(timeout: float = 10.0) -> list[int]:
    """SIGKILL every descendant of this process until none is left; returns the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        left = descendants(os.getpid())
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-cpus", type=int, required=True)
    ap.add_argument("--num-gpus", type=int, default=None)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _become_subreaper()
    import ray

    try:
        ctx: Any = ray.init(
            address="local",  # always a new instance, never one that `ray start` left running
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
        print(json.dumps({"address": ctx.address_info["gcs_address"]}), flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # nobody reads further: a full pipe must never block the guardian
        sys.stdin.read()  # until EOF: the driver closed the pipe, or died
    finally:
        try:
            ray.shutdown()
        finally:
            kill_descendants()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
