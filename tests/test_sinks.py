"""Sinks: run folders, atomic image/video/JSON writers, and the window's no-display error."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, needs_shared
from poseapp import sinks
import poseapp.sinks.files  # noqa: F401 (sinks.files, sinks.window below)
import poseapp.sinks.window  # noqa: F401
from poseapp.errors import OutputError
from poseapp.keypoints import get_keypoint_set
from poseapp.results import Frame, FrameResult, Poses
from poseapp.sinks import ImageWriter, JsonlWriter, JsonWriter, VideoWriter, Window, next_run_dir
from poseapp.sources import open_source


def _result(source: str = "a.jpg", n: int = 2, index: int = 0, timestamp: float | None = None,
            kind: str = "image", set_name: str = "coco") -> FrameResult:
    kset = get_keypoint_set(set_name)
    k = kset.num_keypoints
    rng = np.random.default_rng(index)
    poses = Poses(
        boxes=np.tile(np.array([[10, 20, 110, 220]], np.float32), (n, 1)),
        box_scores=np.full(n, 0.9, np.float32),
        keypoints=rng.uniform(0, 100, (n, k, 2)),
        scores=rng.uniform(0, 1, (n, k)),
        keypoint_set=kset,
    )
    frame = Frame(np.zeros((240, 320, 3), np.uint8), source, index, timestamp, kind)
    return FrameResult(frame, poses)


def _of(frame: Frame) -> FrameResult:
    """A frame's result with no instance (what ImageWriter takes: it uses the frame)."""
    kset = get_keypoint_set("coco")
    k = kset.num_keypoints
    empty = Poses(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, k, 2)), np.zeros((0, k)), kset)
    return FrameResult(frame, empty)


def _leftovers(folder: Path) -> list[str]:
    """Hidden temporary files a writer may have left."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n, size


# --------------------------------------------------------------------------------------------------
# next_run_dir


def test_next_run_dir_increments(tmp_path):
    base = tmp_path / "runs" / "predict"
    assert next_run_dir(base) == base and base.is_dir()
    assert next_run_dir(base) == tmp_path / "runs" / "predict2"
    assert next_run_dir(base) == tmp_path / "runs" / "predict3"
    assert (tmp_path / "runs" / "predict3").is_dir()
    assert not _leftovers(base)


def test_next_run_dir_exist_ok_reuses_base(tmp_path):
    base = tmp_path / "out"
    assert next_run_dir(base, exist_ok=True) == base
    assert next_run_dir(base, exist_ok=True) == base
    assert not (tmp_path / "out2").exists()


def test_next_run_dir_unwritable_raises(tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    target = tmp_path / "afile" / "sub"
    with pytest.raises(OutputError) as e:
        next_run_dir(target)
    msg = str(e.value)
    assert str(target) in msg and "(choose another out_dir)" in msg and "\n" not in msg
    assert e.value.render({"out_dir": "--out"}).endswith("(choose another --out)")


def test_next_run_dir_exist_ok_on_a_file_raises(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        next_run_dir(tmp_path / "afile", exist_ok=True)


def test_next_run_dir_write_check(tmp_path, monkeypatch):
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sinks.files.tempfile, "TemporaryFile", deny)
    with pytest.raises(OutputError, match="permission denied"):
        next_run_dir(tmp_path / "p")


# --------------------------------------------------------------------------------------------------
# ImageWriter


def test_image_writer_same_name_and_ext(tmp_path):
    image = np.full((30, 40, 3), 77, np.uint8)
    writer = ImageWriter(tmp_path / "out")
    (tmp_path / "out").mkdir()
    path = writer.write(_of(Frame(image, "/somewhere/photo.png")), image)
    assert path == tmp_path / "out" / "photo.png"
    np.testing.assert_array_equal(cv2.imread(str(path)), image)
    assert not _leftovers(tmp_path / "out")


def test_image_writer_keeps_duplicates_apart(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    out = tmp_path / "out"
    out.mkdir()
    plain = ImageWriter(out)
    a = plain.write(_of(Frame(image, "x/a/img.jpg")), image)
    b = plain.write(_of(Frame(image, "x/b/img.jpg")), image)
    assert a != b and a.is_file() and b.is_file()
    assert b.name == "img_2.jpg"

    rooted = ImageWriter(tmp_path / "out2", root=tmp_path / "x")
    a = rooted.write(_of(Frame(image, str(tmp_path / "x" / "a" / "img.jpg"))), image)
    b = rooted.write(_of(Frame(image, str(tmp_path / "x" / "b" / "img.jpg"))), image)
    assert a == tmp_path / "out2" / "a" / "img.jpg" and b == tmp_path / "out2" / "b" / "img.jpg"
    assert cv2.imread(str(b)).shape == (20, 30, 3)


def test_image_writer_names_video_and_stream_frames(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    writer = ImageWriter(tmp_path)
    assert writer.write(_of(Frame(image, "/v/clip.mp4", 7, 0.2, "video")), image).name == "clip_000007.jpg"
    assert writer.write(_of(Frame(image, "webcam:0", 3, 0.1, "stream")), image).name == "webcam_0_000003.jpg"


@needs_shared
def test_image_writer_with_recursive_source(tmp_path):
    with open_source(DATA / "coco") as src:
        writer = ImageWriter(tmp_path, root=src.root)
        written = [writer.write(_of(f), f.image) for f in src]
    assert sorted(p.name for p in written) == sorted(p.name for p in (DATA / "coco").glob("*.jpg"))
    assert cv2.imread(str(written[0])).shape == cv2.imread(str(DATA / "coco" / written[0].name)).shape


# --------------------------------------------------------------------------------------------------
# VideoWriter


@needs_shared
def test_video_writer_reads_back(tmp_path):
    path = tmp_path / "out.mp4"
    with open_source(DATA / "demo" / "demo.mp4") as src:
        with VideoWriter(path, src.fps, src.size) as writer:
            for frame in src:
                writer.append(frame.image)
    assert writer.frames_written == 5
    assert _count_frames(path) == (5, (960, 540))
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    cap.release()
    assert not _leftovers(tmp_path)


def test_video_writer_finalised_after_exception(tmp_path):
    path = tmp_path / "partial.mp4"
    image = np.full((64, 96, 3), 128, np.uint8)
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 10.0, (96, 64)) as writer:
            for _ in range(3):
                writer.append(image)
            assert not path.exists()  # still under its temporary name
            raise RuntimeError("pipeline failed")
    assert _count_frames(path) == (3, (96, 64))
    assert not _leftovers(tmp_path)


def test_video_writer_rejects_wrong_size_and_handles_no_frames(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoWriter(path, None, (96, 64)) as writer:
        assert writer.fps == sinks.DEFAULT_FPS
        with pytest.raises(OutputError, match="96x64"):
            writer.append(np.zeros((10, 10, 3), np.uint8))
    assert not path.exists() and not _leftovers(tmp_path)


def test_video_writer_unwritable_raises(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="afile"):
        VideoWriter(tmp_path / "afile" / "v.mp4", 5.0, (32, 32))


# --------------------------------------------------------------------------------------------------
# JSON


def test_json_writer_structure(tmp_path):
    path = tmp_path / "predictions.json"
    results = [_result("a.jpg", n=2), _result("b.jpg", n=0, index=1)]
    with JsonWriter(path, {"model": "m", "detector": "yolo"}) as writer:
        for r in results:
            writer.write(r)
        assert not path.exists()
    doc = json.loads(path.read_text())
    assert doc["keypoint_set"] == "coco" and doc["model"] == "m" and doc["detector"] == "yolo"
    assert doc["keypoint_names"] == list(get_keypoint_set("coco").names)
    assert [im["image"] for im in doc["images"]] == ["a.jpg", "b.jpg"]
    first = doc["images"][0]
    assert set(first) == {"image", "width", "height", "instances"}
    assert (first["width"], first["height"]) == (320, 240)
    assert first["instances"] == [p.to_dict() for p in results[0]]
    inst = first["instances"][0]
    assert set(inst) == {"bbox", "bbox_score", "keypoints", "keypoint_scores"}
    assert len(inst["bbox"]) == 4 and len(inst["keypoints"]) == 17 and len(inst["keypoints"][0]) == 2
    assert doc["images"][1]["instances"] == []
    assert not _leftovers(tmp_path)


def test_json_writer_writes_on_exception_and_mixed_sets(tmp_path):
    path = tmp_path / "p.json"
    with pytest.raises(KeyError):
        with JsonWriter(path, {}) as writer:
            writer.write(_result("a.jpg"))
            writer.write(_result("b.jpg", set_name="mpii"))
            raise KeyError("boom")
    doc = json.loads(path.read_text())
    assert [im["image"] for im in doc["images"]] == ["a.jpg", "b.jpg"]
    assert "keypoint_set" not in doc["images"][0] and doc["images"][1]["keypoint_set"] == "mpii"


def test_json_writer_rejects_clashing_meta(tmp_path):
    with pytest.raises(ValueError, match="images"):
        JsonWriter(tmp_path / "p.json", {"images": 1})


def test_jsonl_writer_header_lines_and_atomic_rename(tmp_path):
    path = tmp_path / "clip.jsonl"
    results = [_result("clip.mp4", index=i, timestamp=i / 5, kind="video") for i in range(3)]
    with JsonlWriter(path, {"model": "m"}) as writer:
        for r in results:
            writer.write(r)
        assert not path.exists()
        live = writer.temp_path.read_text().splitlines()  # flushed after each line
        assert len(live) == 4
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header = lines[0]["header"]
    assert header["keypoint_set"] == "coco" and len(header["keypoint_names"]) == 17 and header["model"] == "m"
    assert lines[1:] == [json.loads(r.to_json()) for r in results]
    assert [line["timestamp"] for line in lines[1:]] == [0.0, 0.2, 0.4]
    assert writer.lines_written == 3
    assert not _leftovers(tmp_path)


def test_jsonl_writer_renamed_after_exception(tmp_path):
    path = tmp_path / "s.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlWriter(path) as writer:
            writer.write(_result("webcam:0", kind="stream", timestamp=0.5))
            raise RuntimeError("camera unplugged")
    assert len(path.read_text().splitlines()) == 2
    assert not _leftovers(tmp_path)


# --------------------------------------------------------------------------------------------------
# Window


def test_window_without_display_raises(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sinks.window.sys, "platform", "linux")
    with pytest.raises(OutputError) as e:
        Window("poseapp")
    assert str(e.value) == ("show needs a display: none found (DISPLAY is not set); "
                            "drop show or run with a display")
    assert e.value.render({"show": "--show"}).startswith("--show needs a display")  # predict's words


def test_window_headless_opencv_raises(monkeypatch):
    """A display is set but OpenCV has no GUI backend (opencv-python-headless): namedWindow raises."""

    def headless(*args, **kwargs):
        raise cv2.error("The function is not implemented. Rebuild the library with GUI support")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sinks.window, "_x_reachable", lambda display: True)
    monkeypatch.setattr(cv2, "namedWindow", headless)
    with pytest.raises(OutputError, match="show needs a display.*headless"):
        Window("poseapp")


# --------------------------------------------------------------------------------------------------
# Sizes, alpha, pages, temporary names and what a killed run leaves


@pytest.mark.parametrize("size,fps", [((96, 64), 12.5), ((97, 63), 30000 / 1001), ((641, 359), 5.0)])
def test_video_keeps_the_exact_frame_size_and_rate(tmp_path, size, fps):
    name = "v.mp4"
    w, h = size
    image = np.add.outer(np.arange(h), np.arange(w)).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    with VideoWriter(tmp_path / "v.mp4", fps) as writer:  # size from the first frame
        for _ in range(4):
            writer.append(image)
    assert writer.path == tmp_path / name
    assert _count_frames(tmp_path / name) == (4, size)
    cap = cv2.VideoCapture(str(tmp_path / name))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=1e-6)
    cap.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("fps,stored", [(120000 / 1001, 119.88), (90000.0, sinks.DEFAULT_FPS), (0.5, 0.5)])
def test_video_frame_rates_the_encoder_cannot_store_as_given(tmp_path, fps, stored):
    """MPEG-4 stores the rate's numerator in 16 bits (119.88 becomes 2997/25); a capture claiming 90000 fps
    (an RTSP clock) has no real rate and is written at the default."""
    with VideoWriter(tmp_path / "v.mp4", fps) as writer:
        for _ in range(3):
            writer.append(np.zeros((16, 16, 3), np.uint8))
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(stored, rel=1e-6)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    cap.release()


def test_temporary_names_carry_the_pid_and_host(tmp_path):
    import os

    with JsonlWriter(tmp_path / ("c" * 240 + ".jsonl")) as writer:  # a long final name still fits
        assert writer.temp_path.name.startswith(f".{'c' * 100}.poseapp{os.getpid()}-{sinks.files._host_tag()}.")
        assert sinks.files._TEMP_NAME.match(writer.temp_path.name)
        assert sinks.remove_stale_temps([tmp_path]) == []  # ours, alive
        writer.write(_result("clip.mp4", kind="video"))
    assert [p.name for p in tmp_path.iterdir()] == ["c" * 240 + ".jsonl"]


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid, host = int(dead.stdout), sinks.files._host_tag()
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".clip.mp4.poseapp{pid}-{host}.abcd1234.mp4", tmp_path / f".x.png.poseapp{pid}-{host}.a_b_c_d_.tmp"]
    keep = [tmp_path / ".hidden", tmp_path / f"clip.poseapp{pid}-{host}.abcd1234.mp4", tmp_path / "a.png",
            tmp_path / f".y.png.poseapp1-{host}.abcdefgh.tmp",  # pid 1 (init) is alive
            tmp_path / f".z.png.poseapp{pid}-otherhost.abcdefgh.tmp",  # another machine's, on a shared disk
            tmp_path / "sub" / f".w.png.poseapp{pid}-{host}.abcdefgh.tmp"]  # not a folder this run writes
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(sinks.remove_stale_temps([tmp_path, tmp_path / "missing"])) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_image_writer_keeps_alpha_and_names_pages(tmp_path):
    alpha = np.random.default_rng(2).integers(0, 256, (240, 320), np.uint8)
    image = np.full((240, 320, 3), 77, np.uint8)
    writer = ImageWriter(tmp_path)
    png = writer.write(_of(Frame(image, "in/a.png", alpha=alpha)), image)
    jpg = writer.write(_of(Frame(image, "in/b.jpg", alpha=alpha)), image)  # JPEG has no alpha
    page = writer.write(_of(Frame(image, "in/scan.tif", page=2)), image)
    back = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert back.shape == (240, 320, 4) and np.array_equal(back[:, :, 3], alpha)
    assert np.array_equal(back[:, :, :3], image)
    assert cv2.imread(str(jpg), cv2.IMREAD_UNCHANGED).shape == (240, 320, 3)
    assert page.name == "scan_page2.tif"


def test_json_writers_write_nothing_without_a_frame(tmp_path):
    with JsonWriter(tmp_path / "predictions.json"):
        pass
    with JsonlWriter(tmp_path / "clip.jsonl"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_json_writer_records_the_page(tmp_path):
    r = _result("scan.tif")
    paged = FrameResult(Frame(r.frame.image, "scan.tif", page=3), r.poses)
    with JsonWriter(tmp_path / "p.json") as writer:
        writer.write(paged)
    entry = json.loads((tmp_path / "p.json").read_text())["images"][0]
    assert list(entry)[:4] == ["image", "page", "width", "height"] and entry["page"] == 3


class _FullDisk:
    """A file object that takes ``room`` bytes and then fails like a full disk (ENOSPC)."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: bytes) -> int:
        import errno

        if len(data) > self.room:
            self.real.write(data[: self.room])  # a partial write reaches the file, as it would
            self.real.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)

    def flush(self) -> None:
        self.real.flush()

    def close(self) -> None:
        self.real.close()


def test_jsonl_write_error_keeps_the_complete_lines(tmp_path):
    path = tmp_path / "clip.jsonl"
    writer = JsonlWriter(path)
    writer.write(_result("clip.mp4", kind="video"))
    room = 100
    writer._file = _FullDisk(writer._file, room)
    with pytest.raises(OutputError, match=r"cannot write to '.*clip.jsonl': no space left on device"):
        with writer:
            writer.write(_result("clip.mp4", index=1, kind="video"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # every line parses
    assert len(lines) == 2 and lines[1]["frame"] == 0
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("env,reason", [({"DISPLAY": ":97"}, "no X server answers at DISPLAY=:97"),
                                        ({"WAYLAND_DISPLAY": "wayland-9"}, "a Wayland session needs Xwayland")])
def test_window_on_an_unreachable_display_is_one_line(monkeypatch, env, reason):
    """An X display that does not answer would abort the process inside Qt: it is refused first."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sinks.window.sys, "platform", "linux")
    with pytest.raises(OutputError, match=re.escape(reason)):
        Window("poseapp")


def test_x_display_answering_on_its_socket(tmp_path, monkeypatch):
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        if port >= 6000:
            assert sinks.window._x_reachable(f"127.0.0.1:{port - 6000}")
    finally:
        server.close()
    assert not sinks.window._x_reachable(":97")
