"""What every box source is: a callable ``detector(frames) -> list[Detections]``, and the whole frame."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from poseapp.errors import PoseAppError
from poseapp.results import Detections, Frame


class DetectorError(PoseAppError):
    """A detector cannot be built or its boxes file cannot be read; the message names the file and the fix."""


class Detector(Protocol):
    """Anything that turns frames into boxes."""

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        """One Detections per frame, in the frames' order."""
        ...


class WholeFrameDetector:
    """One box ``[0, 0, w, h]`` per frame, score 1.0, label -1."""

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        for frame in frames:
            h, w = frame.shape
            out.append(
                Detections(
                    np.array([[0, 0, w, h]], np.float32), np.ones(1, np.float32), np.full(1, -1, np.int64)
                )
            )
        return out
