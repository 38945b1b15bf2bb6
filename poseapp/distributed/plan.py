"""A ``--source`` as the tasks of a distributed run: pure planning, no Ray and no model.

A task is what one worker does at once and what one shard holds: ``shard_size`` consecutive images of an
image source, one video, or one segment of a long video (``segment_frames`` frames, only when no state
crosses frames: tracking, ``det_every`` and smoothing all off, and no annotated video to write in one piece).
A task's ``name`` carries its input (``images-000032-000063``, ``clip``, ``clip.f0000300-0000600``) and a
digest of the run's options and of its input files (path, size, modification time), so a shard found on
disk under that name holds exactly what this run would write (``--resume``), and a retried task overwrites
its own shard instead of adding a second one.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poseapp.errors import PoseAppError, SourceError, arg

if TYPE_CHECKING:
    from poseapp.job import PredictOptions

DEFAULT_SHARD_SIZE = 32  # images per task
DEFAULT_SEGMENT_FRAMES = 3000  # frames per task of a long video, when its frames may be split

_NOT_IN_DIGEST = frozenset({
    "source", "out_dir", "exist_ok", "show", "device", "half", "backend", "threads", "batch_size", "offline",
    "max_latency", "stream_buffer", "stream_timeout", "recursive",
})
"""PredictOptions fields that do not change what a shard holds (where it runs, how fast, where it lands).
``half`` and ``backend`` change values by float rounding only; ``precision`` is in the digest."""


@dataclass(frozen=True)
class Task:
    """One unit of work: images ``paths[i]`` numbered ``first_index + i``, or one video's source frames
    [start, stop) (stop None: to its end).

    ``name`` is file-safe and unique within a run; ``output`` is the stem a video's merged files take
    (``<out>/<output>.jsonl``); ``order`` is the task's place in the source's order (merging follows it).
    """

    order: int
    name: str
    kind: str  # "image" or "video"
    paths: tuple[str, ...]
    first_index: int = 0
    start: int = 0
    stop: int | None = None
    output: str = ""

    @property
    def segmented(self) -> bool:
        return self.kind == "video" and (self.start > 0 or self.stop is not None)

    def to_row(self) -> dict[str, Any]:
        """The task as a row of a Ray dataset (plain values; ``stop`` -1 for None, paths as JSON)."""
        return {"order": self.order, "name": self.name, "kind": self.kind, "paths": json.dumps(list(self.paths)),
                "first_index": self.first_index, "start": self.start, "stop": -1 if self.stop is None else self.stop,
                "output": self.output}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Task":
        stop = int(row["stop"])
        return cls(order=int(row["order"]), name=str(row["name"]), kind=str(row["kind"]),
                   paths=tuple(json.loads(str(row["paths"]))), first_index=int(row["first_index"]),
                   start=int(row["start"]), stop=None if stop < 0 else stop, output=str(row["output"]))


@dataclass(frozen=True)
class Plan:
    """A run's tasks, in source order, and what they come from."""

    kind: str  # "image" or "video": a source of images, or of one or more videos
    tasks: tuple[Task, ...]
    inputs: int  # input files (images, or videos)
    digest: str  # the options' digest (``options_digest``)
    root: Path | None = None  # the folder image names are relative to (ImageWriter's root)
    image_spec: str = ""  # the image source as given (its JSON document's name for the images)
    input_files: tuple[Path, ...] = field(default=(), repr=False)  # every file read (outputs must not be one)


def _file_identity(value: Any) -> Any:
    """An option naming an existing file: (its path, size, mtime_ns), so a changed file changes the digest."""
    if isinstance(value, (str, Path)) and str(value) and Path(value).expanduser().is_file():
        st = Path(value).expanduser().stat()
        return [str(Path(value).expanduser().resolve()), st.st_size, st.st_mtime_ns]
    return value


def options_digest(options: "PredictOptions", extra: dict[str, Any] | None = None) -> str:
    """12 hex digits of sha256 over what decides a shard's content: the model, boxes, flip test, precision,
    video options, what is saved and how it is drawn (not where or how fast it runs: ``_NOT_IN_DIGEST``),
    files by path, size and modification time; ``extra`` adds planning values (shard size...)."""
    from poseapp.sinks.keypoint_files import SCHEMA_VERSION

    fields = {k: _file_identity(v) for k, v in sorted(asdict(options).items()) if k not in _NOT_IN_DIGEST}
    fields["trust_checkpoint"] = [_file_identity(p) for p in options.trust_checkpoint]
    payload = {"schema_version": SCHEMA_VERSION, "options": fields, **(extra or {})}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _input_digest(digest: str, paths: tuple[str, ...], extra: str = "") -> str:
    h = hashlib.sha256(f"{digest}|{extra}".encode())
    for p in paths:
        try:
            st = Path(p).stat()
            h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"|{p}|missing".encode())
    return h.hexdigest()[:12]


def slug(text: str, limit: int = 80) -> str:
    """``text`` as a file-name part: path separators become ``__``, anything else odd ``_``, cut to ``limit``."""
    text = re.sub(r"[\\/]+", "__", text)
    return (re.sub(r"[^\w.-]+", "_", text).strip("_.") or "input")[:limit]


def splits_frames(options: "PredictOptions") -> bool:
    """Whether a video's frames may go to several workers: no state crosses frames (no tracking, no
    ``det_every``, no smoothing) and no annotated video is written (one writer makes it)."""
    return options.track is False and options.det_every == 1 and options.smooth == "none" and not options.save_media


def plan_tasks(options: "PredictOptions", *, shard_size: int = DEFAULT_SHARD_SIZE,
               segment_frames: int = DEFAULT_SEGMENT_FRAMES) -> Plan:
    """The tasks of ``options.source``: a folder, glob or ``.txt`` list of images (``shard_size`` a task),
    one video, or a folder, glob or list of videos (one task each; ``segment_frames`` a task where
    ``splits_frames``).

    Raises:
        SourceError: a source a cluster cannot share out (a stream, a webcam, an image URL), or two videos
            whose outputs would take one name.
    """
    from poseapp.sources import open_source

    if shard_size < 1 or segment_frames < 1:
        raise PoseAppError(f"{arg('shard_size')} and {arg('segment_frames')} must be 1 or more "
                           f"(got {shard_size}, {segment_frames})")
    if _read_as_it_comes(options.source):
        raise SourceError(f"{arg('ray')} shares out files: '{options.source}' is a camera or a URL, read on one "
                          f"machine; download it first, or run it without {arg('ray')}")
    digest = options_digest(options, {"shard_size": shard_size, "segment_frames": segment_frames})
    videos = video_files(options.source, options.recursive)
    if videos is not None:
        return _video_plan(videos, options, digest, segment_frames)
    source = open_source(options.source, recursive=options.recursive, vid_stride=options.vid_stride,
                         max_frames=options.max_frames, max_pixels=options.max_pixels,
                         stream_timeout=options.stream_timeout)
    with source:
        if source.kind == "video":
            return _video_plan([Path(source.spec)], options, digest, segment_frames)
        paths = [str(p) for p in getattr(source, "paths", [])]
        if source.kind != "image" or not paths:
            raise SourceError(f"{arg('ray')} shares out files: '{options.source}' is a {source.kind or 'URL'} "
                              f"({'one image from the network' if source.kind == 'image' else 'read as it comes'}); "
                              f"run it without {arg('ray')}")
        if options.max_frames is not None:
            paths = paths[:options.max_frames]  # multi-page TIFFs aside, a frame is a file
        tasks = []
        for order, first in enumerate(range(0, len(paths), shard_size)):
            chunk = tuple(paths[first:first + shard_size])
            name = f"images-{first:06d}-{first + len(chunk) - 1:06d}.{_input_digest(digest, chunk)}"
            tasks.append(Task(order, name, "image", chunk, first_index=first))
        return Plan("image", tuple(tasks), len(paths), digest, root=source.root, image_spec=str(source.spec),
                    input_files=tuple(source.input_files()))


def _read_as_it_comes(spec: Any) -> bool:
    """A webcam (an index, ``webcam:N``) or a URL (a stream, or an image on the network), not an existing path."""
    from poseapp.sources.base import STREAM_PREFIXES
    from poseapp.sources.decode import expand_path

    if isinstance(spec, int) and not isinstance(spec, bool):
        return True
    text = str(spec).strip()
    if not text or expand_path(text).exists():
        return False
    return bool(re.fullmatch(r"(webcam:)?\d+", text, re.IGNORECASE)) or text.lower().startswith(STREAM_PREFIXES)


def video_files(spec: Any, recursive: bool) -> list[Path] | None:
    """The videos of a folder holding videos and no images, of a glob matching only videos, or of a ``.txt``
    list naming only videos; None for any other source (``open_source`` opens it)."""
    import glob

    from poseapp.sources.decode import expand_path, is_image_file, is_video_file

    if not isinstance(spec, (str, Path)):
        return None
    text = str(spec)
    path = expand_path(text)
    if path.is_dir():
        files = sorted((p for p in path.glob("**/*" if recursive else "*") if p.is_file()),
                       key=lambda p: p.relative_to(path).as_posix())
        videos = [p for p in files if is_video_file(p)]
        return videos if videos and not any(is_image_file(p) for p in files) else None
    if path.is_file() and path.suffix.lower() == ".txt":
        try:
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
        except (OSError, UnicodeDecodeError):
            return None  # open_source says what is wrong with it
        named = [expand_path(ln) for ln in lines if ln and not ln.startswith("#")]
        named = [p if p.is_absolute() else path.parent / p for p in named]
        return named if named and all(is_video_file(p) for p in named) else None
    if not path.exists() and any(c in text for c in "*?["):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        return files if files and all(is_video_file(p) for p in files) else None
    return None


def _video_plan(videos: list[Path], options: "PredictOptions", digest: str, segment_frames: int) -> Plan:
    root = _common_root(videos)
    outputs: dict[str, Path] = {}
    tasks: list[Task] = []
    split = splits_frames(options) and options.max_frames is None
    for video in videos:
        output = video.resolve().relative_to(root).with_suffix("").as_posix() if root is not None else video.stem
        if output in outputs:
            raise SourceError(f"videos '{outputs[output]}' and '{video}' would both write {output}.jsonl: "
                              f"rename one, or run them apart ({arg('source')})")
        outputs[output] = video
        spans: list[tuple[int, int | None]] = [(0, None)]
        if split:
            spans = _segments(video, options.vid_stride, segment_frames)
        for start, stop in spans:
            key = slug(output) if (start, stop) == (0, None) else \
                f"{slug(output)}.f{start:07d}-{'end' if stop is None else f'{stop:07d}'}"
            name = f"{key}.{_input_digest(digest, (str(video),), f'{start}-{stop}')}"
            tasks.append(Task(len(tasks), name, "video", (str(video),), start=start, stop=stop, output=output))
    return Plan("video", tuple(tasks), len(videos), digest, input_files=tuple(videos))


def _common_root(videos: list[Path]) -> Path | None:
    """The folder all ``videos`` lie under when there are several (their outputs keep sub-folders apart)."""
    import os

    if len(videos) < 2:
        return None
    try:
        return Path(os.path.commonpath([str(v.parent.resolve()) for v in videos]))
    except ValueError:
        return None


def segment_spans(frame_count: int | None, vid_stride: int, segment_frames: int) -> list[tuple[int, int | None]]:
    """[start, stop) source-frame spans of ``segment_frames`` kept frames each (the last open-ended, so frames
    past what the header counts are not lost); one span when the count is unknown or small."""
    span = segment_frames * vid_stride
    if not frame_count or frame_count <= span:
        return [(0, None)]
    starts = list(range(0, frame_count, span))
    return [(s, s + span) for s in starts[:-1]] + [(starts[-1], None)]


def _segments(video: Path, vid_stride: int, segment_frames: int) -> list[tuple[int, int | None]]:
    from poseapp.sources import VideoSource

    try:
        with VideoSource(video, vid_stride=vid_stride) as source:
            return segment_spans(source.frame_count, vid_stride, segment_frames)
    except SourceError:  # unreadable: one task, whose worker says why (the other videos go on)
        return [(0, None)]
