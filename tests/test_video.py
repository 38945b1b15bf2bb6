"""The video engine end to end: synthetic clips of real people (cut from COCO frames) moving over a real
background, through ``python infer.py`` with the real int8 YOLOv8n detector and the trained Ultralight pose
network (fixtures.clips.make_clip: crossing paths, one leaving and returning, one standing still or shaking).

- Track IDs: no ID switch on the crossing clip, the returning person takes their old ID back, as many IDs
  as people.
- ``--det-every 5`` runs the detector on at most 30% of the frames, and its keypoints of the standing person
  stay within a few pixels of ``--det-every 1``'s.
- ``--smooth one-euro`` at least halves the jitter (mean absolute second difference) of the shaking person
  and lags the walking one by at most a few pixels; ``savgol`` halves it too.
- Cross-frame batching gives the keypoints of frame-by-frame estimation to 1e-3 px.
- Peak RSS of a 1,200-frame run is within 10% of a 200-frame one (a subprocess each).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DATA, DETECTOR, ROOT, SHARED, needs_shared
from fixtures.clips import make_clip, write_clip

ULTRALIGHT = SHARED / "weights" / "ultralight-nano-simplepose-coco-256x192.onnx"
ARCH = "res50_coco-256x192"

pytestmark = [needs_shared, pytest.mark.skipif(not ULTRALIGHT.is_file(), reason=f"{ULTRALIGHT} is not here")]


def predict(clip: Path, out: Path, *flags) -> tuple[list[dict], str]:
    """``python infer.py --source clip --json`` with the real detector and pose network: (frames, output)."""
    from poseapp.cli import main

    result = CliRunner().invoke(main, ["--source", str(clip), "--pose-model", str(ULTRALIGHT), "--pose-arch", ARCH,
                                       "--det-model", str(DETECTOR), "--json", "--no-save", "--out", str(out),
                                       "--exist-ok", *map(str, flags)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / f"{clip.stem}.jsonl").read_text().splitlines()]
    assert lines[0]["header"]["schema_version"] == 2
    return lines[1:], result.output


def matched(frames: list[dict], truth: dict[str, list]) -> dict[str, list[dict | None]]:
    """Each person's instance per frame: boxes and instances paired one to one by IoU (at least 0.5)."""
    from scipy.optimize import linear_sum_assignment

    from poseapp.engine.keyframes import box_iou

    names = list(truth)
    out: dict[str, list] = {name: [] for name in names}
    for t, frame in enumerate(frames):
        present = [n for n in names if truth[n][t] is not None]
        for n in names:
            out[n].append(None)
        if not present or not frame["instances"]:
            continue
        iou = box_iou(np.stack([truth[n][t] for n in present]), np.array([i["bbox"] for i in frame["instances"]]))
        for r, c in zip(*linear_sum_assignment(-iou)):
            if iou[r, c] >= 0.5:
                out[present[r]][t] = frame["instances"][c]
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    folder = tmp_path_factory.mktemp("clips")
    return {kind: make_clip(folder / f"{kind}.avi", kind) for kind in ("crossing", "returning", "shaking")}


@pytest.fixture(scope="module")
def crossing(clips, tmp_path_factory) -> dict[str, tuple[list[dict], str]]:
    """The crossing clip with --det-every 1 and 5."""
    clip = clips["crossing"][0]
    return {n: predict(clip, tmp_path_factory.mktemp(f"every{n}"), "--det-every", n) for n in (1, 5)}


def ids_of(person: list[dict | None]) -> set:
    return {inst.get("track_id") for inst in person if inst is not None} - {None}


def test_no_id_switch_when_paths_cross_and_one_id_per_person(clips, crossing):
    frames, output = crossing[1]
    people = matched(frames, clips["crossing"][1])
    ids = {name: ids_of(person) for name, person in people.items()}
    assert all(len(v) == 1 for v in ids.values()), ids  # each person keeps one ID, before and after crossing
    assert len(set().union(*ids.values())) == 3
    every = {i["track_id"] for f in frames for i in f["instances"] if "track_id" in i}
    assert every == set().union(*ids.values()), every  # no ID for anything but the three people
    assert "3 track(s)" in output
    tracked = sum(inst is not None and "track_id" in inst for inst in people["skier"])
    assert tracked >= 40  # of 48 frames: the skier is hidden behind the batter for a few


def test_the_returning_person_takes_their_old_id_back(clips, tmp_path):
    clip, truth = clips["returning"]
    frames, _ = predict(clip, tmp_path / "run")
    skier = matched(frames, truth)["skier"]
    before, after = ids_of(skier[:24]), ids_of(skier[40:])
    assert len(before) == 1 and before == after, (before, after)  # 12 frames away, --track-buffer 30
    assert all(inst is None for inst in skier[26:38])
    assert len({i["track_id"] for f in frames for i in f["instances"] if "track_id" in i}) == 2
    # gone longer than --track-buffer: a new ID
    frames, _ = predict(clip, tmp_path / "short", "--track-buffer", 5)
    skier = matched(frames, truth)["skier"]
    assert ids_of(skier[40:]) and ids_of(skier[40:]).isdisjoint(ids_of(skier[:24]))


def test_detection_every_5_frames_runs_the_detector_on_at_most_30_percent(clips, crossing):
    frames5, output = crossing[5]
    assert len(frames5) == 48
    counted = [int(w) for w in output.split("detector on ")[1].split(" frames")[0].split(" of ")]
    assert counted[1] == 48 and counted[0] <= 0.3 * 48, output
    truth = clips["crossing"][1]
    every1, every5 = matched(crossing[1][0], truth)["racer"], matched(frames5, truth)["racer"]
    pairs = [(a, b) for a, b in zip(every1, every5) if a is not None and b is not None]
    assert len(pairs) >= 46
    d = [np.linalg.norm(np.subtract(a["keypoints"], b["keypoints"]), axis=1).mean() for a, b in pairs]
    assert np.mean(d) <= 3.0 and np.median(d) <= 2.0, d  # pixels, the racer is 220 px tall
    assert len(ids_of(every5)) == 1


def jitter(person: list[dict], key: str = "keypoints") -> float:
    """Mean absolute second difference over frames of the confident keypoints (pixels)."""
    k = np.array([p[key] for p in person])
    s = np.array([p["keypoint_scores"] for p in person]) >= 0.3
    second = np.abs(k[2:] - 2 * k[1:-1] + k[:-2]).sum(-1)
    return float(second[s[2:] & s[1:-1] & s[:-2]].mean())


@pytest.mark.parametrize("smoother", ["one-euro", "savgol"])
def test_smoothing_halves_the_jitter_of_a_shaking_person_and_lags_a_walking_one_little(clips, smoother, tmp_path):
    clip, truth = clips["shaking"]
    frames, _ = predict(clip, tmp_path / "run", "--smooth", smoother)
    people = matched(frames, truth)
    racer, skier = people["racer"], people["skier"]
    assert all(p is not None for p in racer + skier)
    raw, smooth = jitter(racer, "keypoints_raw"), jitter(racer)
    assert smooth <= 0.5 * raw, (smooth, raw)
    lag = [np.linalg.norm(np.subtract(p["keypoints"], p["keypoints_raw"]), axis=1).mean() for p in skier[5:]]
    assert np.mean(lag) <= 3.0, lag  # pixels behind the model's own, walking 6 px a frame


def test_without_smoothing_the_json_has_no_raw_copy_and_ids_are_in_the_csv(clips, tmp_path):
    from poseapp.cli import main

    clip = clips["shaking"][0]
    result = CliRunner().invoke(main, ["--source", str(clip), "--pose-model", str(ULTRALIGHT), "--pose-arch", ARCH,
                                       "--det-model", str(DETECTOR), "--json", "--csv", "--no-save",
                                       "--out", str(tmp_path), "--exist-ok", "--max-frames", 10])
    assert result.exit_code == 0, result.output
    frames = [json.loads(line) for line in (tmp_path / "shaking.jsonl").read_text().splitlines()[1:]]
    instances = [i for f in frames for i in f["instances"]]
    assert instances and all("keypoints_raw" not in i for i in instances)
    with open(tmp_path / "shaking.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(instances)
    for row, inst in zip(rows, instances):
        assert row["track_id"] == str(inst.get("track_id", ""))
        assert float(row["nose_x"]) == inst["keypoints"][0][0]
        assert float(row["right_ankle_score"]) == inst["keypoint_scores"][16]
    assert rows[-1]["frame"] == "9" and float(rows[-1]["time"]) == pytest.approx(9 / 25)


def test_cross_frame_batching_gives_the_keypoints_of_frame_by_frame(clips):
    from poseapp import create_model, open_source
    from poseapp.boxes import YoloDetector
    from poseapp.pipeline import Pipeline

    estimator = create_model(ULTRALIGHT, arch=ARCH, device="cpu", backend="onnxruntime", batch_size=4)
    pipe = Pipeline(estimator, YoloDetector(DETECTOR, classes=["person"]))
    with open_source(clips["crossing"][0], max_frames=16) as frames:
        batched = list(pipe(frames))
    with open_source(clips["crossing"][0], max_frames=16) as frames:
        single = [pipe.process([frame])[0] for frame in frames]
    assert [r.frame.index for r in batched] == list(range(16))
    assert sum(len(r) for r in batched) >= 40  # 3 people a frame: passes of 4 crops split frames
    for a, b in zip(batched, single):
        assert np.array_equal(a.boxes, b.boxes)
        assert np.abs(a.keypoints - b.keypoints).max() <= 1e-3
        assert np.abs(a.scores - b.scores).max() <= 1e-5


PEAK_RSS = """
import resource, sys
from poseapp.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kb(clip: Path, out: Path) -> int:
    run = subprocess.run([sys.executable, "-c", PEAK_RSS, "--source", str(clip), "--pose-model", str(ULTRALIGHT),
                          "--pose-arch", ARCH, "--det-model", "none", "--backend", "onnxruntime", "--json",
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split("PEAK_RSS_KB")[1].split()[0])


def test_peak_memory_does_not_grow_with_the_video(tmp_path):
    """200 and 1,200 frames of 240x320 (a real photo, its crop moving), the whole-frame box, annotated video
    and JSON Lines written: the longer run's peak RSS is within 10% of the shorter's. A run that kept each
    frame (230 KB) would grow by 230 MB, a third of the process."""
    import cv2

    photo = cv2.imread(str(DATA / "coco" / "000000000785.jpg"))
    frames = [cv2.resize(photo[20 + t % 40:380 + t % 40, 260:520], (240, 320)) for t in range(1200)]
    short = write_clip(tmp_path / "short.avi", frames[:200])
    long = write_clip(tmp_path / "long.avi", frames)
    peaks = [peak_rss_kb(clip, tmp_path / clip.stem) for clip in (short, long)]
    lines = (tmp_path / "long" / "long.jsonl").read_text().count("\n")
    assert lines == 1201
    assert peaks[1] <= 1.10 * peaks[0], peaks
