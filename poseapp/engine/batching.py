"""Cross-frame batching: the crops of consecutive frames share forward passes, results leave in frame order.

:func:`batched_poses` is the pose stage of the engine when the detector runs on every frame: it takes
:class:`Prepared` frames (their boxes and crops cut), runs the network whenever ``batch_size`` crops are
waiting (crops of one frame may be split across two passes), and yields each frame's result as soon as all
its crops are done, in the order the frames came. A frame never waits longer than ``max_latency`` seconds
for a batch to fill (live sources), and at most MAX_FRAMES frames are held (files with few people).
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from poseapp.engine.queues import EMPTY, END, Inbox
from poseapp.estimator import Crops
from poseapp.results import Detections, Frame, FrameResult, Poses

if TYPE_CHECKING:
    from poseapp.estimator import TopDownEstimator

MAX_FRAMES = 8
"""The most frames the pose stage holds while their crops wait for a batch (full frames: memory)."""


@dataclass
class Prepared:
    """A frame on its way to the pose network.

    Attributes:
        frame: the frame.
        detections: its boxes (None: the detector did not run on it; the pose stage finds them).
        crops: the crops of those boxes (None with them).
        detect_time: seconds the detector and the cropping took for this frame.
        detected: whether the detections are the detector's (False: carried from the frame before).
    """

    frame: Frame
    detections: Detections | None
    crops: Crops | None
    detect_time: float = 0.0
    detected: bool = True


@dataclass
class _Pending:
    item: Prepared
    arrived: float
    keypoints: np.ndarray
    scores: np.ndarray
    done: int = 0  # crops run so far
    pose_time: float = 0.0
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.total = len(self.item.crops.pixels)


def frame_result(item: Prepared, keypoints: np.ndarray, scores: np.ndarray, pose_time: float,
                 estimator: "TopDownEstimator") -> FrameResult:
    d = item.detections
    poses = Poses(d.boxes, d.scores, keypoints, scores, estimator.keypoint_set)
    return FrameResult(item.frame, poses, {"detect": item.detect_time, "pose": pose_time}, item.detected)


def _slice(crops: Crops, start: int, stop: int) -> Crops:
    return Crops(crops.pixels[start:stop], crops.centers[start:stop], crops.scales[start:stop])


def _concat(parts: list[Crops]) -> Crops:
    if len(parts) == 1:
        return parts[0]
    return Crops(np.concatenate([p.pixels for p in parts]), np.concatenate([p.centers for p in parts]),
                 np.concatenate([p.scales for p in parts]))


class _Batcher:
    """The frames waiting for the network and the crops of theirs not run yet."""

    def __init__(self, estimator: "TopDownEstimator", batch_size: int) -> None:
        self.estimator = estimator
        self.batch_size = batch_size
        self.pending: collections.deque[_Pending] = collections.deque()
        self.queued = 0  # crops waiting

    def add(self, item: Prepared) -> None:
        k = self.estimator.keypoint_set.num_keypoints
        n = len(item.crops.pixels)
        self.pending.append(_Pending(item, time.monotonic(), np.zeros((n, k, 2)), np.zeros((n, k))))
        self.queued += n

    def oldest_waiting(self) -> float | None:
        """When the oldest frame with crops still to run arrived (None: none waits)."""
        for p in self.pending:
            if p.done < p.total:
                return p.arrived
        return None

    def run(self, limit: int) -> None:
        """One forward pass over the next ``limit`` waiting crops (fewer at the end)."""
        parts, owners = [], []
        wanted = limit
        for p in self.pending:
            if wanted == 0:
                break
            take = min(wanted, p.total - p.done)
            if take:
                parts.append(_slice(p.item.crops, p.done, p.done + take))
                owners.append((p, take))
                wanted -= take
        if not parts:
            return
        start = time.perf_counter()
        keypoints, scores = self.estimator.keypoints_of(_concat(parts))
        seconds = time.perf_counter() - start
        ran = limit - wanted
        at = 0
        for p, take in owners:
            p.keypoints[p.done:p.done + take] = keypoints[at:at + take]
            p.scores[p.done:p.done + take] = scores[at:at + take]
            p.done += take
            p.pose_time += seconds * take / ran
            at += take
        self.queued -= ran

    def flush(self) -> None:
        while self.queued:
            self.run(min(self.queued, self.batch_size))

    def finished(self) -> Iterator[FrameResult]:
        """The frames at the head whose crops are all done, in order."""
        while self.pending and self.pending[0].done == self.pending[0].total:
            p = self.pending.popleft()
            yield frame_result(p.item, p.keypoints, p.scores, p.pose_time, self.estimator)


def batched_poses(inbox: Inbox, estimator: "TopDownEstimator", *, batch_size: int,
                  max_latency: float | None = None) -> Iterator[FrameResult]:
    """The pose stage with cross-frame batching (see the module's doc).

    Args:
        inbox: Prepared frames, every one with its detections and crops.
        estimator: the pose model.
        batch_size: crops per forward pass.
        max_latency: seconds the oldest waiting frame may wait for a batch to fill; None: no bound (files).
    """
    batcher = _Batcher(estimator, batch_size)
    while True:
        oldest = batcher.oldest_waiting()
        if oldest is None or max_latency is None:
            item = inbox.poll(None)
        else:
            item = inbox.poll(max(0.0, oldest + max_latency - time.monotonic()))
        if item is END:
            batcher.flush()
            yield from batcher.finished()
            return
        if item is EMPTY:  # the oldest frame has waited max_latency: run what there is
            batcher.flush()
        else:
            batcher.add(item)
            while batcher.queued >= batch_size:
                batcher.run(batch_size)
            oldest = batcher.oldest_waiting()
            if len(batcher.pending) >= min(batch_size, MAX_FRAMES):  # frames with few crops: hold only a few
                batcher.flush()
            elif max_latency is not None and oldest is not None and time.monotonic() >= oldest + max_latency:
                batcher.flush()  # frames kept coming, but the oldest has waited long enough
        yield from batcher.finished()
