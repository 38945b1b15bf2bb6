"""Recipes outside the zoo table: written into exported model files, read back from them, or written by a
user for their own ONNX model (``--pose-recipe recipe.json``). Every recipe read here is checked the way
the zoo's own entries are (:func:`check_recipe`), so a bad field is one clear line naming the file.

A recipe file is a JSON object with :class:`~poseapp.zoo.Recipe`'s fields. For a user's own model three are
required (and ``heatmap_size`` for heatmap codecs); the rest default as below::

    {"keypoint_set": "coco", "codec": "msra", "input_size": [192, 256], "heatmap_size": [48, 64]}

| field | default | meaning |
| --- | --- | --- |
| ``keypoint_set`` | (required) | the keypoint table (``coco``, ``mpii``, ``ap10k``... ``python infer.py models``) |
| ``codec`` | (required) | ``msra``, ``dark``, ``udp``, ``hrnet``, ``regression``, ``rle``, ``simcc``, ``simdr`` |
| ``input_size`` | (required) | ``[width, height]`` of the network input |
| ``heatmap_size`` | (heatmap codecs: required) | ``[width, height]`` of the output heatmaps |
| ``warp`` | ``mmpose`` (``mmpose-udp`` for ``udp``) | the crop rule: ``mmpose``, ``mmpose-udp``, ``hrnet`` |
| ``mean``, ``std`` | ImageNet's on 0-255 | RGB normalisation (``hrnet`` warp: divided by 255 first) |
| ``bbox_padding`` | 1.25 | box enlargement before the aspect fix |
| ``flip_test`` | true | average with the mirrored crop (``flip_indices`` from the keypoint set) |
| ``shift_heatmap``, ``shift_coords`` | true | MMPose's flip-back shifts |
| ``simcc_split_ratio`` | 2.0 | SimCC/SimDR bins per input pixel |
| ``codec_params`` | {} | e.g. ``{"blur_kernel_size": 11}`` for DARK/UDP |
| ``name`` | the file's stem | how logs and JSON outputs name the model |
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from poseapp.errors import CheckpointError
from poseapp.zoo import Recipe

FORMAT = 1
"""The version of the recipe a poseapp export writes (``poseapp.format`` beside ``poseapp.recipe``)."""

RECIPE_KEY, FORMAT_KEY, PRECISION_KEY = "poseapp.recipe", "poseapp.format", "poseapp.precision"
"""The metadata keys of an export: its recipe (JSON), the recipe's format, the precision it runs at by default."""

_FAMILY_OF_CODEC = {"msra": "heatmap", "dark": "heatmap", "udp": "heatmap", "hrnet": "heatmap",
                    "regression": "regression", "rle": "rle", "simcc": "simcc", "simdr": "simdr"}
_FIELDS = {f.name for f in dataclasses.fields(Recipe)}
_REQUIRED = ("keypoint_set", "codec", "input_size")
_DOWNLOADS = ("url", "filename", "sha256_prefix", "gdrive_id")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON-ready data (tuples as lists), every field."""
    return json.loads(json.dumps(dataclasses.asdict(recipe)))


def recipe_to_json(recipe: Recipe) -> str:
    return json.dumps(recipe_to_dict(recipe), sort_keys=True)


def recipe_from_dict(data: Any, where: str, *, name: str | None = None) -> Recipe:
    """A checked Recipe from a recipe file's data; ``where`` names the file in errors.

    Raises:
        CheckpointError: one line naming ``where`` and the field that is wrong (an unknown field suggests the
            closest one).
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: a recipe is a JSON object with Recipe's fields, not {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(_FIELDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(sorted(_REQUIRED))}, ...)"
        raise CheckpointError(f"{where}: unknown recipe field '{unknown[0]}'{hint}")
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if not missing and data.get("heatmap_size") is None and isinstance(data.get("codec"), str) \
            and _FAMILY_OF_CODEC.get(data["codec"]) == "heatmap":
        missing = ["heatmap_size"]
    if missing:
        raise CheckpointError(f"{where}: the recipe needs '{missing[0]}' (required: {', '.join(_REQUIRED)}, and "
                              "heatmap_size for heatmap codecs)")
    d = dict(data)
    codec = d["codec"]
    d.setdefault("name", name or "onnx-model")
    d.setdefault("dataset", d["keypoint_set"])
    d.setdefault("family", _FAMILY_OF_CODEC.get(codec, "heatmap") if isinstance(codec, str) else "heatmap")
    d.setdefault("arch", "onnx")
    d.setdefault("backbone", "")
    d.setdefault("heatmap_size", None)
    d.setdefault("warp", "mmpose-udp" if codec == "udp" else "mmpose")
    if d.get("num_keypoints") is None:
        from poseapp.keypoints import available, get_keypoint_set

        if d["keypoint_set"] not in available():
            raise CheckpointError(f"{where}: keypoint_set '{d['keypoint_set']}' is not one of {', '.join(available())}")
        d["num_keypoints"] = get_keypoint_set(d["keypoint_set"]).num_keypoints
    try:
        recipe = Recipe.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: not a recipe ({e})") from None
    check_recipe(recipe, where)
    return recipe


def read_recipe_file(path: str | Path) -> Recipe:
    """The checked recipe in a JSON file (``--pose-recipe``); its name defaults to the file's stem."""
    from poseapp.jsonfile import read_json

    path = Path(path)
    return recipe_from_dict(read_json(path, "recipe file", CheckpointError), str(path), name=path.stem)


def _is_size(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192 for v in value))


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_recipe(recipe: Recipe, where: str) -> None:
    """CheckpointError naming ``where`` and the field, for a recipe the estimator could not follow: an unknown
    codec, warp or keypoint set, a channel count that is not the keypoint set's, sizes that are not two
    positive whole numbers, a heatmap codec without a heatmap size, a mean/std that is not three numbers
    (std > 0), a padding or split ratio that is not positive. The zoo table is checked with it too."""
    from poseapp import geometry
    from poseapp.codecs.table import CODECS, HEATMAPS
    from poseapp.keypoints import available, get_keypoint_set

    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{where}: recipe field '{field}' {why}")

    for field in ("name", "codec", "warp", "keypoint_set", "dataset", "family", "arch"):
        if not isinstance(getattr(recipe, field), str):
            raise bad(field, f"is {getattr(recipe, field)!r}: give a string")
    if isinstance(recipe.num_keypoints, bool) or not isinstance(recipe.num_keypoints, int):
        raise bad("num_keypoints", f"is {recipe.num_keypoints!r}: give a whole number")
    if recipe.codec not in CODECS:
        raise bad("codec", f"is '{recipe.codec}', not one of {', '.join(CODECS)}")
    if recipe.warp not in geometry.WARPS:
        raise bad("warp", f"is '{recipe.warp}', not one of {', '.join(geometry.WARPS)}")
    if recipe.keypoint_set not in available():
        raise bad("keypoint_set", f"is '{recipe.keypoint_set}', not one of {', '.join(available())}")
    count = get_keypoint_set(recipe.keypoint_set).num_keypoints
    if recipe.num_keypoints != count:
        raise bad("num_keypoints", f"is {recipe.num_keypoints} but keypoint set {recipe.keypoint_set} has {count}")
    if not _is_size(recipe.input_size):
        raise bad("input_size", f"is {recipe.input_size}: give [width, height], two positive whole numbers")
    if CODECS[recipe.codec].outputs == HEATMAPS and not _is_size(recipe.heatmap_size):
        raise bad("heatmap_size", f"is {recipe.heatmap_size}: codec {recipe.codec} needs [width, height] of the "
                                  "heatmaps, two positive whole numbers")
    for field in ("mean", "std"):
        value = getattr(recipe, field)
        if not (isinstance(value, tuple) and len(value) == 3 and all(_is_number(v) for v in value)):
            raise bad(field, f"is {value}: give three numbers (RGB, 0-255 scale)")
    if min(recipe.std) <= 0:
        raise bad("std", f"is {recipe.std}: every value must be above 0")
    if max(recipe.mean) <= 1 and max(recipe.std) <= 1:
        raise bad("mean", f"is {recipe.mean} and std {recipe.std}: that is the 0-1 scale, and a recipe's are on "
                          "0-255 (ImageNet's: [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])")
    for field in ("bbox_padding", "simcc_split_ratio"):
        value = getattr(recipe, field)
        if not (_is_number(value) and value > 0):
            raise bad(field, f"is {value}: give a number above 0")
    for field in ("flip_test", "shift_heatmap", "shift_coords"):
        if not isinstance(getattr(recipe, field), bool):
            raise bad(field, f"is {getattr(recipe, field)!r}: give true or false")
    if recipe.keypoint_range is not None:
        span = recipe.keypoint_range
        if not (len(span) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                and 0 <= span[0] < span[1] <= count):
            raise bad("keypoint_range", f"is {span!r}: give [start, stop) within 0..{count}")
    if not isinstance(recipe.codec_params, dict):
        raise bad("codec_params", f"is {recipe.codec_params!r}: give an object")
    kernel = recipe.codec_params.get("blur_kernel_size", 11)
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise bad("codec_params", f"has blur_kernel_size {kernel!r}: give an odd whole number (DARK/UDP use 11)")
    sigma = recipe.codec_params.get("sigma", 2)
    if not (_is_number(sigma) or isinstance(sigma, list) and sigma and all(_is_number(v) for v in sigma)):
        raise bad("codec_params", f"has sigma {sigma!r}: give a number (or SimCC's [x, y])")


def recipe_from_metadata(metadata: dict[str, str], where: str) -> Recipe | None:
    """The recipe a poseapp export wrote into a model file's metadata (ONNX ``metadata_props``, OpenVINO
    ``rt_info``), checked; None when the file has none (a model from elsewhere)."""
    text = metadata.get(RECIPE_KEY)
    if text is None:
        return None
    version = metadata.get(FORMAT_KEY, "?")
    if str(version) != str(FORMAT):
        raise CheckpointError(f"{where}: its recipe is format {version}, this poseapp reads format {FORMAT} "
                              f"(export it again with python infer.py export, or pass --pose-arch NAME)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: its poseapp.recipe metadata is not JSON ({e})") from None
    if isinstance(data, dict):  # a model file says how to use it, never where to download anything
        data = {k: v for k, v in data.items() if k not in _DOWNLOADS}
    return recipe_from_dict(data, where)
