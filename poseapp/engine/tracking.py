"""Track IDs: a stable ID per instance across frames (ultralytics' ByteTrack, with keypoints added).

:class:`Tracker` is a state machine fed one frame's poses at a time (``update(poses) -> ids``). It runs
ultralytics' ``BYTETracker`` (a Kalman filter per box, two-stage matching of high and low scoring boxes),
whose matching cost here also counts keypoint similarity (OKS against the track's last keypoints: one that
comes back where it was lost is found again through it), and adds what ByteTrack leaves out: an instance
that comes back elsewhere (ByteTrack gives it a new track) takes its old ID again when it reappears near
where it was last seen, within ``track_buffer`` frames. No appearance (ReID) model is used. An instance
whose track is not confirmed yet gets -1: a track is confirmed once it is matched on a second frame
(ByteTrack confirms the tracks of the very first frame at once; here they wait like any other, so a
one-frame false detection there never takes an ID). The detector runs at its own confidence, so
ByteTrack's second stage (boxes scoring 0.1-0.25) only sees boxes when ``--det-conf`` is set below 0.25:
each would cost a pose pass before it could be matched.
"""
from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from poseapp.errors import PoseAppError, arg
from poseapp.keypoints import KeypointSet
from poseapp.results import Poses

DEFAULT_TRACK_BUFFER = 30
"""Frames a lost track is kept (ultralytics' bytetrack.yaml ``track_buffer``)."""
BYTETRACK = {"tracker_type": "bytetrack", "track_high_thresh": 0.25, "track_low_thresh": 0.1,
             "new_track_thresh": 0.25, "match_thresh": 0.8, "fuse_score": True}
"""ultralytics' bytetrack.yaml defaults (its ``match_thresh`` bounds the combined IoU/OKS cost here)."""
OKS_WEIGHT = 0.5
"""The share of keypoint similarity in the matching cost (the rest is ByteTrack's IoU cost)."""
DEFAULT_SIGMA = 0.07
"""The OKS sigma of a keypoint set that defines none (about COCO's average)."""
REID_DISTANCE = 1.0
"""A returning instance takes an old ID when its box centre lies within this many box sizes (the larger
side of the box last seen) of where that instance was last seen, and its size is within 2x."""


class _Boxes:
    """The results-like value BYTETracker reads: conf, cls, xywh, boolean indexing; ``index`` keeps each
    box's place in the frame's instances through that indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, index: np.ndarray | None = None) -> None:
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, np.float32).reshape(-1)
        self.cls = np.zeros(len(self.conf), np.float32)
        self.index = np.arange(len(self.conf)) if index is None else index

    @property
    def xywh(self) -> np.ndarray:
        b = self.xyxy
        return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: Any) -> "_Boxes":
        return _Boxes(self.xyxy[mask], self.conf[mask], self.index[mask])


def oks(a: np.ndarray, a_scores: np.ndarray, b: np.ndarray, b_scores: np.ndarray, area: np.ndarray,
        sigmas: np.ndarray, kpt_thr: float) -> np.ndarray:
    """(N, M) object keypoint similarity of N keypoint sets (N, K, 2) against M (M, K, 2), over the keypoints
    confident (>= kpt_thr) in both; ``area`` (N,) is each of the N instances' box area. NaN where none is."""
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # (N, M, K)
    var = (2 * sigmas) ** 2
    e = np.exp(-d2 / (2 * np.maximum(area, 1.0)[:, None, None] * var))
    both = (a_scores[:, None] >= kpt_thr) & (b_scores[None] >= kpt_thr)
    count = both.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (e * both).sum(-1) / count, np.nan)


@dataclass
class _Seen:
    """Where a public ID was last seen."""

    box: np.ndarray
    frame: int


def _byte_tracker(owner: "Tracker", track_buffer: int):
    """ultralytics' BYTETracker, its cost with keypoints added and its boxes made with their frame index."""
    from poseapp.boxes.yolo import import_yolo

    if importlib.util.find_spec("lap") is None:  # ultralytics' matching would pip-install it: say so here instead
        raise PoseAppError(f"tracking needs the lap package, which is not installed: pip install -r requirements.txt "
                           f"(it lists lap>=0.5.12), or turn tracking off with {arg('no_track')}")
    import_yolo()  # ultralytics imported the way the detector imports it (offline, quiet, restricted loading)
    from ultralytics.trackers.byte_tracker import BYTETracker, STrack
    from ultralytics.utils import IterableSimpleNamespace

    missing = [name for name in ("init_track", "get_dists", "update") if not hasattr(BYTETracker, name)]
    if missing:  # the methods overridden or called here (ultralytics 8.4's)
        from ultralytics import __version__

        raise PoseAppError(f"tracking needs ultralytics' BYTETracker.{missing[0]}, which ultralytics {__version__} "
                           f"does not have: pip install -r requirements.txt, or turn tracking off with "
                           f"{arg('no_track')}")

    ids = itertools.count(1)  # this tracker's own: older ultralytics counts on a class shared by every tracker

    class PoseByteTracker(BYTETracker):
        def init_track(self, results: _Boxes, img: Any = None) -> list:
            if len(results) == 0:
                return []
            rows = np.concatenate([results.xywh, results.index.reshape(-1, 1)], axis=1)
            tracks = [STrack(row, s, c) for row, s, c in zip(rows, results.conf, results.cls)]
            for track in tracks:
                track.next_id = ids.__next__
            return tracks

        def get_dists(self, tracks: list, detections: list) -> np.ndarray:
            dists = super().get_dists(tracks, detections)
            return owner._fuse_keypoints(dists, tracks, detections)

    return PoseByteTracker(IterableSimpleNamespace(**BYTETRACK, track_buffer=track_buffer))


class Tracker:
    """Track IDs for one video or stream; ``update(poses)`` once per frame, in order (see the module's doc).

    Args:
        keypoint_set: the poses' keypoints (their OKS sigmas).
        track_buffer: frames a lost instance keeps its ID (for ByteTrack, and to take it back on return).
        kpt_thr: keypoints scoring below it are left out of the similarity.
    """

    def __init__(self, keypoint_set: KeypointSet, *, track_buffer: int = DEFAULT_TRACK_BUFFER,
                 kpt_thr: float = 0.3) -> None:
        self.track_buffer = int(track_buffer)
        self.kpt_thr = kpt_thr
        k = keypoint_set.num_keypoints
        self.sigmas = keypoint_set.sigmas if len(keypoint_set.sigmas) == k else np.full(k, DEFAULT_SIGMA)
        self.frame = 0
        self._byte = _byte_tracker(self, self.track_buffer)
        self._public: dict[int, int] = {}  # ByteTrack's track id -> ours
        self._last_keypoints: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # ByteTrack id -> kpts
        self._seen: dict[int, _Seen] = {}  # our id -> last seen
        self._next_id = 1
        self._poses: Poses | None = None

    def _fuse_keypoints(self, dists: np.ndarray, tracks: list, detections: list) -> np.ndarray:
        """ByteTrack's (tracks, detections) cost, averaged with 1 - OKS where a track's last keypoints and the
        detection's (this frame's poses, set by ``update`` while ByteTrack runs) share confident keypoints."""
        p = self._poses
        if p is None or not len(tracks) or not len(detections) or not len(p):
            return dists
        known = [self._last_keypoints.get(t.track_id) for t in tracks]
        rows = [i for i, k in enumerate(known) if k is not None]
        if not rows:
            return dists
        a = np.stack([known[i][0] for i in rows])
        a_scores = np.stack([known[i][1] for i in rows])
        area = np.array([known[i][2] for i in rows])
        idx = np.array([int(d.idx) for d in detections])
        sim = oks(a, a_scores, p.keypoints[idx], p.scores[idx], area, self.sigmas, self.kpt_thr)
        fused = dists.copy()
        part = fused[rows]
        part = np.where(np.isnan(sim), part, (1 - OKS_WEIGHT) * part + OKS_WEIGHT * (1 - sim))
        fused[rows] = part
        return fused

    def update(self, poses: Poses) -> np.ndarray:
        """The (N,) int64 track IDs of this frame's instances (-1: no confirmed track yet)."""
        self.frame += 1
        self._poses = poses
        try:
            rows = self._byte.update(_Boxes(poses.boxes, poses.box_scores))
        finally:
            self._poses = None
        ids = np.full(len(poses), -1, np.int64)
        rows = np.asarray(rows).reshape(-1, 8) if len(rows) else np.zeros((0, 8))
        started = {t.track_id: t.start_frame for t in self._byte.tracked_stracks}
        rows = rows[[started.get(int(r[4]), 0) < self._byte.frame_id for r in rows]] if len(rows) else rows
        new = []
        for row in rows:
            byte_id, i = int(row[4]), int(row[7])
            if byte_id in self._public:
                ids[i] = self._public[byte_id]
            else:
                new.append((byte_id, i))
        self._reidentify(new, ids, poses)
        for byte_id, i in ((int(r[4]), int(r[7])) for r in rows):
            box = poses.boxes[i]
            area = float(np.prod(np.clip(box[2:] - box[:2], 1, None)))
            self._last_keypoints[byte_id] = (poses.keypoints[i], poses.scores[i], area)
            self._seen[int(ids[i])] = _Seen(np.asarray(box, np.float64), self.frame)
        self._forget()
        return ids

    def _reidentify(self, new: list[tuple[int, int]], ids: np.ndarray, poses: Poses) -> None:
        """Give each new ByteTrack track the ID of an instance lost near it (see REID_DISTANCE), else a new
        ID; the closest pairs first."""
        active = set(ids[ids >= 0].tolist())
        lost = {pid: s for pid, s in self._seen.items() if pid not in active and s.frame < self.frame}
        pairs = []
        for byte_id, i in new:
            box = np.asarray(poses.boxes[i], np.float64)
            for pid, s in lost.items():
                d = _reid_distance(box, s.box)
                if d <= REID_DISTANCE:
                    pairs.append((d, byte_id, i, pid))
        taken_new, taken_old = set(), set()
        for _, byte_id, i, pid in sorted(pairs):
            if byte_id in taken_new or pid in taken_old:
                continue
            self._hand_over(pid, byte_id)
            ids[i] = pid
            taken_new.add(byte_id)
            taken_old.add(pid)
        for byte_id, i in new:
            if byte_id not in taken_new:
                self._public[byte_id] = self._next_id
                ids[i] = self._next_id
                self._next_id += 1

    def _hand_over(self, pid: int, byte_id: int) -> None:
        """Our ID ``pid`` now follows ByteTrack's track ``byte_id``; the lost track that had it is removed from
        ByteTrack, so it can never come back under the same ID as its successor."""
        for old in [b for b, p in self._public.items() if p == pid and b != byte_id]:
            del self._public[old]
            self._last_keypoints.pop(old, None)
            for track in [t for t in self._byte.lost_stracks if t.track_id == old]:
                track.mark_removed()
                self._byte.lost_stracks.remove(track)
                self._byte.removed_stracks.append(track)
        self._public[byte_id] = pid

    def _forget(self) -> None:
        """Drop what is older than the track buffer (memory stays flat however long the video)."""
        horizon = self.frame - self.track_buffer
        self._seen = {pid: s for pid, s in self._seen.items() if s.frame >= horizon}
        live = {t.track_id for t in (*self._byte.tracked_stracks, *self._byte.lost_stracks)}
        self._last_keypoints = {b: v for b, v in self._last_keypoints.items() if b in live}
        self._public = {b: pid for b, pid in self._public.items() if b in live}


def _reid_distance(box: np.ndarray, last: np.ndarray) -> float:
    """How far ``box`` is from ``last`` (centre distance over last's larger side); inf when their sizes
    differ by more than 2x."""
    size, last_size = box[2:] - box[:2], last[2:] - last[:2]
    ratio = np.sqrt(np.prod(np.clip(size, 1, None)) / np.prod(np.clip(last_size, 1, None)))
    if not 0.5 <= ratio <= 2:
        return float("inf")
    centre, last_centre = (box[:2] + box[2:]) / 2, (last[:2] + last[2:]) / 2
    return float(np.linalg.norm(centre - last_centre) / max(float(last_size.max()), 1.0))
