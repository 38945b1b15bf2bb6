"""The job as stages: frames -> detector -> estimator -> tracker -> smoother -> FrameResult, one per frame.

``Pipeline(estimator, detector)(frames)`` runs the engine (``poseapp.engine``): reading, detection (with
cropping), the pose network and tracking with smoothing each run in a thread of their own, joined by
bounded queues, while the caller draws and writes; the crops of consecutive frames share forward passes.
Results come in frame order, and memory stays flat however long the input.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from poseapp.engine.tracking import DEFAULT_TRACK_BUFFER
from poseapp.results import Detections, Frame, FrameResult, Poses

if TYPE_CHECKING:
    from poseapp.boxes import Detector
    from poseapp.engine.queues import Inbox
    from poseapp.estimator import TopDownEstimator

DEFAULT_MAX_LATENCY = 0.1  # seconds a live frame may wait for later frames to share its forward pass
STREAM_BUFFER = 30  # live frames kept waiting with keep_all (a second at 30 fps)


@dataclass(frozen=True)
class VideoOptions:
    """How the engine runs over a sequence of frames (``python infer.py predict``'s video flags).

    Attributes:
        det_every: run the detector on every Nth frame; between, boxes come from the keypoints before
            (``engine.keyframes``), and the detector runs early when an instance is lost.
        track: give instances track IDs (``engine.tracking``).
        track_buffer: frames a lost instance keeps its ID.
        smooth: ``none``, ``one-euro`` or ``savgol`` (``engine.smoothing``; needs ``track``).
        min_cutoff, beta, d_cutoff: the One-Euro filter's parameters (Hz, per pixel/s, Hz).
        window, order: the Savitzky-Golay window (odd, frames) and polynomial order.
        kpt_thr: keypoints scoring below it are not smoothed, matched or used for a box.
        max_latency: seconds a live frame may wait for later frames to share its forward pass (streams;
            0: it runs at once with the frames already waiting).
        keep_all: a live source's frames wait, up to STREAM_BUFFER of them, when the engine falls behind
            (``--stream-buffer``); by default only the newest waits, the others are dropped (and counted).
    """

    det_every: int = 1
    track: bool = False
    track_buffer: int = DEFAULT_TRACK_BUFFER
    smooth: str = "none"
    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    window: int = 9
    order: int = 2
    kpt_thr: float = 0.3
    max_latency: float = DEFAULT_MAX_LATENCY
    keep_all: bool = False

    def __post_init__(self) -> None:
        from poseapp.engine.smoothing import SMOOTHERS

        problems = [f"{name} must be {rule} (it is {getattr(self, name)!r})" for name, ok, rule in (
            ("det_every", isinstance(self.det_every, int) and self.det_every >= 1, "a whole number >= 1"),
            ("track_buffer", isinstance(self.track_buffer, int) and self.track_buffer >= 1, "a whole number >= 1"),
            ("smooth", self.smooth in SMOOTHERS, f"one of {', '.join(SMOOTHERS)}"),
            ("min_cutoff", self.min_cutoff > 0, "above 0 (Hz)"), ("d_cutoff", self.d_cutoff > 0, "above 0 (Hz)"),
            ("beta", self.beta >= 0, ">= 0"),
            ("window", isinstance(self.window, int) and self.window >= 3 and self.window % 2, "odd and >= 3"),
            ("order", isinstance(self.order, int) and 0 <= self.order < self.window, "0 to window - 1"),
            ("max_latency", self.max_latency >= 0, ">= 0 (seconds)"),
        ) if not ok]
        if problems:
            raise ValueError(f"VideoOptions: {'; '.join(problems)}")
        if self.smooth != "none" and not self.track:
            raise ValueError(f"smoothing ({self.smooth}) needs track IDs: turn tracking on")


@dataclass
class RunStats:
    """What a run of the engine counted (filled as it goes)."""

    frames: int = 0
    detector_frames: int = 0  # of those, frames the detector ran on (FrameResult.detected)
    dropped: int = 0  # live frames dropped because the engine fell behind


class Pipeline:
    """Top-down pose estimation over any iterable of frames.

    ``Pipeline(estimator, detector)(frames)`` yields one FrameResult per frame, lazily, in order.
    ``detector`` is any callable ``(frames) -> list[Detections]`` (YOLO, whole frame, a boxes file, face boxes
    from a person model: see poseapp.boxes). ``video`` sets detection every N frames, tracking and
    smoothing (:class:`VideoOptions`).

    Example::

        from poseapp import Pipeline, create_model, open_source
        from poseapp.boxes import YoloDetector
        pipe = Pipeline(create_model("hrnet-w32_coco-256x192"), YoloDetector("yolo11n.pt"))
        with open_source("photos/") as frames:
            for result in pipe(frames):
                print(result.frame.source, len(result), result.keypoints.shape)
    """

    def __init__(self, estimator: "TopDownEstimator", detector: "Detector", video: VideoOptions | None = None) -> None:
        self.estimator = estimator
        self.detector = detector
        self.video = video or VideoOptions()
        self.stats = RunStats()  # the latest run's

    @property
    def keypoint_set(self):
        return self.estimator.keypoint_set

    def process(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Detect and estimate on a batch of frames (all their crops share forward passes; no tracking)."""
        t0 = time.perf_counter()
        detections: list[Detections] = self.detector(frames)
        t1 = time.perf_counter()
        poses = self.estimator([f.image for f in frames], [d.boxes for d in detections])
        t2 = time.perf_counter()
        timings = {"detect": (t1 - t0) / len(frames), "pose": (t2 - t1) / len(frames)}
        return [
            FrameResult(frame, Poses(d.boxes, d.scores, kpts, scores, self.estimator.keypoint_set), dict(timings))
            for frame, d, (kpts, scores) in zip(frames, detections, poses)
        ]

    def __call__(self, frames: Iterable[Frame], *, live: bool | None = None) -> Iterator[FrameResult]:
        """The engine over ``frames`` (see the module's doc); ``live``: a camera or live stream (the newest
        frame waits); None: the source's own ``live``. A live source's or any stream's frames wait at most
        ``video.max_latency`` for a batch."""
        from poseapp.engine.queues import run_stages

        v = self.video
        if live is None:
            live = bool(getattr(frames, "live", False))
        bounded = live or getattr(frames, "kind", "") == "stream"  # an http(s) stream is watched as it comes
        stats = self.stats = RunStats()
        lock = threading.Lock()
        stages = [lambda inbox: self._detect_stage(inbox, lock),
                  lambda inbox: self._pose_stage(inbox, lock, bounded)]
        if v.track:
            stages.append(self._track_stage)
        run = run_stages(frames, stages, maxsize=1 if live else 4, newest_first=live and not v.keep_all,
                         first_size=STREAM_BUFFER if live and v.keep_all else None, name="poseapp")
        try:
            for result in run:
                stats.frames += 1
                stats.detector_frames += result.detected
                stats.dropped = run.dropped
                yield result
        finally:
            run.close()
            stats.dropped = run.dropped

    # ------------------------------------------------------------------ stages (each in its own thread)

    def _detect_stage(self, inbox: "Inbox", lock: threading.Lock) -> Iterator:
        from poseapp.engine.batching import Prepared
        from poseapp.estimator import make_crops

        every = self.video.det_every
        for n, frame in enumerate(inbox):
            if n % every:
                yield Prepared(frame, None, None)
                continue
            with lock:
                start = time.perf_counter()
                detections = self.detector([frame])[0]
            crops = make_crops([frame.image], [detections.boxes], self.estimator.recipe)
            yield Prepared(frame, detections, crops, time.perf_counter() - start)

    def _pose_stage(self, inbox: "Inbox", lock: threading.Lock, bounded: bool) -> Iterator[FrameResult]:
        from poseapp.engine.batching import batched_poses
        from poseapp.engine.keyframes import locked, propagated_poses

        if self.video.det_every == 1:
            return batched_poses(inbox, self.estimator, batch_size=self.estimator.batch_size,
                                 max_latency=self.video.max_latency if bounded else None)
        return propagated_poses(inbox, self.estimator, locked(self.detector, lock), kpt_thr=self.video.kpt_thr)

    def _track_stage(self, inbox: "Inbox") -> Iterator[FrameResult]:
        from poseapp.engine.smoothing import OneEuro, SavGol
        from poseapp.engine.tracking import Tracker

        v = self.video
        tracker = Tracker(self.estimator.keypoint_set, track_buffer=v.track_buffer, kpt_thr=v.kpt_thr)

        def tracked() -> Iterator[FrameResult]:
            for result in inbox:
                ids = tracker.update(result.poses)
                yield replace(result, poses=replace(result.poses, track_ids=ids))

        if v.smooth == "one-euro":
            smoother = OneEuro(min_cutoff=v.min_cutoff, beta=v.beta, d_cutoff=v.d_cutoff, kpt_thr=v.kpt_thr)
            return smoother.smooth(tracked())
        if v.smooth == "savgol":
            return SavGol(window=v.window, order=v.order, kpt_thr=v.kpt_thr).smooth(tracked())
        return tracked()
