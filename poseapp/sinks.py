"""Writers as context managers: annotated images, video, JSON / JSONL, and a preview window.

Every file is written atomically: to a temporary name in the destination folder, then ``os.replace``d
onto its final name. A writer closed by an exception still finalises what it has (the frames and
results written so far), so nothing is lost and no half-written file ever carries the final name: a
write error (disk full, I/O error, read-only file system) is an OutputError naming the file, and what
cannot be finished is removed. A temporary name carries the writing process's id
(``.<name>.poseapp<pid>-<host>.<random><suffix>``), so :func:`remove_stale_temps` can tell the debris
of a killed run from the files of a live one.

Videos: ``<stem>.mp4``, MPEG-4 Part 2 video in an MP4 container, written with PyAV (FFmpeg) at the
exact size of the frames (OpenCV's writer would crop an odd size to even) and the exact frame rate.

JSON layouts:

* :class:`JsonWriter` (image sources): one document,
  ``{"keypoint_set", "keypoint_names", "images": [{"image", "width", "height", "instances"}], **meta}``.
* :class:`JsonlWriter` (videos and streams): a header line ``{"header": {"keypoint_set",
  "keypoint_names", **meta}}``, then one ``FrameResult.to_dict()`` per line.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from poseapp.errors import OutputError, PoseAppError
from poseapp.results import Frame, FrameResult

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


# --------------------------------------------------------------------------------------------------
# Helpers


_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.ENOTDIR: "a parent path is a file, not a folder",
    errno.EEXIST: "a file of that name exists",
}


def _reason(e: OSError) -> str:
    """A short, lower-case reason for an OSError."""
    return _REASONS.get(e.errno or 0, (e.strerror or str(e)).lower())


def _output_error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to '{path}': {_reason(e)} (choose another --out)")


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _host_tag() -> str:
    """This machine's name, shortened to what a file name can carry (temp files on a shared disk)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16]


_TEMP_NAME = re.compile(r"^\..*\.poseapp(\d+)-([A-Za-z0-9]{0,16})\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def _temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden temporary file next to ``path`` (created empty, so the name is ours), named
    ``.<name>.poseapp<pid>-<host>.<random><suffix>`` (the name cut to 100 characters, so a long final
    name still fits the file system's limit).

    mkstemp creates it 0600; it gets the usual mode so the renamed output is readable like any other.
    """
    prefix = f".{path.name[:100]}.poseapp{os.getpid()}-{_host_tag()}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, _file_mode())
    return Path(name)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's; anything else: assume alive
        return True
    return True


def remove_stale_temps(folders: Iterable[Path]) -> list[Path]:
    """Delete the temporary files that runs killed before they could finish (SIGKILL, power loss) left in
    ``folders`` (not their sub-folders): those written on this machine by a process that is gone. Files of
    a live process, or of another machine sharing the disk, are left alone.

    Returns the paths removed (for the summary)."""
    removed: list[Path] = []
    host = _host_tag()
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            names = [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for name in names:
            match = _TEMP_NAME.match(name)
            if match is None or match.group(2) != host or _pid_alive(int(match.group(1))):
                continue
            path = Path(folder) / name
            try:
                path.unlink()
                removed.append(path)
            except OSError as e:
                logger.warning("cannot remove stale temporary file %s: %s", path, _reason(e))
    return removed


def _publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file onto its final name (OutputError naming ``path`` if that fails)."""
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise _output_error(path, e) from e


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file in the same folder, then rename.

    Raises:
        OutputError: the folder is not writable (the temporary file is removed).
    """
    path = Path(path)
    try:
        tmp = _temp_path(path)
    except OSError as e:
        raise _output_error(path, e) from e
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _output_error(path, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class _Closing:
    """A writer as a context manager: ``__exit__`` closes it (finalising what it has). When an exception
    is already on its way (Ctrl-C, SIGTERM, an earlier write error), that one is reported: a failure to
    finalise is added to its message (one line), or logged when it is an interruption."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except OutputError as e:
            if exc is None:
                raise
            if isinstance(exc, PoseAppError) and len(exc.args) == 1:  # one line still tells both
                exc.args = (f"{exc.args[0]}; {e}",)
            else:
                logger.warning("%s", e)


def next_run_dir(base: Path = Path("runs/predict"), exist_ok: bool = False) -> Path:
    """Create and return the output folder: ``base``, else ``base2``, ``base3``... (the first free one).

    With ``exist_ok`` the folder is ``base`` itself, existing or not.

    Raises:
        OutputError: the folder cannot be created or written to (checked by creating a file in it).
    """
    base = Path(base)
    n = 1
    while True:
        target = base if n == 1 or exist_ok else base.with_name(f"{base.name}{n}")
        try:
            target.mkdir(parents=True, exist_ok=exist_ok)
            break
        except FileExistsError as e:
            if exist_ok:  # exists, but not as a folder
                raise OutputError(f"cannot write to '{target}': it exists and is not a folder "
                                  f"(choose another --out)") from e
            n += 1
        except OSError as e:
            raise _output_error(target, e) from e
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as e:
        raise _output_error(target, e) from e
    return target


# --------------------------------------------------------------------------------------------------
# Images


def _safe_name(text: str) -> str:
    """A file-name-safe version of a stream name ("webcam:0" -> "webcam_0")."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "frame"


_ALPHA_SUFFIXES = ("png", "tif", "tiff", "webp")


def image_output_name(source: Path, root: Path | None = None, page: int | None = None) -> Path:
    """The annotated copy's path (relative to the output folder) of the image file ``source``."""
    rel = Path(source.name)
    if root is not None:
        try:
            rel = source.resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
    return rel if page is None else rel.with_name(f"{rel.stem}_page{page}{rel.suffix}")


class ImageWriter:
    """Writes annotated images under ``out_dir``, named after their source.

    An image keeps its source's file name and extension (a page of a multi-page TIFF is
    ``<stem>_page<N>.tif``). With ``root`` (the folder a recursive source walked, ``Source.root``) the
    path relative to it is kept, so ``a/x.jpg`` and ``b/x.jpg`` stay apart; otherwise a name already
    written by this writer gets a suffix (``x_2.jpg``). Video and stream frames are named
    ``<stem>_<index:06d>.jpg``. An input's alpha channel (``Frame.alpha``) is kept where the format
    has one (PNG, TIFF, WebP).
    """

    def __init__(self, out_dir: Path, root: Path | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.root = Path(root) if root is not None else None
        self._used: set[Path] = set()

    def __enter__(self) -> "ImageWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _relative_name(self, frame: Frame) -> Path:
        if frame.kind != "image":
            stem = Path(frame.source).stem if frame.kind == "video" else _safe_name(frame.source)
            return Path(f"{stem}_{frame.index:06d}.jpg")
        return image_output_name(Path(frame.source), self.root, frame.page)

    def _unique(self, rel: Path) -> Path:
        candidate, n = rel, 1
        while candidate in self._used:
            n += 1
            candidate = rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
        self._used.add(candidate)
        return candidate

    def write(self, frame: Frame, image: np.ndarray) -> Path:
        """Write ``image`` ((H, W, 3) uint8 BGR) for ``frame``; returns the path written."""
        import cv2

        path = self.out_dir / self._unique(self._relative_name(frame))
        alpha = frame.alpha
        if alpha is not None and path.suffix.lower().lstrip(".") in _ALPHA_SUFFIXES \
                and alpha.shape == image.shape[:2]:
            image = np.dstack([image, alpha])
        ok, buf = cv2.imencode(path.suffix or ".jpg", image)
        if not ok:
            raise OutputError(f"cannot encode '{path}' as {path.suffix}: choose another image format")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _output_error(path.parent, e) from e
        return atomic_write(path, lambda f: f.write(buf.tobytes()))


# --------------------------------------------------------------------------------------------------
# Video


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


class VideoWriter(_Closing):
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
            raise _output_error(self.path, e)
        if self.size is not None:
            self._open(self.size)

    def _open(self, size: tuple[int, int]) -> None:
        import av

        try:
            self.temp_path = _temp_path(self.path, suffix=".mp4")
        except OSError as e:
            raise _output_error(self.path, e) from e
        try:
            container = av.open(str(self.temp_path), mode="w", format="mp4")
            stream = container.add_stream("mpeg4", rate=_frame_rate(self.fps))
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = max(1_000_000, int(size[0] * size[1] * self.fps * 0.2))  # about 0.2 bit/pixel
        except (OSError, av.FFmpegError) as e:  # PyAV's errno errors are OSErrors; codec errors are not
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video '{self.path}': {_av_reason(e)} (save keypoints only with "
                              f"--json --no-save, or choose another --out)") from e
        self.size = size
        self._container, self._stream = container, stream

    def write(self, image: np.ndarray) -> None:
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
            raise OutputError(f"cannot write to '{self.path}': {_av_reason(e)} (choose another --out)") from e
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
            raise OutputError(f"cannot write to '{self.path}': {_av_reason(e)} (choose another --out)") from e
        self._closed = True
        self._container = self._stream = None
        problem = self._check_playable()
        if problem:
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video '{self.path}': {problem}; free some space or choose "
                              f"another --out")
        _publish(self.temp_path, self.path)

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
    if isinstance(e, OSError) and e.errno is not None and e.errno in _REASONS:
        return _REASONS[e.errno]
    return " ".join(str(getattr(e, "strerror", None) or e).split()) or type(e).__name__


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


# --------------------------------------------------------------------------------------------------
# JSON


def _set_header(result: FrameResult) -> dict[str, Any]:
    kset = result.poses.keypoint_set
    return {"keypoint_set": kset.name, "keypoint_names": list(kset.names)}


class JsonWriter(_Closing):
    """Collects per-image results; on close writes ONE JSON document atomically (COCO results style).

    Layout: ``{"keypoint_set": name, "keypoint_names": [...], "images": [{"image": source, "width",
    "height", "instances": [{"bbox" (xyxy), "bbox_score", "keypoints" ([[x, y]] * K),
    "keypoint_scores"}]}], **meta}``; a page of a multi-page TIFF adds ``"page"`` (1-based) after
    ``"image"``. An image whose keypoint set differs from the first image's carries its own
    ``"keypoint_set"``. Written on close also after an exception (what was collected); when no image
    was written, no file is.
    """

    _RESERVED = ("keypoint_set", "keypoint_names", "images")

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        clash = [k for k in self._RESERVED if k in self.meta]
        if clash:
            raise ValueError(f"meta keys {clash} clash with the JSON layout")
        self._header: dict[str, Any] = {"keypoint_set": None, "keypoint_names": []}
        self._images: list[dict[str, Any]] = []
        self._closed = False

    def write(self, result: FrameResult) -> None:
        """Add one image's result."""
        d = result.to_dict()
        if not self._images:
            self._header = _set_header(result)
        entry = {"image": d["source"], **({"page": d["page"]} if "page" in d else {}),
                 "width": d["width"], "height": d["height"]}
        if d["keypoint_set"] != self._header["keypoint_set"]:
            entry["keypoint_set"] = d["keypoint_set"]
        entry["instances"] = d["instances"]
        self._images.append(entry)

    def close(self) -> None:
        """Write the document (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        if not self._images:
            logger.info("%s: no image written, no file saved", self.path)
            return
        doc = {**self._header, "images": self._images, **self.meta}
        atomic_write(self.path, lambda f: f.write(json.dumps(doc).encode()))


class JsonlWriter(_Closing):
    """One JSON object per line for videos and streams, flushed after each line.

    The first line is a header, ``{"header": {"keypoint_set", "keypoint_names", **meta}}`` (written
    with the first result); every other line is ``FrameResult.to_dict()``. Lines go to
    ``temp_path`` (a hidden file in the same folder, which can be tailed live) and the file is renamed
    to ``path`` on close, also after an exception. A write that fails (disk full) raises OutputError;
    the file is cut back to its last complete line, and closing still publishes those lines. Only a
    killed process leaves the temporary file (the next run into the folder removes it).
    """

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.lines_written = 0
        self._complete = 0  # bytes of complete lines in the file
        try:
            self.temp_path = _temp_path(self.path)
            self._file: IO[bytes] | None = open(self.temp_path, "wb")
        except OSError as e:
            raise _output_error(self.path, e) from e

    def _line(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"JsonlWriter for '{self.path}' is closed")
        data = (json.dumps(obj) + "\n").encode()
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._cut_back()
            raise _output_error(self.path, e) from e
        self._complete += len(data)

    def _cut_back(self) -> None:
        """Drop a partly written last line (after a failed write), so the file stays valid JSON Lines."""
        assert self._file is not None
        try:
            self._file.close()  # its buffer cannot be flushed either; closing discards it
        except OSError:
            pass
        try:
            os.truncate(self.temp_path, self._complete)
            self._file = open(self.temp_path, "ab")
        except OSError as e:
            logger.warning("%s: cannot cut the partial last line (%s)", self.temp_path, _reason(e))
            self._file = None
            self.temp_path.unlink(missing_ok=True)
            self.temp_path = None  # type: ignore[assignment]

    def write(self, result: FrameResult) -> None:
        """Append one frame's result (after the header on the first call)."""
        if self.lines_written == 0:
            self._line({"header": {**_set_header(result), **self.meta}})
        self._line(result.to_dict())
        self.lines_written += 1

    def close(self) -> None:
        """Close and rename onto ``path`` (safe to call twice); no file when no frame was written."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as e:
            self.temp_path.unlink(missing_ok=True)
            raise _output_error(self.path, e) from e
        if self.lines_written == 0:
            self.temp_path.unlink(missing_ok=True)
            return
        _publish(self.temp_path, self.path)



# --------------------------------------------------------------------------------------------------
# Window


def _x_reachable(display: str, timeout: float = 1.0) -> bool:
    """Whether an X server answers at ``display`` (``:0``, ``unix:1``, ``host:10.0``); True when the name
    cannot be parsed (OpenCV then judges). A window on an X display that does not answer aborts the whole
    process inside Qt, so it is worth the check."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<n>\d+)(\.\d+)?", display)
    if match is None:
        return True
    host, number = match["host"], int(match["n"])
    if host in ("", "unix"):
        targets = [(socket.AF_UNIX, f"/tmp/.X11-unix/X{number}"), (socket.AF_UNIX, f"\0/tmp/.X11-unix/X{number}")]
    else:
        targets = [(socket.AF_INET, (host, 6000 + number))]
    for family, address in targets:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


def _no_display_reason() -> str | None:
    """Why no window can open here (None when a display seems available). OpenCV's window (Qt, xcb)
    needs an X display on Linux: a Wayland session offers one through Xwayland, in DISPLAY."""
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "DISPLAY is not set" + (" (a Wayland session needs Xwayland)" if os.environ.get("WAYLAND_DISPLAY")
                                       else "")
    if not _x_reachable(display):
        return f"no X server answers at DISPLAY={display}"
    return None


class Window:
    """A preview window (cv2.imshow) with an FPS overlay; ``show`` returns False once q or Esc is pressed.

    Raises:
        OutputError: there is no display, or OpenCV was built without a GUI backend (headless).
    """

    def __init__(self, title: str = "poseapp") -> None:
        reason = _no_display_reason()
        if reason is None:
            import cv2  # the GUI backend loads with the first window

            try:
                cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            except cv2.error as e:
                logger.debug("namedWindow failed: %s", e)
                reason = "OpenCV has no GUI backend (headless build)"
        if reason is not None:
            raise OutputError(f"--show needs a display: none found ({reason}); drop --show or run with a display")
        self.title = title
        self._last: float | None = None
        self.fps: float | None = None
        self._open = True

    def _tick(self) -> None:
        """Update the smoothed frames-per-second estimate."""
        now = time.monotonic()
        if self._last is not None and now > self._last:
            fps = 1.0 / (now - self._last)
            self.fps = fps if self.fps is None else 0.9 * self.fps + 0.1 * fps
        self._last = now

    def show(self, image: np.ndarray) -> bool:
        """Show (H, W, 3) uint8 BGR ``image`` (not modified); False when the user asked to quit."""
        import cv2

        self._tick()
        shown = image
        if self.fps is not None:
            shown = image.copy()
            cv2.putText(shown, f"{self.fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4,
                        cv2.LINE_AA)
            cv2.putText(shown, f"{self.fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2,
                        cv2.LINE_AA)
        cv2.imshow(self.title, shown)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._open:
            import cv2

            self._open = False
            try:
                cv2.destroyWindow(self.title)
            except cv2.error as e:
                logger.debug("destroyWindow failed: %s", e)

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
