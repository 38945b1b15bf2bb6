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

from poseapp.errors import OutputError
from poseapp.sinks import image_output_name, video_output_names

JSON_NAME = "predictions.json"


def planned_outputs(source, out: Path) -> list[Path]:
    """Every file a run of ``source`` may write into ``out`` (annotated media and keypoint files)."""
    out = Path(out)
    if source.kind == "images":
        paths = getattr(source, "paths", [])
        return [out / JSON_NAME, *(out / image_output_name(Path(p), source.root) for p in paths)]
    return [*(out / name for name in video_output_names(source.stem)), out / f"{source.stem}.jsonl"]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _glob_reaches(pattern: str, path: Path) -> bool:
    """Whether the glob ``pattern`` (as ``open_source`` expands it) would match ``path``."""
    absolute = os.path.abspath(os.path.expanduser(pattern))
    parts = Path(absolute).parts
    if "**" in absolute:  # recursive: anything under the fixed part of the pattern
        fixed = Path(*parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))])
        return _inside(Path(os.path.realpath(path)), Path(os.path.realpath(fixed)))
    target = Path(os.path.abspath(path)).parts
    return len(target) == len(parts) and all(fnmatch.fnmatchcase(t, p) for t, p in zip(target, parts))


def check_outputs_apart(source, out: Path, flag: str = "--out") -> None:
    """Raise OutputError when writing ``source``'s outputs into ``out`` would overwrite one of its input
    files, or put them where the source would read them next time. No file is touched."""
    out = Path(out)
    walks = source.walks
    if isinstance(walks, Path) and _inside(Path(os.path.realpath(out)), Path(os.path.realpath(walks))):
        raise OutputError(f"{flag} {out} lies inside '{walks}', which --recursive walks: the outputs would be "
                          f"read as inputs next time; choose an {flag} outside '{walks}' (e.g. runs/predict)")
    inputs = source.input_files()
    planned = planned_outputs(source, out)
    for path in planned:
        for original in inputs:
            if _same_file(path, original):
                raise OutputError(f"{flag} {out} would overwrite the input '{original}' with its annotated copy; "
                                  f"choose an {flag} outside the source's folder (e.g. runs/predict)")
    if isinstance(walks, str):
        for path in planned:
            if _glob_reaches(walks, path):
                raise OutputError(f"{flag} {out}: the source pattern '{walks}' would also match the output "
                                  f"'{path.name}' there; choose an {flag} the pattern does not reach "
                                  f"(e.g. runs/predict)")
