"""An :class:`animeseg.engine.Engine` that runs the work on Ray actors: one machine's cores or a whole cluster.

Each actor receives the work once (pickled; a :class:`animeseg.predict.LazySegmenter` inside it loads the model
and refiner once per actor) and then one input path at a time, which it decodes, segments and writes itself.
Outcomes come back in input order. An actor that dies is restarted by Ray and its input retried; outputs are
written atomically to fixed paths, so a retried input overwrites rather than duplicates. An input whose actor
dies on every retry becomes that input's error instead of ending the run.

Without an address, a private local Ray instance is started (no dashboard, no usage statistics, logs in a
temporary folder) and shut down at the end; with one (``auto``, ``ray://host:10001``) the existing cluster is used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from animeseg.engine import Outcome, failure_message
from animeseg.errors import AnimesegError, InputError

T = TypeVar("T")

INSTALL_HINT = 'Ray is not installed: pip install "animeseg[ray]"'
MAX_RESTARTS = 4  # per actor: a worker killed (preempted node, out of memory) comes back this many times
#: inputs queued per actor
IN_FLIGHT = 2
MAX_TASK_RETRIES = 2  # per input: one that kills its worker every time is reported as failed after this


class RayUnavailable(AnimesegError):
    """``--engine ray`` without Ray installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` with the install command."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable() from None
    return ray


class _Worker:
    """Body of a Ray actor: holds the work (and so its model) and runs it on one item per call."""

    def __init__(self, work: Callable[[Any], Any]):
        self.work = work

    def run(self, item: Any) -> Outcome:
        try:
            return Outcome(item, self.work(item))
        except Exception as e:
            return Outcome(item, error=failure_message(e), bad_input=isinstance(e, InputError))


class RayEngine:
    """Runs the work on ``workers`` Ray actors, each with ``gpus_per_worker`` GPUs (fractions share one).

    Args:
        address: a Ray cluster (``auto``, ``ray://head:10001``); None starts a local instance for this run.
        workers: actors to start; None: one per CPU of a local instance, or per CPU (per GPU share with
            ``gpus_per_worker``) of the cluster.
        gpus_per_worker: GPUs each actor reserves; 0 runs on CPUs.
        cpus_per_worker: CPUs each actor reserves; None: a local instance's CPUs shared out among the workers,
            1 on a cluster.
    """

    in_process = False

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float | None = None,
    ):
        if workers is not None and workers < 1:
            raise ValueError("workers must be 1 or more")
        if gpus_per_worker < 0:
            raise ValueError("gpus_per_worker must be 0 or more")
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        import_ray()  # fail before any work

    def _start(self, ray: Any) -> str | None:
        """Connect to the cluster or start a local instance; the local instance's temporary folder when this
        call started one, else None."""
        if ray.is_initialized():
            return None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reads it in every process it starts
        common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if self.address:
            ray.init(address=self.address, **common)
            return ""
        cpus = max(os.cpu_count() or 1, self.workers or 1)
        temp = tempfile.mkdtemp(prefix="animeseg-ray-")
        try:
            ray.init(num_cpus=cpus, _temp_dir=temp, _node_ip_address="127.0.0.1", **common)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return temp

    def _plan(self, ray: Any) -> tuple[int, float]:
        """(workers, CPUs per worker) for this cluster."""
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1.0))
        workers = self.workers
        if workers is None:
            gpus = float(resources.get("GPU", 0.0))
            workers = int(gpus // self.gpus_per_worker) if self.gpus_per_worker else int(cpus)
        workers = max(1, workers)
        per = self.cpus_per_worker
        if per is None:
            per = max(1.0, cpus // workers) if not self.address else 1.0
        return workers, per

    def map(self, work: Callable[[T], Any], items: Iterable[T]) -> Iterator[Outcome[T]]:
        ray = import_ray()
        from ray.util import ActorPool

        items = list(items)
        started = self._start(ray)
        try:
            workers, cpus = self._plan(ray)
            actor = ray.remote(
                num_cpus=cpus,
                num_gpus=self.gpus_per_worker,
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_TASK_RETRIES,
            )(_Worker)
            shared = ray.put(work)
            actors = [actor.remote(shared) for _ in range(min(workers, max(1, len(items))))]
            # two inputs in flight per actor: the next one is queued in the actor while the driver takes the last
            # result, so the actor never waits for a round trip (Ray runs an actor's tasks one at a time, in order)
            pool = ActorPool(actors * IN_FLIGHT)
            for item in items:
                pool.submit(lambda a, v: a.run.remote(v), item)
            for item in items:
                try:
                    outcome = pool.get_next()
                except ray.exceptions.RayError as e:  # the actor died on every retry of this input
                    outcome = Outcome(item, error=f"worker died: {failure_message(e)}")
                yield outcome
        finally:
            if started is not None:
                ray.shutdown()
                if started:
                    shutil.rmtree(started, ignore_errors=True)
