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

from poseapp.errors import PoseAppError, suggest

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
        backbone: the backbone as the published table names it (``HRNet-W32``, ``ResNet-50``, ``CSPNeXt-m``...).
        num_keypoints: channels the network outputs.
        input_size: (w, h) of the model input.
        heatmap_size: (W, H) of the output heatmaps; None for the other families.
        codec: ``msra`` (argmax + quarter-pixel shift), ``dark`` (MSRA with DARK refinement), ``udp``
            (UDP heatmap, DARK-UDP refinement), ``hrnet`` (the HRNet repo's decoding), ``regression``
            (normalised coordinates, score 1), ``rle`` (coordinates + sigmas, score = mean(1 - sigma)),
            ``simcc`` (argmax of the x/y vectors, score = min of the two maxima) or ``simdr`` (softmax,
            then argmax of the x/y vectors; the HRNet repo's SimDR).
        codec_params: the published codec's parameters (``sigma``; ``blur_kernel_size``, which DARK and UDP
            refinement use; ``simcc_split_ratio``...).
        warp: ``mmpose`` (standard affine), ``mmpose-udp`` (UDP affine) or ``hrnet`` (the HRNet repo's
            centre/scale, warp and ToTensor + Normalize).
        bbox_padding: box enlargement before the aspect fix (1.25, or 0.8 for Locust/Zebra).
        flip_test: average with the horizontally flipped crop (the published configs' default).
        shift_heatmap: shift the flipped heatmap one pixel right before averaging (heatmap codecs).
        shift_coords: shift flipped regression x by one input pixel before averaging (MMPose ``shift_coords``).
        simcc_split_ratio: SimCC/SimDR bins per input pixel.
        mean, std: RGB normalisation on the 0-255 scale.
        url, filename, sha256_prefix: where the checkpoint lives and what its hash starts with (MMPose file
            names carry the first 8 hex digits of the sha256; None where nothing is published).
        gdrive_id: the Google Drive file id when ``url`` is a Drive link (sithu31296's weights).
        layout: the checkpoint's key layout: ``mmpose-1.x`` (``head.*``), ``mmpose-0.x`` (``keypoint_head.*``)
            or ``state_dict`` (a bare state dict with the HRNet repo's names).
        licence: the licence the weights are published under.
        keypoint_range: [start, stop) of the channels to keep (DeepFashion2 categories), else None.
        category: the garment category of that range (DeepFashion2), else None.
        source: who publishes it (``mmpose`` or ``sithu31296/pose-estimation``).
        table: the published table the metrics come from.
        eval_set: what the metrics were measured on (e.g. ``COCO val2017, person detector AP 56.4``).
        metrics: the published numbers, keyed as that table names them.
    """

    name: str
    dataset: str
    keypoint_set: str
    family: str
    arch: str
    backbone: str
    num_keypoints: int
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int] | None
    codec: str
    warp: str
    codec_params: dict[str, Any] = field(default_factory=dict, compare=False)
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
    gdrive_id: str | None = None
    layout: str = "mmpose-1.x"
    licence: str = ""
    keypoint_range: tuple[int, int] | None = None
    category: str | None = None
    source: str = "mmpose"
    table: str = ""
    eval_set: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Recipe":
        d = dict(d)
        for key in ("input_size", "heatmap_size", "mean", "std", "keypoint_range"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["metrics"] = d.get("metrics") or {}
        d["codec_params"] = d.get("codec_params") or {}
        return Recipe(**d)

    @property
    def headline(self) -> tuple[str, Any] | None:
        """(label, value) of the metric its data set's table leads with (COCO-style AP, PCK, PCKh or NME)."""
        return headline_metric(self.metrics)


@dataclass(frozen=True)
class Unavailable:
    """A published table row with no public weights: listed, never fetched (``get_recipe`` says why)."""

    name: str
    dataset: str
    backbone: str
    description: str
    input_size: tuple[int, int] | None
    source: str
    table: str
    eval_set: str | None
    unavailable: str
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def headline(self) -> tuple[str, Any] | None:
        return headline_metric(self.metrics)


_HEADLINES = (("AP", "AP"), ("PCK@0.2", "PCK@0.2"), ("PCK@0.05", "PCK@0.05"), ("Mean", "PCKh@0.5"), ("NME", "NME"))


def headline_metric(metrics: dict[str, Any]) -> tuple[str, Any] | None:
    """(label, value) of the first of AP, PCK@0.2, PCK@0.05, PCKh@0.5 (MPII's ``Mean``) and NME in ``metrics``."""
    for key, label in _HEADLINES:
        if metrics.get(key) is not None:
            return label, metrics[key]
    return None


@lru_cache(maxsize=None)
def _entries() -> dict[str, Recipe | Unavailable]:
    """Every row of zoo.json by name: a Recipe, or an Unavailable for rows marked ``unavailable``."""
    table: dict[str, Recipe | Unavailable] = {}
    for d in json.loads(_TABLE.read_text()):
        if d["name"] in table:
            raise ValueError(f"zoo.json lists '{d['name']}' twice")
        if "unavailable" in d:
            d = dict(d, input_size=tuple(d["input_size"]) if d.get("input_size") else None)
            table[d["name"]] = Unavailable(**d)
        else:
            table[d["name"]] = Recipe.from_dict(d)
    return table


def _table() -> dict[str, Recipe]:
    return {k: v for k, v in _entries().items() if isinstance(v, Recipe)}


def list_recipes() -> list[Recipe]:
    """Every zoo entry with weights, in table order."""
    return list(_table().values())


def list_unavailable() -> list[Unavailable]:
    """The published rows without public weights, in table order."""
    return [v for v in _entries().values() if isinstance(v, Unavailable)]


def get_entry(name: str) -> Recipe | Unavailable:
    """The zoo row called ``name``, with or without weights; an unknown name suggests the closest names."""
    entries = _entries()
    if name not in entries:
        folded = [known for known in entries if known.lower() == name.strip().lower()]
        if len(folded) != 1:
            raise suggest(name, list(entries), "model")
        name = folded[0]
    return entries[name]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``. An unknown name raises UnknownNameError with the closest names; a row
    without public weights raises PoseAppError saying so."""
    entry = get_entry(name)
    if isinstance(entry, Unavailable):
        raise PoseAppError(f"model '{name}' ({entry.description}) has no public weights: {entry.unavailable} "
                           f"(python infer.py models lists the ones that do)")
    return entry


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
