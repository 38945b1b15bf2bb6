"""One iterator abstraction for every source kind (after ultralytics ``data/loaders.py``).

``open_source(spec)`` turns what the user typed after ``--source`` into a :class:`Source`: a context
manager that yields :class:`poseapp.results.Frame` values, whatever the input is:

========  =====================================================================================
kind      specs
========  =====================================================================================
images    an image file; a folder of images; a glob pattern; a ``.txt`` file listing images
video     a video file
stream    a webcam index (``0`` or ``"0"``); a stream URL (rtsp://, rtmp://, http://, https://)
========  =====================================================================================

Frames are BGR uint8 ``(H, W, 3)`` arrays; images decode with ``cv2.imread(path, cv2.IMREAD_COLOR)``.
A bad file inside a multi-image source is skipped and recorded in ``Source.failures``; a single image,
video or stream that cannot be read raises :class:`~poseapp.errors.SourceError`.
"""
from __future__ import annotations

import glob
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from poseapp.errors import SourceError
from poseapp.results import Frame

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("bmp", "jpeg", "jpg", "png", "tif", "tiff", "webp")
VIDEO_EXTENSIONS = ("avi", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "webm", "wmv")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")

_ACCEPTED = (
    f"an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, a glob pattern, a .txt list of images, "
    f"a video ({', '.join(VIDEO_EXTENSIONS)}), a webcam index (0) or a stream URL ({', '.join(STREAM_PREFIXES)})"
)


def _ext(path: Path | str) -> str:
    """Lower-case extension without the dot ('' if none)."""
    return Path(path).suffix.lower().lstrip(".")


def is_image_file(path: Path | str) -> bool:
    return _ext(path) in IMAGE_EXTENSIONS


def is_video_file(path: Path | str) -> bool:
    return _ext(path) in VIDEO_EXTENSIONS


# --------------------------------------------------------------------------------------------------
# Reading one image


def _jpeg_truncated(data: bytes) -> bool:
    """True when a JPEG byte string stops before its end-of-image marker.

    OpenCV decodes a truncated JPEG into a half-grey image with only a libjpeg warning on stderr, so
    the check is ours: walk the marker segments up to the first start-of-scan (skipping APPn
    segments, which may embed a thumbnail with its own markers), then look for end-of-image (FF D9)
    after it. FF D9 cannot occur inside entropy-coded data (FF bytes are stuffed as FF 00).
    """
    i = 2  # after SOI (FF D8)
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False  # not a layout we understand: let the decoder judge
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", i) == -1
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return True  # ended before the first scan


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Decode one image file.

    Returns:
        ``(image, "")`` with image an (H, W, 3) uint8 BGR array (``cv2.imread(path, cv2.IMREAD_COLOR)``),
        or ``(None, reason)`` with a short reason when the file cannot be read.
    """
    import cv2

    if not path.is_file():
        return None, "file not found"
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read file ({e.strerror or e})"
    if not data:
        return None, "empty file (0 bytes)"
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        return None, "truncated JPEG (no end-of-image marker)"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None, "cannot decode image (corrupt or not an image)"
    return image, ""


# --------------------------------------------------------------------------------------------------
# Sources


class Source:
    """An iterable of :class:`Frame` over one input; use it as a context manager.

    Attributes:
        kind: ``"images"``, ``"video"`` or ``"stream"``.
        spec: the source as given (a string).
        fps: frames per second for video and stream sources (None when unknown or for images).
        size: (width, height) for video and stream sources (None for images).
        failures: ``(path, one-line reason)`` for every file or frame that could not be read,
            filled as iteration goes (cleared when a new iteration starts).
        root: the folder image paths are relative to (folder sources), else None; ImageWriter uses it
            to keep sub-folders apart.
    """

    kind: str = ""

    def __init__(self, spec: str, *, vid_stride: int = 1, max_frames: int | None = None) -> None:
        self.spec = spec
        self.vid_stride = vid_stride
        self.max_frames = max_frames
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.root: Path | None = None
        self.failures: list[tuple[str, str]] = []

    @property
    def expected_frames(self) -> int | None:
        """How many frames iteration should yield (for progress bars); None when unknown."""
        return self.max_frames

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release any capture; safe to call twice."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, path: str, reason: str) -> None:
        self.failures.append((path, reason))
        logger.warning("%s: %s", path, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, spec={self.spec!r})"


class ImageSource(Source):
    """A list of image files, decoded in order.

    With ``single=True`` (the spec named one file) a file that cannot be read raises SourceError;
    otherwise it is skipped and recorded in ``failures``.
    """

    kind = "images"

    def __init__(self, spec: str, paths: list[Path], *, single: bool = False, root: Path | None = None,
                 max_frames: int | None = None) -> None:
        super().__init__(spec, max_frames=max_frames)
        self.paths = paths
        self.single = single
        self.root = root

    @property
    def expected_frames(self) -> int:
        n = len(self.paths)
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        yielded = 0
        for i, path in enumerate(self.paths):
            if self.max_frames is not None and yielded >= self.max_frames:
                return
            image, reason = read_image(path)
            if image is None:
                if self.single:
                    raise SourceError(f"cannot read image '{path}': {reason}; check the file "
                                      f"(re-export or re-download it) or pass another --source")
                self._fail(str(path), f"{reason}: skipped")
                continue
            yielded += 1
            yield Frame(image=image, source=str(path), index=i, timestamp=None, kind="image")


class _CaptureSource(Source):
    """Common part of video files and live streams: a cv2.VideoCapture read with a stride."""

    def __init__(self, spec: str, target: str | int, name: str, *, vid_stride: int,
                 max_frames: int | None) -> None:
        super().__init__(spec, vid_stride=vid_stride, max_frames=max_frames)
        self.name = name  # Frame.source
        self._target = target
        self._cap: "cv2.VideoCapture | None" = None
        self._ended_at: int | None = None  # frames delivered when the capture stopped by itself
        self._read_properties(self._open())

    def _open_error(self) -> SourceError:
        raise NotImplementedError

    def _open(self) -> "cv2.VideoCapture":
        import cv2

        cap = cv2.VideoCapture(self._target)
        if not cap.isOpened():
            cap.release()
            raise self._open_error()
        self._cap = cap
        return cap

    def _read_properties(self, cap: "cv2.VideoCapture") -> None:
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and fps > 0 else None
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (w, h) if w > 0 and h > 0 else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(source frame number, image) for every vid_stride-th frame, until the capture ends.

        Skipped frames are only grabbed, not decoded. Sets ``self._ended_at`` to the number of frames
        the capture delivered when it stopped (None when stopped by max_frames).
        """
        cap = self._cap if self._cap is not None else self._open()
        self._ended_at = None
        yielded = 0
        n = 0
        while self.max_frames is None or yielded < self.max_frames:
            if not cap.grab():
                self._ended_at = n
                return
            if n % self.vid_stride == 0:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    self._ended_at = n
                    return
                yielded += 1
                yield n, image
            n += 1


class VideoSource(_CaptureSource):
    """A video file read with cv2.VideoCapture. Frame.index is the frame number in the file and
    Frame.timestamp = index / fps (None when the file states no fps)."""

    kind = "video"

    def __init__(self, path: Path, *, vid_stride: int = 1, max_frames: int | None = None) -> None:
        self.path = path
        super().__init__(str(path), str(path), str(path), vid_stride=vid_stride, max_frames=max_frames)

    def _open_error(self) -> SourceError:
        return SourceError(f"cannot open video '{self.path}': OpenCV cannot decode it (corrupt, truncated "
                           f"or an unsupported codec); re-encode it (e.g. H.264 mp4) or pass another --source")

    def _read_properties(self, cap: "cv2.VideoCapture") -> None:
        import cv2

        super()._read_properties(cap)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if count > 0 else None  # as the header says

    @property
    def expected_frames(self) -> int | None:
        if self.frame_count is None:
            return self.max_frames
        n = -(-self.frame_count // self.vid_stride)
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        try:
            for n, image in self._frames():
                ts = n / self.fps if self.fps else None
                yield Frame(image=image, source=self.name, index=n, timestamp=ts, kind="video")
            if self._ended_at is not None and self.frame_count and self._ended_at < self.frame_count:
                self._fail(self.name, f"video ended early at frame {self._ended_at} of {self.frame_count}")
        finally:
            self.close()


class StreamSource(_CaptureSource):
    """A webcam or a stream URL. Frame.timestamp is seconds since iteration started (monotonic clock)."""

    kind = "stream"

    def __init__(self, target: str | int, *, vid_stride: int = 1, max_frames: int | None = None) -> None:
        name = f"webcam:{target}" if isinstance(target, int) else target
        super().__init__(str(target), target, name, vid_stride=vid_stride, max_frames=max_frames)

    def _open_error(self) -> SourceError:
        if isinstance(self._target, int):
            return SourceError(f"webcam {self._target} cannot be opened: no camera at that index (check --source)")
        return SourceError(f"stream '{self._target}' cannot be opened: unreachable, wrong URL or unsupported "
                           f"protocol (check the URL and the network, then --source)")

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        start = time.monotonic()
        yielded = 0
        try:
            for n, image in self._frames():
                yielded += 1
                yield Frame(image=image, source=self.name, index=n, timestamp=time.monotonic() - start,
                            kind="stream")
            if self._ended_at is not None:
                if yielded == 0:
                    self._fail(self.name, "opened but delivered no frames")
                else:
                    logger.info("%s ended after %d frames", self.name, self._ended_at)
        finally:
            self.close()


# --------------------------------------------------------------------------------------------------
# Resolving a spec


def _images_in_folder(folder: Path, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (sorted by path relative to it)."""
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and is_image_file(p)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _folder_source(folder: Path, recursive: bool, max_frames: int | None) -> ImageSource:
    paths = _images_in_folder(folder, recursive)
    if not paths:
        hint = "" if recursive else "; add --recursive to look in sub-folders"
        if any(is_video_file(p) for p in folder.iterdir()):
            hint = "; it holds videos: pass a video file itself as --source"
        raise SourceError(f"folder '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    return ImageSource(str(folder), paths, root=folder, max_frames=max_frames)


def _glob_source(pattern: str, max_frames: int | None) -> ImageSource:
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    paths = [p for p in matches if p.is_file() and is_image_file(p)]
    if not paths:
        what = f"{len(matches)} paths, none an image" if matches else "nothing"
        raise SourceError(f"glob pattern '{pattern}' matches {what}; check the pattern "
                          f"(quote it so the shell does not expand it) and the image extensions "
                          f"({', '.join(IMAGE_EXTENSIONS)})")
    return ImageSource(pattern, paths, max_frames=max_frames)


def _list_source(txt: Path, max_frames: int | None) -> ImageSource:
    """A .txt file listing one image path per line (relative to the txt's folder; # comments)."""
    try:
        lines = txt.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read list file '{txt}': {e}; pass a readable text file") from e
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            paths.append(p if p.is_absolute() else txt.parent / p)
    if not paths:
        raise SourceError(f"list file '{txt}' names no images; write one image path per line")
    return ImageSource(str(txt), paths, max_frames=max_frames)


def _file_source(path: Path, vid_stride: int, max_frames: int | None) -> Source:
    ext = _ext(path)
    if ext in IMAGE_EXTENSIONS:
        return ImageSource(str(path), [path], single=True, max_frames=max_frames)
    if ext in VIDEO_EXTENSIONS:
        return VideoSource(path, vid_stride=vid_stride, max_frames=max_frames)
    if ext == "txt":
        return _list_source(path, max_frames)
    raise SourceError(f"source '{path}' has an unknown extension '.{ext}': images are "
                      f"{', '.join(IMAGE_EXTENSIONS)}; videos are {', '.join(VIDEO_EXTENSIONS)}; "
                      f"a .txt file lists images")


def open_source(spec: str | int | Path, *, recursive: bool = False, vid_stride: int = 1,
                max_frames: int | None = None) -> Source:
    """Open ``spec`` as a :class:`Source` (see the module docstring for the accepted kinds).

    Args:
        spec: a path, glob pattern, URL, or webcam index (int or a string of digits).
        recursive: for a folder, also take images in its sub-folders.
        vid_stride: for videos and streams, keep every ``vid_stride``-th frame (ignored for images).
        max_frames: stop after this many yielded frames (any kind); None for all.

    Raises:
        SourceError: the path is missing, names nothing readable, or the capture cannot be opened.
    """
    if vid_stride < 1:
        raise SourceError(f"--vid-stride must be 1 or more (got {vid_stride})")
    if max_frames is not None and max_frames < 1:
        raise SourceError(f"--max-frames must be 1 or more (got {max_frames})")
    if isinstance(spec, bool):
        raise SourceError(f"source {spec!r} is not a source; pass {_ACCEPTED}")
    if isinstance(spec, int):
        return StreamSource(spec, vid_stride=vid_stride, max_frames=max_frames)
    text = str(spec)
    if isinstance(spec, str):
        if text.strip().isdigit():
            return StreamSource(int(text), vid_stride=vid_stride, max_frames=max_frames)
        if text.lower().startswith(STREAM_PREFIXES):
            return StreamSource(text, vid_stride=vid_stride, max_frames=max_frames)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_source(path, recursive, max_frames)
    if path.is_file():
        return _file_source(path, vid_stride, max_frames)
    if any(c in text for c in "*?["):
        return _glob_source(text, max_frames)
    raise SourceError(f"source '{text}' not found: pass {_ACCEPTED}")
