"""The model zoo as data: each published model's recipe (how to crop, normalise, decode) and weights.

A recipe carries everything needed to use a checkpoint (torchvision ``Weights`` / timm ``PretrainedCfg``
style); model code hard-codes none of it. The table itself lives in ``zoo.json`` beside this file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from poseapp.errors import suggest

_TABLE = Path(__file__).with_name("zoo.json")

@dataclass(frozen=True)
class Recipe:
    """How a published model is used.

    Attributes:
        name: stable short name (the zoo's ``name``).
        dataset: data set it was trained on (``coco``, ``ap10k``...).
        keypoint_set: name of its keypoint table (poseapp.keypoints).
        family: what the network predicts and how it is decoded: ``heatmap``, ``regression`` (DeepPose),
            ``rle`` (regression with sigmas), ``simcc`` (SimCC head), ``rtmpose`` (CSPNeXt + RTMCC) or
            ``simdr`` (sithu31296's SimDR).
        arch: network architecture in the model registry (``resnet50``, ``hrnet-w32``, ``rtmpose-m``...).
        num_keypoints: channels the network outputs.
        input_size: (w, h) of the model input.
        heatmap_size: (W, H) of the output heatmaps; None for the other families.
        codec: ``msra`` (argmax + quarter-pixel shift), ``dark`` (MSRA with DARK refinement), ``udp``
            (UDP heatmap, DARK-UDP refinement), ``hrnet`` (the HRNet repo's decoding), ``regression``
            (normalised coordinates, score 1), ``rle`` (coordinates + sigmas, score = mean(1 - sigma)),
            ``simcc`` (argmax of the x/y vectors, score = min of the two maxima) or ``simdr`` (softmax,
            then argmax of the x/y vectors; the HRNet repo's SimDR).
        warp: ``mmpose`` (standard affine), ``mmpose-udp`` (UDP affine) or ``hrnet`` (the HRNet repo's
            centre/scale, warp and ToTensor + Normalize).
        bbox_padding: box enlargement before the aspect fix (1.25, or 0.8 for Locust/Zebra).
        flip_test: average with the horizontally flipped crop (the published configs' default).
        shift_heatmap: shift the flipped heatmap one pixel right before averaging (heatmap codecs).
        shift_coords: shift flipped regression x by one input pixel before averaging (MMPose ``shift_coords``).
        simcc_split_ratio: SimCC/SimDR bins per input pixel.
        mean, std: RGB normalisation on the 0-255 scale.
        url, filename, sha256_prefix: where the checkpoint lives and what its hash starts with.
        keypoint_range: [start, stop) of the channels to keep (DeepFashion2 categories), else None.
        category: the garment category of that range (DeepFashion2), else None.
        metrics: the published numbers.
    """

    name: str
    dataset: str
    keypoint_set: str
    family: str
    arch: str
    num_keypoints: int
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int] | None
    codec: str
    warp: str
    bbox_padding: float = 1.25
    flip_test: bool = True
    shift_heatmap: bool = True
    shift_coords: bool = True
    simcc_split_ratio: float = 2.0
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    url: str | None = None
    filename: str | None = None
    sha256_prefix: str | None = None
    keypoint_range: tuple[int, int] | None = None
    category: str | None = None
    source: str = "mmpose"
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Recipe":
        d = dict(d)
        for key in ("input_size", "heatmap_size", "mean", "std", "keypoint_range"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["metrics"] = d.get("metrics") or {}
        return Recipe(**d)


@lru_cache(maxsize=None)
def _table() -> dict[str, Recipe]:
    entries = json.loads(_TABLE.read_text())
    table: dict[str, Recipe] = {}
    for d in entries:
        if d["name"] in table:
            raise ValueError(f"zoo.json lists '{d['name']}' twice")
        table[d["name"]] = Recipe.from_dict(d)
    return table


def list_recipes() -> list[Recipe]:
    """Every zoo entry, in table order."""
    return list(_table().values())


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name raises UnknownNameError with the closest names."""
    table = _table()
    if name not in table:
        raise suggest(name, list(table), "model")
    return table[name]


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})_\d{8}\.pth$")


def hash_prefix_in_filename(filename: str) -> str | None:
    """The 8 hex digits MMPose's publish_model.py puts in ``<name>-<sha256[:8]>_<date>.pth``, if present."""
    m = _HASH_IN_NAME.search(filename)
    return m.group(1) if m else None


def recipe_for_file(path: str | Path) -> Recipe | None:
    """The zoo entry whose checkpoint file name ``path`` bears (exact file name), or None."""
    name = Path(path).name
    for r in _table().values():
        if r.filename == name:
            return r
    return None
