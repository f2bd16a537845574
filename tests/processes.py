"""Process helpers shared by the fault-injection tests (``test_ray``, ``test_workers``)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def alive(pids: list[int]) -> list[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            left.append(pid)
    return left


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Wait until none of ``pids`` runs (at most ``timeout`` s); those still running."""
    deadline = time.time() + timeout
    while alive(pids) and time.time() < deadline:
        time.sleep(0.1)
    return alive(pids)


def wait_rows(proc: subprocess.Popen, out: Path, n: int) -> None:
    """Wait until the driver ``proc`` has stored ``n`` rows in ``out``."""
    rows = out / "rows.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if rows.exists() and len(rows.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the driver stored < {n} rows (rc {proc.poll()})")
