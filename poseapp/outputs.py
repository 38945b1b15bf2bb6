"""Where a run's outputs go, checked against its inputs before anything is written.

An annotated copy takes its input's name (``photos/a.jpg`` -> ``<out>/a.jpg``), so an ``--out`` that is
a source folder would overwrite the originals. :func:`check_outputs_apart` refuses that, and an
``--out`` that a later run of the same source would read back as input (inside a folder the run walks
recursively, or matched by its glob pattern).
"""
from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Iterable

from poseapp.errors import OutputError
from poseapp.sinks import image_output_name, video_output_name

def keypoints_output_name(source) -> str:
    """The keypoint file of a run: one JSON document for images, JSON Lines for a video or stream."""
    return "predictions.json" if source.kind == "images" else f"{source.stem}.jsonl"


def planned_outputs(source, out: Path, *, media: bool = True, keypoints: bool = True) -> list[Path]:
    """Every file a run of ``source`` may write into ``out``: annotated media (``media``) and the keypoint
    file (``keypoints``)."""
    out = Path(out)
    if not media:
        files = []
    elif source.kind == "images":
        files = [out / image_output_name(Path(p), source.root) for p in getattr(source, "paths", [])]
    else:
        files = [out / video_output_name(source.stem)]
    return [*files, *([out / keypoints_output_name(source)] if keypoints else [])]


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


def check_outputs_apart(source, out: Path, *, media: bool = True, keypoints: bool = True,
                        other_inputs: Iterable[Path] = (), flag: str = "--out") -> list[Path]:
    """Raise OutputError when writing ``source``'s outputs into ``out`` would overwrite one of its input
    files (or one of ``other_inputs``, such as a --boxes file), or put them where the source would read
    them next time. No file is touched. Returns the planned outputs (``planned_outputs``)."""
    out = Path(out)
    walks = source.walks
    if isinstance(walks, Path) and _inside(_real(out), _real(walks)):
        raise OutputError(f"{flag} {out} lies inside '{walks}', which --recursive walks: the outputs would be "
                          f"read as inputs next time; choose an {flag} outside '{walks}'")
    inputs = [*source.input_files(), *(Path(p) for p in other_inputs)]
    planned = planned_outputs(source, out, media=media, keypoints=keypoints)
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
