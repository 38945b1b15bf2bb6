"""Sources: every kind yields the right Frames; bad inputs are skipped or raise SourceError naming the path."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, make_truncated_avi, needs_shared
from poseapp.errors import SourceError
from poseapp.sources import IMAGE_EXTENSIONS, StreamSource, open_source
from poseapp.sources.decode import _jpeg_truncated

COCO = sorted((DATA / "coco").glob("*.jpg"))
POSETRACK_MP4 = DATA / "posetrack18" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
DEMO_MP4 = DATA / "demo" / "demo.mp4"


def _write_png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> np.ndarray:
    """A small synthetic image (w, h) written losslessly; returns its pixels."""
    image = np.full((size[1], size[0], 3), value, np.uint8)
    image[0, 0] = (1, 2, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return image


def _frames(spec, **kw):
    with open_source(spec, **kw) as src:
        return src, list(src)


# --------------------------------------------------------------------------------------------------
# Images


@needs_shared
def test_single_image_pixels_equal_imread():
    src, frames = _frames(COCO[0])
    assert src.kind == "image" and src.expected_frames == 1
    assert len(frames) == 1
    f = frames[0]
    np.testing.assert_array_equal(f.image, cv2.imread(str(COCO[0]), cv2.IMREAD_COLOR))
    assert f.source == str(COCO[0]) and f.index == 0 and f.timestamp is None and f.kind == "image"
    assert src.failures == []


@needs_shared
def test_folder_sorted_by_name():
    src, frames = _frames(DATA / "coco")
    assert [f.source for f in frames] == [str(p) for p in COCO]
    assert src.expected_frames == len(COCO) == 4


def test_folder_extensions_case_insensitive_and_non_images_ignored(tmp_path):
    _write_png(tmp_path / "b.PNG", 10)
    _write_png(tmp_path / "a.png", 20)
    (tmp_path / "notes.txt").write_text("not an image")
    src, frames = _frames(tmp_path)
    assert [Path(f.source).name for f in frames] == ["a.png", "b.PNG"]
    assert frames[0].image[1, 1, 0] == 20 and frames[1].image[1, 1, 0] == 10


def test_folder_recursive(tmp_path):
    _write_png(tmp_path / "top.png", 1)
    _write_png(tmp_path / "sub" / "a.png", 2)
    _write_png(tmp_path / "sub" / "deeper" / "z.png", 3)
    _, flat = _frames(tmp_path)
    assert [Path(f.source).name for f in flat] == ["top.png"]
    src, deep = _frames(tmp_path, recursive=True)
    rel = [Path(f.source).relative_to(tmp_path).as_posix() for f in deep]
    assert rel == ["sub/a.png", "sub/deeper/z.png", "top.png"]
    assert src.root == tmp_path


def test_glob(tmp_path):
    for i in range(3):
        _write_png(tmp_path / f"img{i}.png", i)
    _write_png(tmp_path / "other.png", 9)
    src, frames = _frames(str(tmp_path / "img*.png"))
    assert [Path(f.source).name for f in frames] == ["img0.png", "img1.png", "img2.png"]
    assert src.kind == "image"


def test_txt_list_relative_paths_comments_blank_lines(tmp_path):
    a = _write_png(tmp_path / "imgs" / "a.png", 5)
    b = _write_png(tmp_path / "b.png", 6)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n\nimgs/a.png\n   \n{tmp_path / 'b.png'}\n")
    src, frames = _frames(listing)
    assert [f.source for f in frames] == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "b.png")]
    np.testing.assert_array_equal(frames[0].image, a)
    np.testing.assert_array_equal(frames[1].image, b)
    assert src.expected_frames == 2


def test_max_frames_for_images(tmp_path):
    for i in range(5):
        _write_png(tmp_path / f"{i}.png", i)
    src, frames = _frames(tmp_path, max_frames=2)
    assert len(frames) == 2 and src.expected_frames == 2


@needs_shared
def test_corrupt_files_recorded_and_rest_processed(tmp_path):
    good = [tmp_path / "a.jpg", tmp_path / "e.jpg"]
    for p in good:
        shutil.copy(COCO[0], p)
    (tmp_path / "b.jpg").write_bytes(b"")
    (tmp_path / "c.jpg").write_text("this is text, not an image")
    data = COCO[1].read_bytes()
    (tmp_path / "d.jpg").write_bytes(data[: len(data) // 2])
    src, frames = _frames(tmp_path)
    assert [f.source for f in frames] == [str(p) for p in good]
    failed = dict(src.failures)
    assert list(failed) == [str(tmp_path / n) for n in ("b.jpg", "c.jpg", "d.jpg")]
    assert "empty" in failed[str(tmp_path / "b.jpg")]
    assert "cannot decode" in failed[str(tmp_path / "c.jpg")]
    assert "truncated" in failed[str(tmp_path / "d.jpg")]
    assert all(reason.endswith("skipped") for reason in failed.values())


def test_txt_list_missing_entry_recorded(tmp_path):
    _write_png(tmp_path / "a.png", 1)
    listing = tmp_path / "l.txt"
    listing.write_text("a.png\nmissing.png\n")
    src, frames = _frames(listing)
    assert len(frames) == 1
    assert src.failures == [(str(tmp_path / "missing.png"), "file not found: skipped")]


@needs_shared
def test_jpeg_truncation_check_passes_every_real_jpeg():
    for p in DATA.rglob("*.jp*g"):
        assert not _jpeg_truncated(p.read_bytes()), p


# --------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("content", [b"", b"plain text", None])
def test_single_bad_image_raises_naming_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content is None:
        cv2.imwrite(str(path), np.zeros((50, 50, 3), np.uint8))
        path.write_bytes(path.read_bytes()[:200])  # truncated JPEG
    else:
        path.write_bytes(content)
    src = open_source(path)
    with pytest.raises(SourceError, match="broken.jpg"):
        list(src)


def test_missing_path_lists_accepted_kinds(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(SourceError) as e:
        open_source(missing)
    msg = str(e.value)
    assert str(missing) in msg and "folder" in msg and "webcam" in msg and "mp4" in msg


def test_empty_folder_and_empty_glob(tmp_path):
    with pytest.raises(SourceError, match=re.escape(str(tmp_path))):
        open_source(tmp_path)
    with pytest.raises(SourceError, match="matches nothing"):
        open_source(str(tmp_path / "*.jpg"))


def test_unknown_extension_lists_accepted(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"x")
    with pytest.raises(SourceError) as e:
        open_source(path)
    assert "model.pth" in str(e.value)
    assert all(ext in str(e.value) for ext in IMAGE_EXTENSIONS)


def test_bad_stride_and_max_frames():
    with pytest.raises(SourceError, match="vid_stride"):
        open_source("x.mp4", vid_stride=0)
    with pytest.raises(SourceError, match="max_frames"):
        open_source("x.mp4", max_frames=0)


@needs_shared
def test_truncated_mp4_raises_naming_file(tmp_path):
    path = tmp_path / "cut.mp4"
    data = POSETRACK_MP4.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # moov atom at the end: OpenCV cannot open it
    with pytest.raises(SourceError, match="cut.mp4"):
        open_source(path)


@pytest.mark.parametrize("spec", [99, "99"])
def test_missing_webcam_raises(spec):
    with pytest.raises(SourceError, match="webcam 99 cannot be opened: no camera at that index"):
        open_source(spec)


# --------------------------------------------------------------------------------------------------
# Video


@needs_shared
@pytest.mark.parametrize("path, size, fps", [(POSETRACK_MP4, (1280, 720), 30.0), (DEMO_MP4, (960, 540), 5.0)])
def test_video_frames_size_fps_timestamps(path, size, fps):
    src, frames = _frames(path)
    assert src.kind == "video" and src.size == size and src.fps == pytest.approx(fps)
    assert src.expected_frames == 5 and len(frames) == 5
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames] == pytest.approx([i / fps for i in range(5)])
    assert all(f.kind == "video" and f.source == str(path) for f in frames)
    assert frames[0].image.shape == (size[1], size[0], 3) and frames[0].image.dtype == np.uint8
    assert src.failures == []


@needs_shared
@pytest.mark.parametrize("stride, max_frames, indices", [(2, None, [0, 2, 4]), (3, None, [0, 3]), (1, 2, [0, 1]),
                                                         (2, 2, [0, 2])])
def test_video_stride_and_max_frames(stride, max_frames, indices):
    src, frames = _frames(DEMO_MP4, vid_stride=stride, max_frames=max_frames)
    assert [f.index for f in frames] == indices
    assert src.expected_frames == len(indices)
    assert [f.timestamp for f in frames] == pytest.approx([i / 5.0 for i in indices])


@needs_shared
def test_video_capture_released_and_reiterable():
    src = open_source(DEMO_MP4, max_frames=2)
    with src:
        first = list(src)
        assert src._cap is None  # released when exhausted
        again = list(src)
    assert len(first) == len(again) == 2
    np.testing.assert_array_equal(first[1].image, again[1].image)


@needs_shared
def test_video_ending_early_is_recorded(tmp_path):
    """An AVI keeps its frame count in the header, so a truncated copy opens and ends early."""
    cut = make_truncated_avi(tmp_path)
    src, frames = _frames(cut)
    assert src.expected_frames == 10
    assert 0 < len(frames) < 10
    assert src.failures == [(str(cut), f"video ended early at frame {len(frames)} of 10")]


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:9/live", "http://127.0.0.1:9/cam.mjpg"])
def test_unreachable_stream_raises_naming_url(url):
    with pytest.raises(SourceError, match=re.escape(f"stream '{url}' cannot be opened")):
        open_source(url)


@needs_shared
def test_stream_frames_have_monotonic_timestamps():
    """A stream read through the same capture path (a local file stands in for the camera)."""
    src = StreamSource(str(DEMO_MP4), vid_stride=2, max_frames=2)
    with src:
        assert src.kind == "stream" and src.size == (960, 540) and src.expected_frames == 2
        frames = list(src)
    assert [f.index for f in frames] == [0, 2]
    assert all(f.kind == "stream" and f.source == str(DEMO_MP4) for f in frames)
    assert 0 <= frames[0].timestamp <= frames[1].timestamp
    assert src._cap is None


# --------------------------------------------------------------------------------------------------
# What a source is (an existing path always wins), formats, decoding limits, streams


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A real 8x6 PNG whose IHDR claims width x height (CRC recomputed): a decompression bomb's header."""
    import struct
    import zlib

    _write_png(path, 50)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_existing_folder_named_like_a_webcam_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_png(tmp_path / "2024" / "a.png", 10)
    _write_png(tmp_path / "0" / "b.png", 20)
    for spec in ("2024", "0"):
        src, frames = _frames(spec)
        assert src.kind == "image" and len(frames) == 1


@pytest.mark.parametrize("spec", ["webcam:7", "WEBCAM:7"])
def test_webcam_prefix_is_always_a_camera(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="webcam 7 cannot be opened"):
        open_source(spec)
    _write_png(tmp_path / spec / "a.png", 5)  # a folder of that very name is a path, and a path wins
    assert open_source(spec).kind == "image"


def test_local_video_with_url_characters_keeps_its_name(tmp_path):
    name = tmp_path / "my?take=2.mp4"
    writer = cv2.VideoWriter(str(name), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(3):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    src, frames = _frames(str(name))
    assert src.kind == "video" and src.stem == "my?take=2" and len(frames) == 3


def test_image_url_is_an_image(file_server):
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)
    file_server.files["/pics/cat.png"] = cv2.imencode(".png", image)[1].tobytes()
    src, frames = _frames(f"{file_server.base}/pics/cat.png?size=large")
    assert src.kind == "image" and len(frames) == 1
    assert frames[0].source == "cat.png" and np.array_equal(frames[0].image, image)
    with pytest.raises(SourceError, match=r"cannot fetch image .*missing\.jpg.*HTTP 404"):
        open_source(f"{file_server.base}/missing.jpg")


def test_gif_is_a_video(tmp_path):
    from PIL import Image

    pages = [Image.new("RGB", (41, 31), (60 * i, 0, 0)) for i in range(4)]
    pages[0].save(tmp_path / "anim.gif", save_all=True, append_images=pages[1:], duration=100, loop=0)
    src, frames = _frames(tmp_path / "anim.gif")
    assert src.kind == "video" and len(frames) == 4 and frames[0].image.shape == (31, 41, 3)
    assert src.fps == pytest.approx(10.0)


def test_multipage_tiff_gives_a_frame_per_page(tmp_path):
    from PIL import Image

    pages = [Image.new("RGB", (20 + i, 10), (0, 50 * i, 0)) for i in range(3)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    _write_png(tmp_path / "z.png", 9)
    src, frames = _frames(tmp_path)
    assert [(f.source.endswith("scan.tif"), f.page, f.image.shape[1]) for f in frames[:3]] == \
        [(True, 1, 20), (True, 2, 21), (True, 3, 22)]
    assert frames[3].page is None and len(frames) == 4
    assert [int(f.image[0, 0, 1]) for f in frames[:3]] == [0, 50, 100]


def test_rgba_png_model_sees_imread_and_alpha_is_kept(tmp_path):
    bgra = np.random.default_rng(1).integers(0, 256, (12, 16, 4), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    _, frames = _frames(tmp_path / "a.png")
    assert np.array_equal(frames[0].image, cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR))
    assert np.array_equal(frames[0].alpha, bgra[:, :, 3])
    _write_png(tmp_path / "b.png", 3)
    assert _frames(tmp_path / "b.png")[1][0].alpha is None


def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    bomb = _png_header_only(tmp_path / "photos" / "bomb.png", 40000, 40000)
    _write_png(tmp_path / "photos" / "ok.png", 7)
    src, frames = _frames(tmp_path / "photos")
    assert [Path(f.source).name for f in frames] == ["ok.png"]
    assert src.failures == [(str(bomb), "40000x40000 pixels is over the limit of 268435456 (max_pixels): "
                                        "skipped")]
    with pytest.raises(SourceError, match="bomb.png.*over the limit"):
        _frames(bomb)
    src, frames = _frames(tmp_path / "photos", max_pixels=47)  # ok.png is 8x6 = 48 pixels
    assert frames == [] and len(src.failures) == 2


def test_stream_without_a_size_takes_the_first_frames(tmp_path, file_server):
    writer = cv2.VideoWriter(str(tmp_path / "c.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    file_server.files["/c.mp4"] = (tmp_path / "c.mp4").read_bytes()
    src = open_source(f"{file_server.base}/c.mp4")
    assert src.kind == "stream" and src.stem == "c"
    src.size = None  # as OpenCV reports for some http streams (0x0)
    with src:
        frames = list(src)
    assert len(frames) == 5 and src.size == (64, 48)
    # the stream's own clock: 25 fps presentation times
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])


def test_dead_stream_ends_after_the_timeout_with_one_line():
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/live"
    try:
        start = time.monotonic()
        with pytest.raises(SourceError) as e:
            open_source(url, stream_timeout=1.5)
        assert time.monotonic() - start < 10
        assert str(e.value) == (f"stream '{url}' did not answer within 1.5 s: check the URL and the network "
                                f"(source), or wait longer with stream_timeout")
        with pytest.raises(SourceError, match=r"no answer within 1.5 s \(stream_timeout\)"):
            open_source(url + ".jpg", stream_timeout=1.5)
    finally:
        listener.close()


def test_alpha_is_dropped_not_misaligned_when_exif_turns_the_image(tmp_path):
    """OpenCV turns the colour read by the EXIF orientation but not the unchanged read that holds alpha:
    a turned image keeps no alpha (logged) rather than one that no longer lines up."""
    from PIL import Image

    rgba = np.random.default_rng(3).integers(0, 256, (16, 16, 4), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    Image.fromarray(rgba, "RGBA").save(tmp_path / "turned.png", exif=exif)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "plain.png")
    turned, plain = _frames(tmp_path / "turned.png")[1][0], _frames(tmp_path / "plain.png")[1][0]
    assert np.array_equal(turned.image, cv2.imread(str(tmp_path / "turned.png"), cv2.IMREAD_COLOR))
    assert not np.array_equal(turned.image, plain.image)  # OpenCV did turn it
    assert turned.alpha is None and np.array_equal(plain.alpha, rgba[:, :, 3])


@pytest.mark.parametrize("spec", ["\u00b2", "\u0663"])  # superscript two, Arabic-Indic three: digits to isdigit()
def test_non_ascii_digits_are_no_webcam(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="not found"):
        open_source(spec)
