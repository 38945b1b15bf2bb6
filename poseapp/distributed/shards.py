"""The shards of a distributed run, their done records, the manifest, and the merge into a run's usual files.

Under ``<out>/shards/`` a task ``name`` writes its keypoints as ``<name>.json`` (images: the document
``predictions.json`` has, for the task's images) or ``<name>.jsonl`` (a video or a segment of one: the lines
``<stem>.jsonl`` has), ``<name>.csv`` with ``--csv``, ``<name>.parquet`` with ``--parquet``, and last
``<name>.done.json``, its record (counts,
failures). Each file is written under a temporary name and renamed, and the record comes after the shards, so
a task is done exactly when its record is there: a worker killed before that leaves nothing a rerun trusts.
``manifest.json`` lists every task and its state. :func:`merge` then writes ``predictions.json`` /
``predictions.csv`` (images) or ``<stem>.jsonl`` / ``<stem>.csv`` per video, as a single-process run names
them, from the records and shards alone: byte for byte what one process writes from the same predictions.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable

from poseapp.errors import OutputError
from poseapp.sinks.files import atomic_write

if TYPE_CHECKING:
    from poseapp.distributed.plan import Plan, Task

SHARDS = "shards"  # the sub-folder of the run folder
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class TaskRecord:
    """What a finished task did: its ``<name>.done.json``."""

    name: str
    order: int
    inputs: int = 0  # files it read (images, or 1 for a video or segment)
    frames: int = 0
    instances: int = 0
    detector_frames: int = 0
    tracks: int = 0
    pose_time: float = 0.0
    det_time: float = 0.0
    seconds: float = 0.0
    failures: list[list[str]] = field(default_factory=list)  # [input, one-line reason]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskRecord":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def shard_dir(out: Path) -> Path:
    return Path(out) / SHARDS


def shard_path(out: Path, task: "Task", suffix: str) -> Path:
    """``<out>/shards/<task name><suffix>`` (``.json``, ``.jsonl``, ``.csv``, ``.done.json``)."""
    return shard_dir(out) / f"{task.name}{suffix}"


def keypoint_suffix(task: "Task") -> str:
    return ".json" if task.kind == "image" else ".jsonl"


def write_record(out: Path, task: "Task", record: TaskRecord) -> None:
    """Commit ``task``: its record, written atomically after its shards."""
    text = json.dumps(asdict(record))
    atomic_write(shard_path(out, task, ".done.json"), lambda f: f.write(text.encode()))


SHARD_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def discard(out: Path, task: "Task") -> None:
    """Remove ``task``'s record, then its shards: what an attempt before left (a record of a run with other
    inputs under this name, shards of a failed attempt) can then neither vouch for this attempt nor join it."""
    shard_path(out, task, ".done.json").unlink(missing_ok=True)
    for suffix in SHARD_SUFFIXES:
        shard_path(out, task, suffix).unlink(missing_ok=True)


def read_record(out: Path, task: "Task") -> TaskRecord | None:
    """``task``'s record if it finished (in this run or one before with the same digest), else None."""
    try:
        data = json.loads(shard_path(out, task, ".done.json").read_text())
        return TaskRecord.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None  # absent, or not a record: the task runs again


def write_manifest(out: Path, plan: "Plan", records: dict[str, TaskRecord], *, source: str, model: str,
                   retried: int = 0, failed: dict[str, str] | None = None, outputs: Iterable[Path] = ()) -> None:
    """``<out>/shards/manifest.json``: the run's tasks in order, each done (with its counts), failed (with
    the reason) or pending."""
    from poseapp import __version__

    failed = failed or {}
    tasks = []
    for task in plan.tasks:
        record = records.get(task.name)
        status = "done" if record is not None else "failed" if task.name in failed else "pending"
        entry: dict[str, Any] = {"name": task.name, "kind": task.kind, "inputs": list(task.paths), "status": status}
        if task.kind == "video":
            entry.update(start=task.start, stop=task.stop, output=task.output)
        if record is not None:
            entry.update(frames=record.frames, instances=record.instances, failures=record.failures)
        elif task.name in failed:
            entry["reason"] = failed[task.name]
        tasks.append(entry)
    doc = {"manifest_version": MANIFEST_VERSION, "poseapp": __version__, "source": source, "model": model,
           "kind": plan.kind, "digest": plan.digest, "retried": retried, "outputs": [str(p) for p in outputs],
           "tasks": tasks}
    atomic_write(shard_dir(out) / MANIFEST, lambda f: f.write(json.dumps(doc, indent=1).encode()))


# ---------------------------------------------------------------------------------------------- merging


def merge(out: Path, plan: "Plan", records: dict[str, TaskRecord], *, keypoints: bool, table: bool,
          parquet: bool = False) -> list[Path]:
    """Write the run's keypoint files (``keypoints``), CSV tables (``table``) and Parquet tables (``parquet``)
    from the shards of the done tasks, in source order; a video whose segments are not all done is left for
    ``--resume``. Returns the files written."""
    from poseapp.sinks.parquet import concat_tables

    written: list[Path] = []
    if plan.kind == "image":
        done = [t for t in plan.tasks if t.name in records]
        if keypoints:
            written += _merged(out / "predictions.json", _existing(out, done, ".json"), _merge_documents)
        if table:
            written += _merged(out / "predictions.csv", _existing(out, done, ".csv"), _merge_lines(header=1))
        if parquet:
            written += _merged_file(out / "predictions.parquet", _existing(out, done, ".parquet"), concat_tables)
        return written
    by_video: dict[str, list["Task"]] = {}
    for task in plan.tasks:
        by_video.setdefault(task.output, []).append(task)
    for output, tasks in by_video.items():
        if not all(t.name in records for t in tasks):
            continue
        if keypoints:
            written += _merged(out / f"{output}.jsonl", _existing(out, tasks, ".jsonl"), _merge_lines(header=1))
        if table:
            written += _merged(out / f"{output}.csv", _existing(out, tasks, ".csv"), _merge_lines(header=1))
        if parquet:
            written += _merged_file(out / f"{output}.parquet", _existing(out, tasks, ".parquet"), concat_tables)
    return written


def _existing(out: Path, tasks: list["Task"], suffix: str) -> list[Path]:
    """The shards of ``tasks`` that hold something (a task whose images all failed writes none)."""
    return [p for p in (shard_path(out, t, suffix) for t in tasks) if p.is_file()]


def _merged(path: Path, shards: list[Path], write: Any) -> list[Path]:
    if not shards:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: write(f, shards))
    return [path]


def _merged_file(path: Path, shards: list[Path], concat: Any) -> list[Path]:
    """``concat(path, shards)``, which writes ``path`` itself (atomically), when there are shards."""
    if not shards:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    concat(path, shards)
    return [path]


def _merge_lines(header: int) -> Any:
    """Concatenate line files, keeping the first ``header`` lines of the first one only (JSON Lines' header,
    a CSV's column names); shards whose header lines differ (two keypoint sets) cannot share a file."""

    def write(f: IO[bytes], shards: list[Path]) -> None:
        first: list[bytes] = []
        for n, shard in enumerate(shards):
            with open(shard, "rb") as lines:
                for i, line in enumerate(lines):
                    if i < header:
                        if n == 0:
                            first.append(line)
                        elif line != first[i]:
                            raise OutputError(f"shards '{shards[0].name}' and '{shard.name}' hold two keypoint sets "
                                              f"and cannot share one {shard.suffix} file: run each model apart")
                    if i >= header or n == 0:
                        f.write(line)

    return write


_DOCUMENT_KEYS = ("schema_version", "keypoint_set", "keypoint_names")


def _merge_documents(f: IO[bytes], shards: list[Path]) -> None:
    """One ``predictions.json`` from the documents of image shards: the first's header and extra fields, every
    shard's images in order; streamed a shard at a time, laid out as ``json.dumps`` lays out the whole."""
    first = json.loads(shards[0].read_text())
    header = {k: first[k] for k in _DOCUMENT_KEYS}
    meta = {k: v for k, v in first.items() if k not in (*_DOCUMENT_KEYS, "images")}
    f.write(json.dumps(header)[:-1].encode() + b', "images": [')
    n = 0
    for shard in shards:
        doc = first if shard == shards[0] else json.loads(shard.read_text())
        for image in doc["images"]:
            image = _own_set(image, doc["keypoint_set"], header["keypoint_set"])
            f.write((", " if n else "").encode() + json.dumps(image).encode())
            n += 1
    f.write(b"]" + (b", " + json.dumps(meta)[1:].encode() if meta else b"}"))


def _own_set(image: dict[str, Any], shard_set: str, merged_set: str) -> dict[str, Any]:
    """An image entry of a shard whose header names ``shard_set``, for a document whose header names
    ``merged_set``: it carries ``keypoint_set`` (before ``instances``, as JsonWriter places it) exactly when
    its set differs from the merged header's."""
    own = image.get("keypoint_set", shard_set)
    entry = {k: v for k, v in image.items() if k not in ("keypoint_set", "instances")}
    if own != merged_set:
        entry["keypoint_set"] = own
    entry["instances"] = image["instances"]
    return entry
