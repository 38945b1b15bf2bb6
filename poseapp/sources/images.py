"""Image sources: a list of files (every page of a multi-page TIFF a frame), and one image URL."""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Iterator

from poseapp import __version__
from poseapp.errors import SourceError, arg, marked_form
from poseapp.results import Frame
from poseapp.sources.base import DEFAULT_STREAM_TIMEOUT, Source, url_stem
from poseapp.sources.decode import DEFAULT_MAX_PIXELS, decode_image_bytes, read_pages

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # an image URL larger than this is refused


class ImageSource(Source):
    """A list of image files, decoded in order (every page of a multi-page TIFF, each as a frame).

    With ``single=True`` (the spec named one file) a file that cannot be read raises SourceError;
    otherwise it is skipped and recorded in ``failures``. ``max_pixels`` refuses, from the header and
    before decoding, an image with more pixels (a decompression bomb). ``first_index`` is the
    ``Frame.index`` of the first path (a shard of a longer list keeps the list's numbering).
    """

    kind = "image"

    def __init__(self, spec: str, paths: list[Path], *, single: bool = False, root: Path | None = None,
                 max_frames: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 extra_inputs: tuple[Path, ...] = (), first_index: int = 0) -> None:
        super().__init__(spec, max_frames=max_frames)
        self.first_index = first_index
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
                    why = marked_form(reason)
                    fix = (f"raise {arg('max_pixels')} if the image is meant to be that large" if arg("max_pixels")
                           in why else "check the file (re-export or re-download it)")
                    raise SourceError(f"cannot read image '{path}': {why}; {fix} or pass another {arg('source')}")
                self._fail(str(path), f"{marked_form(reason)}: skipped")
                continue
            for page in pages:
                if self.max_frames is not None and yielded >= self.max_frames:
                    return
                yielded += 1
                yield Frame(image=page.image, source=str(path), index=self.first_index + i, timestamp=None,
                            kind="image",
                            alpha=page.alpha, page=page.page)


class UrlImageSource(Source):
    """One image fetched over http(s) (a URL whose path ends in an image extension), downloaded when the
    source opens (so a dead URL fails before any model loads) and decoded from memory."""

    kind = "image"

    def __init__(self, url: str, *, timeout: float = DEFAULT_STREAM_TIMEOUT,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(url)
        self.url = url
        self.timeout = timeout
        self.max_pixels = max_pixels
        self.stem = url_stem(url)
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
                              f"({arg('source')})") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            if isinstance(why, TimeoutError) or "timed out" in str(why):
                why = f"no answer within {self.timeout:g} s ({arg('stream_timeout')})"
            raise SourceError(f"cannot fetch image '{self.url}': {why}; check the URL and the network "
                              f"({arg('source')})") from e
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise SourceError(f"image '{self.url}' is over {MAX_DOWNLOAD_BYTES >> 20} MB: download it and pass "
                              f"the file as {arg('source')}")
        return data

    def __iter__(self) -> Iterator[Frame]:
        self.failures = []
        data = self._data if self._data is not None else self._download()
        image, reason = decode_image_bytes(data, max_pixels=self.max_pixels)
        if image is None:
            raise SourceError(f"cannot read image '{self.url}': {marked_form(reason)}; check the URL or pass another "
                              f"{arg('source')}")
        name = Path(urllib.parse.urlsplit(self.url).path).name or "image.jpg"
        yield Frame(image=image, source=name, index=0, timestamp=None, kind="image")
