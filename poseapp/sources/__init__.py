"""One iterator abstraction for every source kind (after ultralytics ``data/loaders.py``).

``open_source(spec)`` turns what the user typed after ``--source`` into a :class:`Source`: a context
manager that yields :class:`poseapp.results.Frame` values, whatever the input is:

========  =====================================================================================
kind      specs
========  =====================================================================================
image     an image file (a multi-page TIFF: one frame per page); a folder of images; a glob pattern;
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

Modules: ``decode`` (one image file), ``base`` (:class:`Source`), ``images`` (files and image URLs),
``capture`` (videos, webcams, streams), ``spec`` (:func:`open_source`).
"""
from __future__ import annotations

from poseapp.sources.base import DEFAULT_STREAM_TIMEOUT, STREAM_PREFIXES, Source
from poseapp.sources.capture import StreamSource, VideoSource
from poseapp.sources.decode import (DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Decoded, ImageHeader,
                                    decode_image_bytes, is_image_file, is_video_file, read_header, read_image,
                                    read_pages)
from poseapp.sources.images import MAX_DOWNLOAD_BYTES, ImageSource, UrlImageSource
from poseapp.sources.spec import open_source

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_STREAM_TIMEOUT", "Decoded", "IMAGE_EXTENSIONS", "ImageHeader", "ImageSource",
           "MAX_DOWNLOAD_BYTES", "STREAM_PREFIXES", "Source", "StreamSource", "UrlImageSource", "VIDEO_EXTENSIONS",
           "VideoSource", "decode_image_bytes", "is_image_file", "is_video_file", "open_source", "read_header",
           "read_image", "read_pages"]
