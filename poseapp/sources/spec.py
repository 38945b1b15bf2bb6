"""What a ``--source`` spec is, tried in order (an existing path always wins), opened as a :class:`Source`."""
from __future__ import annotations

import glob
import re
import urllib.parse
from pathlib import Path

from poseapp.errors import SourceError, arg
from poseapp.sources.base import DEFAULT_STREAM_TIMEOUT, STREAM_PREFIXES, Source
from poseapp.sources.capture import StreamSource, VideoSource
from poseapp.sources.decode import (DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, expand_path, extension,
                                    is_image_file, is_video_file)
from poseapp.sources.images import ImageSource, UrlImageSource

_ACCEPTED = (
    f"an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, a glob pattern, a .txt list of images, "
    f"a video ({', '.join(VIDEO_EXTENSIONS)}), webcam:N for a camera, or a URL ({', '.join(STREAM_PREFIXES)})"
)


def _images_in_folder(folder: Path, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (sorted by path relative to it)."""
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and is_image_file(p)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _folder_source(folder: Path, recursive: bool, max_frames: int | None, max_pixels: int) -> ImageSource:
    paths = _images_in_folder(folder, recursive)
    if not paths:
        hint = "" if recursive else f"; add {arg('recursive')} to look in sub-folders"
        if any(is_video_file(p) for p in folder.iterdir()):
            hint = f"; it holds videos: pass a video file itself as {arg('source')}"
        raise SourceError(f"folder '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    source = ImageSource(str(folder), paths, root=folder, max_frames=max_frames, max_pixels=max_pixels)
    source.walks = folder if recursive else None
    return source


def _glob_source(pattern: str, max_frames: int | None, max_pixels: int) -> ImageSource:
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    paths = [p for p in matches if p.is_file() and is_image_file(p)]
    if not paths:
        what = f"{len(matches)} paths, none an image" if matches else "nothing"
        raise SourceError(f"glob pattern '{pattern}' matches {what}; check the pattern "
                          f"(quote it so the shell does not expand it) and the image extensions "
                          f"({', '.join(IMAGE_EXTENSIONS)})")
    source = ImageSource(pattern, paths, max_frames=max_frames, max_pixels=max_pixels)
    source.walks = pattern
    return source


def _list_source(txt: Path, max_frames: int | None, max_pixels: int) -> ImageSource:
    """A .txt file listing one image path per line (relative to the txt's folder; # comments)."""
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()  # -sig: Windows Notepad's byte-order mark
    except UnicodeDecodeError as e:
        raise SourceError(f"cannot read list file '{txt}': not UTF-8 text (bad byte at offset {e.start}); save "
                          f"it as UTF-8 text with one image path per line") from e
    except OSError as e:
        raise SourceError(f"cannot read list file '{txt}': {e.strerror or e}; pass a readable text file with "
                          f"one image path per line") from e
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            if "\0" in line:
                raise SourceError(f"list file '{txt}' has a NUL byte in a path; write one image path per line")
            p = expand_path(line)
            paths.append(p if p.is_absolute() else txt.parent / p)
    if not paths:
        raise SourceError(f"list file '{txt}' names no images; write one image path per line")
    return ImageSource(str(txt), paths, max_frames=max_frames, max_pixels=max_pixels, extra_inputs=(txt,))


def _file_source(path: Path, vid_stride: int, max_frames: int | None, max_pixels: int) -> Source:
    ext = extension(path)
    if ext in IMAGE_EXTENSIONS:
        return ImageSource(str(path), [path], single=True, max_frames=max_frames, max_pixels=max_pixels)
    if ext in VIDEO_EXTENSIONS:
        return VideoSource(path, vid_stride=vid_stride, max_frames=max_frames)
    if ext == "txt":
        return _list_source(path, max_frames, max_pixels)
    what = f"an unknown extension '.{ext}'" if ext else "no extension"
    raise SourceError(f"source '{path}' has {what}: images are "
                      f"{', '.join(IMAGE_EXTENSIONS)}; videos are {', '.join(VIDEO_EXTENSIONS)}; "
                      f"a .txt file lists images")


_WEBCAM = re.compile(r"webcam:(\d+)", re.IGNORECASE)


def open_source(spec: str | int | Path, *, recursive: bool = False, vid_stride: int = 1,
                max_frames: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                stream_timeout: float = DEFAULT_STREAM_TIMEOUT) -> Source:
    """Open ``spec`` as a :class:`Source` (see the module docstring for the accepted kinds and the order
    in which a spec is tried: an existing path always wins).

    Args:
        spec: a path, glob pattern, URL, ``webcam:N``, or webcam index (int or a string of digits).
        recursive: for a folder, also take images in its sub-folders.
        vid_stride: for videos and streams, keep every ``vid_stride``-th frame (ignored for images).
        max_frames: stop after this many yielded frames (any kind); None for all.
        max_pixels: refuse images with more pixels (read from the header, before decoding).
        stream_timeout: seconds a URL may take to answer, and a stream between two frames.

    Raises:
        SourceError: the path is missing, names nothing readable, or the capture cannot be opened.
    """
    if vid_stride < 1:
        raise SourceError(f"{arg('vid_stride')} must be 1 or more (got {vid_stride})")
    if max_frames is not None and max_frames < 1:
        raise SourceError(f"{arg('max_frames')} must be 1 or more (got {max_frames})")
    if max_pixels < 1:
        raise SourceError(f"{arg('max_pixels')} must be 1 or more (got {max_pixels})")
    if not stream_timeout > 0:
        raise SourceError(f"{arg('stream_timeout')} must be more than 0 seconds (got {stream_timeout})")
    if isinstance(spec, bool):
        raise SourceError(f"source {spec!r} is not a source; pass {_ACCEPTED}")
    if isinstance(spec, int):
        return StreamSource(spec, vid_stride=vid_stride, max_frames=max_frames)
    text = str(spec)
    if not text.strip():
        raise SourceError(f"{arg('source')} is empty: pass {_ACCEPTED}")
    if "\0" in text:
        raise SourceError(f"source {text!r} has a NUL byte; pass {_ACCEPTED}")
    path = expand_path(text)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as e:  # e.g. a name too long for the file system
        raise SourceError(f"source '{text[:80]}{'...' if len(text) > 80 else ''}' cannot be looked up "
                          f"({e.strerror or e}); pass {_ACCEPTED}") from e
    if is_dir:  # an existing path always wins: a folder named 0 is a folder
        return _folder_source(path, recursive, max_frames, max_pixels)
    if is_file:
        return _file_source(path, vid_stride, max_frames, max_pixels)
    if isinstance(spec, str):
        webcam = _WEBCAM.fullmatch(text.strip())
        if webcam:
            return StreamSource(int(webcam.group(1)), vid_stride=vid_stride, max_frames=max_frames)
        lowered = text.lower()
        if lowered.startswith(("http://", "https://")) and is_image_file(urllib.parse.urlsplit(text).path):
            return UrlImageSource(text, timeout=stream_timeout, max_pixels=max_pixels)
        if lowered.startswith(STREAM_PREFIXES):
            return StreamSource(text, vid_stride=vid_stride, max_frames=max_frames, timeout=stream_timeout)
        if text.strip().isascii() and text.strip().isdigit():  # "²".isdigit(), but int() refuses it
            return StreamSource(int(text), vid_stride=vid_stride, max_frames=max_frames)
    if any(c in text for c in "*?["):
        return _glob_source(text, max_frames, max_pixels)
    raise SourceError(f"source '{text}' not found: pass {_ACCEPTED}")
