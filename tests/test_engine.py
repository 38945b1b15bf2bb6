"""The video engine's pieces, each on its own (poseapp.engine): stages and queues, cross-frame batching,
boxes from keypoints, the tracker, the smoothers, the CSV table and the options that drive them. Known
numbers, synthetic boxes and keypoints; the batching tests stand a small stub in for the pose network.
tests/test_video.py runs them together on real clips."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from poseapp.engine.batching import Prepared, batched_poses
from poseapp.engine.keyframes import boxes_from_keypoints, drop_duplicates
from poseapp.engine.queues import Inbox, Newest, run_stages
from poseapp.estimator import Crops
from poseapp.keypoints import get_keypoint_set
from poseapp.results import Detections, Frame, FrameResult, Poses

COCO = get_keypoint_set("coco")


# ------------------------------------------------------------------ stages


def test_stages_run_in_threads_and_keep_the_order():
    names = []

    def double(inbox):
        for x in inbox:
            names.append(threading.current_thread().name)
            yield 2 * x

    def plus_one(inbox):
        for x in inbox:
            yield x + 1

    assert list(run_stages(range(100), [double, plus_one], maxsize=2)) == [2 * x + 1 for x in range(100)]
    assert set(names) == {"stage-1"}


def test_an_error_in_a_stage_is_raised_where_the_results_are_read():
    def failing(inbox):
        for x in inbox:
            if x == 5:
                raise KeyError("frame 5")
            yield x

    got = []
    with pytest.raises(KeyError, match="frame 5"):
        for x in run_stages(range(10), [failing, lambda inbox: (x for x in inbox)]):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_closing_early_stops_every_thread_and_closes_the_source_in_its_thread():
    closed = []

    def source():
        try:
            for i in range(10**6):
                yield i
        finally:
            closed.append(threading.current_thread().name)

    before = threading.active_count()
    run = run_stages(source(), [lambda inbox: (x for x in inbox)], maxsize=2)
    for x in run:
        if x == 3:
            break
    run.close()
    assert closed == ["stage-0"]  # the capture is released by the thread that reads it
    assert threading.active_count() == before


def test_the_newest_mailbox_drops_stale_items_but_never_the_end():
    box = Newest()
    for i in range(5):
        box.put(i)
    assert box.dropped == 4 and box.get(0.1) == 4
    from poseapp.engine.queues import _End

    box.put(7)
    box.put(_End())
    box.put(8)  # after the end: kept, the end is not replaced
    assert box.dropped == 4 and box.qsize() == 3


def test_a_slow_consumer_of_a_live_source_gets_the_newest_frames():
    def camera():
        for i in range(60):
            time.sleep(0.002)
            yield i

    run = run_stages(camera(), [lambda inbox: (x for x in inbox)], maxsize=1, newest_first=True)
    got = []
    for x in run:
        got.append(x)
        time.sleep(0.02)
    assert got == sorted(got) and got[-1] == 59
    assert run.dropped > 20 and len(got) + run.dropped == 60


# ------------------------------------------------------------------ cross-frame batching


class StubEstimator:
    """Stands in for the pose network: keypoint k of a crop is its centre + (k, 0); records each pass."""

    keypoint_set = COCO

    def __init__(self):
        self.passes = []

    def keypoints_of(self, crops: Crops):
        self.passes.append(len(crops.pixels))
        k = np.arange(17, dtype=np.float64)
        kpts = crops.centers[:, None, :].astype(np.float64) + np.stack([k, 0 * k], axis=1)[None]
        return kpts, np.ones((len(crops.pixels), 17))


def prepared(index: int, n: int) -> Prepared:
    centers = np.array([[100 * index + j, 10.0 * j] for j in range(n)], np.float32).reshape(-1, 2)
    boxes = np.concatenate([centers - 5, centers + 5], axis=1)
    crops = Crops(np.zeros((n, 4, 4, 3), np.uint8), centers, np.ones((n, 2), np.float32))
    frame = Frame(np.zeros((8, 8, 3), np.uint8), "clip", index)
    return Prepared(frame, Detections(boxes, np.ones(n, np.float32), np.zeros(n, np.int64)), crops)


def feed(items, **kwargs) -> tuple[list[FrameResult], StubEstimator]:
    est = StubEstimator()
    stage = lambda inbox: batched_poses(inbox, est, **kwargs)  # noqa: E731
    return list(run_stages(items, [stage], maxsize=4)), est


def test_crops_of_consecutive_frames_share_passes_and_results_keep_frame_order():
    counts = [3, 0, 5, 1, 0, 0, 7, 2]
    results, est = feed([prepared(i, n) for i, n in enumerate(counts)], batch_size=4)
    assert [r.frame.index for r in results] == list(range(len(counts)))
    assert est.passes == [4, 4, 4, 4, 2]  # 18 crops: frames split across passes, one short pass at the end
    for r, n in zip(results, counts):
        assert len(r) == n
        expected = r.boxes[:, None, :2] + 5 + np.stack([np.arange(17), np.zeros(17)], axis=1)[None]
        np.testing.assert_allclose(r.keypoints, expected)
    assert sum(r.timings["pose"] for r in results) > 0


def test_frames_with_few_crops_are_held_no_more_than_a_few():
    from poseapp.engine.batching import MAX_FRAMES

    results, est = feed([prepared(i, 1 if i % 10 == 0 else 0) for i in range(40)], batch_size=32)
    assert MAX_FRAMES < 10 and len(results) == 40
    assert est.passes == [1, 1, 1, 1]  # flushed at MAX_FRAMES waiting frames, not held until a batch came


def test_a_live_frame_waits_at_most_the_latency_for_a_batch():
    def slow():
        for i in range(3):
            yield prepared(i, 1)
            time.sleep(0.3)

    est = StubEstimator()
    seen = []
    for r in run_stages(slow(), [lambda inbox: batched_poses(inbox, est, batch_size=32, max_latency=0.05)]):
        seen.append((r.frame.index, time.monotonic()))
    assert [i for i, _ in seen] == [0, 1, 2] and est.passes == [1, 1, 1]
    assert seen[1][1] - seen[0][1] > 0.2  # each went alone, when its wait ran out


class Backlog:
    """An inbox that always has the next frame, 15 ms after it is asked, however short the wait: an engine
    that has fallen behind, where a frame is waiting even when the oldest one's time is up."""

    def __init__(self, items):
        self._items = iter(items)

    def poll(self, seconds):
        from poseapp.engine.queues import END

        time.sleep(0.015)
        return next(self._items, END)


def test_a_live_frame_waits_at_most_the_latency_when_the_engine_is_behind():
    est = StubEstimator()
    results = list(batched_poses(Backlog([prepared(i, 1) for i in range(24)]), est, batch_size=32, max_latency=0.05))
    assert [r.frame.index for r in results] == list(range(24)) and sum(est.passes) == 24
    assert max(est.passes) <= 5  # ~4 frames per 50 ms, not the 8 frames it may hold at most


# ------------------------------------------------------------------ boxes from keypoints


def test_boxes_from_keypoints_pad_the_confident_ones_as_the_recipe_pads():
    kpts = np.zeros((2, 17, 2))
    kpts[0, :, 0] = np.linspace(100, 200, 17)
    kpts[0, :, 1] = np.linspace(50, 450, 17)
    scores = np.full((2, 17), 0.9)
    scores[0, 0] = 0.1  # x=100, y=50 left out
    kpts[0, 0] = [-1000, -1000]
    scores[1] = 0.1  # lost
    boxes, kept = boxes_from_keypoints(kpts, scores, kpt_thr=0.3, padding=1.25, size=(480, 640))
    assert kept.tolist() == [True, False]
    lo = np.array([100 + 100 / 16, 50 + 400 / 16])
    hi = np.array([200, 450])
    c, half = (lo + hi) / 2, (hi - lo) / 2 * 1.25
    np.testing.assert_allclose(boxes[0], [c[0] - half[0], c[1] - half[1], c[0] + half[0], min(480, c[1] + half[1])],
                               rtol=1e-6)
    assert boxes[0, 3] == 480  # clipped to the image


def test_duplicate_boxes_keep_the_stronger():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    assert drop_duplicates(boxes, np.array([0.5, 0.9, 0.1])).tolist() == [False, True, True]


# ------------------------------------------------------------------ tracking


class SpreadEstimator:
    """Stands in for the pose network in the keyframes stage: a crop's 17 keypoints spread over the box it
    was cut from (its padded scale undone), all confident, but for crops centred right of ``weak_from`` and
    every crop of the calls numbered in ``weak_calls``."""

    def __init__(self, weak_from: float = np.inf, weak_calls: tuple[int, ...] = ()):
        from poseapp.create import resolve_model

        self.recipe = resolve_model("res50_coco-256x192", None).recipe
        self.keypoint_set = COCO
        self.weak_from = weak_from
        self.weak_calls = weak_calls
        self.calls = 0

    def keypoints_of(self, crops: Crops):
        u = np.linspace(-0.5, 0.5, 17)
        half = crops.scales[:, None, :] / self.recipe.bbox_padding
        kpts = crops.centers[:, None, :] + half * np.stack([u, u[::-1]], axis=1)[None]
        weak = (crops.centers[:, :1] >= self.weak_from) | (self.calls in self.weak_calls)
        self.calls += 1
        return kpts.astype(np.float64), np.where(weak, 0.1, 1.0) * np.ones((1, 17))


@pytest.mark.parametrize("second, weak_from, weak_calls, early, shown", [
    ([300, 100, 400, 400], np.inf, (), 0, 2),  # two people apart: their boxes come from their keypoints
    ([104, 100, 204, 400], np.inf, (), 4, 2),  # one box over the other: the second was dropped, so detect again
    ([300, 100, 400, 400], 300, (), 0, 1),  # a weak instance (keypoints under kpt_thr) is not followed, and not
    #                                         detected again frame after frame: it waits for the next key frame
    ([300, 100, 400, 400], np.inf, (1,), 1, 2),  # both lost in frame 1 (its first pass): detect again there
], ids=["apart", "merged", "weak", "lost"])
def test_det_every_detects_again_when_an_instance_is_lost(second, weak_from, weak_calls, early, shown):
    from poseapp.engine.keyframes import propagated_poses
    from poseapp.estimator import make_crops

    est = SpreadEstimator(weak_from, weak_calls)
    boxes = np.array([[100, 100, 200, 400], second], np.float32)
    detections = Detections(boxes, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64))
    image = np.zeros((480, 640, 3), np.uint8)
    calls = []

    def detect(frame):
        calls.append(frame.index)
        return detections

    def items():
        for i in range(5):
            frame = Frame(image, "clip", i)
            if i == 0:
                yield Prepared(frame, detections, make_crops([image], [boxes], est.recipe))
            else:
                yield Prepared(frame, None, None)

    stage = lambda inbox: propagated_poses(inbox, est, detect, kpt_thr=0.3)  # noqa: E731
    results = list(run_stages(items(), [stage]))
    assert len(calls) == early and sum(r.detected for r in results) == 1 + early
    assert len(results[0]) == 2 and all(len(r) == shown for r in results[1:])


def poses_at(boxes: list[list[float]], scores: float = 0.9) -> Poses:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    k = np.linspace(0, 1, 17)
    kpts = b[:, None, :2] + (b[:, None, 2:] - b[:, None, :2]) * np.stack([k, k[::-1]], axis=1)[None]
    return Poses(b, np.full(len(b), scores, np.float32), kpts.astype(np.float64), np.full((len(b), 17), 0.9), COCO)


def test_two_crossing_boxes_keep_their_ids():
    from poseapp.engine.tracking import Tracker

    tracker = Tracker(COCO)
    seen = []
    for t in range(40):
        a = [100 + 10 * t, 100, 180 + 10 * t, 300]
        b = [500 - 10 * t, 110, 580 - 10 * t, 310]
        seen.append(tracker.update(poses_at([a, b])).tolist())
    assert seen[0] == [-1, -1]  # not confirmed on their first frame
    assert all(ids == [1, 2] for ids in seen[1:]), seen


def test_a_returning_instance_takes_its_id_back_within_the_buffer_only():
    """It walks right and leaves; ByteTrack's Kalman filter carries its lost track on to the right, and it
    comes back walking left 60 px short of where it left (too far for the keypoint similarity with its last
    pose to match): only the re-identification gives it its old ID."""
    from poseapp.engine.tracking import Tracker

    def run(gap: int, buffer: int) -> list:
        tracker = Tracker(COCO, track_buffer=buffer)
        still = [100, 100, 180, 300]
        ids = []
        for t in range(10):
            x = 400 + 12 * t
            ids.append(tracker.update(poses_at([[x, 100, x + 80, 300], still])).tolist())
        for t in range(gap):  # gone
            ids.append(tracker.update(poses_at([still])).tolist())
        for t in range(5):  # back near where it left, walking left
            x = 448 - 12 * t
            ids.append(tracker.update(poses_at([[x, 100, x + 80, 300], still])).tolist())
        return ids

    ids = run(gap=20, buffer=30)
    assert ids[9] == [1, 2] and ids[-1] == [1, 2], ids
    ids = run(gap=20, buffer=10)
    assert ids[-1][1] == 2 and ids[-1][0] not in (-1, 1), ids


def test_an_id_handed_to_a_newcomer_never_comes_back_twice():
    """A is lost; B appears beside where A left (too far for ByteTrack's IoU, near enough to take A's ID);
    then A comes back where it was, where ByteTrack's lost track of A would match it again: it must not
    come back with the ID B now has."""
    from poseapp.engine.tracking import Tracker

    tracker = Tracker(COCO)
    a, b = [600, 100, 680, 300], [670, 100, 750, 300]
    frames = [[a]] * 10 + [[]] * 3 + [[b]] * 4 + [[a, b]] * 6
    seen = [tracker.update(poses_at(boxes)).tolist() for boxes in frames]
    assert seen[9] == [1] and seen[16] == [1], seen  # B took A's ID (where A left: position is all it knows)
    for ids in seen:
        known = [i for i in ids if i >= 0]
        assert len(known) == len(set(known)), seen
    assert seen[-1][1] == 1 and seen[-1][0] not in (-1, 1), seen


def test_oks_of_identical_and_distant_poses():
    from poseapp.engine.tracking import oks

    p = poses_at([[0, 0, 100, 200]])
    area = np.array([100 * 200.0])
    same = oks(p.keypoints, p.scores, p.keypoints, p.scores, area, COCO.sigmas, 0.3)
    far = oks(p.keypoints, p.scores, p.keypoints + 100, p.scores, area, COCO.sigmas, 0.3)
    none = oks(p.keypoints, p.scores * 0, p.keypoints, p.scores, area, COCO.sigmas, 0.3)
    assert same[0, 0] == pytest.approx(1.0) and far[0, 0] < 0.01 and np.isnan(none[0, 0])


# ------------------------------------------------------------------ smoothing


def track_results(points: np.ndarray, scores: np.ndarray | None = None, fps: float = 25.0) -> list[FrameResult]:
    """One tracked instance (id 1) whose 17 keypoints are all at points[t] (T, 2)."""
    out = []
    for t, p in enumerate(points):
        kpts = np.repeat(np.asarray(p, np.float64)[None, None], 17, axis=1)
        s = np.full((1, 17), 0.9) if scores is None else np.full((1, 17), scores[t])
        poses = Poses(np.zeros((1, 4), np.float32), np.ones(1, np.float32), kpts, s, COCO, np.array([1]))
        out.append(FrameResult(Frame(np.zeros((4, 4, 3), np.uint8), "clip", t, t / fps, "video"), poses))
    return out


def second_difference(x: np.ndarray) -> float:
    return float(np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).sum(-1).mean())


def test_one_euro_steadies_a_still_point_and_follows_a_moving_one():
    from poseapp.engine.smoothing import OneEuro

    rng = np.random.default_rng(0)
    still = 100 + rng.uniform(-3, 3, size=(100, 2))
    out = np.array([r.keypoints[0, 0] for r in OneEuro().smooth(track_results(still))])
    assert second_difference(out) <= 0.3 * second_difference(still)
    moving = np.stack([np.arange(100) * 6.0, np.zeros(100)], axis=1)  # 150 px/s
    out = [r for r in OneEuro().smooth(track_results(moving))]
    lag = [np.abs(r.keypoints - r.poses.keypoints_raw).max() for r in out[10:]]
    assert max(lag) <= 3.0
    assert np.array_equal(out[0].poses.keypoints_raw, out[0].keypoints)  # the first frame is its own


def test_a_keypoint_that_reappears_does_not_drag_its_old_position_along():
    from poseapp.engine.smoothing import OneEuro, SavGol

    points = np.array([[0.0, 0.0]] * 10 + [[500.0, 0.0]] * 10)
    scores = np.array([0.9] * 9 + [0.1] + [0.9] * 10)  # gone on frame 9, back somewhere else on 10
    for smoother in (OneEuro(), SavGol(window=7)):
        out = [r.keypoints[0, 0] for r in smoother.smooth(track_results(points, scores))]
        assert len(out) == 20
        np.testing.assert_allclose(out[10], [500, 0], atol=1e-9)
        np.testing.assert_allclose(out[8], [0, 0], atol=1e-9)


def test_savgol_is_scipys_filter_inside_a_run_and_leaves_one_for_one():
    from scipy.signal import savgol_filter

    from poseapp.engine.smoothing import SavGol

    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(50, 2)), axis=0)
    results = list(SavGol(window=9, order=2).smooth(track_results(x)))
    assert [r.frame.index for r in results] == list(range(50))
    got = np.array([r.keypoints[0, 0] for r in results])
    np.testing.assert_allclose(got[4:-4], savgol_filter(x, 9, 2, axis=0)[4:-4], atol=1e-9)
    assert np.abs(got[:4] - x[:4]).max() < np.abs(x[:4] - x[:4].mean(0)).max() + 1e-9  # one-sided at the ends


def test_smoothing_needs_track_ids():
    from poseapp.engine.smoothing import OneEuro

    result = track_results(np.zeros((1, 2)))[0]
    untracked = FrameResult(result.frame, Poses(*[getattr(result.poses, f) for f in
                                                  ("boxes", "box_scores", "keypoints", "scores", "keypoint_set")]))
    with pytest.raises(ValueError, match="track IDs"):
        OneEuro().step(untracked)


# ------------------------------------------------------------------ outputs and options


def test_instances_carry_track_ids_and_raw_keypoints_into_json():
    r = track_results(np.array([[1.0, 2.0]]))[0]
    d = r.to_dict()["instances"][0]
    assert d["track_id"] == 1 and "keypoints_raw" not in d
    from poseapp.engine.smoothing import OneEuro

    d = OneEuro().step(r).to_dict()["instances"][0]
    assert list(d)[:2] == ["track_id", "bbox"] and d["keypoints_raw"] == d["keypoints"]
    no_id = FrameResult(r.frame, Poses(r.poses.boxes, r.poses.box_scores, r.keypoints, r.scores, COCO, np.array([-1])))
    assert "track_id" not in no_id.to_dict()["instances"][0] and no_id[0].track_id is None


def test_the_csv_table_has_a_row_per_frame_and_instance(tmp_path):
    import csv

    from poseapp.sinks import CsvWriter
    from poseapp.sinks.keypoint_files import csv_header

    results = track_results(np.array([[1.0, 2.0], [3.0, 4.0]]))
    empty = FrameResult(results[0].frame, Poses(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                np.zeros((0, 17, 2)), np.zeros((0, 17)), COCO, np.zeros(0, np.int64)))
    with CsvWriter(tmp_path / "t.csv") as writer:
        for r in [results[0], empty, results[1]]:
            writer.write(r)
        assert not (tmp_path / "t.csv").exists()  # under its final name only when complete
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == csv_header(COCO.names) and len(rows[0]) == 10 + 3 * 17
    assert [r[:5] for r in rows[1:]] == [["clip", "0", "", "0.0", "1"], ["clip", "1", "", "0.04", "1"]]
    assert rows[2][10:13] == ["3.0", "4.0", "0.9"]


def test_drawing_by_track_gives_each_id_its_colour():
    from poseapp.drawing import draw, track_color

    r = track_results(np.array([[20.0, 20.0]]))[0]
    image = np.zeros((40, 40, 3), np.uint8)
    by_track = draw(image, r.poses, radius=3)
    assert tuple(by_track[20, 20]) == track_color(1)
    by_kpt = draw(image, r.poses, radius=3, color_by="keypoint")
    assert tuple(by_kpt[20, 20]) != track_color(1)
    assert track_color(1) != track_color(2) and track_color(-1) == (160, 160, 160)
    with pytest.raises(ValueError, match="track IDs"):
        draw(image, Poses(r.boxes, r.poses.box_scores, r.keypoints, r.scores, COCO), color_by="track")


@pytest.mark.parametrize("fields, message", [
    ({"smooth": "one-euro", "track": False}, "needs track IDs, but tracking is off (no_track)"),
    ({"color_by": "track", "track": False}, "needs track IDs"),
    ({"smooth_window": 8}, "smooth_window must be odd"),
    ({"smooth_window": 5, "smooth_order": 5}, "smooth_order must be below smooth_window"),
    ({"det_every": 0}, "det_every must be at least 1"),
    ({"smooth": "kalman"}, "smooth"),
    ({"max_latency": -1.0}, "max_latency must be between 0 and 60000"),
])
def test_video_options_are_checked_before_anything_loads(fields, message):
    from poseapp.errors import PoseAppError
    from poseapp.job import PredictOptions

    with pytest.raises(PoseAppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PredictOptions(source="x.mp4", **fields)


def test_tracking_is_on_for_videos_and_streams_and_when_smoothing():
    from poseapp.job import PredictOptions, tracks

    class Src:
        def __init__(self, kind):
            self.kind = kind

    assert [tracks(PredictOptions(source="x"), Src(k)) for k in ("image", "video", "stream")] == [False, True, True]
    assert tracks(PredictOptions(source="x", smooth="savgol"), Src("image"))
    assert not tracks(PredictOptions(source="x", track=False), Src("video"))


def test_webcams_and_rtsp_are_live_http_streams_are_read_whole():
    from poseapp.sources.capture import is_live

    assert [is_live(t) for t in (0, "rtsp://cam/1", "RTMP://host/app", "udp://@:1234", "srt://h:9000")] == [True] * 5
    assert not any(is_live(t) for t in ("http://host/clip.mp4", "HTTPS://host/live.m3u8"))


def test_a_live_buffer_keeps_every_frame_up_to_its_size():
    import queue as queues

    run = run_stages(range(100), [lambda inbox: (x for x in inbox)], maxsize=1, first_size=30)
    assert isinstance(run._mailboxes[0], queues.Queue) and run._mailboxes[0].maxsize == 30
    assert list(run) == list(range(100)) and run.dropped == 0


@pytest.mark.parametrize("fields, message", [
    ({"det_every": 0}, "det_every must be a whole number >= 1 (it is 0)"),
    ({"smooth": "kalman", "track": True}, "smooth must be one of none, one-euro, savgol (it is 'kalman')"),
    ({"min_cutoff": 0}, "min_cutoff must be above 0"), ({"track_buffer": 0}, "track_buffer must be"),
    ({"max_latency": -1}, "max_latency must be >= 0"), ({"window": 8}, "window must be odd"),
    ({"order": 9}, "order must be 0 to window - 1"), ({"smooth": "savgol"}, "needs track IDs"),
])
def test_video_options_in_python_are_checked_too(fields, message):
    from poseapp import VideoOptions

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VideoOptions(**fields)


def test_inbox_poll_says_empty_and_end():
    from poseapp.engine.queues import EMPTY, END, _End

    box = Newest()
    inbox = Inbox(box, threading.Event())
    assert inbox.poll(0.01) is EMPTY
    box.put(1)
    box.put(_End())
    assert inbox.poll(0.01) == 1 and inbox.poll(0.01) is END
