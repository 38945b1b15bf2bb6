"""Annotated images: each under its source's name (sub-folders and multi-page TIFF pages kept apart)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from poseapp.errors import OutputError
from poseapp.results import Frame, FrameResult
from poseapp.sinks.files import Closing, atomic_write, output_error


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


class ImageWriter(Closing):
    """Writes annotated images under ``out_dir``, named after their source.

    An image keeps its source's file name and extension (a page of a multi-page TIFF is
    ``<stem>_page<N>.tif``). With ``root`` (the folder a recursive source walked, ``Source.root``) the
    path relative to it is kept, so ``a/x.jpg`` and ``b/x.jpg`` stay apart; otherwise a name already
    written by this writer gets a suffix (``x_2.jpg``). Video and stream frames are named
    ``<stem>_<index:06d>.jpg``. An input's alpha channel (``Frame.alpha``) is kept where the format
    has one (PNG, TIFF, WebP).
    """

    needs_image = True

    def __init__(self, out_dir: Path, root: Path | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.root = Path(root) if root is not None else None
        self._used: set[Path] = set()

    def close(self) -> None:
        """Nothing to finish: every image is complete under its name once ``write`` returns."""

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

    def write(self, result: FrameResult, annotated: np.ndarray) -> Path:
        """Write ``annotated`` ((H, W, 3) uint8 BGR) for ``result.frame``; returns the path written."""
        import cv2

        frame, image = result.frame, annotated
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
            raise output_error(path.parent, e) from e
        return atomic_write(path, lambda f: f.write(buf.tobytes()))
