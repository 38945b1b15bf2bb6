"""Video files and live streams (webcams, stream URLs), read with cv2.VideoCapture and a frame stride."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from poseapp.errors import SourceError, arg
from poseapp.results import Frame
from poseapp.sources.base import DEFAULT_STREAM_TIMEOUT, Source, url_stem
from poseapp.sources.decode import is_utf8_path

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)


class _CaptureSource(Source):
    """Common part of video files and live streams: a cv2.VideoCapture read with a stride."""

    def __init__(self, spec: str, target: str | int, name: str, *, vid_stride: int,
                 max_frames: int | None, timeout: float | None = None) -> None:
        super().__init__(spec, vid_stride=vid_stride, max_frames=max_frames)
        self.name = name  # Frame.source
        self.timeout = timeout  # seconds to connect and between frames (URL streams); None: OpenCV's default
        self._target = target
        self._cap: "cv2.VideoCapture | None" = None
        self._ended_at: int | None = None  # frames delivered when the capture stopped by itself
        self._stalled = False  # the capture stopped after waiting about ``timeout`` for a frame
        self._open_seconds = 0.0
        self.start, self.stop = 0, None  # the source frames [start, stop) a segment reads (VideoSource)
        self._read_properties(self._open())

    def _open_error(self) -> SourceError:
        raise NotImplementedError

    def _open(self) -> "cv2.VideoCapture":
        import cv2

        start = time.monotonic()
        if self.timeout is not None and isinstance(self._target, str):
            ms = max(1, min(int(self.timeout * 1000), 2**31 - 1))
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(self._target)
        self._open_seconds = time.monotonic() - start
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

    def _frames(self) -> Iterator[tuple[int, np.ndarray, float]]:
        """(source frame number, image, capture position in ms) for every vid_stride-th frame, until the
        capture ends.

        Skipped frames are only grabbed, not decoded. Sets ``self._ended_at`` to the number of frames
        the capture delivered when it stopped (None when stopped by max_frames), and
        ``self._stalled`` when the last read waited about ``timeout`` seconds (a dead stream).
        """
        import cv2

        cap = self._cap if self._cap is not None else self._open()
        self._ended_at = None
        self._stalled = False
        yielded = 0
        n = 0
        while (self.max_frames is None or yielded < self.max_frames) and (self.stop is None or n < self.stop):
            t0 = time.monotonic()
            if not cap.grab():
                self._ended_at = n
                self._stalled = self.timeout is not None and time.monotonic() - t0 >= 0.9 * self.timeout
                return
            if n % self.vid_stride == 0 and n >= self.start:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    self._ended_at = n
                    return
                if self.size is None:  # the capture did not say (some http streams): the first frame does
                    self.size = (int(image.shape[1]), int(image.shape[0]))
                yielded += 1
                yield n, image, float(cap.get(cv2.CAP_PROP_POS_MSEC))
            n += 1


class VideoSource(_CaptureSource):
    """A video file read with cv2.VideoCapture. Frame.index is the frame number in the file and
    Frame.timestamp = index / fps (None when the file states no fps).

    ``start``/``stop`` read one segment, the source frames [start, stop) (stop None: to the end): the frames
    before ``start`` are grabbed, not decoded, so indices and timestamps are the whole file's
    (``poseapp.distributed`` gives a long video's segments to several workers)."""

    kind = "video"

    def __init__(self, path: Path, *, vid_stride: int = 1, max_frames: int | None = None, start: int = 0,
                 stop: int | None = None) -> None:
        if start < 0 or (stop is not None and stop <= start):
            raise ValueError(f"a video segment needs 0 <= start < stop (got {start}, {stop})")
        self.path = path
        if not is_utf8_path(path):
            raise SourceError(f"cannot open video {str(path)!r}: its name is not valid UTF-8, which OpenCV cannot "
                              f"open; rename the file")
        super().__init__(str(path), str(path), str(path), vid_stride=vid_stride, max_frames=max_frames)
        self.start, self.stop = start, stop
        self.stem = path.stem

    def _open_error(self) -> SourceError:
        return SourceError(f"cannot open video '{self.path}': OpenCV cannot decode it (corrupt, truncated "
                           f"or an unsupported codec); re-encode it (e.g. H.264 mp4) or pass another {arg('source')}")

    def _read_properties(self, cap: "cv2.VideoCapture") -> None:
        import cv2

        super()._read_properties(cap)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if count > 0 else None  # as the header says

    @property
    def expected_frames(self) -> int | None:
        if self.frame_count is None:
            return self.max_frames
        end = self.frame_count if self.stop is None else min(self.stop, self.frame_count)
        n = max(0, -(-end // self.vid_stride) - -(-self.start // self.vid_stride))
        return n if self.max_frames is None else min(n, self.max_frames)

    def input_files(self) -> list[Path]:
        return [self.path]

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        yielded = 0
        try:
            for n, image, _ in self._frames():
                ts = n / self.fps if self.fps else None
                yielded += 1
                yield Frame(image=image, source=self.name, index=n, timestamp=ts, kind="video")
            if yielded == 0 and self.start and self._ended_at is not None and self._ended_at <= self.start:
                # a segment past the real end: the header counted frames the file does not hold
                self._fail(self.name, f"video ended early at frame {self._ended_at} of {self.frame_count}")
                return
            if yielded == 0:
                where = f" from frame {self.start}" if self.start else ""
                raise SourceError(f"video '{self.path}' holds no frame OpenCV can decode{where}; re-encode it (e.g. "
                                  f"H.264 mp4) or pass another {arg('source')}")
            end = self.frame_count if self.stop is None or not self.frame_count else min(self.stop, self.frame_count)
            if self._ended_at is not None and end and self._ended_at < end:
                self._fail(self.name, f"video ended early at frame {self._ended_at} of {self.frame_count}")
        finally:
            self.close()


LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")
"""URL schemes of live streams (see is_live)."""


def is_live(target: str | int) -> bool:
    """Whether a stream is live: a webcam index or a URL of LIVE_SCHEMES. Its frames come at the camera's
    pace, and a late one is worth less than the next (the engine keeps the newest when it falls behind); an
    http(s) URL is usually a file or a playlist read as fast as it downloads, where a dropped frame is lost."""
    return isinstance(target, int) or str(target).split(":", 1)[0].lower() in LIVE_SCHEMES


class StreamSource(_CaptureSource):
    """A webcam or a stream URL.

    ``live`` (a webcam, rtsp/rtmp/udp/srt...; not http(s)) tells the engine to keep the newest frame when it
    falls behind. Frame.timestamp is seconds from the first frame: the stream's own clock (its presentation times)
    when its positions advance from the first frame to the second, else the monotonic clock; the clock
    chosen then stays. A URL stream that does not answer, or stops delivering
    frames, for ``timeout`` seconds ends with one line (``--stream-timeout``).
    """

    kind = "stream"

    def __init__(self, target: str | int, *, vid_stride: int = 1, max_frames: int | None = None,
                 timeout: float = DEFAULT_STREAM_TIMEOUT) -> None:
        name = f"webcam:{target}" if isinstance(target, int) else target
        self.live = is_live(target)
        super().__init__(str(target), target, name, vid_stride=vid_stride, max_frames=max_frames,
                         timeout=timeout)
        # file names: webcam_0.mp4, as ImageWriter names the frames of "webcam:0"
        self.stem = f"webcam_{target}" if isinstance(target, int) else url_stem(target)

    def _open_error(self) -> SourceError:
        if isinstance(self._target, int):
            return SourceError(f"webcam {self._target} cannot be opened: no camera at that index "
                               f"(check {arg('source')})")
        if self.timeout is not None and self._open_seconds >= 0.9 * self.timeout:
            return SourceError(f"stream '{self._target}' did not answer within {self.timeout:g} s: check the URL "
                               f"and the network ({arg('source')}), or wait longer with {arg('stream_timeout')}")
        return SourceError(f"stream '{self._target}' cannot be opened: unreachable, wrong URL or unsupported "
                           f"protocol (check the URL and the network, then {arg('source')})")

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        start = time.monotonic()
        first_pos = 0.0
        own_clock: bool | None = None  # decided at the second frame: do the stream's positions advance?
        yielded = 0
        try:
            for n, image, pos_ms in self._frames():
                if yielded == 0:
                    first_pos, ts = pos_ms, 0.0
                else:
                    if own_clock is None:
                        own_clock = pos_ms > first_pos
                    ts = (pos_ms - first_pos) / 1000 if own_clock else time.monotonic() - start
                yielded += 1
                yield Frame(image=image, source=self.name, index=n, timestamp=ts, kind="stream")
            if self._ended_at is not None:
                if self._stalled:
                    self._fail(self.name, f"no frame for {self.timeout:g} s: the stream stopped answering "
                                          f"(ended; {arg('stream_timeout')} waits longer)")
                elif yielded == 0:
                    self._fail(self.name, "opened but delivered no frames")
                else:
                    logger.info("%s ended after %d frames", self.name, self._ended_at)
        finally:
            self.close()
