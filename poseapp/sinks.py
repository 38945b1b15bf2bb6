"""Writers as context managers: annotated images, video, JSON / JSONL, and a preview window.

Every file is written atomically: to a temporary name in the destination folder, then ``os.replace``d
onto its final name. A writer closed by an exception still finalises what it has (the frames and
results written so far), so nothing is lost and no half-written file ever carries the final name.

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
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

import numpy as np

from poseapp.errors import OutputError
from poseapp.results import Frame, FrameResult

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


# --------------------------------------------------------------------------------------------------
# Helpers


def _reason(e: OSError) -> str:
    """A short, lower-case reason for an OSError."""
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on device",
        errno.ENOTDIR: "a parent path is a file, not a folder",
        errno.EEXIST: "a file of that name exists",
    }
    return reasons.get(e.errno or 0, (e.strerror or str(e)).lower())


def _output_error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to '{path}': {_reason(e)} (choose another --out)")


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden temporary file next to ``path`` (created empty, so the name is ours).

    mkstemp creates it 0600; it gets the usual mode so the renamed output is readable like any other.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, _file_mode())
    return Path(name)


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


class ImageWriter:
    """Writes annotated images under ``out_dir``, named after their source.

    An image keeps its source's file name and extension. With ``root`` (the folder a recursive source
    walked, ``Source.root``) the path relative to it is kept, so ``a/x.jpg`` and ``b/x.jpg`` stay
    apart; otherwise a name already written by this writer gets a suffix (``x_2.jpg``). Video and
    stream frames are named ``<stem>_<index:06d>.jpg``.
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
        src = Path(frame.source)
        if self.root is not None:
            try:
                return src.resolve().relative_to(self.root.resolve())
            except ValueError:
                pass
        return Path(src.name)

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


class VideoWriter:
    """An mp4 (fourcc ``mp4v``) written to a temporary name in the same folder, renamed on close.

    Closing, also through an exception, finalises the file with the frames written so far; when no
    frame was written the temporary file is removed and no video is left.

    Args:
        path: final file name (``.mp4``).
        fps: frames per second (the source's); None or <= 0 falls back to 30 with a warning.
        size: (width, height) of every frame.
    """

    def __init__(self, path: Path, fps: float | None, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        if not fps or fps <= 0:
            logger.warning("%s: source fps unknown, writing at %.0f fps", self.path, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        try:
            self.temp_path = _temp_path(self.path, suffix=self.path.suffix or ".mp4")
        except OSError as e:
            raise _output_error(self.path, e) from e
        self._writer: "cv2.VideoWriter | None" = cv2.VideoWriter(
            str(self.temp_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._writer.isOpened():
            self._writer = None
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video '{self.path}': OpenCV cannot open an mp4v writer "
                              f"(codec missing?); write images instead or choose another --out")

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame; its size must be ``size`` (OpenCV would drop it silently)."""
        if self._writer is None:
            raise ValueError(f"VideoWriter for '{self.path}' is closed")
        h, w = image.shape[:2]
        if (w, h) != self.size:
            raise ValueError(f"frame is {w}x{h} but video '{self.path}' is {self.size[0]}x{self.size[1]}")
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        """Finalise: release the writer and rename the temporary file (safe to call twice)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames_written == 0:
            self.temp_path.unlink(missing_ok=True)
            logger.warning("%s: no frames written, no video saved", self.path)
            return
        _publish(self.temp_path, self.path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# JSON


def _set_header(result: FrameResult) -> dict[str, Any]:
    kset = result.poses.keypoint_set
    return {"keypoint_set": kset.name, "keypoint_names": list(kset.names)}


class JsonWriter:
    """Collects per-image results; on close writes ONE JSON document atomically (COCO results style).

    Layout: ``{"keypoint_set": name, "keypoint_names": [...], "images": [{"image": source, "width",
    "height", "instances": [{"bbox" (xyxy), "bbox_score", "keypoints" ([[x, y]] * K),
    "keypoint_scores"}]}], **meta}``. An image whose keypoint set differs from the first image's
    carries its own ``"keypoint_set"``. Written on close also after an exception (what was collected).
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
        entry = {"image": d["source"], "width": d["width"], "height": d["height"]}
        if d["keypoint_set"] != self._header["keypoint_set"]:
            entry["keypoint_set"] = d["keypoint_set"]
        entry["instances"] = d["instances"]
        self._images.append(entry)

    def close(self) -> None:
        """Write the document (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        doc = {**self._header, "images": self._images, **self.meta}
        atomic_write(self.path, lambda f: f.write(json.dumps(doc).encode()))

    def __enter__(self) -> "JsonWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonlWriter:
    """One JSON object per line for videos and streams, flushed after each line.

    The first line is a header, ``{"header": {"keypoint_set", "keypoint_names", **meta}}`` (written
    with the first result); every other line is ``FrameResult.to_dict()``. Lines go to
    ``temp_path`` (a hidden file in the same folder, which can be tailed live) and the file is renamed
    to ``path`` on close, also after an exception. Only a killed process leaves the temporary file.
    """

    def __init__(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.lines_written = 0
        try:
            self.temp_path = _temp_path(self.path)
            self._file: IO[str] | None = open(self.temp_path, "w", encoding="utf-8")
        except OSError as e:
            raise _output_error(self.path, e) from e

    def _line(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"JsonlWriter for '{self.path}' is closed")
        try:
            self._file.write(json.dumps(obj) + "\n")
            self._file.flush()
        except OSError as e:
            raise _output_error(self.path, e) from e

    def write(self, result: FrameResult) -> None:
        """Append one frame's result (after the header on the first call)."""
        if self.lines_written == 0:
            self._line({"header": {**_set_header(result), **self.meta}})
        self._line(result.to_dict())
        self.lines_written += 1

    def close(self) -> None:
        """Close and rename onto ``path`` (safe to call twice)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        _publish(self.temp_path, self.path)

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Window


def _no_display_reason() -> str | None:
    """Why no window can open here (None when a display seems available)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "DISPLAY is not set"
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
