"""Faults in the middle of a run: the disk fills up, the process is sent SIGTERM, SIGHUP or SIGKILL, a file
cannot be read. Whatever happens, a file under its final name is complete and valid (a video plays and
holds every frame its JSON Lines file describes; a JSON file parses), what was processed before the fault
is kept, and the next run into the folder removes the temporary files a killed run left.

Signals go to a real ``python infer.py`` process; the disk is a small tmpfs this test mounts (skipped
with the reason when it cannot: mounting needs root). Every run uses synthetic frames, the whole frame
as the box (``--det-model none``) and the fastest model (MobileNetV2 RLE, random weights), so nothing
here needs ../shared.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from poseapp.cli import main
from poseapp.sinks.files import _host_tag

ARCH = "mobilenetv2-rle_coco-256x192"


@pytest.fixture(scope="module")
def pose(random_checkpoint) -> list[str]:
    return ["--pose-model", str(random_checkpoint(ARCH)), "--pose-arch", ARCH, "--no-flip", "--det-model", "none"]


def make_video(path: Path, frames: int, size: tuple[int, int] = (160, 120), noise: bool = False,
               fps: float = 30.0) -> Path:
    """An MJPG AVI of moving gradients (or of noise, which compresses badly and fills a disk quickly)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    w, h = size
    ramp = np.add.outer(np.arange(h), np.arange(w))
    for i in range(frames):
        if noise:
            image = rng.integers(0, 256, (h, w, 3), np.uint8)
        else:
            image = (np.dstack([ramp + i, ramp * 2 + i, np.full_like(ramp, 7 * i)]) % 256).astype(np.uint8)
        writer.write(image)
    writer.release()
    return path


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames actually decodable, (width, height)); (-1, (0, 0)) when it cannot be opened."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return -1, (0, 0)
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, (image.shape[1], image.shape[0])
    cap.release()
    return n, size


def jsonl_frames(path: Path) -> list[dict]:
    """The frame lines of a JSON Lines output; every line must parse and the first must be the header."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "header" in lines[0]
    return lines[1:]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def final_files_valid(out: Path) -> dict[str, int]:
    """Check every file under a final name in ``out``; returns frames (or images) per file."""
    counts = {}
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".jsonl":
            counts[p.name] = len(jsonl_frames(p))
        elif p.suffix in (".mp4", ".avi"):
            n, _ = video_frames(p)
            assert n > 0, f"{p} is under its final name but does not play"
            counts[p.name] = n
        elif p.suffix == ".json":
            counts[p.name] = len(json.loads(p.read_text())["images"])
        else:
            assert cv2.imread(str(p)) is not None, f"{p} is under its final name but does not decode"
            counts[p.name] = 1
    return counts


# --------------------------------------------------------------------------------------------------
# The disk fills up


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB tmpfs mounted for the test (unmounted after)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {done.stderr.strip() or done.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_a_video_leaves_only_valid_files(tmp_path, small_disk, pose):
    clip = make_video(tmp_path / "clip.avi", 60, noise=True)
    out = small_disk / "out"
    result = CliRunner().invoke(main, ["--source", str(clip), *pose, "--json", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0] and str(out) in errors[0], result.stderr
    assert "poseapp.sinks" not in result.stderr
    assert not temp_files(out)
    counts = final_files_valid(out)
    # the JSON Lines file keeps every complete line written before the disk filled up
    assert counts.get("clip.jsonl", 0) >= 1, (counts, result.stderr)
    if "clip.mp4" in counts:  # a video under its final name holds every frame
        assert counts["clip.mp4"] == counts["clip.jsonl"]
    assert clip.is_file() and video_frames(clip)[0] == 60  # the input is untouched


def test_disk_full_during_a_folder(tmp_path, small_disk, pose):
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        cv2.imwrite(str(photos / f"{i:02d}.png"), rng.integers(0, 256, (120, 160, 3), np.uint8))
    out = small_disk / "out"
    result = CliRunner().invoke(main, ["--source", str(photos), *pose, "--json", "--out", str(out)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0], result.stderr
    assert "poseapp.sinks" not in result.stderr  # a second file left unfinished is told in that one line
    assert not temp_files(out)
    final_files_valid(out)  # each saved PNG decodes; predictions.json, if it fit, parses


# --------------------------------------------------------------------------------------------------
# Signals


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "infer.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the fault: {proc.communicate()}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError("the run made no progress")
        time.sleep(0.05)


def _temp_lines(out: Path) -> int:
    """Lines in the live (temporary) JSON Lines file of a running video."""
    for p in temp_files(out):
        if ".jsonl." in p.name:
            try:
                return len(p.read_text().splitlines())
            except OSError:
                return 0
    return 0


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_signal_mid_video_ends_like_ctrl_c(tmp_path, pose, sig, code):
    if signal.getsignal(sig) is signal.SIG_IGN:  # e.g. the tests run under nohup: the run rightly ignores it too
        pytest.skip(f"{sig.name} is ignored in this process, and so in the run it starts")
    clip = make_video(tmp_path / "clip.avi", 3000)
    out = tmp_path / "out"
    proc = _start(["--source", str(clip), *pose, "--json", "--out", str(out)], tmp_path)
    _wait_for(lambda: _temp_lines(out) >= 4, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"terminated by {signal.Signals(sig).name}: outputs written so far are saved" in stderr
    assert "frame(s)" in stderr  # the summary
    assert not temp_files(out)
    frames = jsonl_frames(out / "clip.jsonl")
    assert 3 <= len(frames) < 3000
    assert [f["frame"] for f in frames] == list(range(len(frames)))
    assert video_frames(out / "clip.mp4") == (len(frames), (160, 120))


def test_sighup_under_nohup_is_still_ignored(tmp_path, pose):
    """A run started with SIGHUP ignored (nohup) keeps ignoring it; SIGTERM still ends it as Ctrl-C does."""
    clip = make_video(tmp_path / "clip.avi", 3000)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "infer.py"), "--source", str(clip), *pose, "--json",
                             "--out", str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    _wait_for(lambda: _temp_lines(out) >= 4, proc)
    proc.send_signal(signal.SIGHUP)
    lines = _temp_lines(out)
    _wait_for(lambda: _temp_lines(out) >= lines + 3, proc)  # still running, still writing
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated by SIGTERM" in stderr and "SIGHUP" not in stderr


def test_sigterm_mid_folder_saves_what_was_done(tmp_path, pose):
    photos = tmp_path / "photos"
    photos.mkdir()
    ramp = np.add.outer(np.arange(120), np.arange(160))
    for i in range(400):
        cv2.imwrite(str(photos / f"{i:03d}.png"), (np.dstack([ramp + i, ramp, ramp]) % 256).astype(np.uint8))
    out = tmp_path / "out"
    proc = _start(["--source", str(photos), *pose, "--json", "--out", str(out)], tmp_path)
    _wait_for(lambda: len(list(out.glob("*.png"))) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert not temp_files(out)
    saved = sorted(p.name for p in out.glob("*.png"))
    doc = json.loads((out / "predictions.json").read_text())
    listed = [Path(im["image"]).name for im in doc["images"]]
    assert 3 <= len(saved) < 400
    # every image in predictions.json was saved; at most the one in flight was saved and not yet listed
    assert set(listed) <= set(saved) and len(saved) - len(listed) <= 1


def test_sigkill_leaves_no_invalid_final_file_and_the_next_run_cleans_up(tmp_path, pose):
    clip = make_video(tmp_path / "clip.avi", 3000)
    out = tmp_path / "out"
    proc = _start(["--source", str(clip), *pose, "--json", "--out", str(out)], tmp_path)
    _wait_for(lambda: _temp_lines(out) >= 4, proc)
    proc.kill()
    proc.communicate(timeout=60)
    stale = temp_files(out)
    assert len(stale) == 2 and all(f".poseapp{proc.pid}-" in p.name for p in stale)  # the video and the JSONL
    assert final_files_valid(out) == {}  # nothing under a final name

    # a live writer's temporary file (its pid is alive) is never touched
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = out / f".other.jsonl.poseapp{sleeper.pid}-{_host_tag()}.abcdefgh.tmp"
    live.write_text("{}\n")
    try:
        short = make_video(tmp_path / "short.avi", 3)
        result = CliRunner().invoke(main, ["--source", str(short), *pose, "--json", "--out", str(out), "--exist-ok"])
        assert result.exit_code == 0, result.output
        assert "removed 2 temporary file(s) a killed earlier run left" in result.stderr
        assert temp_files(out) == [live]
        assert final_files_valid(out) == {"short.jsonl": 3, "short.mp4": 3}
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------------------------------
# A read error mid-folder


def test_read_error_mid_folder_is_listed_and_the_rest_processed(tmp_path, pose):
    """``/proc/self/mem`` read from offset 0 fails with EIO: a real I/O error behind an image's name."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(photos / name), np.full((48, 64, 3), 90, np.uint8))
    (photos / "b.png").symlink_to("/proc/self/mem")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--source", str(photos), *pose, "--json", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"  {photos / 'b.png'}: cannot read file (Input/output error): skipped" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "predictions.json"]
    doc = json.loads((out / "predictions.json").read_text())
    assert [Path(im["image"]).name for im in doc["images"]] == ["a.png", "c.png"]
