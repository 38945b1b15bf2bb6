"""Annotated video: MPEG-4 Part 2 in an MP4 container, written with PyAV (FFmpeg) at the exact size of the
frames (OpenCV's writer would crop an odd size to even) and the exact frame rate, checked before it is published."""
from __future__ import annotations

import errno
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from poseapp.errors import OutputError, arg
from poseapp.results import FrameResult
from poseapp.sinks.files import REASONS, Closing, output_error, publish, temp_path

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def video_output_name(stem: str) -> str:
    """The annotated copy of the video or stream ``stem``."""
    return f"{stem}.mp4"


MAX_FPS = 1000.0  # a capture reporting more (RTSP streams often say 90000: their clock) has no real rate


def _frame_rate(fps: float) -> Fraction:
    """``fps`` as the rational the encoder stores: 29.97002997 -> 30000/1001, 12.5 -> 25/2, 119.88 ->
    2997/25. MPEG-4's time base takes a denominator (our numerator) of at most 65535."""
    for den in (1001, 1000, 100, 10, 1):
        rate = Fraction(fps).limit_denominator(den)
        if rate.numerator <= 65535:
            return rate
    return Fraction(round(fps))


class VideoWriter(Closing):
    """An annotated video: ``<stem>.mp4`` (MPEG-4 Part 2 in an MP4 container, written with PyAV/FFmpeg),
    at the exact size of its frames (odd sizes too) and the given frame rate, stored as a rational.

    It is written to a temporary name in the same folder and renamed on close. The file is opened with
    the first frame, whose size it takes when ``size`` is None (a stream that does not say). A write
    error (a full disk) raises OutputError at once; closing, also through an exception, finalises the
    file with the frames written so far and reads it back: a file that cannot be played is removed and
    closing raises OutputError. When no frame was written no video is left.

    Args:
        path: final file name (``.mp4``).
        fps: frames per second (the source's, divided by the frame stride); None or <= 0 falls back to
            30 with a warning.
        size: (width, height) of every frame; None: the first frame's.
    """

    needs_image = True

    def __init__(self, path: Path, fps: float | None, size: tuple[int, int] | None = None) -> None:
        self.path = Path(path).with_suffix(".mp4")
        if not fps or not 0 < fps <= MAX_FPS:
            logger.warning("%s: source fps unknown (%s), writing at %.0f fps", self.path, fps, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1])) if size else None
        self.frames_written = 0
        self.temp_path: Path | None = None
        self._container: Any = None
        self._stream: Any = None
        self._closed = False
        if not self.path.parent.is_dir():  # fail now rather than at the first frame
            e = OSError(errno.ENOTDIR if self.path.parent.exists() else errno.ENOENT, "not a folder")
            raise output_error(self.path, e)
        if self.size is not None:
            self._open(self.size)

    def _open(self, size: tuple[int, int]) -> None:
        import av

        try:
            self.temp_path = temp_path(self.path, suffix=".mp4")
        except OSError as e:
            raise output_error(self.path, e) from e
        try:
            container = av.open(str(self.temp_path), mode="w", format="mp4")
            stream = container.add_stream("mpeg4", rate=_frame_rate(self.fps))
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = max(1_000_000, int(size[0] * size[1] * self.fps * 0.2))  # about 0.2 bit/pixel
        except (OSError, av.FFmpegError) as e:  # PyAV's errno errors are OSErrors; codec errors are not
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video '{self.path}': {_av_reason(e)} (save keypoints only with "
                              f"--json --no-save, or choose another {arg('out_dir')})") from e
        self.size = size
        self._container, self._stream = container, stream

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        """The writer interface: append ``annotated``, the drawn frame of ``result``."""
        self.append(annotated)

    def append(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame; its size must be ``size``.

        Raises:
            OutputError: the frame cannot be written (disk full...); the file is then removed.
        """
        import av

        if self._closed:
            raise ValueError(f"VideoWriter for '{self.path}' is closed")
        h, w = image.shape[:2]
        if self._stream is None:
            self._open((int(w), int(h)))
        elif (w, h) != self.size:
            raise OutputError(f"cannot write video '{self.path}': frame {self.frames_written} is {w}x{h} but the "
                              f"video is {self.size[0]}x{self.size[1]} (the source changed its size); save "
                              f"keypoints only with --json --no-save")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames_written
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as e:
            self._discard()
            raise OutputError(f"cannot write to '{self.path}': {_av_reason(e)} "
                              f"(choose another {arg('out_dir')})") from e
        self.frames_written += 1

    def _discard(self) -> None:
        """Drop an unfinishable file: close the container (ignoring its errors) and remove the temp file."""
        self._closed = True
        container, self._container, self._stream = self._container, None, None
        if container is not None:
            try:
                container.close()
            except OSError:
                pass
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Finalise: flush the encoder, close the file, check it plays, rename it (safe to call twice).

        Raises:
            OutputError: the file could not be finished (it is removed; nothing carries the final name).
        """
        if self._closed:
            return
        if self._container is None:
            self._closed = True
            return
        if self.frames_written == 0:
            self._discard()
            logger.warning("%s: no frames written, no video saved", self.path)
            return
        import av

        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except (OSError, av.FFmpegError) as e:
            self._discard()
            raise OutputError(f"cannot write to '{self.path}': {_av_reason(e)} "
                              f"(choose another {arg('out_dir')})") from e
        self._closed = True
        self._container = self._stream = None
        problem = self._check_playable()
        if problem:
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video '{self.path}': {problem}; free some space or choose "
                              f"another {arg('out_dir')}")
        publish(self.temp_path, self.path)

    def _check_playable(self) -> str:
        """'' when the finished temporary file opens and holds every frame written, else why not."""
        import cv2

        cap = cv2.VideoCapture(str(self.temp_path))
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        finally:
            cap.release()
        if count == self.frames_written:
            return ""
        free = _free_bytes(self.temp_path.parent)
        disk = f"; {free} bytes free on that disk" if free is not None else ""
        if count < 0:
            return f"the file came out unplayable (the disk may be full{disk})"
        return f"the file holds {count} of {self.frames_written} frames (the disk may be full{disk})"


def _av_reason(e: Exception) -> str:
    """A short reason for a PyAV error: the OS's words for an errno error, else FFmpeg's (one line)."""
    if isinstance(e, OSError) and e.errno is not None and e.errno in REASONS:
        return REASONS[e.errno]
    return " ".join(str(getattr(e, "strerror", None) or e).split()) or type(e).__name__


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize
