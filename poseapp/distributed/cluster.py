"""Where a distributed run goes and how wide: ``RayOptions``, the actor pool's shape on the cluster
(``pool_shape``, pure), and the connection to Ray (``connect``: a local instance or a running cluster, quiet
unless verbose, with poseapp's code and weights settings in the workers' ``runtime_env``)."""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from poseapp.distributed.plan import DEFAULT_SEGMENT_FRAMES, DEFAULT_SHARD_SIZE
from poseapp.errors import PoseAppError, arg

READ_RESERVE_CPUS = 0.5  # CPUs left free on a local machine for Ray Data's reading and the driver


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a distributed run goes (``python infer.py predict --ray`` and its flags).

    Attributes:
        address: a running cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None starts a local Ray
            instance on this machine for the run (or uses the one this process already started).
        workers: actors, each with one detector and one pose model; None: one per GPU slot with
            ``gpus_per_worker``, else one per two CPUs of the cluster.
        gpus_per_worker: GPUs each actor takes (fractions share one); 0: the CPU.
        cpus_per_worker: CPUs each actor takes; None: the cluster's CPUs shared out, less half a CPU kept for
            reading (fractional on a small machine). Also its pose network's threads unless ``threads`` is set.
        shard_size: images per task (and per shard).
        segment_frames: frames per task of a long video, where its frames may be split (no tracking, no
            ``det_every``, no smoothing, no annotated video).
        resume: skip the tasks a run before finished (same options, same inputs) in ``out_dir`` itself.
        num_cpus: CPUs of a local instance (None: this machine's).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    resume: bool = False
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        checks = (("workers", self.workers is None or (isinstance(self.workers, int) and self.workers >= 1), ">= 1"),
                  ("gpus_per_worker", self.gpus_per_worker >= 0, ">= 0"),
                  ("cpus_per_worker", self.cpus_per_worker is None or self.cpus_per_worker > 0, "above 0"),
                  ("shard_size", isinstance(self.shard_size, int) and self.shard_size >= 1, ">= 1"),
                  ("segment_frames", isinstance(self.segment_frames, int) and self.segment_frames >= 1, ">= 1"))
        for name, ok, rule in checks:
            if not ok:
                raise PoseAppError(f"{arg(name)} must be {rule} (got {getattr(self, name)!r})")


@dataclass(frozen=True)
class Shape:
    """How the pool is laid out on the cluster: actors, and the CPUs, GPUs and threads of each."""

    workers: int
    cpus: float
    gpus: float
    threads: int


def pool_shape(c: RayOptions, cluster_cpus: float, cluster_gpus: float, tasks: int) -> Shape:
    """The actor pool for ``tasks`` on a cluster of ``cluster_cpus`` CPUs and ``cluster_gpus`` GPUs: at most
    one actor per task; CPUs shared out less READ_RESERVE_CPUS (so reading is not starved); threads the
    whole CPUs an actor has (at least 1)."""
    if c.gpus_per_worker > 0:
        if cluster_gpus < c.gpus_per_worker:
            raise PoseAppError(f"{arg('gpus_per_worker')} {c.gpus_per_worker:g}: the cluster has {cluster_gpus:g} "
                               f"GPU(s); lower it, or drop it to run on the CPUs")
        workers = c.workers or max(1, int(cluster_gpus // c.gpus_per_worker))
    else:
        workers = c.workers or max(1, int(cluster_cpus // 2))
    workers = max(1, min(workers, tasks))
    cpus = c.cpus_per_worker
    if cpus is None:
        cpus = max(0.25, (cluster_cpus - READ_RESERVE_CPUS) / workers)
        if c.gpus_per_worker > 0:
            cpus = min(cpus, 4.0)  # a GPU worker's CPUs decode and crop; more would idle
        cpus = math.floor(cpus * 100) / 100
    if cpus * workers > cluster_cpus:
        raise PoseAppError(f"{workers} worker(s) x {cpus:g} CPUs is more than the cluster's {cluster_cpus:g}: "
                           f"lower {arg('workers')} or {arg('cpus_per_worker')}")
    return Shape(workers, cpus, c.gpus_per_worker, max(1, round(cpus)))


@dataclass
class Connection:
    started: bool  # this run started the Ray instance (and stops it)


def _runtime_env(c: RayOptions) -> dict[str, Any]:
    """The workers' environment: the weights cache and mirror settings, and poseapp's own code (``py_modules``),
    so every worker runs the driver's version whether or not it is installed where it runs."""
    import poseapp
    from poseapp.hub.cache import cache_dir

    env = {k: v for k, v in os.environ.items() if k.startswith("POSEAPP_")}
    if c.address is None:  # this machine: the same cache, by absolute path
        env["POSEAPP_HOME"] = str(cache_dir().expanduser().resolve())
    # poseapp's code travels with the job: a worker started outside the checkout (another folder, another node)
    # imports the driver's poseapp whether or not it is installed there
    return {"env_vars": env, "py_modules": [str(Path(poseapp.__file__).parent)]}


def connect(c: RayOptions, verbose: bool) -> Connection:
    import ray

    if ray.is_initialized():
        return Connection(started=False)
    quiet = logging.INFO if verbose else logging.ERROR
    kwargs: dict[str, Any] = dict(runtime_env=_runtime_env(c), logging_level=quiet, log_to_driver=verbose,
                                  configure_logging=True, include_dashboard=False)
    if c.address is None:
        kwargs["num_cpus"] = c.num_cpus or os.cpu_count() or 1
    try:  # the C++ core's start-up notes, printed whatever the level, and its log (notes on actor restarts):
        # only what ends the run; the processes Ray starts now keep that level, this one's environment not
        with _stderr_silenced(not verbose), _environ({} if verbose else {"RAY_BACKEND_LOG_LEVEL": "fatal"}), \
                _signal_kept(signal.SIGTERM):  # Ray's own would exit at once: a SIGTERM ends the run as Ctrl-C
            ray.init(address=c.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {c.address}" if c.address else "a local Ray instance"
        raise PoseAppError(f"cannot start {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
                           f"(check {arg('ray_address')}, or `ray status` on the head node)") from e
    return Connection(started=True)


@contextmanager
def _signal_kept(sig: int) -> Iterator[None]:
    """The handler of ``sig`` as it is before the block, whatever the block sets (in the main thread)."""
    try:
        handler = signal.getsignal(sig)
    except ValueError:
        handler = None
    try:
        yield
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(sig, handler)


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block (a value the user set stays), then as before."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextmanager
def _stderr_silenced(silence: bool) -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (what C++ libraries print there), then back."""
    if not silence:
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_ray_data(verbose: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    ctx.enable_auto_log_stats = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
