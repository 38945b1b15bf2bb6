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
import os
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from poseapp.distributed.cluster import RayOptions, connect, pool_shape, quiet_ray_data
from poseapp.distributed.plan import Plan, Task, plan_tasks
from poseapp.distributed.shards import MANIFEST, SHARDS, TaskRecord, merge, read_record, shard_dir, write_manifest
from poseapp.errors import OutputError, PoseAppError, arg, render
from poseapp.job import RunReport

if TYPE_CHECKING:
    from poseapp.job import PredictOptions

log = logging.getLogger(__name__)


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
        try:
            if (out != base or not existed) and not any(out.iterdir()):
                out.rmdir()  # made for this run, which does not start: not left behind
        except OSError:
            pass  # the refusal is what the user needs to read
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
    if manifest.get("kind", plan.kind) != plan.kind:
        raise OutputError(f"{arg('resume')}: {out} holds a run of {manifest['kind']}s, this source is of "
                          f"{plan.kind}s; resume with the source it ran on, or run into another {arg('out_dir')}")


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
    source = Path(str(o.source)).expanduser()  # images: as a single-process run; videos: only their annotated
    walked = plan.root if plan.kind == "image" else source if source.is_dir() and o.save_media else None  # copies
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


def _share_out(todo: list[Task], plan: Plan, o: "PredictOptions", c: RayOptions, out: Path, model: str,
               report: DistributedReport, records: dict[str, TaskRecord], failed: dict[str, str],
               warn: Callable[[str], None]) -> None:
    """The tasks ``todo`` through the actor pool; records and failures filled in as they come back."""
    import ray
    import ray.data
    from tqdm import tqdm

    from poseapp.distributed.worker import Ledger, WorkerConfig, worker_class

    verbose = log.isEnabledFor(logging.DEBUG)
    connection = connect(c, verbose)
    ledger = None
    try:
        quiet_ray_data(verbose)
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
