"""Fuzzing the readers a user feeds: image files, ``--boxes`` JSON, ``eval --predictions`` JSON, .txt lists.

README's promise is that a user mistake is one line naming the file and the fix, never a traceback. So each
reader gets generated files (hypothesis, derandomized: CI sees the same examples on every run) and must
either return a valid result or raise a :class:`~poseapp.errors.PoseAppError` whose message is one line:

- ``read_image(path)`` never raises: ``(uint8 (H, W, 3), "")`` or ``(None, one-line reason)``. Inputs: random
  bytes, format magic followed by junk, and small PNG/JPEG/BMP/TIFF/WebP/GIF encodings (OpenCV and Pillow,
  several modes) cut short, with bytes flipped, inserted or deleted, or with their header's width and height
  patched (a PNG's IHDR with its CRC recomputed, a JPEG's SOF, a BMP's, TIFF's, WebP's or GIF's fields).
- ``BoxesFile(path)`` and its ``for_source``: any JSON value, near-valid detection entries and COCO
  annotation dicts whose fields take every JSON type (NaN and infinities as literals and as strings, numbers
  too large for a float or an int64, 5000-digit integers), non-UTF-8 and invalid bytes: DetectorError.
- ``read_predictions(path)`` the same way, with near-valid COCO keypoint results: DatasetError.
- ``open_source(list.txt)``, iterated to the end: random lines (paths to small real images, missing and
  absolute paths, comments, NUL bytes, very long lines, ``~user`` paths, non-UTF-8 bytes): frames are uint8
  (H, W, 3), each listed path is a frame or a one-line failure, or the list raises SourceError.

Declared image sizes skip (2**24, 2**30] pixels: under the pixel limit (``max_pixels``) and OpenCV's own
(2**30), a header's size is believed and the file really decoded (a JPEG whose header says 16383 x 16383:
3.5 s and 1.6 GB here, grey below its real rows): a limit's business, too slow for a fuzz example. Each
crash fuzzing found is also a named regular test beside its reader's fuzz test (the smallest input).
"""
from __future__ import annotations

import io
import json
import math
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, needs_shared
from poseapp.boxes import BoxesFile, DetectorError
from poseapp.errors import PoseAppError, SourceError
from poseapp.evaluation.datasets import DatasetError
from poseapp.evaluation.runner import read_predictions
from poseapp.results import Detections
from poseapp.sources import open_source, read_image


def fuzz(examples: int):
    """Settings for a fuzz test: ``examples`` of them, the same ones every run, no per-example deadline (a
    shared 2-core machine is slow now and then). The folder fixtures are module-scoped, written once."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------------
# Helpers


def assert_one_line(error: BaseException, kind: type[PoseAppError] = PoseAppError) -> None:
    """``error`` is a ``kind`` (the reader's own PoseAppError) and its message is one non-empty line."""
    assert isinstance(error, kind), f"{type(error).__name__} instead of {kind.__name__}: {error!r}"
    message = str(error)
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)


def one_line_error(call, kind: type[PoseAppError]) -> str:
    """``call()`` raised a one-line ``kind``: its message."""
    with pytest.raises(kind) as e:
        call()
    assert_one_line(e.value, kind)
    return str(e.value)


def assert_valid_image(result) -> None:
    """read_image's contract: ``(uint8 (H, W, 3), "")`` or ``(None, one-line reason)``."""
    image, reason = result
    if image is None:
        assert isinstance(reason, str) and reason.strip() and "\n" not in reason and "\r" not in reason, reason
    else:
        assert reason == ""
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8, (type(image), getattr(image, "dtype", None))
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0, image.shape


def assert_valid_detections(d: Detections) -> None:
    """Boxes (N, 4) float32 finite xyxy with x2 >= x1, y2 >= y1; scores (N,) float32 finite; labels (N,) int64."""
    n = len(d.boxes)
    assert d.boxes.shape == (n, 4) and d.boxes.dtype == np.float32
    assert d.scores.shape == (n,) and d.scores.dtype == np.float32
    assert d.labels.shape == (n,) and d.labels.dtype == np.int64
    assert np.isfinite(d.boxes).all() and np.isfinite(d.scores).all(), (d.boxes, d.scores)
    assert (d.boxes[:, 2:] >= d.boxes[:, :2]).all(), d.boxes


def assert_valid_predictions(predictions, doc=None) -> None:
    """One KeypointPrediction per entry (``doc``, where known): int ids, a (4,) float32 box, float scores and
    area, (K, 2) float32 keypoints and (K,) float32 keypoint scores, K >= 1."""
    assert isinstance(predictions, list)
    if isinstance(doc, list):
        assert len(predictions) == len(doc)
    for p in predictions:
        for name in ("id", "image_id", "category_id"):
            value = getattr(p, name)
            assert isinstance(value, int) and not isinstance(value, bool), (name, value)
        assert isinstance(p.bbox_score, float) and isinstance(p.area, float)
        assert p.bbox.shape == (4,) and p.bbox.dtype == np.float32
        k = len(p.keypoints)
        assert k >= 1 and p.keypoints.shape == (k, 2) and p.keypoints.dtype == np.float32
        assert p.keypoint_scores.shape == (k,) and p.keypoint_scores.dtype == np.float32


def boxes_file(path: Path, source: str = "000000000785.jpg", **kw) -> Detections | None:
    """``BoxesFile(path, **kw).for_source(source)`` checked; None when it raised a one-line DetectorError."""
    try:
        boxes = BoxesFile(path, **kw)
    except PoseAppError as e:  # any other exception fails the test where it was raised
        assert_one_line(e, DetectorError)
        return None
    detections = boxes.for_source(source)
    assert_valid_detections(detections)
    return detections


def predictions_file(path: Path, doc=None) -> None:
    """``read_predictions(path)`` returns valid predictions or raises a one-line DatasetError."""
    try:
        predictions = read_predictions(path)
    except PoseAppError as e:
        assert_one_line(e, DatasetError)
        return
    assert_valid_predictions(predictions, doc)


def list_source(txt: Path) -> None:
    """``open_source(txt)`` iterated to the end: uint8 (H, W, 3) frames, every listed path a frame or a
    ``(path, one-line reason)`` failure; or a one-line SourceError."""
    try:
        with open_source(txt) as source:
            frames = list(source)
            failures = list(source.failures)
            listed = source.expected_frames
    except PoseAppError as e:
        assert_one_line(e, SourceError)
        return
    for frame in frames:
        assert isinstance(frame.image, np.ndarray) and frame.image.dtype == np.uint8
        assert frame.image.ndim == 3 and frame.image.shape[2] == 3, frame.image.shape
    for failure in failures:
        assert isinstance(failure, tuple) and len(failure) == 2 and all(isinstance(s, str) for s in failure)
        assert failure[1].strip() and "\n" not in failure[1] and "\r" not in failure[1], failure
    assert len({frame.index for frame in frames}) + len(failures) == listed  # a TIFF's pages share an index


class Raw:
    """A JSON token written as it is: ``1e999`` (a float infinity), a 5000-digit integer, ``-Infinity``... (not
    a str subclass: hypothesis takes those for strings it generated itself)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:  # hypothesis prints the strategies holding them: keep it short
        return f"Raw({self.token[:10]!r}{'...' if len(self.token) > 10 else ''})"


def dump(value) -> str:
    """``value`` as JSON text; NaN and infinities as Python writes them, Raw tokens as they are."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def nested(depth: int) -> str:
    """A list nested ``depth`` deep, as JSON text."""
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------------------------------
# Image encodings and header patches


def _cv2_encoder(ext: str, *params: int, dtype=np.uint8):
    def encode(bgr: np.ndarray) -> bytes:
        image = bgr.astype(dtype) * (257 if dtype == np.uint16 else 1)
        ok, buf = cv2.imencode(ext, image, list(params))
        assert ok, ext
        return buf.tobytes()

    return encode


def _pil_encoder(fmt: str, mode: str, **options):
    def encode(bgr: np.ndarray) -> bytes:
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).convert(mode).save(out, format=fmt, **options)
        return out.getvalue()

    return encode


ENCODERS = {  # format -> ways to write a small BGR image in it (OpenCV's, and Pillow's modes)
    "png": [_cv2_encoder(".png"), _cv2_encoder(".png", cv2.IMWRITE_PNG_COMPRESSION, 0),
            _cv2_encoder(".png", dtype=np.uint16), _pil_encoder("PNG", "P"), _pil_encoder("PNG", "1"),
            _pil_encoder("PNG", "RGBA"), _pil_encoder("PNG", "I;16")],
    "jpg": [_cv2_encoder(".jpg"), _cv2_encoder(".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
            _pil_encoder("JPEG", "CMYK"), _pil_encoder("JPEG", "L")],
    "bmp": [_cv2_encoder(".bmp"), _pil_encoder("BMP", "P"), _pil_encoder("BMP", "1"), _pil_encoder("BMP", "RGBA")],
    "tiff": [_cv2_encoder(".tiff"), _cv2_encoder(".tiff", dtype=np.uint16), _pil_encoder("TIFF", "1"),
             _pil_encoder("TIFF", "CMYK"), _pil_encoder("TIFF", "RGB", compression="tiff_deflate"),
             _pil_encoder("TIFF", "RGB", compression="jpeg"), _pil_encoder("TIFF", "RGB", compression="tiff_lzw")],
    "webp": [_cv2_encoder(".webp", cv2.IMWRITE_WEBP_QUALITY, 80), _cv2_encoder(".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
             _pil_encoder("WEBP", "RGBA")],
    "gif": [_pil_encoder("GIF", "P"), _pil_encoder("GIF", "L")],
}
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8", b"\xff\xd8\xff\xe0",
         b"\xff\xd8\xff\xd9", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
         b"RIFF\xff\xff\xff\xffWEBPVP8L", b"GIF89a", b"GIF87a"]  # each format's signature, before random bytes


def patch_png_size(data: bytearray, w: int, h: int, fix_crc: bool = True) -> None:
    """IHDR's width and height (uint32 BE), and its CRC recomputed so libpng reads on."""
    if data[12:16] == b"IHDR" and len(data) >= 33:
        data[16:24] = struct.pack(">II", w % 2**32, h % 2**32)
        if fix_crc:
            data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))


def patch_jpeg_size(data: bytearray, w: int, h: int) -> None:
    """The first SOFn segment's height and width (uint16 BE)."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data[i + 5:i + 9] = struct.pack(">HH", h % 2**16, w % 2**16)
            return
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")


def patch_bmp_size(data: bytearray, w: int, h: int) -> None:
    """BITMAPINFOHEADER's width and height (int32 LE; a negative height is a top-down image)."""
    if len(data) >= 26:
        data[18:26] = struct.pack("<ii", (w + 2**31) % 2**32 - 2**31, (h + 2**31) % 2**32 - 2**31)


def patch_tiff_size(data: bytearray, w: int, h: int) -> None:
    """The first IFD's ImageWidth and ImageLength, rewritten as LONG values."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    if order is None or len(data) < 8:
        return
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return
    for k in range(struct.unpack(order + "H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            return
        tag = struct.unpack(order + "H", data[entry:entry + 2])[0]
        if tag in (256, 257):
            data[entry + 2:entry + 12] = struct.pack(order + "HII", 4, 1, (w if tag == 256 else h) % 2**32)


def patch_webp_size(data: bytearray, w: int, h: int) -> None:
    """A VP8 frame's 14-bit sizes, a VP8L bitstream's 14-bit (size - 1) fields, or VP8X's 24-bit canvas."""
    chunk = bytes(data[12:16])
    if chunk == b"VP8 " and len(data) >= 30:
        data[26:30] = struct.pack("<HH", w % 2**14, h % 2**14)
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = struct.unpack("<I", data[21:25])[0] & ~0xFFFFFFF
        data[21:25] = struct.pack("<I", bits | ((w - 1) % 2**14) | (((h - 1) % 2**14) << 14))
    elif chunk == b"VP8X" and len(data) >= 30:
        data[24:30] = ((w - 1) % 2**24).to_bytes(3, "little") + ((h - 1) % 2**24).to_bytes(3, "little")


def patch_gif_size(data: bytearray, w: int, h: int) -> None:
    """The logical screen's size and the first image descriptor's (uint16 LE)."""
    if len(data) < 13:
        return
    data[6:10] = struct.pack("<HH", w % 2**16, h % 2**16)
    i = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while i < len(data) and data[i] == 0x21:  # extension blocks: introducer, label, sub-blocks
        i += 2
        while i < len(data) and data[i]:
            i += data[i] + 1
        i += 1
    if i + 9 <= len(data) and data[i] == 0x2C:
        data[i + 5:i + 9] = struct.pack("<HH", w % 2**16, h % 2**16)


PATCHERS = {"png": patch_png_size, "jpg": patch_jpeg_size, "bmp": patch_bmp_size, "tiff": patch_tiff_size,
            "webp": patch_webp_size, "gif": patch_gif_size}
SIDE_BITS = {"png": 31, "jpg": 16, "bmp": 31, "tiff": 32, "webp": 14, "gif": 16}
SIDES = [0, 1, 2, 255, 256, 4095, 16383, 40000, 65535, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1]


def outside_decoding_band(w: int, h: int, side_bits: int) -> tuple[int, int]:
    """(w, h) moved out of (2**24, 2**30] pixels (see the module docstring): the height is raised past
    OpenCV's limit (2**30 pixels) where the header's field can hold it, else lowered."""
    if 2**24 < w * h <= 2**30:
        taller = 2**30 // w + 1
        h = taller if taller < 2**side_bits else 2**24 // w
    return w, h


def one_in(draw, n: int) -> bool:
    """True about one time in ``n`` (``st.integers(1, n) == 1`` is far likelier: hypothesis favours bounds)."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


@st.composite
def small_images(draw) -> np.ndarray:
    """A BGR uint8 image, 1 to 16 pixels a side, random or flat pixels."""
    h, w = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    if draw(st.booleans()):
        return np.full((h, w, 3), draw(st.integers(0, 255)), np.uint8)
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (h, w, 3), dtype=np.uint8)


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` after 0 to 4 edits: cut, byte flipped or set, bytes inserted, a span deleted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        edit = draw(st.sampled_from(["cut", "flip", "set", "insert", "delete"]))
        if edit == "cut":
            del out[at:]
        elif edit == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif edit == "set" and out:
            out[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif edit == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "delete":
            del out[at:at + draw(st.integers(1, 64))]
    return bytes(out)


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    """(extension, bytes): a small encoding in one of the formats, maybe with the size in its header patched
    (both sides small, one or both huge), then edited."""
    fmt = draw(st.sampled_from(sorted(ENCODERS)))
    data = bytearray(draw(st.sampled_from(ENCODERS[fmt]))(draw(small_images())))
    sizes = draw(st.sampled_from(["as encoded", "small", "one huge", "both huge"]))
    if sizes != "as encoded":
        small, huge = st.integers(0, 64), st.sampled_from(SIDES)
        w, h = draw(huge if sizes == "both huge" else small), draw(small if sizes == "small" else huge)
        w, h = outside_decoding_band(*((h, w) if draw(st.booleans()) else (w, h)), SIDE_BITS[fmt])
        if fmt == "png":
            patch_png_size(data, w, h, fix_crc=not one_in(draw, 10))
        else:
            PATCHERS[fmt](data, w, h)
    ext = draw(st.sampled_from([fmt] * 4 + ["jpeg", "tif", "png", "jpg"]))  # mostly the matching extension
    return ext, draw(mutated(bytes(data)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder per module for the files the examples write (each example overwrites its own)."""
    return tmp_path_factory.mktemp("fuzz")


# --------------------------------------------------------------------------------------------------
# 1. Image files: read_image(path)


@fuzz(400)
@given(ext=st.sampled_from(["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"]),
       head=st.sampled_from([b""] + MAGIC), tail=st.binary(max_size=300))
def test_read_image_on_random_bytes(folder, ext, head, tail):
    path = folder / f"random.{ext}"
    path.write_bytes(head + tail)
    assert_valid_image(read_image(path))


@fuzz(1500)
@given(file=image_files())
def test_read_image_on_mutated_encodings(folder, file):
    ext, data = file
    path = folder / f"mutated.{ext}"
    path.write_bytes(data)
    assert_valid_image(read_image(path))


@needs_shared
@fuzz(150)
@given(data=st.data())
def test_read_image_on_mutated_coco_photos(folder, data):
    """The same edits on real 640 x 480 COCO photos (longer scans, real Huffman tables and APP segments)."""
    photo = data.draw(st.sampled_from(sorted((DATA / "coco").glob("*.jpg"))))
    path = folder / "photo.jpg"
    path.write_bytes(data.draw(mutated(photo.read_bytes())))
    assert_valid_image(read_image(path))


def test_read_image_png_declaring_40000_by_40000(folder):
    """cv2.imread raised cv2.error (over CV_IO_MAX_IMAGE_PIXELS) out of read_image."""
    data = bytearray(ENCODERS["png"][0](np.zeros((2, 2, 3), np.uint8)))
    patch_png_size(data, 40000, 40000)
    path = folder / "huge.png"
    path.write_bytes(bytes(data))
    image, reason = read_image(path)
    assert image is None
    assert_valid_image((image, reason))


def test_read_image_bmp_one_pixel_wide_and_2_to_the_24_high(folder):
    """cv2.imread raised cv2.error (over CV_IO_MAX_IMAGE_HEIGHT): 16.8 M pixels, under any pixel limit."""
    data = bytearray(ENCODERS["bmp"][0](np.zeros((1, 1, 3), np.uint8)))
    patch_bmp_size(data, 1, 2**24)
    path = folder / "tall.bmp"
    path.write_bytes(bytes(data))
    image, reason = read_image(path)
    assert image is None
    assert_valid_image((image, reason))


def test_unmutated_encodings_decode():
    """The fuzz's starting points are real images: each encoder's output reads back at its size."""
    image = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for fmt, encoders in ENCODERS.items():
        for encode in encoders:
            decoded = cv2.imdecode(np.frombuffer(encode(image), np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None and decoded.shape == (6, 10, 3), fmt


def test_header_patches_change_the_declared_size():
    """Each patcher writes where decoders read the size: Pillow's header parser (which decodes no pixels)
    reads 300 x 200 back from every encoder's output."""
    from PIL import Image

    image = np.full((6, 10, 3), 100, np.uint8)
    for fmt, encoders in ENCODERS.items():
        for encode in encoders:
            data = bytearray(encode(image))
            PATCHERS[fmt](data, 300, 200)
            assert Image.open(io.BytesIO(bytes(data))).size == (300, 200), fmt


# --------------------------------------------------------------------------------------------------
# JSON documents

EDGE_NUMBERS = [0, -1, 1, 785, 2**31, 2**63, -2**63 - 1, 2**64, 10**400, 1.5, -0.0, 1e308, 3.5e38, 1e39,
                math.nan, math.inf, -math.inf, Raw("1e999"), Raw("-1e999"), Raw("9" * 5000), Raw("-0"),
                Raw("NaN"), Raw("-Infinity"), "1", "0.5", "nan", "inf", "-inf", "Infinity", "1e999", "1_0", "²",
                "١٢", " 7 ", "", "0x10", True, False, None]
numbers = (st.sampled_from(EDGE_NUMBERS) | st.integers(-10, 1000) | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True))
names = st.sampled_from(["000000000785.jpg", "x/000000000785.jpg", "000000000785", "785", "", "/", ".", "a\x00b",
                         "..", "²", "٧٨٥", "000000000785.jpg\n"]) | st.text(max_size=12)
json_scalars = st.none() | st.booleans() | numbers | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["image_id", "bbox", "score", "keypoints", "id", "images", "annotations"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
ids = st.sampled_from([785, "785", "000000000785", "000000000785.jpg", "x/000000000785.jpg", 786]) | names | numbers
valid_bboxes = st.lists(st.floats(0, 1000), min_size=4, max_size=4)
bboxes = (valid_bboxes | st.lists(numbers, max_size=6) | st.lists(st.lists(numbers, max_size=3), max_size=4)
          | numbers | st.text(max_size=6) | st.dictionaries(st.text(max_size=2), numbers, max_size=4))


@st.composite
def near_valid(draw, valid: st.SearchStrategy[dict], weird: dict, drop_one_in: int = 10) -> dict:
    """A ``valid`` dict with 0 to 3 fields given a ``weird`` value (name -> values; a name may be new), a
    field dropped one time in ``drop_one_in``, another key added one time in ten: most examples get to the
    deep checks."""
    entry = draw(valid)
    for name in draw(st.lists(st.sampled_from(sorted(weird)), max_size=3, unique=True)):
        entry[name] = draw(weird[name])
    if entry and one_in(draw, drop_one_in):
        del entry[draw(st.sampled_from(sorted(entry)))]
    if one_in(draw, 10):
        entry[draw(st.text(max_size=6))] = draw(json_scalars)
    return entry


@st.composite
def raw_documents(draw) -> bytes:
    """Bytes that are not JSON, nor UTF-8, or hit the parser's limits (deep nesting, 5000-digit integers)."""
    kind = draw(st.sampled_from(["bytes", "not utf-8", "utf-16", "bom", "cut", "deep", "digits"]))
    text = dump(draw(json_values))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "not utf-8":
        return text.encode("utf-8") + b"\xff\xfe\x80" + text.encode("utf-8")
    if kind == "utf-16":
        return text.encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if kind == "cut":
        return text.encode("utf-8")[: draw(st.integers(0, len(text)))]
    if kind == "deep":
        return nested(draw(st.sampled_from([1, 100, 999, 1000, 5000, 100_000]))).encode()
    return f"[{'9' * draw(st.sampled_from([4299, 4300, 4301, 10_000]))}]".encode()


def write_document(path: Path, doc) -> Path:
    path.write_bytes(doc if isinstance(doc, bytes) else dump(doc).encode("utf-8", "surrogatepass"))
    return path


# --------------------------------------------------------------------------------------------------
# 2. --boxes JSON: BoxesFile(path).for_source(name)

box_entries = near_valid(
    st.fixed_dictionaries({"image_id": st.sampled_from([785, "785", "000000000785", "x/000000000785.jpg", 786]),
                           "bbox": valid_bboxes, "score": st.floats(0, 1), "category_id": st.integers(1, 90)}),
    {"image_id": ids, "file_name": names, "image": names, "bbox": bboxes, "score": numbers, "category_id": numbers})
coco_images = st.lists(near_valid(st.fixed_dictionaries({"id": st.sampled_from([785, 786]) | st.integers(0, 10**6),
                                                          "file_name": st.sampled_from(["000000000785.jpg", "a.jpg"])}),
                                  {"id": ids, "file_name": names}), max_size=4)


@st.composite
def boxes_documents(draw):
    """Mostly lists of near-valid entries, then COCO annotation dicts, any JSON value, raw bytes."""
    kind = draw(st.sampled_from(["entries"] * 5 + ["annotations"] * 2 + ["json", "raw"]))
    if kind == "entries":
        return draw(st.lists(box_entries, max_size=6))
    if kind == "annotations":
        doc = {"annotations": draw(st.lists(box_entries, max_size=4) | json_values)}
        if not one_in(draw, 10):
            doc["images"] = draw(coco_images | json_values)
        return doc
    return draw(json_values if kind == "json" else raw_documents())


frame_names = st.sampled_from(["000000000785.jpg"] * 4 + ["785.png", "a.jpg", "/x/y/000000000786.jpg"]) | names.map(
    lambda name: name + ".jpg")
ann_files = st.sampled_from([False] * 4 + [True]).flatmap(  # --boxes' ann_file, one time in five
    lambda given: st.fixed_dictionaries({"images": coco_images | json_values}) if given else st.none())


@fuzz(1000)
@given(doc=boxes_documents(), source=frame_names, ann=ann_files)
def test_boxes_file(folder, doc, source, ann):
    options = {"ann_file": write_document(folder / "ann.json", ann)} if ann is not None else {}
    boxes_file(write_document(folder / "boxes.json", doc), source, **options)


def entry(**fields) -> list[dict]:
    """A boxes file's one entry: image 785, a valid box, unless ``fields`` say otherwise."""
    return [{"image_id": 785, "bbox": [1, 2, 3, 4], "score": 0.9, "category_id": 1, **fields}]


@pytest.mark.parametrize("text", [
    pytest.param("[" + "9" * 5000 + "]", id="5000-digit-integer"),  # ValueError: Python's 4300-digit int() limit
    pytest.param(nested(100_000), id="nested-100000-deep"),  # RecursionError
])
def test_boxes_file_beyond_the_json_parser_limits(folder, text):
    path = folder / "limits.json"
    path.write_text(text)
    message = one_line_error(lambda: BoxesFile(path), DetectorError)
    assert str(path) in message and "not valid JSON" in message


@pytest.mark.parametrize("doc", [
    entry(category_id=1e300), entry(category_id=Raw("Infinity")), entry(category_id=2**70),
    entry(score=10**400), entry(bbox=[10**400, 0, 1, 1]),
], ids=["category_id-1e300", "category_id-Infinity", "category_id-2**70", "score-10**400", "bbox-10**400"])
def test_boxes_file_numbers_out_of_range(folder, doc):  # OverflowError: int64, or a float from an int
    path = write_document(folder / "range.json", doc)
    assert "entry 0" in one_line_error(lambda: BoxesFile(path), DetectorError)


@pytest.mark.parametrize("bbox", [[3e38, 0, 3e38, 1], [1e39, 0, 1, 1]])
def test_boxes_file_box_beyond_float32(folder, bbox):
    """Finite in the file, infinite once float32 (the box the crop would get)."""
    path = write_document(folder / "float32.json", entry(bbox=bbox))
    assert "entry 0: bbox" in one_line_error(lambda: BoxesFile(path), DetectorError)


@pytest.mark.parametrize("score", [Raw("NaN"), "inf", 1e39], ids=["NaN", "inf-string", "1e39"])
def test_boxes_file_score_not_finite(folder, score):
    """NaN was kept as a score (and silently dropped by min_score), 1e39 became inf with a numpy warning."""
    path = write_document(folder / "score.json", entry(score=score))
    assert "entry 0 has the score" in one_line_error(lambda: BoxesFile(path), DetectorError)


def test_boxes_file_bbox_string_is_not_four_numbers(folder):
    """``"1234"`` was read as the box [1, 2, 3, 4]."""
    path = write_document(folder / "string.json", entry(bbox="1234"))
    assert "bbox must be 4 finite numbers" in one_line_error(lambda: BoxesFile(path), DetectorError)


def test_boxes_file_image_id_of_non_ascii_digits(folder):
    """``"\u00b2".isdigit()`` is true but ``int("\u00b2")`` raises ValueError: such an id is a name."""
    path = write_document(folder / "digits.json", entry(image_id="\u00b2"))
    assert len(boxes_file(path, "\u00b2.jpg")) == 1 and len(boxes_file(path, "2.jpg")) == 0


def test_boxes_file_frame_named_with_non_ascii_digits(folder):
    """for_source("\u00b2.jpg") raised ValueError (the stem ``isdigit``)."""
    path = write_document(folder / "frame.json", entry(image_id=2))
    assert len(boxes_file(path, "\u00b2.jpg")) == 0 and len(boxes_file(path, "2.jpg")) == 1


def test_boxes_file_annotation_image_id_infinity(folder):  # OverflowError in int(inf)
    path = write_document(folder / "ann.json", {"annotations": entry(), "images": [{"id": Raw("Infinity"),
                                                                                    "file_name": "a.jpg"}]})
    assert "'images' entry" in one_line_error(lambda: BoxesFile(path), DetectorError)


# --------------------------------------------------------------------------------------------------
# 3. eval --predictions JSON: read_predictions(path)

keypoint_lists = (st.integers(0, 20).flatmap(lambda k: st.lists(st.floats(-1e4, 1e4), min_size=3 * k, max_size=3 * k))
                  | st.lists(numbers, max_size=10) | st.lists(st.lists(numbers, max_size=4), max_size=4)
                  | numbers | st.text(max_size=9) | st.dictionaries(st.text(max_size=2), numbers, max_size=3))
valid_prediction = st.fixed_dictionaries({
    "image_id": st.integers(0, 10**6), "category_id": st.integers(1, 90),
    "keypoints": st.integers(1, 17).flatmap(lambda k: st.lists(st.floats(0, 1000), min_size=3 * k, max_size=3 * k)),
    "score": st.floats(0, 1), "id": st.integers(0, 10**6), "bbox": valid_bboxes, "bbox_score": st.floats(0, 1),
    "area": st.floats(0, 1e6)})
prediction_entries = near_valid(valid_prediction, {
    "image_id": ids, "category_id": numbers, "keypoints": keypoint_lists, "score": numbers, "id": ids,
    "bbox": bboxes, "bbox_score": numbers | bboxes, "area": numbers | bboxes}, drop_one_in=40)  # any gone: not read


@st.composite
def predictions_documents(draw):
    """Mostly lists of near-valid COCO keypoint results, then any JSON value, raw bytes."""
    kind = draw(st.sampled_from(["entries"] * 6 + ["json", "raw"]))
    if kind == "entries":
        return draw(st.lists(prediction_entries, max_size=5))
    return draw(json_values if kind == "json" else raw_documents())


@fuzz(1000)
@given(doc=predictions_documents())
def test_read_predictions(folder, doc):
    predictions_file(write_document(folder / "predictions.json", doc), doc)


@fuzz(30)
@given(doc=st.lists(valid_prediction, min_size=1, max_size=5))
def test_read_predictions_reads_valid_files(folder, doc):
    """The near-valid generator's starting point is read as it is (so the fuzz does reach the parsing)."""
    predictions = read_predictions(write_document(folder / "valid.json", doc))
    assert_valid_predictions(predictions, doc)
    assert [p.id for p in predictions] == [d["id"] for d in doc]


def prediction(**fields) -> list[dict]:
    """A predictions file's one entry, as ``eval --json`` writes it, unless ``fields`` say otherwise."""
    return [{"image_id": 785, "category_id": 1, "keypoints": [10.0, 20.0, 0.9] * 17, "score": 0.8, "id": 3,
             "bbox": [1.0, 2.0, 30.0, 40.0], "bbox_score": 0.95, "area": 1500.0, **fields}]


def test_read_predictions_nested_too_deep(folder):  # RecursionError from the JSON parser
    path = write_document(folder / "deep.json", nested(100_000).encode())
    assert str(path) in one_line_error(lambda: read_predictions(path), DatasetError)


@pytest.mark.parametrize("field, value", [
    pytest.param("keypoints", [1.0, 2.0], id="keypoints-not-3K"),  # ValueError: cannot reshape into (-1, 3)
    pytest.param("keypoints", ["x", "y", "z"], id="keypoints-strings"),  # ValueError: could not convert
    pytest.param("keypoints", {"x": 1}, id="keypoints-dict"),  # TypeError
    pytest.param("keypoints", [[1, 2, 3], [4, 5]], id="keypoints-ragged"),  # ValueError: inhomogeneous shape
    pytest.param("keypoints", [10**400, 0, 1], id="keypoints-10**400"),  # OverflowError
    pytest.param("keypoints", [], id="keypoints-empty"),  # read as K = 0
    pytest.param("keypoints", [[]], id="keypoints-empty-list"),  # the same
    pytest.param("bbox", [1, 2, 3], id="bbox-3-values"),  # ValueError: not enough values to unpack
    pytest.param("bbox", 5, id="bbox-number"),  # TypeError: cannot unpack
    pytest.param("bbox", "abcd", id="bbox-letters"),  # ValueError: 'a' + 'c' is 'ac', not a float
    pytest.param("bbox", "1234", id="bbox-digits"),  # read as the box [1, 2, 13, 24]
    pytest.param("id", "x", id="id-letter"),  # ValueError
    pytest.param("id", Raw("Infinity"), id="id-Infinity"),  # OverflowError
    pytest.param("image_id", None, id="image_id-null"),  # TypeError
    pytest.param("category_id", [1], id="category_id-list"),  # TypeError
    pytest.param("bbox_score", "high", id="bbox_score-word"),  # ValueError
    pytest.param("bbox_score", [1, 2], id="bbox_score-list"),  # TypeError: only 0-dimensional arrays
    pytest.param("area", {}, id="area-dict"),  # TypeError
    pytest.param("bbox_score", 1e300, id="bbox_score-1e300"),  # infinite once float32, with a numpy warning
    pytest.param("keypoints", [1e39, 0, 1], id="keypoints-1e39"),  # the same
    pytest.param("bbox", [3e38, 0, 3e38, 1], id="bbox-x2-beyond-float32"),  # the same for x + w
])
def test_read_predictions_malformed_field(folder, field, value):
    """Each raised TypeError, ValueError or OverflowError out of read_predictions, or was read as shown."""
    path = write_document(folder / "malformed.json", prediction(**{field: value}))
    message = one_line_error(lambda: read_predictions(path), DatasetError)
    assert str(path) in message and f"entry 0 has {field}" in message


# --------------------------------------------------------------------------------------------------
# 4. .txt source lists: open_source(list.txt)


@pytest.fixture(scope="module")
def list_folder(tmp_path_factory) -> Path:
    """A folder with the files list lines name: two good images, a 2-page TIFF, a 2-frame GIF, a cut JPEG, an
    empty PNG, a sub-folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("lists")
    (root / "sub").mkdir()
    assert cv2.imwrite(str(root / "good.png"), np.full((6, 8, 3), 50, np.uint8))
    assert cv2.imwrite(str(root / "sub" / "good.jpg"), np.full((9, 5, 3), 200, np.uint8))
    pages = [Image.new("RGB", (7, 4), (i * 90, 0, 0)) for i in range(2)]
    pages[0].save(root / "pages.tiff", save_all=True, append_images=pages[1:])
    pages[0].save(root / "anim.gif", save_all=True, append_images=pages[1:])
    jpeg = (root / "sub" / "good.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "empty.png").write_bytes(b"")
    return root


def list_lines(root: Path) -> st.SearchStrategy[str]:
    real = ["good.png", "./good.png", "sub/good.jpg", "sub/../good.png", "  good.png\t", "pages.tiff", "anim.gif",
            "cut.jpg", "empty.png", "sub", ".", "list.txt", str(root / "good.png"), str(root / "sub" / "good.jpg"),
            str(root / "cut.jpg")]
    odd = ["missing.jpg", "/nonexistent/x.png", "# a comment", "#good.png", "", "   ", "*.png", "good.png\x00",
           "\x00", "~", "~/missing.jpg", "~nosuchuser_poseapp/x.jpg", "a" * 255, "a" * 256 + ".jpg",
           "x/" * 2100 + "x.jpg", "/", "\\\\server\\share\\x.jpg", "C:\\x.jpg", "file:///x.jpg"]
    return st.sampled_from(real) | st.sampled_from(odd) | st.text(max_size=30)


@st.composite
def list_files(draw, root: Path) -> bytes:
    """A .txt list: lines joined by \\n, \\r\\n or \\r, in UTF-8 with maybe a BOM or an invalid byte, in UTF-16,
    or random bytes."""
    lines = draw(st.lists(list_lines(root), max_size=8))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    data = text.encode("utf-8", "surrogatepass")
    kind = draw(st.sampled_from(["utf8"] * 6 + ["invalid", "utf16", "bom", "binary"]))
    if kind == "invalid":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"])) + data[at:]
    elif kind == "utf16":
        data = text.encode("utf-16", "surrogatepass")
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "binary":
        data = draw(st.binary(max_size=100))
    return data


@fuzz(400)
@given(data=st.data())
def test_list_source(list_folder, data):
    txt = list_folder / "list.txt"
    txt.write_bytes(data.draw(list_files(list_folder)))
    list_source(txt)


@pytest.mark.parametrize("line", ["a" * 256 + ".jpg", "x/" * 2100 + "x.jpg"], ids=["name-over-255", "path-over-4096"])
def test_list_source_line_longer_than_the_system_allows(list_folder, line):
    """OSError (ENAMETOOLONG) out of Path.is_file while iterating: the line must be a failure like a missing
    file, and the list's other images still frames."""
    txt = list_folder / "long.txt"
    txt.write_text(f"good.png\n{line}\n")
    list_source(txt)
    with open_source(txt) as source:
        assert len(list(source)) == 1 and len(source.failures) == 1


def test_list_source_line_naming_an_unknown_users_home(list_folder):
    """RuntimeError ("Could not determine home directory") out of Path.expanduser for ``~nosuchuser/x.jpg``."""
    txt = list_folder / "home.txt"
    txt.write_text("good.png\n~nosuchuser_poseapp/x.jpg\n")
    list_source(txt)


def test_list_source_reads_the_listed_images(list_folder):
    """The fuzz's real lines do name images: relative, absolute and padded lines give frames, others failures."""
    txt = list_folder / "plain.txt"
    txt.write_text(f"good.png\n# comment\n\n  sub/good.jpg  \n{list_folder / 'good.png'}\ncut.jpg\nmissing.jpg\n")
    with open_source(txt) as source:
        shapes = [frame.image.shape for frame in source]
        failures = source.failures
    assert shapes == [(6, 8, 3), (9, 5, 3), (6, 8, 3)]
    assert [Path(p).name for p, _ in failures] == ["cut.jpg", "missing.jpg"]
