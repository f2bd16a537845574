"""Sweeps on a Ray cluster: one Ray task per chunk; this process stays the only writer.

:class:`RayExecutor` runs each chunk that :func:`mtlab.runs.executor.execute` plans (the same
dependency phases and the same deterministic ensemble plan as the local executor) as one Ray task
declaring ``cpus_per_chunk`` CPUs and ``gpus_per_chunk`` GPUs. A task trains its runs through
:func:`~mtlab.runs.executor.run_isolated` — a run that raises or diverges fails alone, with its
reason — and *returns* rows, curves and parameters; the driver stores them (idempotently, by run
id), so a retried chunk can never double a row. Pretrained parameters travel as Ray objects,
put once and never recomputed. A chunk is submitted as soon as the runs it depends on are
stored (:class:`~mtlab.runs.executor.Schedule`), not after the whole previous phase.

Faults: a chunk whose worker dies (killed, out of memory, node lost) is retried by Ray up to
``retries`` times; if it still fails, its runs are resubmitted one at a time — each with the
same retries — and a run that still cannot finish is stored ``failed`` with the reason. Ctrl-C
cancels the outstanding tasks and keeps every finished run. Without ``address`` a local Ray
instance is started through :mod:`mtlab.runs.ray_guardian`, which takes it down when the driver
exits or dies.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from mtlab.runs.config import RunConfig
from mtlab.runs.executor import ExecutorError, failed_row, train_remote_chunk
from mtlab.runs.family import Pretrained

AUTH_MODE = "RAY_AUTH_MODE"
INSTALL = 'pip install "mtlab[ray]"'
#: the longest the driver waits inside Ray before it can react to Ctrl-C
WAIT_S = 0.5
#: how long a local instance may take to start before the driver gives up
START_TIMEOUT_S = 120.0


def require_ray() -> None:
    """An :class:`ExecutorError` naming the install line if Ray is not installed (checked
    without importing it: Ray reads its authentication mode once, on import)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL}")


def mtlab_chunk(
    part: Sequence[RunConfig], deps: dict[str, Any], device: str, threads: int
) -> dict[str, Any]:
    """The Ray task: train one chunk in a worker and return everything the driver stores."""
    import ray

    torch.set_num_threads(threads)
    params = {run_id: ray.get(ref) for run_id, ref in deps.items()}
    t0 = time.perf_counter()
    results = train_remote_chunk(part, params, device)
    return {
        "results": results,
        "compute_seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id(),
    }


def _dependency_ids(part: Sequence[RunConfig]) -> set[str]:
    """The run ids whose parameters the chunk's runs start from."""
    return {d.run_id() for cfg in part for d in cfg.dependencies()}


def start_local_instance(num_cpus: int, num_gpus: int | None = None) -> tuple[Any, str]:
    """Start a local Ray instance under a guardian process; returns (guardian, address)."""
    cmd = [sys.executable, "-m", "mtlab.runs.ray_guardian", "--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    log = tempfile.TemporaryFile(mode="w+")
    guardian = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,  # a Ctrl-C in the terminal reaches the driver only
    )
    assert guardian.stdout is not None
    line = guardian.stdout.readline()  # the guardian prints the address once Ray is up
    if not line:
        guardian.wait(timeout=START_TIMEOUT_S)
        log.seek(0)
        tail = "\n".join(log.read().strip().splitlines()[-5:])
        raise ExecutorError(f"could not start a local Ray instance:\n{tail}")
    return guardian, json.loads(line)["address"]


class RayExecutor:
    """Run each chunk as a Ray task (see the module docstring).

    ``address``: None starts a local instance on ``num_cpus`` cores (default: the cores granted
    to this process); ``"auto"`` or ``"host:port"`` joins a running cluster. ``runtime_env`` is
    passed to ``ray.init`` for this job (e.g. environment variables for the workers).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_chunk: float = 1.0,
        gpus_per_chunk: float = 0.0,
        retries: int = 3,
        device: str | None = None,
        num_cpus: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        if cpus_per_chunk <= 0:
            raise ExecutorError(f"--cpus-per-chunk must be > 0 (got {cpus_per_chunk})")
        if gpus_per_chunk < 0:
            raise ExecutorError(f"--gpus-per-chunk must be >= 0 (got {gpus_per_chunk})")
        if retries < 0:
            raise ExecutorError(f"--retries must be >= 0 (got {retries})")
        device = device or ("cuda" if gpus_per_chunk > 0 else "cpu")
        kind = torch.device(device).type
        if kind == "cuda" and gpus_per_chunk <= 0:
            raise ExecutorError(
                "--executor ray runs on a GPU only where a chunk declares one: "
                "give --gpus-per-chunk (e.g. 0.25 for four chunks per GPU)"
            )
        if kind != "cuda" and gpus_per_chunk > 0:
            raise ExecutorError(f"--gpus-per-chunk {gpus_per_chunk} with --device {device}")
        self.address = address
        self.cpus_per_chunk = float(cpus_per_chunk)
        self.gpus_per_chunk = float(gpus_per_chunk)
        self.retries = int(retries)
        self.device = device
        self.num_cpus = num_cpus or len(os.sched_getaffinity(0))
        self.runtime_env = runtime_env
        self._ray: Any = None
        self._guardian: Any = None
        self._task: Any = None

    def start(self) -> bool:
        if self._ray is not None:
            return False
        address = self.address
        if address is None:
            # a new local instance uses token authentication (Ray's default since 2.5x; the
            # token is in ~/.ray/auth_token); the driver must be in that mode before Ray reads
            # its configuration — a mode the user set is kept
            os.environ.setdefault(AUTH_MODE, "token")
        require_ray()
        import ray

        if address is None:
            self._guardian, address = start_local_instance(self.num_cpus)
        try:
            ray.init(
                address=address,
                runtime_env=self.runtime_env,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except Exception as err:
            self.close()
            raise ExecutorError(f"could not connect to Ray at {address}: {err}") from None
        self._ray = ray
        try:
            self._check_resources()
        except ExecutorError:
            self.close()
            raise
        self._task = ray.remote(mtlab_chunk)
        return True

    @property
    def slots(self) -> int:
        """Chunks that can run at once: the cluster's CPUs (GPUs, where chunks declare them)
        over what a chunk declares (1 before :meth:`start`)."""
        if self._ray is None:
            return 1
        total = self._ray.cluster_resources()
        n = float(total.get("CPU", 1.0)) / self.cpus_per_chunk
        if self.gpus_per_chunk > 0:
            n = min(n, float(total.get("GPU", 0.0)) / self.gpus_per_chunk)
        return max(1, int(n))

    def _check_resources(self) -> None:
        """Refuse chunk resources that no node of the cluster has (they would wait forever)."""
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        for key, need in (("CPU", self.cpus_per_chunk), ("GPU", self.gpus_per_chunk)):
            most = max((float(r.get(key, 0.0)) for r in nodes), default=0.0)
            if need > most:
                flag = f"--{key.lower()}s-per-chunk"
                raise ExecutorError(
                    f"{flag} {need:g}: no node of the Ray cluster has {need:g} {key}s "
                    f"(the largest has {most:g})"
                )

    def close(self) -> None:
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray = self._task = None
        guardian, self._guardian = self._guardian, None
        if guardian is not None:
            guardian.stdin.close()  # the guardian takes the local instance down
            try:
                guardian.wait(timeout=60)
            except subprocess.TimeoutExpired:
                guardian.kill()

    def _submit(self, part: Sequence[RunConfig], refs: dict[str, Any]) -> Any:
        deps = _dependency_ids(part)
        return self._task.options(
            num_cpus=self.cpus_per_chunk,
            num_gpus=self.gpus_per_chunk,
            max_retries=self.retries,
            retry_exceptions=False,  # exceptions of a run are isolated inside the task
            name=f"mtlab {part[0].method} x{len(part)}",
        ).remote(list(part), {d: refs[d] for d in sorted(deps)}, self.device, self._threads())

    def _threads(self) -> int:
        return max(1, int(self.cpus_per_chunk))

    def run(self, schedule: Any, pretrained: Pretrained, sink: Any, on_chunk: Any) -> None:
        # long: the submit / wait / isolate loop is one piece
        ray = self._ray
        refs: dict[str, Any] = {}
        pending: dict[Any, tuple[list[RunConfig], float]] = {}

        def submit_ready() -> None:
            for part in schedule.ready():  # a chunk as soon as its pretrainings are stored
                for d in _dependency_ids(part):
                    if d not in refs:  # each pretrained model is put once
                        refs[d] = ray.put(pretrained(d))
                pending[self._submit(part, refs)] = (list(part), time.perf_counter())
            schedule.check_progress(len(pending))

        try:
            submit_ready()
            while pending:
                # a bounded wait: Python handles a Ctrl-C between waits, not inside Ray's C++
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                if not ready:
                    continue
                ref = ready[0]
                part, t0 = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as err:
                    if len(part) > 1:  # isolate: the runs again one at a time
                        for cfg in part:
                            pending[self._submit([cfg], refs)] = ([cfg], time.perf_counter())
                        continue
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    reason = (
                        f"its Ray worker was lost {self.retries + 1} time(s) "
                        f"({type(err).__name__}): {first}"
                    )
                    sink(failed_row(part[0], reason), [], {})
                    on_chunk(part, time.perf_counter() - t0, {"lost": True})
                    submit_ready()
                    continue
                for result in out["results"]:
                    sink(*result)
                info = {k: out[k] for k in ("compute_seconds", "pid", "node")}
                on_chunk(part, time.perf_counter() - t0, info)
                submit_ready()
        except BaseException:
            # Ctrl-C (or the driver failing): closing ends this job — Ray stops a
            # job's tasks when its driver disconnects — and takes a local instance down. Not
            # ray.cancel(force=True): with Ray 2.60 a task finishing while being cancelled
            # aborted the driver ("Tried to complete task that was not pending", measured 1 in 4)
            self.close()
            raise
