"""The job as a generator: frames -> detector -> estimator -> FrameResult, one result per frame."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from poseapp.results import Detections, Frame, FrameResult, Poses

if TYPE_CHECKING:
    from poseapp.boxes import Detector
    from poseapp.estimator import TopDownEstimator


class Pipeline:
    """Top-down pose estimation over any iterable of frames.

    ``Pipeline(estimator, detector)(frames)`` yields one FrameResult per frame, lazily, in order.
    ``detector`` is any callable ``(frames) -> list[Detections]`` (YOLO, whole frame, a boxes file, face boxes
    from a person model: see poseapp.boxes).

    Example::

        from poseapp import Pipeline, create_model, open_source
        from poseapp.boxes import YoloDetector
        pipe = Pipeline(create_model("hrnet-w32_coco-256x192"), YoloDetector("yolo11n.pt"))
        with open_source("photos/") as frames:
            for result in pipe(frames):
                print(result.frame.source, len(result), result.keypoints.shape)
    """

    def __init__(self, estimator: "TopDownEstimator", detector: "Detector") -> None:
        self.estimator = estimator
        self.detector = detector

    @property
    def keypoint_set(self):
        return self.estimator.keypoint_set

    def process(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Detect and estimate on a batch of frames (all their crops share forward passes)."""
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

    def __call__(self, frames: Iterable[Frame]) -> Iterator[FrameResult]:
        for frame in frames:
            yield self.process([frame])[0]
