"""Keypoint smoothing per track and keypoint: an online One-Euro filter, a Savitzky-Golay window.

Both take FrameResults that carry track IDs, in frame order, and give them back with ``keypoints`` smoothed
and ``keypoints_raw`` the model's. Only a confident keypoint (score >= kpt_thr) of a tracked instance is
smoothed; one that is not confident is passed through raw, and a keypoint that disappears (not confident,
or its track absent) starts afresh where it reappears instead of dragging its old position along.

* :class:`OneEuro` (Casiez, Roussel and Vogel, CHI 2012): a low-pass filter whose cutoff rises with speed,
  so a still keypoint stops shaking and a moving one lags little. Online: no delay, for live sources too.
  Parameters in seconds and pixels: ``min_cutoff`` (Hz; lower: smoother when still), ``beta`` (how fast the
  cutoff rises with speed, per pixel/s; higher: less lag when moving), ``d_cutoff`` (Hz, for the speed).
* :class:`SavGol`: a centred least-squares polynomial (``scipy.signal.savgol_coeffs``) over ``window``
  frames, of order ``order``; each frame leaves ``window // 2`` frames late, so memory stays flat. Near the
  ends of a keypoint's run of confident frames the window keeps to the frames of that run (one-sided there).
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Iterable, Iterator

import numpy as np

from poseapp.results import FrameResult

SMOOTHERS = ("none", "one-euro", "savgol")
FALLBACK_FPS = 30.0
"""Frames per second assumed for a source that states no time (a folder of frames)."""


def _with_keypoints(result: FrameResult, keypoints: np.ndarray) -> FrameResult:
    poses = dataclasses.replace(result.poses, keypoints=keypoints, keypoints_raw=result.poses.keypoints)
    return dataclasses.replace(result, poses=poses)


def _time(result: FrameResult) -> float:
    f = result.frame
    return f.timestamp if f.timestamp is not None else f.index / FALLBACK_FPS


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """The One-Euro filter over a run's FrameResults (see the module's doc); ``smooth(results)`` yields
    them smoothed, one for one, without delay."""

    def __init__(self, *, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0,
                 kpt_thr: float = 0.3) -> None:
        self.min_cutoff, self.beta, self.d_cutoff, self.kpt_thr = min_cutoff, beta, d_cutoff, kpt_thr
        self._state: dict[int, tuple[float, np.ndarray, np.ndarray, np.ndarray]] = {}  # id -> t, x, dx, valid

    def step(self, result: FrameResult) -> FrameResult:
        p = result.poses
        if p.track_ids is None:
            raise ValueError("smoothing needs track IDs: run with tracking on")
        t = _time(result)
        out = p.keypoints.copy()
        state = {}
        for i, tid in enumerate(p.track_ids.tolist()):
            if tid < 0:
                continue
            x = p.keypoints[i]
            good = (p.scores[i] >= self.kpt_thr) & np.all(np.isfinite(x), axis=1)
            prev = self._state.get(tid)
            if prev is None or t <= prev[0]:
                state[tid] = (t, x.copy(), np.zeros_like(x), good)
                continue
            t0, x0, dx0, valid0 = prev
            dt = t - t0
            cont = good & valid0  # a keypoint confident now and on the track's frame before
            dx = (x - x0) / dt
            dx_hat = np.where(cont[:, None], _alpha(self.d_cutoff, dt) * dx + (1 - _alpha(self.d_cutoff, dt)) * dx0, 0)
            cutoff = self.min_cutoff + self.beta * np.linalg.norm(dx_hat, axis=1)
            a = _alpha(cutoff, dt)[:, None]
            x_hat = np.where(cont[:, None], a * x + (1 - a) * x0, x)
            out[i] = np.where(good[:, None], x_hat, x)
            state[tid] = (t, x_hat, dx_hat, good)
        self._state = state  # a track absent from this frame starts afresh when it comes back
        return _with_keypoints(result, out)

    def smooth(self, results: Iterable[FrameResult]) -> Iterator[FrameResult]:
        for result in results:
            yield self.step(result)


class SavGol:
    """The Savitzky-Golay window over a run's FrameResults (see the module's doc); ``smooth(results)`` yields
    them smoothed, one for one, ``window // 2`` frames behind."""

    def __init__(self, *, window: int = 9, order: int = 2, kpt_thr: float = 0.3) -> None:
        if window < 3 or window % 2 == 0:
            raise ValueError(f"the Savitzky-Golay window must be an odd number of frames, at least 3 (got {window})")
        if not 0 <= order < window:
            raise ValueError(f"the Savitzky-Golay order must be at least 0 and below the window ({window}); "
                             f"got {order}")
        self.window, self.order, self.kpt_thr = window, order, kpt_thr
        self._coeffs: dict[tuple[int, int], np.ndarray] = {}

    def _weights(self, length: int, pos: int) -> np.ndarray:
        """Weights over ``length`` samples that evaluate the fitted polynomial at sample ``pos``."""
        key = (length, pos)
        if key not in self._coeffs:
            from scipy.signal import savgol_coeffs

            order = min(self.order, length - 1)
            self._coeffs[key] = savgol_coeffs(length, order, pos=pos, use="dot") if length > 1 else np.ones(1)
        return self._coeffs[key]

    def _centre(self, frames: list[FrameResult], c: int) -> FrameResult:
        """frames[c] smoothed with the frames around it (``frames`` is the window, in order)."""
        p = frames[c].poses
        if p.track_ids is None:
            raise ValueError("smoothing needs track IDs: run with tracking on")
        out = p.keypoints.copy()
        for i, tid in enumerate(p.track_ids.tolist()):
            if tid < 0:
                continue
            # the track's keypoints over the window: (W, K, 2) and (W, K) confident, NaN where absent
            pts = np.full((len(frames), *p.keypoints.shape[1:]), np.nan)
            good = np.zeros((len(frames), p.keypoints.shape[1]), bool)
            for j, f in enumerate(frames):
                q = f.poses
                hit = np.flatnonzero(q.track_ids == tid) if q.track_ids is not None else []
                if len(hit):
                    pts[j] = q.keypoints[hit[0]]
                    good[j] = (q.scores[hit[0]] >= self.kpt_thr) & np.all(np.isfinite(pts[j]), axis=1)
            h = self.window // 2
            for k in np.flatnonzero(good[c]):
                lo = c
                while lo > max(0, c - h) and good[lo - 1, k]:
                    lo -= 1
                hi = c
                while hi < min(len(frames) - 1, c + h) and good[hi + 1, k]:
                    hi += 1
                out[i, k] = self._weights(hi - lo + 1, c - lo) @ pts[lo:hi + 1, k]
        return _with_keypoints(frames[c], out)

    def smooth(self, results: Iterable[FrameResult]) -> Iterator[FrameResult]:
        h = self.window // 2
        window: collections.deque[FrameResult] = collections.deque(maxlen=self.window)
        for result in results:
            window.append(result)
            if len(window) > h:  # the frame h behind the newest has all the frames after it it needs
                yield self._centre(list(window), len(window) - 1 - h)
        frames = list(window)
        for c in range(max(0, len(frames) - h), len(frames)):
            yield self._centre(frames, c)
