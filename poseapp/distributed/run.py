"""A predict job on a Ray cluster: plan, share out on Ray Data, merge. ``run_distributed`` is the one call.

1. The cheap checks first, on the driver, before Ray starts: the source is planned into tasks
   (``plan.plan_tasks``), the pose model and its boxes resolved (option and recipe errors), the run folder
   chosen and checked against the inputs.
2. With ``resume``, every task whose record is in ``<out>/shards`` under this run's digest is skipped.
3. The other tasks become a Ray dataset, one block per task, mapped by a pool of ``workers`` actors
   (``worker.PoseWorker``: one detector and one pose model each, on a GPU with ``gpus_per_worker``). Ray
   restarts an actor that dies and retries its task; shard names and atomic writes make the retry overwrite,
   never add. The run's ledger actor counts the retries.
4. Whatever ends the run (done, a failure, Ctrl-C), the finished shards are merged into the files a
   single-process run writes (``shards.merge``) and the manifest says what is done, failed or pending.
"""
from __future__ import annotations

import json
import logging
import math
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from poseapp.distributed.plan import DEFAULT_SEGMENT_FRAMES, DEFAULT_SHARD_SIZE, Plan, Task, plan_tasks
from poseapp.distributed.shards import MANIFEST, SHARDS, TaskRecord, merge, read_record, shard_dir, write_manifest
from poseapp.errors import OutputError, PoseAppError, arg, render
from poseapp.job import RunReport

if TYPE_CHECKING:
    from poseapp.job import PredictOptions

log = logging.getLogger(__name__)

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


@dataclass
class DistributedReport(RunReport):
    """A RunReport with what the cluster did: inputs and their fate, tasks, retries, workers."""

    inputs: int = 0
    done_inputs: int = 0
    failed_inputs: int = 0
    tasks: int = 0
    skipped: int = 0  # tasks done by a run before (resume)
    retried: int = 0  # task attempts Ray made again after a worker died
    workers: int = 0
    outputs: list[Path] = field(default_factory=list)  # the merged files


def _log_warning(message: str) -> None:
    log.warning("%s", render(message))


def run_distributed(options: "PredictOptions", cluster: RayOptions | None = None,
                    report: DistributedReport | None = None, *,
                    warn: Callable[[str], None] = _log_warning) -> DistributedReport:
    """Run the job ``options`` describe on Ray (``cluster``) and return its report, filled as it goes.

    The outputs are a single-process run's (``predictions.json`` / ``<stem>.jsonl``, ``.csv``, annotated
    media) plus ``<out>/shards/`` (the shards and ``manifest.json``, which ``resume`` reads).

    Raises:
        PoseAppError: a bad option, source, model or output (one line), before Ray starts where it can be
            told then; a model the workers cannot load.
    """
    from poseapp.sinks import next_run_dir, remove_stale_temps

    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise PoseAppError(f"{arg('ray')} needs Ray Data, which is not installed: pip install -r requirements.txt "
                           f"(or pip install 'ray[data]'), or drop {arg('ray')}")
    c = cluster or RayOptions()
    o = options
    warn = _once(warn)
    report = report if report is not None else DistributedReport()
    report.source = str(o.source)
    if o.show:
        raise PoseAppError(f"{arg('show')} needs the frames on this machine: drop it, or drop {arg('ray')}")
    if c.gpus_per_worker == 0 and str(o.device).lower() not in ("auto", "cpu"):
        raise PoseAppError(f"{arg('device')} {o.device}: a worker's device comes from the cluster; give each "
                           f"worker a GPU with {arg('gpus_per_worker')} (or drop {arg('device')})")
    if c.gpus_per_worker > 0 and o.device.lower() == "cpu":
        raise PoseAppError(f"{arg('device')} cpu with {arg('gpus_per_worker')} {c.gpus_per_worker:g}: drop one")
    plan = plan_tasks(o, shard_size=c.shard_size, segment_frames=c.segment_frames)
    report.kind, report.inputs, report.tasks = plan.kind, plan.inputs, len(plan.tasks)
    model = _check_models(o, warn)
    report.model = model
    base = Path(o.out_dir).expanduser()
    existed = base.exists()
    out = next_run_dir(base, exist_ok=o.exist_ok or c.resume)  # resume: the folder of the run before, as given
    report.out = out
    try:
        _check_apart(plan, out, o)
        if c.resume:
            _check_resumable(out, plan)
    except PoseAppError:
        if (out != base or not existed) and not any(out.iterdir()):
            out.rmdir()  # made for this run, which does not start: not left behind
        raise
    shard_dir(out).mkdir(parents=True, exist_ok=True)
    report.stale = remove_stale_temps(_folders(out))
    records = _finished(plan, out) if c.resume else {}
    report.skipped = len(records)
    failed: dict[str, str] = {}
    write_manifest(out, plan, records, source=str(o.source), model=model)
    try:
        todo = [t for t in plan.tasks if t.name not in records]
        if todo:
            _share_out(todo, plan, o, c, out, model, report, records, failed, warn)
    finally:
        _finish(plan, o, out, model, report, records, failed)
    return report


def _once(warn: Callable[[str], None]) -> Callable[[str], None]:
    """``warn``, saying each text once (the driver and every worker check the same things)."""
    said: set[str] = set()

    def once(text: str) -> None:
        if text not in said:
            said.add(text)
            warn(text)

    return once


def _check_resumable(out: Path, plan: Plan) -> None:
    """Refuse ``resume`` into a folder whose manifest is another run's (other options, or another source's
    kind): its shards would all be recomputed, and its merged files left beside the new ones."""
    path = shard_dir(out) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return  # nothing to resume: the run starts from scratch
    except (OSError, ValueError) as e:
        raise OutputError(f"{arg('resume')}: cannot read '{path}' ({type(e).__name__}); run without "
                          f"{arg('resume')} into another {arg('out_dir')}") from e
    if not isinstance(manifest, dict) or manifest.get("digest") != plan.digest:
        raise OutputError(f"{arg('resume')}: {out} holds a run with other options (its manifest's digest "
                          f"{manifest.get('digest') if isinstance(manifest, dict) else None}, this run's "
                          f"{plan.digest}); resume with the options it ran with, or run into another {arg('out_dir')}")


def _check_models(o: "PredictOptions", warn: Callable[[str], None]) -> str:
    """Resolve the pose model and its boxes here (errors in one line before Ray starts); its recipe's name."""
    import poseapp.create
    from poseapp.job import _RENAMED, _check_kpt_thr, detector_for

    try:
        resolved = poseapp.create.resolve_model(o.pose_model, o.pose_arch, o.pose_recipe)
    except PoseAppError as e:
        raise e.renamed(_RENAMED)
    _check_kpt_thr(o.kpt_thr, resolved.recipe, warn)
    detector_for(o, resolved.recipe, "cpu")  # option errors (classes, boxes file, face model) now
    return resolved.recipe.name


def _folders(out: Path) -> list[Path]:
    return [out, shard_dir(out), *(p for p in out.rglob("*") if p.is_dir() and p != shard_dir(out))]


def _check_apart(plan: Plan, out: Path, o: "PredictOptions") -> None:
    """Refuse a run folder whose files (merged outputs, annotated media, shards) would overwrite an input."""
    from poseapp.outputs import same_file

    inputs = [*plan.input_files, *(Path(p) for p in (o.boxes_file, o.pose_model) if p and Path(p).is_file())]
    out_real = Path(os.path.realpath(out))
    merged = ["predictions.json", "predictions.csv", "predictions.parquet"] if plan.kind == "image" else \
        [f"{t.output}{suffix}" for t in plan.tasks for suffix in (".jsonl", ".csv", ".parquet")]
    for original in inputs:
        real = Path(os.path.realpath(original))
        if o.save_media and (real.parent == out_real or out_real in real.parents) and _media_name_clash(
                plan, out, original):
            raise OutputError(f"{arg('out_dir')} {out} would overwrite the input '{original}' with its annotated "
                              f"copy; choose an {arg('out_dir')} outside the inputs' folder")
        if real == out_real / SHARDS or out_real / SHARDS in real.parents or any(
                same_file(out / name, original) for name in merged):
            raise OutputError(f"{arg('out_dir')} {out} would overwrite the input '{original}'; choose another "
                              f"{arg('out_dir')}")
    source = Path(str(o.source)).expanduser()
    walked = plan.root if plan.kind == "image" else source if source.is_dir() else None
    if o.recursive and walked is not None and Path(os.path.realpath(walked)) in (out_real, *out_real.parents):
        raise OutputError(f"{arg('out_dir')} {out} lies inside '{walked}', which {arg('recursive')} walks: the "
                          f"outputs would be read as inputs next time; choose an {arg('out_dir')} outside it")


def _media_name_clash(plan: Plan, out: Path, original: Path) -> bool:
    from poseapp.outputs import same_file
    from poseapp.sinks import image_output_name, video_output_name

    if plan.kind == "image":
        return same_file(out / image_output_name(Path(original), plan.root), original)
    return any(same_file(out / video_output_name(t.output), original) for t in plan.tasks)


def _finished(plan: Plan, out: Path) -> dict[str, TaskRecord]:
    """The tasks of ``plan`` a run before finished (their records are there, under this digest)."""
    records = {}
    for task in plan.tasks:
        record = read_record(out, task)
        if record is not None:
            records[task.name] = record
    return records


# ---------------------------------------------------------------------------------------------- the cluster


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
class _Connection:
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


def _connect(c: RayOptions, verbose: bool) -> _Connection:
    import ray

    if ray.is_initialized():
        return _Connection(started=False)
    quiet = logging.INFO if verbose else logging.ERROR
    kwargs: dict[str, Any] = dict(runtime_env=_runtime_env(c), logging_level=quiet, log_to_driver=verbose,
                                  configure_logging=True, include_dashboard=False)
    if c.address is None:
        kwargs["num_cpus"] = c.num_cpus or os.cpu_count() or 1
    try:  # the C++ core's start-up notes, printed whatever the level, and its log (notes on actor restarts):
        # only what ends the run; the processes Ray starts now keep that level, this one's environment not
        with _stderr_silenced(not verbose), _environ({} if verbose else {"RAY_BACKEND_LOG_LEVEL": "fatal"}):
            ray.init(address=c.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {c.address}" if c.address else "a local Ray instance"
        raise PoseAppError(f"cannot start {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
                           f"(check {arg('ray_address')}, or `ray status` on the head node)") from e
    return _Connection(started=True)


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


def _quiet_ray_data(verbose: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    ctx.enable_auto_log_stats = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


def _share_out(todo: list[Task], plan: Plan, o: "PredictOptions", c: RayOptions, out: Path, model: str,
               report: DistributedReport, records: dict[str, TaskRecord], failed: dict[str, str],
               warn: Callable[[str], None]) -> None:
    """The tasks ``todo`` through the actor pool; records and failures filled in as they come back."""
    import ray
    import ray.data
    from tqdm import tqdm

    from poseapp.distributed.worker import Ledger, WorkerConfig, worker_class

    verbose = log.isEnabledFor(logging.DEBUG)
    connection = _connect(c, verbose)
    ledger = None
    try:
        _quiet_ray_data(verbose)
        resources = ray.cluster_resources()
        shape = pool_shape(c, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), len(todo))
        report.workers = shape.workers
        namespace = ray.get_runtime_context().namespace
        name = f"poseapp-ledger-{uuid.uuid4().hex[:12]}"
        ledger = ray.remote(num_cpus=0)(Ledger).options(name=name, namespace=namespace).remote()
        worker_options = replace(o, threads=o.threads or shape.threads, out_dir=str(out))
        config = WorkerConfig(options=worker_options, out=out.resolve(), cwd=os.getcwd(), root=plan.root,
                              image_spec=plan.image_spec, device="cuda" if shape.gpus > 0 else "cpu",
                              meta={"model": model}, ledger=name, namespace=namespace)
        dataset = ray.data.from_items([t.to_row() for t in todo], override_num_blocks=len(todo))
        mapped = dataset.map_batches(worker_class(config), batch_size=1,
                                     compute=ray.data.ActorPoolStrategy(size=shape.workers),
                                     num_cpus=shape.cpus, num_gpus=shape.gpus or None)
        warned: set[str] = set()
        with tqdm(total=len(todo), unit="task", dynamic_ncols=True, leave=False) as bar:
            for row in mapped.iter_rows():
                name_ = str(row["name"])
                if row["status"] == "fatal":
                    raise PoseAppError(str(row["error"]))
                if row["status"] == "failed":
                    failed[name_] = str(row["error"])
                else:
                    record = TaskRecord.from_dict(json.loads(str(row["record"])))
                    records[name_] = record
                    _count(report, record)
                    for text in record.warnings:
                        if text not in warned:
                            warned.add(text)
                            warn(text)
                bar.update(1)
        report.retried = int(ray.get(ledger.retried.remote()))
    finally:
        if ledger is not None:
            try:
                if not report.retried:
                    report.retried = int(ray.get(ledger.retried.remote(), timeout=5))
                ray.kill(ledger)
            except Exception:  # the cluster is already going down (Ctrl-C)
                pass
        if connection.started:
            ray.shutdown()


def _count(report: DistributedReport, record: TaskRecord) -> None:
    report.frames += record.frames
    report.instances += record.instances
    report.detector_frames += record.detector_frames
    report.tracks += record.tracks
    report.pose_time += record.pose_time
    report.det_time += record.det_time


def _finish(plan: Plan, o: "PredictOptions", out: Path, model: str, report: DistributedReport,
            records: dict[str, TaskRecord], failed: dict[str, str]) -> None:
    """Merge what is done, write the manifest, and count each input's fate into ``report`` (the frames and
    instances it counts are this run's; a task skipped by ``resume`` counts as done, its frames not)."""
    from poseapp.sinks import remove_stale_temps

    report.outputs = merge(out, plan, records, keypoints=o.save_json, table=o.save_csv, parquet=o.save_parquet)
    report.stale += remove_stale_temps(_folders(out))  # what killed workers left (their retries wrote again)
    write_manifest(out, plan, records, source=str(o.source), model=model, retried=report.retried, failed=failed,
                   outputs=report.outputs)
    failures: list[tuple[str, str]] = []
    state: dict[str, str] = {}  # input -> done, failed, pending
    for task in plan.tasks:
        record = records.get(task.name)
        bad = {p: r for p, r in record.failures} if record is not None else {}
        for path in task.paths:
            if path in bad or task.name in failed:
                if state.get(path) != "failed":
                    failures.append((path, bad.get(path) or failed[task.name]))
                state[path] = "failed"
            elif record is None:
                state.setdefault(path, "pending")
                if state[path] == "done":
                    state[path] = "pending"
            else:
                state.setdefault(path, "done")
    report.failures = failures
    report.inputs = len(state)  # a path listed twice is one input
    report.done_inputs = sum(1 for s in state.values() if s == "done")
    report.failed_inputs = sum(1 for s in state.values() if s == "failed")
