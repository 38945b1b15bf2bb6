"""Where a run's outputs go: named from the source, checked against its inputs before anything is written,
and opened as one set of writers.

:func:`open_outputs` is the one place that chooses the writers for a source (annotated images or a video, a
JSON document or JSON Lines). An annotated copy takes its input's name (``photos/a.jpg`` -> ``<out>/a.jpg``),
so an ``--out`` that is a source folder would overwrite the originals. :func:`check_outputs_apart` refuses that, and an
``--out`` that a later run of the same source would read back as input (inside a folder the run walks
recursively, or matched by its glob pattern).
"""
from __future__ import annotations

import fnmatch
import glob
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from poseapp.errors import OutputError, arg
from poseapp.sinks import (CsvWriter, ImageWriter, JsonlWriter, JsonWriter, Sink, VideoWriter, image_output_name,
                           video_output_name)

if TYPE_CHECKING:
    import numpy as np

    from poseapp.results import FrameResult
    from poseapp.sources import Source


class Outputs:
    """The writers of one run, as one: ``write(result, annotated)`` goes to each; closing (also through an
    exception) finalises every one of them, the last opened first."""

    def __init__(self, sinks: list[Sink], stack: ExitStack) -> None:
        self.sinks = sinks
        self._stack = stack

    @property
    def needs_image(self) -> bool:
        """Whether a writer takes the drawn frame (else the run need not draw)."""
        return any(s.needs_image for s in self.sinks)

    def write(self, result: "FrameResult", annotated: "np.ndarray | None") -> None:
        for sink in self.sinks:
            sink.write(result, annotated)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


def open_outputs(source: "Source", out: Path | None, *, media: bool = True, keypoints: bool = False,
                 table: bool = False, parquet: bool = False, meta: dict[str, Any] | None = None) -> Outputs:
    """The writers a run of ``source`` into the folder ``out`` needs: annotated media (``media``: images
    under their names, or ``<stem>.mp4`` at the source's rate, fps / stride), the keypoint file
    (``keypoints``: ``predictions.json`` or ``<stem>.jsonl``, see :func:`keypoints_output_name`), with
    ``meta`` in its header, the CSV table (``table``: ``predictions.csv`` or ``<stem>.csv``) and the Parquet
    table (``parquet``: ``predictions.parquet`` or ``<stem>.parquet``). ``out`` None: no writer."""
    sinks: list[Sink] = []
    stack = ExitStack()
    with ExitStack() as opening:  # a writer that fails to open closes the ones opened before it
        opening.enter_context(stack)
        if out is not None:
            out = Path(out)
            if media and source.kind == "image":
                sinks.append(stack.enter_context(ImageWriter(out, root=source.root)))
            elif media:  # the frame size is the first frame's (a capture may report the size before rotation)
                fps = source.fps / source.vid_stride if source.fps else None
                sinks.append(stack.enter_context(VideoWriter(out / video_output_name(source.stem), fps)))
            if keypoints:
                writer = JsonWriter if source.kind == "image" else JsonlWriter
                sinks.append(stack.enter_context(writer(out / keypoints_output_name(source), meta)))
            if table:
                sinks.append(stack.enter_context(CsvWriter(out / table_output_name(source))))
            if parquet:
                from poseapp.sinks.parquet import ParquetWriter

                sinks.append(stack.enter_context(ParquetWriter(out / parquet_output_name(source))))
        opening.pop_all()
    return Outputs(sinks, stack)

def keypoints_output_name(source) -> str:
    """The keypoint file of a run: one JSON document for images, JSON Lines for a video or stream."""
    return "predictions.json" if source.kind == "image" else f"{source.stem}.jsonl"


def table_output_name(source) -> str:
    """The CSV file of a run: ``predictions.csv`` for images, ``<stem>.csv`` for a video or stream."""
    return "predictions.csv" if source.kind == "image" else f"{source.stem}.csv"


def parquet_output_name(source) -> str:
    """The Parquet file of a run: ``predictions.parquet`` for images, ``<stem>.parquet`` for a video or stream."""
    return "predictions.parquet" if source.kind == "image" else f"{source.stem}.parquet"


def planned_outputs(source, out: Path, *, media: bool = True, keypoints: bool = True,
                    table: bool = False, parquet: bool = False) -> list[Path]:
    """Every file a run of ``source`` may write into ``out``: annotated media (``media``), the keypoint
    file (``keypoints``) and the CSV table (``table``)."""
    out = Path(out)
    if not media:
        files = []
    elif source.kind == "image":
        files = [out / image_output_name(Path(p), source.root) for p in getattr(source, "paths", [])]
    else:
        files = [out / video_output_name(source.stem)]
    return [*files, *([out / keypoints_output_name(source)] if keypoints else []),
            *([out / table_output_name(source)] if table else []),
            *([out / parquet_output_name(source)] if parquet else [])]


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name one file: the same real path, or the same inode (hard links)."""
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _glob_reaches(pattern: str, path: Path) -> bool:
    """Whether the glob ``pattern`` (as ``open_source`` expands it) would match ``path`` (both compared with
    their symbolic links resolved)."""
    parts = Path(os.path.abspath(os.path.expanduser(pattern))).parts
    magic = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    fixed, rest = _real(Path(*parts[:magic])), parts[magic:]
    target = _real(path)
    if "**" in rest:  # recursive: anything under the fixed part of the pattern
        return _inside(target, fixed)
    if not _inside(target, fixed):
        return False
    tail = target.relative_to(fixed).parts
    return len(tail) == len(rest) and all(fnmatch.fnmatchcase(t, p) for t, p in zip(tail, rest))


def check_outputs_apart(source, out: Path, *, media: bool = True, keypoints: bool = True, table: bool = False,
                        parquet: bool = False, other_inputs: Iterable[Path] = (),
                        flag: str = arg("out_dir")) -> list[Path]:
    """Raise OutputError when writing ``source``'s outputs into ``out`` would overwrite one of its input
    files (or one of ``other_inputs``, such as a --boxes file), or put them where the source would read
    them next time. No file is touched. Returns the planned outputs (``planned_outputs``)."""
    out = Path(out)
    walks = source.walks
    if isinstance(walks, Path) and _inside(_real(out), _real(walks)):
        raise OutputError(f"{flag} {out} lies inside '{walks}', which {arg('recursive')} walks: the outputs would be "
                          f"read as inputs next time; choose an {flag} outside '{walks}'")
    inputs = [*source.input_files(), *(Path(p) for p in other_inputs)]
    planned = planned_outputs(source, out, media=media, keypoints=keypoints, table=table, parquet=parquet)
    for path in planned:
        for original in inputs:
            if same_file(path, original):
                raise OutputError(f"{flag} {out} would overwrite the input '{original}' with the output of the "
                                  f"same name; choose an {flag} outside the inputs' folder")
    if isinstance(walks, str):
        for path in planned:
            if _glob_reaches(walks, path):
                raise OutputError(f"{flag} {out}: the source pattern '{walks}' would also match the output "
                                  f"'{path.name}' there next time; choose an {flag} the pattern does not reach")
    return planned
