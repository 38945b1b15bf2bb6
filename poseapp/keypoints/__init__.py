"""Keypoint sets as data: names, skeleton links, colours, flip permutation, OKS sigmas.

One JSON table per set in ``data/`` (facts of each data set's published metainfo). The drawer and the
flip test pick the table by the model's keypoint-set name, never by counting keypoints.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from poseapp.errors import suggest

_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class KeypointSet:
    """A data set's keypoint layout.

    Attributes:
        name: the set's name (``coco``, ``ap10k``...), as in the zoo's ``dataset`` field.
        names: K keypoint names.
        flip_indices: (K,) int permutation used by the flip test (a valid permutation).
        skeleton: (L, 2) int index pairs to draw as links.
        link_colors: (L, 3) uint8 RGB colours, one per link.
        keypoint_colors: (K, 3) uint8 RGB colours, one per keypoint.
        sigmas: (K,) float OKS sigmas, empty where the data set defines none.
    """

    name: str
    names: tuple[str, ...]
    flip_indices: np.ndarray
    skeleton: np.ndarray
    link_colors: np.ndarray
    keypoint_colors: np.ndarray
    sigmas: np.ndarray

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def subset(self, start: int, stop: int, name: str | None = None) -> "KeypointSet":
        """The keypoints ``start..stop-1`` as a set of their own (e.g. one DeepFashion2 category).

        Links that leave the range are dropped; flip indices are re-based and must stay inside it.
        """
        idx = np.arange(start, stop)
        flip = self.flip_indices[idx] - start
        if flip.min() < 0 or flip.max() >= len(idx):
            raise ValueError(f"flip pairs of {self.name}[{start}:{stop}] leave the range")
        keep = np.all((self.skeleton >= start) & (self.skeleton < stop), axis=1)
        return KeypointSet(
            name=name or f"{self.name}[{start}:{stop}]",
            names=self.names[start:stop],
            flip_indices=flip,
            skeleton=self.skeleton[keep] - start,
            link_colors=self.link_colors[keep],
            keypoint_colors=self.keypoint_colors[idx],
            sigmas=self.sigmas[idx] if len(self.sigmas) else self.sigmas,
        )


def available() -> list[str]:
    """Names of every keypoint set shipped with poseapp."""
    return sorted(p.stem for p in _DATA.glob("*.json"))


@lru_cache(maxsize=None)
def get_keypoint_set(name: str) -> KeypointSet:
    """Load the keypoint set ``name`` (raises UnknownNameError with suggestions)."""
    path = _DATA / f"{name}.json"
    if not path.is_file():
        raise suggest(name, available(), "keypoint set")
    d = json.loads(path.read_text())
    k = len(d["keypoints"])
    return KeypointSet(
        name=d["name"],
        names=tuple(d["keypoints"]),
        flip_indices=np.asarray(d["flip_indices"], dtype=np.int64),
        skeleton=np.asarray(d["skeleton"], dtype=np.int64).reshape(-1, 2),
        link_colors=np.asarray(d["link_colors"], dtype=np.uint8).reshape(-1, 3),
        keypoint_colors=np.asarray(d["keypoint_colors"], dtype=np.uint8).reshape(k, 3),
        sigmas=np.asarray(d["sigmas"], dtype=np.float64),
    )
