"""One iterator abstraction for every source kind (after ultralytics ``data/loaders.py``).

``open_source(spec)`` turns what the user typed after ``--source`` into a :class:`Source`: a context
manager that yields :class:`poseapp.results.Frame` values, whatever the input is:

========  =====================================================================================
kind      specs
========  =====================================================================================
images    an image file (a multi-page TIFF: one frame per page); a folder of images; a glob pattern;
          a ``.txt`` file listing images; an http(s) URL whose path ends in an image extension
video     a video file (an animated GIF is a video)
stream    a webcam (``webcam:N``, or a bare index ``0`` when no such path exists); a stream URL
          (rtsp://, rtmp://, http://, https://)
========  =====================================================================================

What a spec is, in this order: an existing path always wins (a folder named ``0`` is a folder);
``webcam:N`` is camera N; an http(s) URL ending in an image extension is an image; another URL is a
stream; digits are a camera index; a pattern with ``* ? [`` is a glob.

Frames are BGR uint8 ``(H, W, 3)`` arrays: the pixels of ``cv2.imread(path, cv2.IMREAD_COLOR)``, decoded
with ``cv2.imdecode`` from the bytes whose header was checked (the model sees exactly that; an image with an alpha channel also carries it as ``Frame.alpha``, so a
saved PNG keeps it). Before decoding, the header's size is checked against ``max_pixels``.
A bad file inside a multi-image source is skipped and recorded in ``Source.failures``; a single image,
video or stream that cannot be read raises :class:`~poseapp.errors.SourceError`.
"""
from __future__ import annotations

import glob
import io
import logging
import math
import re
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from poseapp import __version__
from poseapp.errors import SourceError
from poseapp.results import Frame

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("bmp", "jpeg", "jpg", "png", "tif", "tiff", "webp")
VIDEO_EXTENSIONS = ("avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "webm", "wmv")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")
DEFAULT_MAX_PIXELS = 16384 * 16384
DEFAULT_STREAM_TIMEOUT = 10.0  # seconds
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # an image URL larger than this is refused

_ACCEPTED = (
    f"an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, a glob pattern, a .txt list of images, "
    f"a video ({', '.join(VIDEO_EXTENSIONS)}), webcam:N for a camera, or a URL ({', '.join(STREAM_PREFIXES)})"
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
    return f"{header.width}x{header.height} pixels is over the limit of {max_pixels} (--max-pixels)"


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
                return None, "a folder, not an image file (pass a folder as --source itself)"
            return None, "file not found"
        if is_video_file(path):
            return None, "a video, not an image (pass a video as --source on its own)"
        return path.read_bytes(), ""
    except OSError as e:  # a read error; also a name too long for the file system
        return None, f"cannot read file ({e.strerror or e})"


def _expand(text: str) -> Path:
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


def _utf8(path: Path) -> bool:
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
        ``(pages, "")``, or ``(None, reason)`` with a short one-line reason when the file cannot be read,
        is over ``max_pixels`` (checked from the header, before decoding), or cannot be decoded. A page of
        a multi-page TIFF that cannot be decoded ends its pages, and ``on_error`` gets the reason.
    """
    data, reason = _read_bytes(path)
    if data is None:
        return None, reason
    header, reason = _check_bytes(data, max_pixels)
    if reason:
        return None, reason
    if header is not None and header.pages > 1:
        return _tiff_pages(path, data, header.pages, on_error), ""
    image, reason = _imdecode(data)
    if image is None:
        return None, reason
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
    if not _utf8(path):
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
    return (None, reason) if reason else _imdecode(data)


# --------------------------------------------------------------------------------------------------
# Sources


class Source:
    """An iterable of :class:`Frame` over one input; use it as a context manager.

    Attributes:
        kind: ``"images"``, ``"video"`` or ``"stream"``.
        spec: the source as given (a string).
        stem: the name a video or stream's outputs take (``clip`` for ``clip.mp4``, ``webcam0``).
        fps: frames per second for video and stream sources (None when unknown or for images).
        size: (width, height) for video and stream sources (None for images, or when the capture does
            not say: a stream's first frame then tells).
        failures: ``(path, one-line reason)`` for every file or frame that could not be read,
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
        self.failures.append((path, reason))
        logger.warning("%s: %s", path, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, spec={self.spec!r})"


class ImageSource(Source):
    """A list of image files, decoded in order (every page of a multi-page TIFF, each as a frame).

    With ``single=True`` (the spec named one file) a file that cannot be read raises SourceError;
    otherwise it is skipped and recorded in ``failures``. ``max_pixels`` refuses, from the header and
    before decoding, an image with more pixels (a decompression bomb).
    """

    kind = "images"

    def __init__(self, spec: str, paths: list[Path], *, single: bool = False, root: Path | None = None,
                 max_frames: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 extra_inputs: tuple[Path, ...] = ()) -> None:
        super().__init__(spec, max_frames=max_frames)
        self.paths = paths
        self.single = single
        self.root = root
        self.max_pixels = max_pixels
        self._extra_inputs = list(extra_inputs)  # e.g. the .txt list itself

    @property
    def expected_frames(self) -> int:
        n = len(self.paths)
        return n if self.max_frames is None else min(n, self.max_frames)

    def input_files(self) -> list[Path]:
        return [*self.paths, *self._extra_inputs]

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        yielded = 0
        for i, path in enumerate(self.paths):
            if self.max_frames is not None and yielded >= self.max_frames:
                return
            pages, reason = read_pages(path, max_pixels=self.max_pixels,
                                       on_error=lambda why, path=path: self._fail(str(path), why))
            if pages is None:
                if self.single:
                    raise SourceError(f"cannot read image '{path}': {reason}; check the file "
                                      f"(re-export or re-download it) or pass another --source")
                self._fail(str(path), f"{reason}: skipped")
                continue
            for page in pages:
                if self.max_frames is not None and yielded >= self.max_frames:
                    return
                yielded += 1
                yield Frame(image=page.image, source=str(path), index=i, timestamp=None, kind="image",
                            alpha=page.alpha, page=page.page)


class UrlImageSource(Source):
    """One image fetched over http(s) (a URL whose path ends in an image extension), downloaded when the
    source opens (so a dead URL fails before any model loads) and decoded from memory."""

    kind = "images"

    def __init__(self, url: str, *, timeout: float = DEFAULT_STREAM_TIMEOUT,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(url)
        self.url = url
        self.timeout = timeout
        self.max_pixels = max_pixels
        self.stem = _url_stem(url)
        self._data: bytes | None = self._download()

    @property
    def expected_frames(self) -> int:
        return 1

    def close(self) -> None:
        self._data = None

    def _download(self) -> bytes:
        import urllib.error
        import urllib.request

        try:
            request = urllib.request.Request(self.url, headers={"User-Agent": f"poseapp/{__version__}"})
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http/s only)
                data = response.read(MAX_DOWNLOAD_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise SourceError(f"cannot fetch image '{self.url}': HTTP {e.code} {e.reason}; check the URL "
                              f"(--source)") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            if isinstance(why, TimeoutError) or "timed out" in str(why):
                why = f"no answer within {self.timeout:g} s (--stream-timeout)"
            raise SourceError(f"cannot fetch image '{self.url}': {why}; check the URL and the network "
                              f"(--source)") from e
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise SourceError(f"image '{self.url}' is over {MAX_DOWNLOAD_BYTES >> 20} MB: download it and pass "
                              f"the file as --source")
        return data

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        data = self._data if self._data is not None else self._download()
        image, reason = decode_image_bytes(data, max_pixels=self.max_pixels)
        if image is None:
            raise SourceError(f"cannot read image '{self.url}': {reason}; check the URL or pass another --source")
        name = Path(urllib.parse.urlsplit(self.url).path).name or "image.jpg"
        yield Frame(image=image, source=name, index=0, timestamp=None, kind="image")


def _url_stem(url: str) -> str:
    """A file-name-safe stem for a URL's outputs: its path's last part without extension, else the host."""
    parts = urllib.parse.urlsplit(url)
    stem = Path(parts.path).stem or parts.hostname or "stream"
    return re.sub(r"[^\w.-]+", "_", stem).strip("_.") or "stream"


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
        while self.max_frames is None or yielded < self.max_frames:
            t0 = time.monotonic()
            if not cap.grab():
                self._ended_at = n
                self._stalled = self.timeout is not None and time.monotonic() - t0 >= 0.9 * self.timeout
                return
            if n % self.vid_stride == 0:
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
    Frame.timestamp = index / fps (None when the file states no fps)."""

    kind = "video"

    def __init__(self, path: Path, *, vid_stride: int = 1, max_frames: int | None = None) -> None:
        self.path = path
        if not _utf8(path):
            raise SourceError(f"cannot open video {str(path)!r}: its name is not valid UTF-8, which OpenCV cannot "
                              f"open; rename the file")
        super().__init__(str(path), str(path), str(path), vid_stride=vid_stride, max_frames=max_frames)
        self.stem = path.stem

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
            if yielded == 0:
                raise SourceError(f"video '{self.path}' holds no frame OpenCV can decode; re-encode it (e.g. "
                                  f"H.264 mp4) or pass another --source")
            if self._ended_at is not None and self.frame_count and self._ended_at < self.frame_count:
                self._fail(self.name, f"video ended early at frame {self._ended_at} of {self.frame_count}")
        finally:
            self.close()


class StreamSource(_CaptureSource):
    """A webcam or a stream URL.

    Frame.timestamp is seconds from the first frame: the stream's own clock (its presentation times)
    when its positions advance from the first frame to the second, else the monotonic clock; the clock
    chosen then stays. A URL stream that does not answer, or stops delivering
    frames, for ``timeout`` seconds ends with one line (``--stream-timeout``).
    """

    kind = "stream"

    def __init__(self, target: str | int, *, vid_stride: int = 1, max_frames: int | None = None,
                 timeout: float = DEFAULT_STREAM_TIMEOUT) -> None:
        name = f"webcam:{target}" if isinstance(target, int) else target
        super().__init__(str(target), target, name, vid_stride=vid_stride, max_frames=max_frames,
                         timeout=timeout)
        self.stem = f"webcam{target}" if isinstance(target, int) else _url_stem(target)

    def _open_error(self) -> SourceError:
        if isinstance(self._target, int):
            return SourceError(f"webcam {self._target} cannot be opened: no camera at that index (check --source)")
        if self.timeout is not None and self._open_seconds >= 0.9 * self.timeout:
            return SourceError(f"stream '{self._target}' did not answer within {self.timeout:g} s: check the URL "
                               f"and the network (--source), or wait longer with --stream-timeout")
        return SourceError(f"stream '{self._target}' cannot be opened: unreachable, wrong URL or unsupported "
                           f"protocol (check the URL and the network, then --source)")

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
                                          f"(ended; --stream-timeout waits longer)")
                elif yielded == 0:
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


def _folder_source(folder: Path, recursive: bool, max_frames: int | None, max_pixels: int) -> ImageSource:
    paths = _images_in_folder(folder, recursive)
    if not paths:
        hint = "" if recursive else "; add --recursive to look in sub-folders"
        if any(is_video_file(p) for p in folder.iterdir()):
            hint = "; it holds videos: pass a video file itself as --source"
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
            p = _expand(line)
            paths.append(p if p.is_absolute() else txt.parent / p)
    if not paths:
        raise SourceError(f"list file '{txt}' names no images; write one image path per line")
    return ImageSource(str(txt), paths, max_frames=max_frames, max_pixels=max_pixels, extra_inputs=(txt,))


def _file_source(path: Path, vid_stride: int, max_frames: int | None, max_pixels: int) -> Source:
    ext = _ext(path)
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
        raise SourceError(f"--vid-stride must be 1 or more (got {vid_stride})")
    if max_frames is not None and max_frames < 1:
        raise SourceError(f"--max-frames must be 1 or more (got {max_frames})")
    if max_pixels < 1:
        raise SourceError(f"--max-pixels must be 1 or more (got {max_pixels})")
    if not stream_timeout > 0:
        raise SourceError(f"--stream-timeout must be more than 0 seconds (got {stream_timeout})")
    if isinstance(spec, bool):
        raise SourceError(f"source {spec!r} is not a source; pass {_ACCEPTED}")
    if isinstance(spec, int):
        return StreamSource(spec, vid_stride=vid_stride, max_frames=max_frames)
    text = str(spec)
    if not text.strip():
        raise SourceError(f"--source is empty: pass {_ACCEPTED}")
    if "\0" in text:
        raise SourceError(f"source {text!r} has a NUL byte; pass {_ACCEPTED}")
    path = _expand(text)
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
