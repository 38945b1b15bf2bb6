"""Reading one image file, safely: the header checked before decoding (size limit, truncated JPEG), then
``cv2.imdecode`` of the bytes that were checked, so the model sees exactly ``cv2.imread``'s pixels; the alpha
channel and every page of a multi-page TIFF kept."""
from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from poseapp.errors import Text, arg

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("bmp", "jpeg", "jpg", "png", "tif", "tiff", "webp")
VIDEO_EXTENSIONS = ("avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "webm", "wmv")
DEFAULT_MAX_PIXELS = 16384 * 16384


def extension(path: Path | str) -> str:
    """Lower-case extension without the dot ('' if none)."""
    return Path(path).suffix.lower().lstrip(".")


def is_image_file(path: Path | str) -> bool:
    return extension(path) in IMAGE_EXTENSIONS


def is_video_file(path: Path | str) -> bool:
    return extension(path) in VIDEO_EXTENSIONS


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


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding the pixels (Pillow opens lazily)."""

    width: int  # of the largest page
    height: int
    pages: int  # frames of a multi-page TIFF; 1 otherwise
    alpha: bool  # the image has an alpha channel (or a transparent palette colour)


_PIL_LIMIT = threading.Lock()  # Pillow's bomb limit is a module global: lifted only while a header is read


def read_header(data: bytes) -> ImageHeader | None:
    """The header of an encoded image; None when Pillow cannot parse it (the decoder then judges)."""
    from PIL import Image

    try:
        with warnings.catch_warnings(), _PIL_LIMIT:
            warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning: the limit is ours
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = limit
        with im:
            width, height = im.size
            pages = int(getattr(im, "n_frames", 1) or 1) if im.format == "TIFF" else 1
            for page in range(1, pages):  # every page must fit the limit: the largest decides
                im.seek(page)
                width, height = max((width, height), im.size, key=lambda size: size[0] * size[1])
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    except Exception as e:  # noqa: BLE001 - any failure to parse just means "no header"; cv2 judges the file
        logger.debug("no image header: %s", e)
        return None
    return ImageHeader(int(width), int(height), pages, bool(alpha))


def _too_large(header: ImageHeader | None, max_pixels: int) -> str:
    """The reason an image is refused for its size ('' when it fits or the header is unknown)."""
    if header is None or header.width * header.height <= max_pixels:
        return ""
    return f"{header.width}x{header.height} pixels is over the limit of {max_pixels} ({arg('max_pixels')})"


def _check_bytes(data: bytes, max_pixels: int) -> tuple[ImageHeader | None, str]:
    """(header, reason a file must not be decoded, or '')."""
    if not data:
        return None, "empty file (0 bytes)"
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        return None, "truncated JPEG (no end-of-image marker)"
    header = read_header(data)
    return header, _too_large(header, max_pixels)


def _read_bytes(path: Path) -> tuple[bytes | None, str]:
    try:
        if not path.is_file():
            if path.is_dir():
                return None, f"a folder, not an image file (pass a folder as {arg('source')} itself)"
            return None, "file not found"
        if is_video_file(path):
            return None, f"a video, not an image (pass a video as {arg('source')} on its own)"
        return path.read_bytes(), ""
    except OSError as e:  # a read error; also a name too long for the file system
        return None, f"cannot read file ({e.strerror or e})"


def expand_path(text: str) -> Path:
    """``Path(text)`` with ``~`` expanded where it can be (``~nosuchuser`` stays as written)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # no such user's home
        return Path(text)


def _alpha_of(path: Path, data: bytes, image: np.ndarray) -> np.ndarray | None:
    """The (H, W) uint8 alpha channel of an encoded image, aligned with ``image`` (its colour decode); None
    when it has none, or when the colour decode was turned by an EXIF orientation (OpenCV turns that decode,
    not an unchanged one), which is logged."""
    import cv2

    try:
        full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if full is None or full.ndim != 3 or full.shape[2] != 4 or full.dtype not in (np.uint8, np.uint16):
        return None
    colour, alpha = full[:, :, :3], full[:, :, 3]
    if full.dtype == np.uint16:
        colour, alpha = (colour >> 8).astype(np.uint8), (alpha >> 8).astype(np.uint8)
    aligned = colour.shape == image.shape and int(np.abs(colour.astype(np.int16) - image).max(initial=0)) <= 1
    if not aligned:
        logger.warning("%s: its alpha channel is not kept: the colour read is turned (EXIF orientation)", path)
        return None
    return alpha


def is_utf8_path(path: Path) -> bool:
    """Whether OpenCV can be given this path: a name that is not valid UTF-8 (an old archive's Latin-1)
    reaches Python as surrogate escapes, on which OpenCV's file functions crash."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Decoded:
    """One decoded page of an image file: BGR pixels, the alpha channel if any, and the page (1-based,
    None for a single-page file)."""

    image: np.ndarray
    alpha: np.ndarray | None = None
    page: int | None = None


def read_pages(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               on_error: Callable[[str], None] | None = None) -> tuple[Iterator[Decoded] | None, str]:
    """Check an image file and decode its pages (one for most files; a multi-page TIFF has several, decoded
    one at a time as the iterator is read, so only one page is in memory).

    Returns:
        ``(pages, "")``, or ``(None, reason)`` with a short one-line reason (an ``errors.Text``: its option
        named as the library names it, ``errors.render`` shows flags) when the file cannot be read,
        is over ``max_pixels`` (checked from the header, before decoding), or cannot be decoded. A page of
        a multi-page TIFF that cannot be decoded ends its pages, and ``on_error`` gets the reason.
    """
    data, reason = _read_bytes(path)
    if data is None:
        return None, Text(reason)
    header, reason = _check_bytes(data, max_pixels)
    if reason:
        return None, Text(reason)
    if header is not None and header.pages > 1:
        return _tiff_pages(path, data, header.pages, on_error), ""
    image, reason = _imdecode(data)
    if image is None:
        return None, Text(reason)
    alpha = _alpha_of(path, data, image) if header is not None and header.alpha else None
    return iter([Decoded(image, alpha)]), ""


def _imdecode(data: bytes) -> tuple[np.ndarray | None, str]:
    """``cv2.imdecode(data, IMREAD_COLOR)``: the pixels ``cv2.imread`` gives (EXIF turn included), or a reason."""
    import cv2

    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own limits (e.g. OPENCV_IO_MAX_IMAGE_PIXELS) and decoder failures
        return None, f"cannot decode image ({_cv2_reason(e)})"
    if image is None:
        return None, "cannot decode image (corrupt or not an image)"
    return image, ""


def _tiff_pages(path: Path, data: bytes, count: int, on_error: Callable[[str], None] | None) -> Iterator[Decoded]:
    """The pages of a multi-page TIFF, decoded one at a time (all at once, from ``data``, for a name OpenCV
    cannot be given)."""
    import cv2

    every = None
    if not is_utf8_path(path):
        try:
            ok, every = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error as e:
            ok, every = False, _cv2_reason(e)
        every = list(every) if ok else every
    for i in range(count):
        try:
            if every is None:
                ok, images = cv2.imreadmulti(str(path), start=i, count=1, flags=cv2.IMREAD_COLOR)
            else:
                ok, images = (True, every[i:i + 1]) if isinstance(every, list) else (False, every)
        except cv2.error as e:
            ok, images = False, _cv2_reason(e)
        if not ok or not images:
            why = images if isinstance(images, str) else "corrupt page"
            if on_error is not None:
                on_error(f"page {i + 1} of {count} cannot be decoded ({why}): the rest of the file skipped")
            return
        yield Decoded(np.ascontiguousarray(images[0]), None, i + 1)


def _cv2_reason(e: Exception) -> str:
    """The one-line gist of a cv2.error (its text spans several lines)."""
    text = str(e).strip().splitlines()
    msg = next((line.split(") ", 1)[-1] for line in text if "error:" in line), text[-1] if text else "")
    return re.sub(r"\s+", " ", msg).strip() or type(e).__name__


def read_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str]:
    """Decode one image file (its first page).

    Returns:
        ``(image, "")`` with image an (H, W, 3) uint8 BGR array (``cv2.imread(path, cv2.IMREAD_COLOR)``),
        or ``(None, reason)`` with a short reason when the file cannot be read.
    """
    pages, reason = read_pages(Path(path), max_pixels=max_pixels)
    if pages is None:
        return None, reason
    first = next(pages, None)
    return (first.image, "") if first is not None else (None, "cannot decode image (corrupt page)")


def decode_image_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str]:
    """Decode an encoded image held in memory (``cv2.imdecode``), with the same checks as a file."""
    _, reason = _check_bytes(data, max_pixels)
    return (None, Text(reason)) if reason else _imdecode(data)
