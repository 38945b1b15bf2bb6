"""The Ray actor of a distributed run: one detector and one pose model, loaded once, then task after task.

Ray Data calls a :class:`PoseWorker` with batches of task rows (``Task.to_row``). For each task it builds the
task's source (a shard of images, or a video or a segment of one), runs the same engine and writers a
single-process run uses (``job.pipeline_for``, ``job.stream_into``) into the task's shards (``shards``), writes
the annotated media into the run folder, then commits the task with its record. It returns one row per task:
``name``, ``status`` (``done``, ``failed`` with ``error``, or ``fatal`` when the models could not load) and
``record`` (JSON). Before a task starts it tells the run's :class:`Ledger`, which counts attempts: a task
started twice was retried by Ray (its worker died).
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poseapp.distributed.plan import Task
from poseapp.distributed.shards import TaskRecord, discard, keypoint_suffix, shard_path, write_record
from poseapp.errors import PoseAppError

if TYPE_CHECKING:
    import numpy as np

    from poseapp.job import PredictOptions
    from poseapp.outputs import Outputs
    from poseapp.sources import Source

log = logging.getLogger(__name__)

MAX_STARTS = 3  # a task that took its worker down this many times fails instead of being given out again


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a run shares: the options, where the run writes, the plan's image naming, the
    device its models load on, the keypoint files' header fields, the name of the run's ledger and the
    driver's working directory (relative paths in the options and the tasks are read from it)."""

    options: "PredictOptions"
    out: Path
    cwd: str
    root: Path | None
    image_spec: str
    device: str
    meta: dict[str, Any]
    ledger: str
    namespace: str


class Ledger:
    """A tiny Ray actor (no CPU) counting each task's starts: a start after the first is a Ray retry."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}

    def started(self, name: str) -> int:
        self.starts[name] = self.starts.get(name, 0) + 1
        return self.starts[name]

    def retried(self) -> int:
        return sum(n - 1 for n in self.starts.values() if n > 1)


class PoseWorker:
    """The callable class ``map_batches`` pools; ``config`` is set on a subclass (``worker_class``), so no
    constructor argument waits in Ray's object store for an actor's restart."""

    config: WorkerConfig

    def __init__(self) -> None:
        import ray

        from poseapp.job import build_models

        c = self.config
        self.warnings: list[str] = []
        self.error: str | None = None
        self.ledger = ray.get_actor(c.ledger, namespace=c.namespace)
        if os.path.isdir(c.cwd):  # this node sees the driver's folder (this machine, a shared file system)
            os.chdir(c.cwd)
        try:
            self.estimator, self.detector = build_models(c.options, c.device, self._warn)
        except PoseAppError as e:  # every task reports it; the driver stops the run with it
            self.error = str(e.args[0]) if e.args else str(e)
        except Exception as e:  # a bug, or a broken install on this node: one line too
            log.error("loading the models: %s", traceback.format_exc())
            self.error = f"a worker cannot load the models: {type(e).__name__}: {_one_line(e)}"

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def __call__(self, batch: dict[str, "np.ndarray"]) -> dict[str, list]:
        out: dict[str, list] = {"name": [], "status": [], "record": [], "error": []}
        for i in range(len(batch["name"])):
            task = Task.from_row({k: v[i] for k, v in batch.items()})
            status, record, error = self._run(task)
            out["name"].append(task.name)
            out["status"].append(status)
            out["record"].append(json.dumps(asdict(record)) if record is not None else "")
            out["error"].append(error)
        return out

    def _run(self, task: Task) -> tuple[str, TaskRecord | None, str]:
        import ray

        if self.error is not None:
            return "fatal", None, self.error
        starts = ray.get(self.ledger.started.remote(task.name))
        discard(self.config.out, task)
        if starts > MAX_STARTS:
            return "failed", None, f"its worker died on each of {MAX_STARTS} attempts (out of memory, a crash)"
        start = time.perf_counter()
        try:
            record = run_task(task, self.config, self.estimator, self.detector, self._warn)
            record.seconds = time.perf_counter() - start
            record.warnings = list(self.warnings)
            write_record(self.config.out, task, record)
        except PoseAppError as e:
            discard(self.config.out, task)  # what the writers published of it
            return "failed", None, str(e.args[0]) if e.args else str(e)
        except Exception as e:  # a bug or a broken file: this task fails, the others go on
            log.error("task %s: %s", task.name, traceback.format_exc())
            discard(self.config.out, task)
            return "failed", None, f"{type(e).__name__}: {_one_line(e)}"
        return "done", record, ""


def _one_line(e: BaseException) -> str:
    """An exception's text on one line (a traceback-like message, an OpenCV error, ...)."""
    return " ".join(str(e).split())


def task_source(task: Task, c: WorkerConfig) -> "Source":
    """The frames of ``task``: its images (numbered as in the whole source), or its video's frames [start, stop)."""
    from poseapp.sources import ImageSource, VideoSource

    o = c.options
    if task.kind == "image":
        return ImageSource(c.image_spec, [Path(p) for p in task.paths], root=c.root, max_pixels=o.max_pixels,
                           first_index=task.first_index)
    return VideoSource(Path(task.paths[0]), vid_stride=o.vid_stride, max_frames=o.max_frames, start=task.start,
                       stop=task.stop)


def task_outputs(task: Task, c: WorkerConfig, source: "Source") -> "Outputs":
    """The writers of ``task``: annotated media into the run folder, keypoints and the table into its shards."""
    from poseapp.outputs import Outputs
    from poseapp.sinks import CsvWriter, ImageWriter, JsonlWriter, JsonWriter, VideoWriter, video_output_name

    o = c.options
    stack = ExitStack()
    sinks = []
    with ExitStack() as opening:
        opening.enter_context(stack)
        if o.save_media and task.kind == "image":
            sinks.append(stack.enter_context(ImageWriter(c.out, root=c.root)))
        elif o.save_media:
            target = c.out / video_output_name(task.output)
            target.parent.mkdir(parents=True, exist_ok=True)
            fps = source.fps / source.vid_stride if source.fps else None
            sinks.append(stack.enter_context(VideoWriter(target, fps)))
        if o.save_json:
            writer = JsonWriter if task.kind == "image" else JsonlWriter
            sinks.append(stack.enter_context(writer(shard_path(c.out, task, keypoint_suffix(task)), c.meta)))
        if o.save_csv:
            sinks.append(stack.enter_context(CsvWriter(shard_path(c.out, task, ".csv"))))
        if o.save_parquet:
            from poseapp.sinks.parquet import ParquetWriter

            sinks.append(stack.enter_context(ParquetWriter(shard_path(c.out, task, ".parquet"))))
        opening.pop_all()
    return Outputs(sinks, stack)


def run_task(task: Task, c: WorkerConfig, estimator: Any, detector: Any, warn: Any) -> TaskRecord:
    """``task`` through the engine into its writers; its record (not yet committed)."""
    from poseapp.job import RunReport, pipeline_for, stream_into

    report = RunReport()
    source = task_source(task, c)
    with source:
        pipeline = pipeline_for(estimator, detector, c.options, source, warn)
        with task_outputs(task, c, source) as outputs:
            stream_into(pipeline, source, outputs, c.options, report)
    return TaskRecord(name=task.name, order=task.order, inputs=len(task.paths), frames=report.frames,
                      instances=report.instances, detector_frames=report.detector_frames, tracks=report.tracks,
                      pose_time=report.pose_time, det_time=report.det_time,
                      failures=[[str(p), str(r)] for p, r in source.failures])


def worker_class(config: WorkerConfig) -> type:
    """A PoseWorker subclass carrying ``config`` (pickled with the class, so every restart has it)."""
    return type("PoseWorker", (PoseWorker,), {"config": config})
