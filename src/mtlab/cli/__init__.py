"""The ``mtlab`` command line: one module per command, the parser built from them.

::

    mtlab list                                          registered studies and their presets
    mtlab reproduce diagonal --preset quick --out runs/diag [--seeds N]
    mtlab run my_sweep.yaml --out runs/mine             any grid of the building blocks
    mtlab benchmark | affinity | trajectories | advise  … on a built-in dataset or your own data
    mtlab status runs/diag                              a folder's progress
    mtlab report runs/diag                              rebuild figures + report from results

Every command that trains goes through one folder policy and one sweep
(:mod:`mtlab.cli.folder`) with the same options (:mod:`mtlab.cli.options`). Exit codes: 0 success,
1 failure while running, 2 invalid input (nothing is trained or written).
"""

from __future__ import annotations

import argparse
import os

from mtlab import __version__
from mtlab.cli import (
    advise,
    affinity,
    benchmark,
    estimators,
    group,
    status,
    study,
    trajectories,
)
from mtlab.cli.folder import fail

#: the command modules, in the order ``mtlab --help`` lists them
COMMANDS = (study, benchmark, affinity, trajectories, group, advise, estimators, status)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtlab", description="A lab bench for multi-task learning.")
    p.add_argument("--version", action="version", version=f"mtlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(sub)
    return p


def configure_threads() -> int:
    """Intra-op threads: ``MTLAB_THREADS`` if set, else one less than the cores granted to this
    process (``os.sched_getaffinity``), at least one. Measured (BENCHMARKS.md): with a thread
    per core, one competing process made a sweep 15× slower (the threads wait for each other
    whenever one is descheduled); with a core left free it ran at its idle speed. The thread
    count is fixed per machine, never adapted to the load, because results with another count
    differ in the last float32 digits."""
    import torch

    env = os.environ.get("MTLAB_THREADS")
    try:
        n = int(env) if env else max(1, len(os.sched_getaffinity(0)) - 1)
    except (ValueError, AttributeError):
        n = torch.get_num_threads()
    if n >= 1 and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "trains", False):
        configure_threads()
        from mtlab.runs.workers import keep_freed_memory

        keep_freed_memory()  # in this process too (--workers 0); worker processes set it again
    from mtlab.runs.config import ConfigError

    try:
        return int(args.run(args))
    except ConfigError as err:
        return fail(f"invalid configuration:\n{err}")


__all__ = ["COMMANDS", "build_parser", "configure_threads", "main"]
