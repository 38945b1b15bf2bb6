"""The command line against a matrix of bad (and unusual but good) inputs: exit code, the one line, nothing lost.

Every row of ``CASES`` is a :class:`Case`: a builder makes the inputs in ``tmp_path`` and returns the
arguments, and the row says what must come back. For every row:

* exit code as the row says (0 all good, 1 some inputs failed, 2 usage or input error, 130 Ctrl-C);
* no ``Traceback`` in the output and no exception escaping the command (CliRunner would swallow it);
* every file and folder that existed before the run (under ``tmp_path``) is unchanged (sha256);
* exit 2: exactly one ``error:`` line on stderr, holding the row's fragments (file name, flag, fix), and
  nothing new anywhere (no output folder left behind);
* exit 0/1: new files only under the output folder, which holds exactly the row's outputs, each valid
  (images decode at the right size, predictions.json lists exactly the good images, every .jsonl line
  parses, videos open with the right frame count, size and fps);
* exit 1: the summary's ``N input(s) failed:`` line, then one ``  <path>: <reason>`` line per failure.

Rows whose ``model`` is False must fail before any pose model or detector is created (the contract says
"at parse time" or "before any model loads", or tests/test_cli.py checks it that way): creating one fails
the row. Rows that run a model use a random-weight MobileNetV2-RLE checkpoint, ``--det-model none`` and
``--no-flip`` on 64x48 images; the module's ``reuse_loaded_models`` loads it once.

``POSEAPP_PRINT_MATRIX=1 python -m pytest tests/test_bad_input.py -q -s -k table`` runs every row and prints
a markdown table (case, args, expected and actual exit code, the line printed, pass/fail).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from poseapp.cli import main

pytestmark = pytest.mark.usefixtures("reuse_loaded_models")

ARCH = "mobilenetv2-rle_coco-256x192"
W, H = 64, 48  # the size of every ordinary test image


# --------------------------------------------------------------------------------------------------
# Making inputs


def write_png(path: Path, size: tuple[int, int] = (W, H), value: int = 128, channels: int = 3,
              dtype=np.uint8) -> Path:
    """A PNG of ``size`` (width, height): a gradient plus ``value`` (so it is not flat), 1, 3 or 4 channels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    top = 65535 if dtype == np.uint16 else 255
    grad = (np.arange(w)[None, :] * 3 + np.arange(h)[:, None] * 5 + value) % 256
    grad = (grad * (top // 255)).astype(dtype)
    image = grad if channels == 1 else np.stack([grad] * channels, axis=-1)
    if channels == 4:
        image[..., 3] = ((np.arange(w)[None, :] * 4 + np.arange(h)[:, None]) % 256).astype(dtype)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buf.tobytes())  # imencode + write_bytes: any file name (unicode, ?, *, [)
    return path


def jpeg_bytes(size: tuple[int, int] = (W, H)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", noise)
    assert ok
    return buf.tobytes()


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A real 8x8 grey PNG whose IHDR says ``width`` x ``height`` (CRC recomputed): a few hundred bytes that
    a header check rejects, and that no decoder should be allowed to allocate."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    assert data[12:16] == b"IHDR"
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    assert path.stat().st_size < 1000
    return path


def write_video(path: Path, frames: int = 7, size: tuple[int, int] = (W, H), fps: float = 30.0) -> Path:
    """An mp4 (mp4v, even sizes) or an MJPG AVI (OpenCV's own writer: any size, 65x49 included); checked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    if path.suffix == ".avi":
        writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), path
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    if frames:
        info = video_info(path)
        assert (info["frames"], info["size"]) == (frames, size), (path, info)  # the builder made what it says
    return path


def write_gif(path: Path, frames: int = 4, size: tuple[int, int] = (W, H), ms: int = 100) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.full((size[1], size[0], 3), 40 * i + 20, np.uint8)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == frames
    return path


TIFF_PAGES = [(64, 48), (48, 64), (32, 24)]


def write_tiff(path: Path, sizes=TIFF_PAGES) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pages = [Image.fromarray(np.full((h, w, 3), 60 * i + 30, np.uint8)) for i, (w, h) in enumerate(sizes)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with Image.open(path) as check:
        assert check.n_frames == len(sizes)
    return path


def video_info(path: Path) -> dict:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open with cv2.VideoCapture"
    info = {"count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), "fps": cap.get(cv2.CAP_PROP_FPS),
            "frames": 0, "size": None}
    while True:
        ok, image = cap.read()
        if not ok:
            break
        info["frames"] += 1
        info["size"] = (image.shape[1], image.shape[0])
    cap.release()
    return info


# --------------------------------------------------------------------------------------------------
# The case table


class Ctx:
    """What a builder gets: the folder, monkeypatch, the checkpoint; it may set ``out`` and ``names``."""

    def __init__(self, tmp: Path, mp: pytest.MonkeyPatch, ckpt: Path) -> None:
        self.tmp, self.mp, self.ckpt = tmp, mp, ckpt
        self.inp = tmp / "in"
        self.inp.mkdir()
        self.out = tmp / "out"  # where this run's outputs must land (the only place new files may appear)
        self.names: dict[str, str] = {}  # for "{key}" in Case.line
        self.loaded: list[str] = []  # models created although the row forbids it

    def pose(self, whole_frame: bool = True) -> list:
        return ["--pose-model", self.ckpt, "--pose-arch", ARCH, *(["--det-model", "none"] if whole_frame else []),
                "--no-flip"]

    def o(self) -> list:
        return ["--out", self.out]

    def image(self, name: str = "x.png", **kw) -> Path:
        return write_png(self.inp / name, **kw)

    def photos(self, names=("a.png", "b.png"), folder: str = "photos") -> Path:
        for i, name in enumerate(names):
            write_png(self.inp / folder / name, value=40 * i)
        return self.inp / folder


@dataclass
class Case:
    """One row. ``line`` holds fragments (``"{key}"`` filled from ``Ctx.names``) or regexes the ``error:``
    line must contain (checked when the exit code is 2); ``failed`` maps the file names the summary must
    list (exactly these) to a fragment their reason must contain (checked when the exit code is 1)."""

    name: str
    build: Callable[[Ctx], list]
    code: int | tuple[int, ...]
    line: tuple = ()
    notline: tuple = ()  # fragments the error: line must not contain
    failed: dict = field(default_factory=dict)
    warn: tuple = ()  # fragments some stderr (or logged) line must contain
    nowarn: tuple = ()  # fragments no stderr (or logged) line may contain
    images: dict = field(default_factory=dict)  # out-relative name -> (width, height), decoded with OpenCV
    json: tuple | int | None = None  # predictions.json lists exactly these file names in order (an int: that
    # many entries, names not checked)
    videos: dict = field(default_factory=dict)  # name -> (frames, width, height, fps)
    jsonl: dict = field(default_factory=dict)  # name -> frame lines after the header
    check: Callable[[Ctx, Result], None] | None = None  # extra checks on the outputs
    model: bool = True  # False: creating a pose model or a detector fails the row
    exact: bool = True  # the output folder holds exactly images + videos + jsonl (+ predictions.json)
    skip: Callable[[], str | None] | None = None


def image_run(*extra):
    """Builder: one good 64x48 x.png with the model, --json, and ``extra`` options last."""
    def build(t: Ctx) -> list:
        return ["--source", t.image("x.png"), *t.pose(), "--json", *t.o(), *extra]
    return build


GOOD = dict(images={"x.png": (W, H)}, json=("x.png",))  # what image_run's x.png gives


def parse_error(name: str, flag: str, *values: str) -> Case:
    """A numeric option out of range or not a number: exit 2 at parse time, the line names the flag."""
    return Case(name, image_run(flag, *values), 2, line=(flag,), model=False)


def no_cuda() -> str | None:
    import torch

    return "this machine has CUDA" if torch.cuda.is_available() else None


def no_mps() -> str | None:
    import torch

    return "this machine has MPS" if torch.backends.mps.is_available() else None


# ---- builders that need more than image_run


def b_missing_source(t):
    return [*t.pose(), *t.o()]


def b_missing_source_predict(t):
    return ["predict", *t.pose(), *t.o()]


def b_empty_source(t):
    t.mp.chdir(t.photos())  # "" must not mean the current folder
    return ["--source", "", *t.pose(), *t.o()]


def b_device_default_detector(device):
    def build(t):
        return ["--source", t.image(), *t.pose(whole_frame=False), "--device", device, *t.o()]
    return build


def b_out_is_source_folder(t):
    p = t.photos()
    return ["--source", p, *t.pose(), "--out", p, "--exist-ok"]


def b_out_is_source_folder_dotdot(t):
    p = t.photos()
    return ["--source", p, *t.pose(), "--out", f"{p}/../{p.name}", "--exist-ok"]


def b_out_over_the_boxes_file(t):
    """--json --no-save writes only predictions.json: refused where that is the --boxes file."""
    image = t.image("a.png")
    boxes = t.inp / "b" / "predictions.json"
    boxes.parent.mkdir()
    boxes.write_text(json.dumps([{"file_name": "a.png", "bbox": [1, 1, 20, 20], "score": 1.0}]))
    return ["--source", image, *t.pose(), "--boxes", boxes, "--json", "--no-save", "--out", boxes.parent,
            "--exist-ok"]


def b_json_only_into_the_source_folder(t):
    """No annotated copies are written (--no-save): predictions.json beside the photos replaces nothing."""
    p = t.photos()
    t.out = p
    return ["--source", p, *t.pose(), "--json", "--no-save", "--out", p, "--exist-ok"]


def b_failed_run_in_new_nested_out(t):
    t.out = t.tmp / "deep" / "x" / "y"
    (t.inp / "zero.jpg").write_bytes(b"")
    return ["--source", t.inp / "zero.jpg", *t.pose(), "--json", "--out", t.out]


def b_half_on_cpu(t):
    return ["--source", t.image(), *t.pose(whole_frame=False), "--half", "--device", "cpu", *t.o()]


def b_out_is_image_folder(t):
    p = t.photos()
    return ["--source", p / "a.png", *t.pose(), "--out", p, "--exist-ok"]


def b_out_is_video_folder(t):
    clip = write_video(t.inp / "clip.mp4")
    return ["--source", clip, *t.pose(), "--json", "--out", clip.parent, "--exist-ok"]


def b_out_in_recursive(t):
    p = t.photos()
    write_png(p / "deep" / "c.png")
    return ["--source", p, "--recursive", *t.pose(), "--out", p / "sub"]


def b_out_matched_by_glob(t):
    p = t.photos()
    return ["--source", f"{p}/*.png", *t.pose(), "--out", p, "--exist-ok"]


def b_source_dot(t):
    here = t.photos(folder="here")
    t.mp.chdir(here)
    t.out = here / "runs" / "predict"  # the default --out
    return ["--source", ".", *t.pose(), "--json"]


def b_out_is_a_file(t):
    f = t.tmp / "existing.txt"
    f.write_text("a regular file")
    return ["--source", t.image(), *t.pose(), "--out", f]


def b_out_under_a_file(t):
    f = t.tmp / "file"
    f.write_text("a regular file")
    return ["--source", t.image(), *t.pose(), "--out", f / "predict"]


def b_failed_run_keeps_out(t):
    t.out.mkdir()
    (t.out / "earlier.json").write_text('{"earlier": true}')
    return ["--source", t.image(), "--pose-model", "no-such-model", "--out", t.out, "--exist-ok"]


def b_failed_run_keeps_empty_out(t):
    t.out.mkdir()
    return ["--source", t.image(), "--pose-model", "no-such-model", "--out", t.out, "--exist-ok"]


def b_folder_named(name):
    def build(t):
        t.photos(names=("a.png",), folder=name)
        t.mp.chdir(t.inp)
        return ["--source", name, *t.pose(), "--json", *t.o()]
    return build


def b_webcam(spec):
    def build(t):
        cwd = t.tmp / "cwd"
        cwd.mkdir()
        t.mp.chdir(cwd)  # nothing named like the spec here
        return ["--source", spec, *t.pose(), *t.o()]
    return build


def b_missing_path(t):
    missing = t.inp / "nope.jpg"
    t.names["missing"] = str(missing)
    return ["--source", missing, *t.pose(), *t.o()]


def b_name_too_long(t):
    return ["--source", t.inp / ("a" * 300 + ".jpg"), *t.pose(), *t.o()]


def b_unknown_users_home(t):
    return ["--source", "~nosuchuser_poseapp/x.jpg", *t.pose(), *t.o()]


def b_glob_nothing(t):
    (t.inp / "notes.txt").write_text("not an image")
    pattern = f"{t.inp}/*.png"
    t.names["pattern"] = pattern
    return ["--source", pattern, *t.pose(), *t.o()]


def b_video_query_name(t):
    clip = write_video(t.inp / "my?take=2.mp4", frames=3)
    return ["--source", clip, *t.pose(), "--json", *t.o()]


def b_single_file(name: str, content: bytes):
    def build(t):
        path = t.inp / name
        path.write_bytes(content)
        return ["--source", path, *t.pose(), "--json", *t.o()]
    return build


def b_dir_named_jpg(t):
    (t.inp / "x.jpg").mkdir()
    return ["--source", t.inp / "x.jpg", *t.pose(), "--json", *t.o()]


RANDOM_BYTES = b"\x00RND" + np.random.default_rng(2).bytes(2000)  # starts with neither a JPEG nor a PNG magic


def truncated_jpeg() -> bytes:
    data = jpeg_bytes()
    return data[: len(data) // 2]


def b_folder_with_bad_images(t):
    p = t.photos(names=("a.png", "e.png"))
    (p / "b.jpg").write_bytes(b"")
    (p / "c.jpg").write_bytes(RANDOM_BYTES)
    (p / "d.jpg").write_bytes(truncated_jpeg())
    return ["--source", p, *t.pose(), "--json", *t.o()]


def b_huge_png_alone(t):
    return ["--source", png_with_header_size(t.inp / "huge.png", 40000, 40000), *t.pose(), "--json", *t.o()]


def b_huge_png_in_folder(t):
    p = t.photos(names=("a.png",))
    png_with_header_size(p / "huge.png", 40000, 40000)
    return ["--source", p, *t.pose(), "--json", *t.o()]


def b_max_pixels_in_folder(t):
    p = t.photos(names=("big.png",))
    write_png(p / "small.png", size=(32, 24))
    return ["--source", p, *t.pose(), "--json", "--max-pixels", "1000", *t.o()]


def b_gif(t):
    return ["--source", write_gif(t.inp / "anim.gif"), *t.pose(), "--json", *t.o()]


def b_tiff(t):
    return ["--source", write_tiff(t.inp / "scan.tif"), *t.pose(), "--json", *t.o()]


def check_tiff(t, result):
    doc = json.loads((t.out / "predictions.json").read_text())
    assert [e.get("page") for e in doc["images"]] == [1, 2, 3], doc["images"]
    assert [(e["width"], e["height"]) for e in doc["images"]] == TIFF_PAGES


def b_image_like(name, **kw):
    def build(t):
        return ["--source", t.image(name, **kw), *t.pose(), "--json", *t.o()]
    return build


def check_alpha(t, result):
    src = cv2.imread(str(t.inp / "rgba.png"), cv2.IMREAD_UNCHANGED)
    out = cv2.imread(str(t.out / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert src.shape == (H, W, 4) and out is not None
    assert out.shape == (H, W, 4), f"the saved PNG has shape {out.shape}: its alpha channel is lost"
    assert out.dtype == src.dtype
    np.testing.assert_array_equal(out[..., 3], src[..., 3])


def b_unknown_extension(t):
    notes = t.inp / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4\n%%EOF\n")
    return ["--source", notes, *t.pose(), *t.o()]


def b_video(name, frames=7, size=(W, H), fps=30.0, *extra):
    def build(t):
        return ["--source", write_video(t.inp / name, frames, size, fps), *t.pose(), "--json", *extra, *t.o()]
    return build


def b_truncated_video(t):
    full = write_video(t.tmp / "full.avi", frames=10)  # outside in/: the source is the cut copy
    data = full.read_bytes()
    full.unlink()
    cut = t.inp / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    cap = cv2.VideoCapture(str(cut))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10  # opens, header says 10 frames
    cap.release()
    return ["--source", cut, *t.pose(), "--json", *t.o()]


def check_truncated_video(t, result):
    """As test_cli's test_video_that_ends_early: the frames read are in a finalised video and the JSONL."""
    lines = [json.loads(line) for line in (t.out / "cut.jsonl").read_text().splitlines()]
    assert "header" in lines[0]
    n = len(lines) - 1
    assert 0 < n < 10 and [f["frame"] for f in lines[1:]] == list(range(n))
    info = video_info(t.out / "cut.mp4")
    assert (info["frames"], info["count"], info["size"]) == (n, n, (W, H)), info
    assert info["fps"] == pytest.approx(30.0, abs=0.05)


def b_zero_frame_video(t):
    return ["--source", write_video(t.inp / "zero.avi", frames=0), *t.pose(), "--json", *t.o()]


def b_list(content: bytes, *images: str):
    def build(t):
        for name in images:
            t.image(name)
        lst = t.inp / "list.txt"
        lst.write_bytes(content.replace(b"{in}", str(t.inp).encode()))
        return ["--source", lst, *t.pose(), "--json", *t.o()]
    return build


def b_non_utf8_names(t):
    """Names from an old Latin-1 archive reach Python as surrogate escapes; OpenCV's file functions crashed
    (a segfault) on them. Images decode from their bytes; a video is refused in one line."""
    folder = t.inp / "latin1"
    folder.mkdir()
    write_png(folder / "a.png")
    write_png(folder / os.fsdecode(b"caf\xe9.png"))
    return ["--source", folder, *t.pose(), "--json", *t.o()]


def b_non_utf8_video(t):
    clip = write_video(t.inp / "clip.mp4")
    os.rename(clip, t.inp / os.fsdecode(b"cl\xefp.mp4"))
    return ["--source", t.inp / os.fsdecode(b"cl\xefp.mp4"), *t.pose(), *t.o()]


def b_out_under_home(t):
    t.mp.setenv("HOME", str(t.tmp / "home"))
    t.out = t.tmp / "home" / "res"
    return ["--source", t.image(), *t.pose(), "--json", "--out=~/res"]


def b_boxes_matching_nothing(t):
    boxes = t.inp / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 999, "bbox": [1, 1, 20, 20], "score": 0.9, "category_id": 1}]))
    return ["--source", t.image(), *t.pose(), "--boxes", boxes, "--json", *t.o()]


def b_boxes(content: str | None):
    def build(t):
        boxes = t.inp / "boxes.json"
        if content is not None:
            boxes.write_text(content)
        return ["--source", t.image(), *t.pose(whole_frame=False), "--boxes", boxes, *t.o()]
    return build


def b_pose_model(*pose_args, whole_frame=True):
    def build(t):
        args = [a.replace("{ckpt}", str(t.ckpt)).replace("{in}", str(t.inp)) for a in pose_args]
        return ["--source", t.image(), *args, *(["--det-model", "none"] if whole_frame else []), "--no-flip",
                *t.o()]
    return build


def b_det_classes(value):
    def build(t):
        return ["--source", t.image(), *t.pose(whole_frame=False), "--det-classes", value, *t.o()]
    return build


def b_named(name):
    def build(t):
        return ["--source", t.image(name), *t.pose(), "--json", *t.o()]
    return build


def b_leading_dash(t):
    t.image("-x.png")
    t.mp.chdir(t.inp)
    return ["--source=./-x.png", *t.pose(), "--json", *t.o()]


def b_glob_chars(name, sibling):
    """A file whose name has glob characters, beside a file the name would match as a pattern."""
    def build(t):
        write_png(t.inp / sibling, value=10)
        return ["--source", t.image(name), *t.pose(), "--json", *t.o()]
    return build


def b_ctrl_c(t):
    import poseapp.estimator

    def interrupt(self, crops):  # in the engine's pose thread: the interrupt must still reach the command
        raise KeyboardInterrupt

    t.mp.setattr(poseapp.estimator.TopDownEstimator, "keypoints_of", interrupt)
    return ["--source", t.photos(), *t.pose(), "--json", *t.o()]


LONG = "n" * 196 + ".png"  # 200 characters

CASES: list[Case] = [
    # ---- numeric options, range-checked at parse time (exit 2, the line names the flag)
    parse_error("det-conf-negative", "--det-conf", "-0.1"),
    parse_error("det-conf-above-1", "--det-conf", "1.5"),
    parse_error("det-conf-nan", "--det-conf", "nan"),
    parse_error("det-conf-not-a-number", "--det-conf", "abc"),
    parse_error("det-conf-missing-value", "--det-conf"),
    parse_error("det-iou-above-1", "--det-iou", "2"),
    parse_error("det-iou-negative", "--det-iou", "-1"),
    parse_error("face-from-thr-above-1", "--face-from-thr", "1.1"),
    parse_error("face-from-thr-negative", "--face-from-thr", "-0.5"),
    parse_error("max-det-zero", "--max-det", "0"),
    parse_error("max-det-not-a-number", "--max-det", "abc"),
    parse_error("max-det-not-an-integer", "--max-det", "2.5"),
    parse_error("batch-size-zero", "--batch-size", "0"),
    parse_error("vid-stride-zero", "--vid-stride", "0"),
    parse_error("max-frames-zero", "--max-frames", "0"),
    parse_error("radius-zero", "--radius", "0"),
    parse_error("thickness-negative", "--thickness", "-1"),
    parse_error("max-pixels-zero", "--max-pixels", "0"),
    parse_error("max-pixels-not-a-number", "--max-pixels", "abc"),
    parse_error("stream-timeout-zero", "--stream-timeout", "0"),
    parse_error("stream-timeout-negative", "--stream-timeout", "-1"),
    parse_error("stream-timeout-not-a-number", "--stream-timeout", "abc"),
    parse_error("stream-timeout-over-a-day", "--stream-timeout", "1e7"),
    Case("numeric-bounds-low-accepted", image_run("--det-conf", "0", "--det-iou", "1", "--max-det", "1",
                                                   "--batch-size", "1", "--vid-stride", "1", "--max-frames", "1",
                                                   "--radius", "1", "--thickness", "1", "--stream-timeout", "0.5"),
         0, **GOOD),
    Case("numeric-bounds-high-accepted", image_run("--det-conf", "1", "--det-iou", "0", "--max-det", "5",
                                                    "--stream-timeout", "30", "--max-pixels", "3072"), 0, **GOOD),
    # ---- click's own usage errors, as one error: line
    Case("unknown-option", image_run("--no-such-flag"), 2, line=("--no-such-flag",), model=False),
    Case("missing-source", b_missing_source, 2, line=("--source",), model=False),
    Case("missing-source-predict", b_missing_source_predict, 2, line=("--source",), model=False),
    Case("source-empty-string", b_empty_source, 2, line=("--source",), model=False),
    # ---- --kpt-thr: any float; outside the model's score range warns
    Case("kpt-thr-above-1-warns", image_run("--kpt-thr", "1.5"), 0, warn=("--kpt-thr",), **GOOD),
    Case("kpt-thr-negative-warns", image_run("--kpt-thr", "-0.2"), 0, warn=("--kpt-thr",), **GOOD),
    Case("kpt-thr-in-range-quiet", image_run("--kpt-thr", "0.5"), 0, nowarn=("--kpt-thr",), **GOOD),
    # ---- --device
    Case("device-uppercase-cpu", image_run("--device", "CPU"), 0, **GOOD),
    Case("device-cuda-absent", image_run("--device", "cuda"), 2, line=("--device",), model=False, skip=no_cuda),
    Case("device-cuda-3-absent", image_run("--device", "cuda:3"), 2, line=("--device",), model=False),
    Case("device-mps-absent", image_run("--device", "mps"), 2, line=("--device",), model=False, skip=no_mps),
    Case("device-unknown-foo", image_run("--device", "foo"), 2, line=("--device",), model=False),
    Case("device-unknown-gpu", image_run("--device", "gpu"), 2, line=("--device",), model=False),
    Case("device-cuda-x", image_run("--device", "cuda:x"), 2, line=("--device",), model=False),
    Case("device-cuda-with-default-detector", b_device_default_detector("cuda"), 2, line=("--device",),
         model=False, skip=no_cuda),
    Case("device-foo-with-default-detector", b_device_default_detector("foo"), 2, line=("--device",),
         model=False),
    # ---- outputs never overwrite inputs
    Case("out-is-source-folder", b_out_is_source_folder, 2, line=("--out",), model=False),
    Case("out-is-source-folder-via-dotdot", b_out_is_source_folder_dotdot, 2, line=("--out",), model=False),
    Case("out-is-image-folder", b_out_is_image_folder, 2, line=("--out",), model=False),
    Case("out-is-video-folder", b_out_is_video_folder, 2, line=("--out",), model=False),
    Case("out-inside-recursive-source", b_out_in_recursive, 2, line=("--out",), model=False),
    Case("out-matched-by-glob", b_out_matched_by_glob, 2, line=("--out",), model=False),
    Case("out-over-the-boxes-file", b_out_over_the_boxes_file, 2, line=("--out", "predictions.json"), model=False),
    Case("json-only-into-the-source-folder", b_json_only_into_the_source_folder, 0, json=("a.png", "b.png"),
         exact=False),  # the photos are in that folder too: their hashes are checked unchanged
    Case("failed-run-leaves-no-nested-out", b_failed_run_in_new_nested_out, 2, line=("zero.jpg",)),
    Case("half-on-cpu-before-the-detector", b_half_on_cpu, 2, line=("--half", "--device"), model=False),
    Case("source-dot-default-out-allowed", b_source_dot, 0, images={"a.png": (W, H), "b.png": (W, H)},
         json=("a.png", "b.png")),
    Case("out-is-existing-file", b_out_is_a_file, 2, line=("--out",), model=False),
    Case("out-under-a-file", b_out_under_a_file, 2, line=("--out",), model=False),
    Case("failed-run-keeps-existing-out", b_failed_run_keeps_out, 2, line=("no-such-model",)),
    Case("failed-run-keeps-empty-existing-out", b_failed_run_keeps_empty_out, 2, line=("no-such-model",)),
    # ---- what a source is
    Case("folder-named-2024", b_folder_named("2024"), 0, images={"a.png": (W, H)}, json=("a.png",)),
    Case("folder-named-0", b_folder_named("0"), 0, images={"a.png": (W, H)}, json=("a.png",)),
    Case("webcam-colon-0-absent", b_webcam("webcam:0"), 2, line=("webcam",), notline=("not found",), model=False),
    Case("webcam-99-absent", b_webcam("99"), 2, line=("webcam", "99"), notline=("not found",), model=False),
    Case("missing-path", b_missing_path, 2, line=("{missing}",), model=False),
    Case("glob-matching-nothing", b_glob_nothing, 2, line=("{pattern}",), model=False),
    Case("name-too-long-for-the-disk", b_name_too_long, 2, line=("aaaa", "File name too long"), model=False),
    Case("unknown-users-home", b_unknown_users_home, 2, line=("~nosuchuser_poseapp/x.jpg", "not found"),
         model=False),
    Case("video-name-with-query", b_video_query_name, 0, videos={"my?take=2.mp4": (3, W, H, 30.0)},
         jsonl={"my?take=2.jsonl": 3}),
    # ---- a single image that cannot be read: exit 2, no output folder
    Case("image-empty-file", b_single_file("x.jpg", b""), 2, line=("x.jpg",)),
    Case("image-truncated-jpeg", b_single_file("x.jpg", truncated_jpeg()), 2, line=("x.jpg",)),
    Case("image-random-bytes", b_single_file("x.jpg", RANDOM_BYTES), 2, line=("x.jpg",)),
    Case("image-is-a-directory", b_dir_named_jpg, 2, line=("x.jpg",)),
    # ---- ... in a folder: skipped and listed, the rest saved
    Case("folder-with-bad-images", b_folder_with_bad_images, 1, failed={"b.jpg": "", "c.jpg": "", "d.jpg": ""},
         images={"a.png": (W, H), "e.png": (W, H)}, json=("a.png", "e.png")),
    # ---- decoding limits
    Case("huge-png-header-alone", b_huge_png_alone, 2, line=("huge.png",)),
    Case("max-pixels-below-size-alone", image_run("--max-pixels", "1000"), 2, line=("x.png",)),
    Case("huge-png-header-in-folder", b_huge_png_in_folder, 1, failed={"huge.png": "--max-pixels"},
         images={"a.png": (W, H)}, json=("a.png",)),
    Case("max-pixels-in-folder", b_max_pixels_in_folder, 1, failed={"big.png": "--max-pixels"},
         images={"small.png": (32, 24)}, json=("small.png",)),
    # ---- formats
    Case("animated-gif-is-a-video", b_gif, 0, videos={"anim.mp4": (4, W, H, 10.0)}, jsonl={"anim.jsonl": 4}),
    Case("multipage-tiff-one-frame-per-page", b_tiff, 0,
         images={f"scan_page{i + 1}.tif": size for i, size in enumerate(TIFF_PAGES)}, json=3, check=check_tiff),
    Case("rgba-png-keeps-alpha", b_image_like("rgba.png", channels=4), 0, images={"rgba.png": (W, H)},
         json=("rgba.png",), check=check_alpha),
    Case("grey-png", b_image_like("grey.png", channels=1), 0, images={"grey.png": (W, H)}, json=("grey.png",)),
    Case("png-16-bit", b_image_like("deep.png", dtype=np.uint16), 0, images={"deep.png": (W, H)},
         json=("deep.png",)),
    Case("image-1x1", b_image_like("dot.png", size=(1, 1)), 0, images={"dot.png": (1, 1)}, json=("dot.png",)),
    Case("image-4000x3-strip", b_image_like("strip.png", size=(4000, 3)), 0, images={"strip.png": (4000, 3)},
         json=("strip.png",)),
    Case("unknown-extension-pdf", b_unknown_extension, 2,
         line=("notes.pdf", re.compile(r"notes\.pdf.*pdf|pdf.*notes\.pdf"))),  # the extension, besides the name
    # ---- videos
    Case("video-even-size-mp4", b_video("clip.mp4"), 0, videos={"clip.mp4": (7, W, H, 30.0)},
         jsonl={"clip.jsonl": 7}),
    Case("video-odd-size-kept", b_video("odd.avi", 7, (65, 49)), 0, videos={"odd.mp4": (7, 65, 49, 30.0)},
         jsonl={"odd.jsonl": 7}),
    Case("video-stride-3", b_video("clip.mp4", 7, (W, H), 30.0, "--vid-stride", "3"), 0,
         videos={"clip.mp4": (3, W, H, 10.0)}, jsonl={"clip.jsonl": 3}),
    Case("video-zero-bytes", b_single_file("clip.mp4", b""), 2, line=("clip.mp4",), model=False),
    Case("video-random-bytes", b_single_file("clip.mp4", RANDOM_BYTES), 2, line=("clip.mp4",), model=False),
    Case("video-text-content", b_single_file("clip.mp4", b"not a video"), 2, line=("clip.mp4",), model=False),
    Case("video-zero-frames", b_zero_frame_video, 2, line=("zero.avi", "no frame")),
    Case("video-ends-early", b_truncated_video, 1, failed={"cut.avi": "ended early"}, exact=False,
         check=check_truncated_video),
    # ---- .txt lists
    Case("list-not-utf8", b_list(b"\xff\xfe\x00\x81\xc3(bad\n"), 2, line=("list.txt",)),
    Case("list-empty", b_list(b""), 2, line=("list.txt",)),
    Case("list-with-a-byte-order-mark", b_list(b"\xef\xbb\xbfa.png\n", "a.png"), 0, images={"a.png": (W, H)},
         json=("a.png",)),
    Case("list-naming-a-folder-and-a-video", b_list(b"a.png\nsub\nclip.mp4\n", "a.png", "sub/x.png", "clip.mp4"), 1,
         failed={"sub": "a folder", "clip.mp4": "a video"}, images={"a.png": (W, H)}, json=("a.png",)),
    Case("non-utf8-image-names", b_non_utf8_names, 0, images={"a.png": (W, H), os.fsdecode(b"caf\xe9.png"): (W, H)},
         json=("a.png", os.fsdecode(b"caf\xe9.png"))),
    Case("non-utf8-video-name", b_non_utf8_video, 2, line=("not valid UTF-8",), model=False),
    Case("out-with-a-tilde", b_out_under_home, 0, **GOOD),
    Case("no-save-without-json-warns", lambda t: ["--source", t.image(), *t.pose(), "--no-save", *t.o()], 0,
         warn=("saved nothing",)),
    Case("boxes-matching-no-frame-warns", b_boxes_matching_nothing, 0, warn=("no box of --boxes",), **GOOD),
    Case("list-only-comments", b_list(b"# nothing here\n\n   \n"), 2, line=("list.txt",)),
    Case("list-naming-missing-files", b_list(b"a.png\nmissing.png\n# a comment\n{in}/gone.png\n", "a.png"), 1,
         failed={"missing.png": "", "gone.png": ""}, images={"a.png": (W, H)}, json=("a.png",)),
    # ---- --boxes
    Case("boxes-missing", b_boxes(None), 2, line=("boxes.json",)),
    Case("boxes-not-json", b_boxes("not json at all"), 2, line=("boxes.json",)),
    Case("boxes-not-a-list", b_boxes('{"boxes": []}'), 2, line=("boxes.json",)),
    Case("boxes-short-bbox", b_boxes('[{"image_id": 1, "bbox": [1, 2]}]'), 2, line=("boxes.json",)),
    Case("boxes-bbox-not-numbers", b_boxes('[{"file_name": "x.png", "bbox": [1, "two", 3, 4], "score": 1}]'), 2,
         line=("boxes.json",)),
    # ---- models
    Case("unknown-pose-model-suggests", b_pose_model("--pose-model", "hrnet-w32_coco"), 2,
         line=("hrnet-w32_coco", "hrnet-w32_coco-256x192")),
    Case("unknown-pose-arch-suggests", b_pose_model("--pose-model", "{ckpt}", "--pose-arch", "mobilenetv2-rle_coco"),
         2, line=("mobilenetv2-rle_coco", ARCH)),
    Case("missing-checkpoint", b_pose_model("--pose-model", "{in}/missing/model.pth", "--pose-arch", ARCH), 2,
         line=("model.pth",)),
    Case("det-classes-blank", b_det_classes(" , "), 2, line=("--det-classes",), model=False),
    Case("det-classes-empty-string", b_det_classes(""), 2, line=("--det-classes",), model=False),
    # ---- unusual names
    Case("name-with-spaces", b_named("my photo.png"), 0, images={"my photo.png": (W, H)}, json=("my photo.png",)),
    Case("name-unicode", b_named("ñandú 写真.png"), 0, images={"ñandú 写真.png": (W, H)},
         json=("ñandú 写真.png",)),
    Case("name-leading-dash", b_leading_dash, 0, images={"-x.png": (W, H)}, json=("-x.png",)),
    Case("name-200-chars", b_named(LONG), 0, images={LONG: (W, H)}, json=(LONG,)),
    Case("name-with-brackets-exists", b_glob_chars("a[1].png", "a1.png"), 0, images={"a[1].png": (W, H)},
         json=("a[1].png",)),
    Case("name-with-question-mark-exists", b_glob_chars("shot?.png", "shot1.png"), 0,
         images={"shot?.png": (W, H)}, json=("shot?.png",)),
    Case("name-with-star-exists", b_glob_chars("star*.png", "star-b.png"), 0, images={"star*.png": (W, H)},
         json=("star*.png",)),
    # ---- Ctrl-C
    Case("ctrl-c-exits-130", b_ctrl_c, 130, exact=False),
]

assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


# --------------------------------------------------------------------------------------------------
# Running and checking one case


def snapshot(root: Path) -> dict[str, str]:
    """Every file (sha256) and folder ("<dir>") under ``root``, by path relative to it."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


class _Collect(logging.Handler):
    """Warnings logged during the run (a logged warning reaches the real stderr, not CliRunner's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Run:
    t: Ctx
    args: list[str]
    result: Result
    before: dict[str, str]
    logged: list[str]


def run_case(case: Case, tmp: Path, mp: pytest.MonkeyPatch, ckpt: Path) -> Run:
    mp.setenv("POSEAPP_OFFLINE", "1")  # nothing is downloaded, whatever a row gets wrong
    t = Ctx(tmp, mp, ckpt)
    args = [str(a) for a in case.build(t)]
    if not case.model:
        import poseapp.create
        import poseapp.boxes.yolo

        def refuse(what):
            def fail(*a, **kw):
                t.loaded.append(what)
                raise AssertionError(f"a {what} was created")
            return fail

        mp.setattr(poseapp.create, "create_model", refuse("pose model"))
        mp.setattr(poseapp.boxes.yolo, "YoloDetector", refuse("detector"))
    before = snapshot(tmp)
    handler = _Collect()
    logging.getLogger().addHandler(handler)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        logging.getLogger().removeHandler(handler)
    return Run(t, args, result, before, handler.lines)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def summary_failures(stderr: str) -> list[str]:
    """The ``  <path>: <reason>`` lines after the summary's ``N input(s) failed:`` line (checked: N of them)."""
    lines = stderr.splitlines()
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"\d+ input\(s\) failed:", line.strip())]
    assert len(heads) == 1, f"no single 'N input(s) failed:' line in:\n{stderr}"
    n = int(lines[heads[0]].split()[0])
    rows = lines[heads[0] + 1: heads[0] + 1 + n]
    assert len(rows) == n and all(r.startswith("  ") and ": " in r for r in rows), stderr
    return rows


def _under(rel: str, folder: str) -> bool:
    return folder == "." or rel == folder or rel.startswith(folder + os.sep)


def verify(case: Case, run: Run) -> None:
    """Every check the row asks for; raises AssertionError naming the first that fails."""
    t, result = run.t, run.result
    shown = f"args: {run.args}\n--- output:\n{result.output}"
    assert not t.loaded, f"a {t.loaded[0]} was created, but this row must fail before any model loads\n{shown}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(result.exception)
        raise AssertionError(f"an exception escaped the command (a traceback for the user):\n{tb}\n{shown}")
    assert "Traceback" not in result.output, shown
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    code = result.exit_code
    assert code in codes, f"exit code {code}, expected {case.code}\n{shown}"

    after = snapshot(t.tmp)
    changed = [p for p, h in run.before.items() if after.get(p) != h]
    assert not changed, f"inputs changed or removed: {changed}\n{shown}"
    new = sorted(set(after) - set(run.before))
    out_rel = os.path.relpath(t.out, t.tmp)
    if code == 2:
        assert not new, f"a failed run left new files or folders: {new}\n{shown}"
        lines = error_lines(result)
        assert len(lines) == 1, f"expected exactly one 'error:' line on stderr, got {len(lines)}\n{shown}"
        for frag in case.line:
            if isinstance(frag, re.Pattern):
                assert frag.search(lines[0]), f"the error line does not match /{frag.pattern}/: {lines[0]}"
            else:
                text = frag.format_map(t.names)
                assert text in lines[0], f"the error line does not name {text!r}: {lines[0]}"
        for frag in case.notline:
            assert frag not in lines[0], f"the error line contains {frag!r}: {lines[0]}"
        return
    allowed = [p for p in new if _under(p, out_rel) or _under(out_rel, p)]  # the output folder and its parents
    assert allowed == new, f"files written outside the output folder {t.out}: {sorted(set(new) - set(allowed))}"
    assert not error_lines(result), f"an 'error:' line on a run that exited {code}\n{shown}"
    stderr_lines = result.stderr.splitlines() + run.logged
    for frag in case.warn:
        assert any(frag in line for line in stderr_lines), f"no warning line containing {frag!r}\n{shown}"
    for frag in case.nowarn:
        assert not any(frag in line for line in stderr_lines), f"a line containing {frag!r}, unexpected\n{shown}"
    if code == 130:
        return
    if code == 1:
        rows = summary_failures(result.stderr)
        assert len(rows) == len(case.failed), f"expected {len(case.failed)} failure(s): {sorted(case.failed)}\n{shown}"
        for name, reason in case.failed.items():
            found = [r for r in rows if re.match(rf"(.*[/\\])?{re.escape(name)}: ", r.strip())]
            assert len(found) == 1, f"the summary does not list {name} once: {rows}"
            assert reason in found[0].strip().split(f"{name}: ", 1)[1], f"{name}: reason lacks {reason!r}: {found[0]}"
    else:
        assert not re.search(r"\d+ input\(s\) failed", result.stderr), shown
    check_outputs(case, t, shown)
    if case.check is not None:
        case.check(t, result)


def check_outputs(case: Case, t: Ctx, shown: str) -> None:
    written = sorted(p.relative_to(t.out).as_posix() for p in t.out.rglob("*") if p.is_file()) \
        if t.out.is_dir() else []
    expected = {*case.images, *case.videos, *case.jsonl, *(["predictions.json"] if case.json is not None else [])}
    if case.exact:
        assert written == sorted(expected), f"outputs {written}, expected {sorted(expected)}\n{shown}"
    else:
        missing = expected - set(written)
        assert not missing, f"outputs missing: {sorted(missing)} (written: {written})\n{shown}"
    for name, (w, h) in case.images.items():
        image = cv2.imdecode(np.fromfile(t.out / name, np.uint8), cv2.IMREAD_COLOR)  # any name, not only UTF-8
        assert image is not None, f"{name} does not decode"
        assert (image.shape[1], image.shape[0]) == (w, h), f"{name} is {image.shape[1]}x{image.shape[0]}, not {w}x{h}"
    if case.json is not None:
        doc = json.loads((t.out / "predictions.json").read_text(encoding="utf-8"))
        listed = [Path(e["image"]).name for e in doc["images"]]
        if isinstance(case.json, int):
            assert len(listed) == case.json, f"predictions.json lists {listed}, expected {case.json} entries"
        else:
            assert listed == list(case.json), f"predictions.json lists {listed}, expected {list(case.json)}"
        for entry in doc["images"]:
            name = Path(entry["image"]).name
            if name in case.images:
                assert (entry["width"], entry["height"]) == case.images[name], entry
            assert isinstance(entry["instances"], list)
            assert all(len(i["keypoints"]) == 17 for i in entry["instances"])
    for name, n in case.jsonl.items():
        lines = [json.loads(line) for line in (t.out / name).read_text(encoding="utf-8").splitlines()]
        assert "header" in lines[0], f"{name}: no header line"
        assert len(lines) - 1 == n, f"{name}: {len(lines) - 1} frame lines, expected {n}"
    for name, (frames, w, h, fps) in case.videos.items():
        info = video_info(t.out / name)
        assert info["frames"] == frames and info["count"] == frames, f"{name}: {info}, expected {frames} frames"
        assert info["size"] == (w, h), f"{name}: {info['size']}, expected {(w, h)}"
        assert math.isclose(info["fps"], fps, abs_tol=0.05), f"{name}: {info['fps']} fps, expected {fps}"


# --------------------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def ckpt(random_checkpoint) -> Path:
    return random_checkpoint(ARCH)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, ckpt):
    reason = case.skip() if case.skip else None
    if reason:
        pytest.skip(reason)
    verify(case, run_case(case, tmp_path, monkeypatch, ckpt))


def test_matrix_has_enough_cases():
    assert len(CASES) >= 60
    assert {0, 1, 2, 130} <= {c for case in CASES for c in (case.code if isinstance(case.code, tuple)
                                                                   else (case.code,))}


def _printable(run: Run) -> str:
    err = run.result.stderr.splitlines()
    lines = error_lines(run.result)
    if lines:
        shown = lines[0]
    elif any(re.fullmatch(r"\d+ input\(s\) failed:", line.strip()) for line in err):
        i = next(i for i, line in enumerate(err) if re.fullmatch(r"\d+ input\(s\) failed:", line.strip()))
        shown = " / ".join(line.strip() for line in err[i: i + 3])
    else:
        warns = [line for line in err + run.logged if "warn" in line.lower() or "--kpt-thr" in line]
        shown = warns[0] if warns else (err[-1] if err else "")
    return shown


@pytest.mark.skipif(os.environ.get("POSEAPP_PRINT_MATRIX") != "1", reason="set POSEAPP_PRINT_MATRIX=1 to print")
def test_print_table(tmp_path_factory, ckpt):
    """Every row, run and checked, as a markdown table (``-s`` to see it); never fails."""
    rows = ["| case | args | expected | exit | line printed | result |", "| --- | --- | --- | --- | --- | --- |"]
    for case in CASES:
        reason = case.skip() if case.skip else None
        if reason:
            rows.append(f"| {case.name} | | {case.code} | | | skipped: {reason} |")
            continue
        tmp = tmp_path_factory.mktemp(case.name[:40])
        with pytest.MonkeyPatch.context() as mp:
            run = run_case(case, tmp, mp, ckpt)
            try:
                verify(case, run)
                verdict = "pass"
            except AssertionError as e:
                verdict = "FAIL: " + (str(e).strip().splitlines() or ["?"])[0]
        args = shlex.join(a.replace(str(ckpt), "<ckpt>").replace(str(tmp), "<tmp>") for a in run.args)
        cell = lambda s: s.replace("|", "\\|").replace(str(tmp), "<tmp>")[:200]  # noqa: E731
        rows.append(f"| {case.name} | `{cell(args)}` | {case.code} | {run.result.exit_code} | "
                    f"{cell(_printable(run))} | {cell(verdict)} |")
    print("\n" + "\n".join(rows))
