"""The :class:`Source` every input kind is: an iterable of frames, a context manager, its failures."""
from __future__ import annotations

import logging
import re
import urllib.parse
from pathlib import Path
from typing import Iterator

from poseapp.errors import Text, render
from poseapp.results import Frame

logger = logging.getLogger(__name__)

STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "udp://", "rtp://", "srt://", "tcp://", "http://",
                   "https://")
DEFAULT_STREAM_TIMEOUT = 10.0  # seconds


class Source:
    """An iterable of :class:`Frame` over one input; use it as a context manager.

    Attributes:
        kind: ``"image"``, ``"video"`` or ``"stream"``.
        spec: the source as given (a string).
        stem: the name a video or stream's outputs take (``clip`` for ``clip.mp4``, ``webcam_0`` for ``webcam:0``).
        fps: frames per second for video and stream sources (None when unknown or for images).
        size: (width, height) for video and stream sources (None for images, or when the capture does
            not say: a stream's first frame then tells).
        failures: ``(path, one-line reason)`` for every file or frame that could not be read (the reason is
            an ``errors.Text``: ``errors.render(reason, flags)`` names a command line's flags),
            filled as iteration goes (cleared when a new iteration starts).
        root: the folder image paths are relative to (folder sources), else None; ImageWriter uses it
            to keep sub-folders apart.
        walks: a folder the source walks recursively (``--recursive``), or a glob pattern: outputs must
            not land where a later run of the same source would read them.
    """

    kind: str = ""

    def __init__(self, spec: str, *, vid_stride: int = 1, max_frames: int | None = None) -> None:
        self.spec = spec
        self.stem = "frame"
        self.vid_stride = vid_stride
        self.max_frames = max_frames
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.root: Path | None = None
        self.walks: Path | str | None = None
        self.failures: list[tuple[str, str]] = []

    @property
    def expected_frames(self) -> int | None:
        """How many frames iteration should yield (for progress bars); None when unknown."""
        return self.max_frames

    def input_files(self) -> list[Path]:
        """The local files this source reads (outputs must never overwrite one)."""
        return []

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release any capture; safe to call twice."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, path: str, reason: str) -> None:
        self.failures.append((path, Text(reason)))  # reads as the library names options; render() shows flags
        logger.warning("%s: %s", path, render(reason))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, spec={self.spec!r})"


def url_stem(url: str) -> str:
    """A file-name-safe stem for a URL's outputs: its path's last part without extension, else the host."""
    parts = urllib.parse.urlsplit(url)
    stem = Path(parts.path).stem or parts.hostname or "stream"
    return re.sub(r"[^\w.-]+", "_", stem).strip("_.") or "stream"
