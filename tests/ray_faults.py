"""Faults injected into Ray worker processes by ``tests/test_ray.py``.

Loaded in each worker by Ray's ``worker_process_setup_hook`` (``ray_faults.install``), with the
fault chosen by environment variables of the job's ``runtime_env``: a chunk holding a run of seed
``MTLAB_FAULT_RAISE_SEED`` raises; one holding a run of seed ``MTLAB_FAULT_DIE_SEED`` kills its
own worker process (SIGKILL, as the kernel's OOM killer would).
"""

from __future__ import annotations

import os
import signal


def install() -> None:
    from mtlab.runs.diagonal import DiagonalFamily

    real = DiagonalFamily.run_chunk
    raise_seed = os.environ.get("MTLAB_FAULT_RAISE_SEED")
    die_seed = os.environ.get("MTLAB_FAULT_DIE_SEED")

    def faulty(self, cfgs, *args, **kwargs):
        seeds = {str(c.seed) for c in cfgs}
        if die_seed in seeds:
            os.kill(os.getpid(), signal.SIGKILL)
        if raise_seed in seeds:
            raise RuntimeError("injected fault")
        return real(self, cfgs, *args, **kwargs)

    DiagonalFamily.run_chunk = faulty
